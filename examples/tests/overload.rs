//! Overload: thousands of `Database`s against a DBaaS that takes five calls a second.
//!
//! The example operator runs on the embedded API server against the simulated DBaaS,
//! both on paused tokio time, so thousands of seconds of DBaaS pacing pass in seconds.
//! The operator's shared rate budget counts calls at the DBaaS's own rate, and a pass
//! that observes and then creates takes two cells. Midway, the DBaaS has a brownout (its
//! instance API fails while `/healthz` still answers, which only the circuit breaker
//! can catch) and then a full outage (which the health check catches).
//!
//! What must hold: every `Database` Ready with exactly one instance; the DBaaS answered
//! no 429 and saw no more than its limit in any window; while the breaker was not
//! closed, the DBaaS saw no call beyond the probes the breaker admitted; every outage
//! is followed by convergence.
//!
//! `KUBE_RECONCILE_OVERLOAD_OBJECTS=<n>` sets the number of objects. The default is
//! 1,000: about two minutes in a debug build on two cores (1,340 s of virtual time, 38
//! API requests per object). The full 10,000 of the issue costs more than ten times as
//! much, because the run lasts ten times longer in virtual time and every Ready object
//! resyncs every 5 minutes of it (70 API requests per object), at about 3 ms of
//! debug-build CPU per API request; in a release build it takes about ten minutes
//! (10,380 s of virtual time, 40,483 DBaaS calls, no 429). Run it on demand:
//!
//! ```sh
//! KUBE_RECONCILE_OVERLOAD_OBJECTS=10000 cargo test --release --all-features --test overload -- --nocapture
//! ```
//!
//! The test prints a one-line summary.

use database_operator as example;

use std::{
    fmt,
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::{Duration, Instant as WallInstant},
};

use kube::{
    Api, CustomResourceExt, ResourceExt,
    api::{ListParams, PostParams},
};
use kube_reconcile::{
    middleware::{
        circuit_breaker::State,
        rate_limit::{Quota, RateBudget},
    },
    phase::HasPhaseStatus,
};
use kube_reconcile_testing::{ApiServer, WorkloadSimulator};
use tokio::time::Instant;

use example::{
    crd::{Database, DatabaseSpec, Engine},
    dbaas::{DbaasServer, RunningDbaas},
    operator::DatabaseMachine,
};

/// The DBaaS's limit: five calls a second, five at once.
const RATE: u32 = 5;
const BURST: u32 = 5;

/// The most DBaaS calls one pass through the gate makes: an `ensure` observes by key,
/// then creates.
const MAX_CALLS_PER_PASS: u64 = 2;

/// How long the brownout and the outage last.
const BROWNOUT: Duration = Duration::from_secs(90);
const OUTAGE: Duration = Duration::from_secs(60);

/// How often the test looks at the progress, in virtual time.
const POLL: Duration = Duration::from_secs(20);

fn objects() -> usize {
    std::env::var("KUBE_RECONCILE_OVERLOAD_OBJECTS").map_or(1_000, |n| {
        n.trim()
            .parse()
            .unwrap_or_else(|e| panic!("KUBE_RECONCILE_OVERLOAD_OBJECTS={n:?} is not a count: {e}"))
    })
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("not zero")
}

/// One change of the breaker's state, with how many calls the DBaaS had judged by then.
#[derive(Clone, Copy, Debug)]
struct Change {
    at: Instant,
    to: State,
    calls: usize,
}

/// Calls the DBaaS saw while the breaker was open and while it was half-open.
fn calls_by_state(changes: &[Change], calls_now: usize) -> (usize, usize) {
    let (mut open, mut half_open) = (0, 0);
    for (i, change) in changes.iter().enumerate() {
        let until = changes.get(i + 1).map_or(calls_now, |next| next.calls);
        let during = until - change.calls;
        match change.to {
            State::Open => open += during,
            State::HalfOpen => half_open += during,
            _ => {}
        }
    }
    (open, half_open)
}

/// The most calls in any window of `width` (`times` sorted).
fn busiest(times: &[Instant], width: Duration) -> usize {
    let mut start = 0;
    let mut most = 0;
    for (end, &t) in times.iter().enumerate() {
        while t.duration_since(times[start]) >= width {
            start += 1;
        }
        most = most.max(end + 1 - start);
    }
    most
}

/// The run's numbers, printed as one line in the CI log.
struct Summary {
    objects: usize,
    virtual_time: Duration,
    wall_time: Duration,
    dbaas_calls: usize,
    throttled: u64,
    calls_while_open: usize,
    probe_calls: usize,
    probes: u64,
    openings: usize,
    outage_calls: usize,
    api_requests: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        #[allow(clippy::cast_precision_loss, reason = "a ratio for people to read")]
        let per_object = self.api_requests as f64 / self.objects as f64;
        write!(
            f,
            "overload: {} Databases Ready in {:.0}s virtual, {:.1}s wall; DBaaS {} calls at \
             {RATE}/s (burst {BURST}), {} 429s; breaker opened {} times, {} calls while open, \
             {} calls while half-open / {} probes admitted; {} instance API calls in the full \
             outage; {:.1} API requests per object",
            self.objects,
            self.virtual_time.as_secs_f64(),
            self.wall_time.as_secs_f64(),
            self.dbaas_calls,
            self.throttled,
            self.openings,
            self.calls_while_open,
            self.probe_calls,
            self.probes,
            self.outage_calls,
            per_object,
        )
    }
}

/// Creates `n` valid Databases.
async fn create(api: &Api<Database>, n: usize) {
    for i in 0..n {
        let db = Database::new(
            &format!("db-{i:05}"),
            DatabaseSpec {
                engine: Engine::Postgres,
                version: "16".to_owned(),
                replicas: 1,
                storage: "1Gi".to_owned(),
                retain_on_delete: false,
            },
        );
        api.create(&PostParams::default(), &db)
            .await
            .unwrap_or_else(|e| panic!("creating db-{i:05} failed: {e}"));
    }
}

fn ready(db: &Database) -> bool {
    db.phase() == Some("Ready")
        && db.phase_status().is_some_and(|s| {
            s.observed_generation == db.metadata.generation && s.conditions.is_true("Ready")
        })
}

/// Where the Databases that are not Ready are, by phase and reason.
fn stragglers(list: &[Database]) -> Vec<(String, Option<String>, Option<String>)> {
    list.iter()
        .filter(|db| !ready(db))
        .take(5)
        .map(|db| {
            (
                db.name_any(),
                db.phase().map(str::to_owned),
                db.phase_status()
                    .and_then(|s| s.conditions.find("Ready").map(|c| c.message.clone())),
            )
        })
        .collect()
}

/// Counts the instance API calls the DBaaS saw from `from` on.
fn calls_since(dbaas: &RunningDbaas, from: Instant) -> usize {
    dbaas
        .instance_call_times()
        .iter()
        .filter(|&&t| t >= from)
        .count()
}

/// No window of the DBaaS's call log holds more calls than the burst plus the rate
/// times the window.
fn check_rate(times: &[Instant], rate: u32, burst: u32) {
    for width in [1, 10, 60, 600].map(Duration::from_secs) {
        let limit = burst as usize
            + usize::try_from(width.as_nanos() * u128::from(rate) / 1_000_000_000)
                .unwrap_or(usize::MAX);
        let most = busiest(times, width);
        assert!(
            most <= limit,
            "{most} calls in {width:?} (limit {limit}): the budget let a burst through"
        );
    }
}

/// The brownout opened the breaker, which closed again; while it was not closed, only
/// probes got through. Returns the openings, the calls while open and while half-open.
fn check_breaker(
    changes: &Mutex<Vec<Change>>,
    times: &[Instant],
    probes: u64,
    brownout: Instant,
) -> (usize, usize, usize) {
    let changes = changes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let openings = changes.iter().filter(|c| c.to == State::Open).count();
    assert!(
        changes
            .iter()
            .any(|c| c.to == State::Open && c.at >= brownout && c.at < brownout + BROWNOUT),
        "the brownout did not open the breaker: {changes:?}"
    );
    assert_eq!(
        changes.last().map(|c| c.to),
        Some(State::Closed),
        "the breaker closed again: {changes:?}"
    );
    // A probe is one pass, which makes at most two calls (observe, then create).
    let (calls_while_open, probe_calls) = calls_by_state(&changes, times.len());
    assert!(
        (calls_while_open + probe_calls) as u64 <= MAX_CALLS_PER_PASS * probes,
        "{calls_while_open} calls while open and {probe_calls} while half-open, but only \
         {probes} probes admitted: {changes:?}"
    );
    (openings, calls_while_open, probe_calls)
}

/// Waits until all `n` Databases are Ready, with a brownout once a third of the
/// instances exist and an outage at two thirds; returns the Databases and when the
/// brownout and the outage began.
async fn converge(
    api: &Api<Database>,
    dbaas: &RunningDbaas,
    n: usize,
    started: Instant,
) -> (Vec<Database>, Instant, Instant) {
    let deadline = started + Duration::from_secs(12 * 3600);
    let (mut brownout, mut brownout_over, mut outage) = (None::<Instant>, false, None);
    loop {
        tokio::time::sleep(POLL).await;
        let created = usize::try_from(dbaas.stats().instances_created).unwrap_or(usize::MAX);
        match brownout {
            None if created >= n / 3 => {
                dbaas.faults().error_rate(1.0);
                brownout = Some(Instant::now());
            }
            Some(at) if !brownout_over && at.elapsed() >= BROWNOUT => {
                dbaas.faults().error_rate(0.0);
                brownout_over = true;
            }
            _ => {}
        }
        if brownout_over && outage.is_none() && created >= 2 * n / 3 {
            dbaas.faults().outage(OUTAGE);
            outage = Some(Instant::now());
        }
        if let (Some(brownout), Some(outage)) = (brownout, outage)
            && created >= n
            && !dbaas.faults().in_outage()
        {
            let list = api
                .list(&ListParams::default())
                .await
                .expect("listing works")
                .items;
            if list.len() == n && list.iter().all(ready) {
                return (list, brownout, outage);
            }
            assert!(
                Instant::now() < deadline,
                "not every Database is Ready after {:?}: {:?}",
                started.elapsed(),
                stragglers(&list)
            );
        }
        assert!(
            Instant::now() < deadline,
            "only {created} of {n} instances created after {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test(start_paused = true)]
async fn thousands_of_databases_stay_within_the_dbaas_limit_and_the_breaker_holds_calls_back() {
    let n = objects();
    let wall = WallInstant::now();
    let server = ApiServer::new();
    let client = server.client();
    kube_reconcile_testing::install_crd(&client, &Database::crd())
        .await
        .expect("the CRD installs");
    let quota = Quota::per_second(nz(RATE)).burst(nz(BURST));
    let dbaas = DbaasServer::builder()
        .provision_delay(Duration::from_secs(2))
        .update_delay(Duration::from_secs(1))
        .delete_delay(Duration::from_secs(1))
        .jitter(Duration::from_secs(1))
        .rate_limit(quota)
        .seed(0x0_BEEF)
        .start()
        .await
        .expect("the DBaaS starts");
    // No Pods: a thousand StatefulSets' Pods would be load of the simulator's own.
    let _simulator = WorkloadSimulator::new(client.clone())
        .ready_after(Duration::from_millis(100))
        .owned_pods(false)
        .start();
    let api: Api<Database> = Api::default_namespaced(client.clone());
    create(&api, n).await;
    server.reset_requests();

    // The operator: the DBaaS's own quota as its budget, in calls; deadlines long enough
    // for every object to wait its turn.
    let started = Instant::now();
    let handle = example::dbaas(dbaas.client())
        .expect("the DBaaS's settings")
        .budget(RateBudget::new("dbaas", quota))
        .build();
    let day = Duration::from_secs(24 * 3600);
    // Ready Databases rest for the length of the run: the drift checks of thousands of
    // finished objects would cost most of the run's API requests and say nothing about
    // the DBaaS's limit.
    let machine = DatabaseMachine::new(day, day).expect("the machine's table");
    let operator = example::operator(client.clone(), machine)
        .and_then(|operator| example::start(operator, api.clone(), handle))
        .expect("the operator starts");
    let changes = Arc::new(Mutex::new(Vec::<Change>::new()));
    {
        let changes = Arc::clone(&changes);
        let calls = dbaas.instance_call_counter();
        operator.dbaas.breaker().on_transition(move |t| {
            changes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(Change {
                    at: Instant::now(),
                    to: t.to,
                    calls: calls(),
                });
        });
    }

    let (list, brownout, outage) = converge(&api, &dbaas, n, started).await;
    let virtual_time = started.elapsed();
    operator.controller.abort();

    // Exactly one instance per Database, each recorded on its Database.
    let stats = dbaas.stats();
    assert_eq!(stats.instances_created, n as u64, "{stats}");
    assert_eq!(stats.live_instances, n, "{stats}");
    for db in &list {
        assert!(
            db.status
                .as_ref()
                .and_then(|s| s.instance_id.as_ref())
                .is_some(),
            "{} records no instance",
            db.name_any()
        );
    }

    // The budget kept the DBaaS within its limit: no 429, and in no window more calls
    // than the burst plus the rate times the window.
    assert_eq!(stats.throttled, 0, "the DBaaS answered 429: {stats}");
    let times = dbaas.instance_call_times();
    check_rate(&times, RATE, BURST);

    // The brownout opened the breaker; while it was not closed, only probes got through.
    let probes = operator.dbaas.breaker().snapshot().probes_admitted;
    let (openings, calls_while_open, probe_calls) =
        check_breaker(&changes, &times, probes, brownout);

    // The full outage: the health check held the calls back; only the calls in flight
    // when it began, and those that found it out, reached the instance API.
    let outage_calls = calls_since(&dbaas, outage) - calls_since(&dbaas, outage + OUTAGE);
    assert!(
        outage_calls <= BURST as usize,
        "{outage_calls} instance API calls during the outage"
    );

    let summary = Summary {
        objects: n,
        virtual_time,
        wall_time: wall.elapsed(),
        dbaas_calls: times.len(),
        throttled: stats.throttled,
        calls_while_open,
        probe_calls,
        probes,
        openings,
        outage_calls,
        api_requests: server.requests().total(),
    };
    println!("{summary}");
}
