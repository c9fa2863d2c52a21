//! One run: N Databases from creation to Ready under one operator, then a steady-state
//! pass, on a fresh API server, DBaaS and workload simulator.

#![allow(
    clippy::cast_precision_loss,
    reason = "counts and sizes far below 2^52, printed as ratios"
)]

use std::{
    collections::HashMap,
    num::NonZeroU32,
    pin::pin,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use futures::{StreamExt, TryStreamExt};
use kube::{
    Api, Client, CustomResourceExt, ResourceExt,
    api::PostParams,
    runtime::{WatchStreamExt, watcher},
};
use kube_reconcile::{
    metrics::Metrics,
    middleware::rate_limit::{Quota, RateBudget},
};
use kube_reconcile_testing::{ApiServer, Fault, RunningSimulator, WorkloadSimulator};
use prometheus_client::{encoding::text::encode, registry::Registry};

use super::{
    example::{
        self,
        crd::{Database, DatabaseSpec, Engine},
        dbaas::{DbaasClient, DbaasServer, RunningDbaas},
        operator::{DatabaseMachine, READY_RESYNC},
    },
    heap::{OnWorld, PeakHeap, live_heap, world_side},
    measure::{RequestCounter, Requests},
    naive,
    plot::DbaasSample,
};

/// Which operator runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operator {
    /// The example operator: phase engine, `Ensure`, the DBaaS gate and the middleware,
    /// with its adaptive DBaaS budget (no rate configured).
    Ours,
    /// The example operator with its DBaaS budget fixed at the DBaaS's true limit: what a
    /// perfectly informed fixed budget could do.
    Oracle,
    /// The lesson's "bad" code (see `naive.rs`).
    Naive,
}

impl Operator {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Operator::Ours => "kube-reconcile",
            Operator::Oracle => "oracle",
            Operator::Naive => "naive",
        }
    }
}

/// What one run measured.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// How many Databases.
    pub(crate) n: usize,
    /// Which operator.
    pub(crate) operator: Operator,
    /// The share of API requests answered with an injected 500.
    pub(crate) error_rate: f64,
    /// The share of the DBaaS's `/healthz` checks answered with 503.
    pub(crate) health_failure_rate: f64,
    /// From the operator's start to the last Database Ready, if they all got there.
    pub(crate) converged: Option<Duration>,
    /// How many were Ready at the end.
    pub(crate) ready: usize,
    /// When each Database first became Ready, from the operator's start, sorted.
    pub(crate) ready_at: Vec<Duration>,
    /// The operator's API requests until then.
    pub(crate) requests: Requests,
    /// The DBaaS's call and 429 counters every 250 ms until then (for the chart).
    pub(crate) dbaas_over_time: Vec<DbaasSample>,
    /// Calls the DBaaS received until then, and how many it refused with 429.
    pub(crate) dbaas_calls: u64,
    pub(crate) dbaas_throttled: u64,
    /// Injected API errors that fired.
    pub(crate) faults_fired: u64,
    /// Growth of the operator's heap at its peak during convergence (not the world's:
    /// see `heap.rs`).
    pub(crate) peak_heap: usize,
    /// The heap the converged operator held (freed when it stopped).
    pub(crate) operator_heap: usize,
    /// The steady-state pass, on fault-free runs.
    pub(crate) steady: Option<Steady>,
}

impl Outcome {
    /// The time by which `percent` of the Databases were Ready.
    pub(crate) fn percentile(&self, percent: usize) -> Option<Duration> {
        let last = self.ready_at.len().checked_sub(1)?;
        self.ready_at.get((last * percent / 100).min(last)).copied()
    }

    /// API requests per converged Database.
    pub(crate) fn per_object(&self, requests: u64) -> f64 {
        requests as f64 / self.n as f64
    }
}

/// A restarted operator reconciling every converged Database once.
#[derive(Debug)]
pub(crate) struct Steady {
    /// Reconciles run.
    pub(crate) reconciles: u64,
    /// The requests they made.
    pub(crate) requests: Requests,
}

impl Steady {
    /// Write requests per reconcile.
    pub(crate) fn writes_per_reconcile(&self) -> f64 {
        self.requests.writes() as f64 / self.reconciles.max(1) as f64
    }
}

/// The world one run happens in, all of it on the world's side of the heap.
struct World {
    server: ApiServer,
    /// Uncounted: creates the Databases and watches them converge.
    client: Client,
    namespace: String,
    dbaas: RunningDbaas,
    _simulator: RunningSimulator,
}

impl World {
    /// Builds the world, counting what it allocates on the world's side.
    async fn new(seed: u64) -> World {
        world_side(World::build(seed)).await
    }

    async fn build(seed: u64) -> World {
        let server = ApiServer::builder().seed(seed).build();
        let namespace = server.client().default_namespace().to_owned();
        let client = Client::new(OnWorld(server.clone()), namespace);
        kube_reconcile_testing::install_crd(&client, &Database::crd())
            .await
            .unwrap_or_else(|e| panic!("installing the Database CRD failed: {e}"));
        let dbaas = DbaasServer::builder()
            .provision_delay(Duration::from_millis(200))
            .update_delay(Duration::from_millis(100))
            .delete_delay(Duration::from_millis(100))
            .jitter(Duration::from_millis(50))
            .rate_limit(Quota::per_second(
                NonZeroU32::new(DBAAS_LIMIT).expect("non-zero"),
            ))
            .seed(seed)
            .start()
            .await
            .unwrap_or_else(|e| panic!("the DBaaS did not start: {e}"));
        World {
            namespace: client.default_namespace().to_owned(),
            // No Pods: they would add the simulator's load and heap to what is measured.
            _simulator: WorkloadSimulator::new(client.clone())
                .ready_after(Duration::from_millis(50))
                .owned_pods(false)
                .start(),
            client,
            server,
            dbaas,
        }
    }

    /// Records the DBaaS's counters every 250 ms, from `started`, forever.
    async fn sample_dbaas(&self, started: Instant, samples: &std::sync::Mutex<Vec<DbaasSample>>) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            let stats = self.dbaas.stats();
            let sample = DbaasSample {
                at: started.elapsed(),
                calls: stats.total_calls(),
                throttled: stats.throttled,
            };
            samples
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(sample);
        }
    }

    /// Creates `n` valid Databases, 64 requests at a time.
    async fn create(&self, n: usize) {
        let api: Api<Database> = Api::namespaced(self.client.clone(), &self.namespace);
        futures::stream::iter(0..n)
            .map(|i| {
                let api = api.clone();
                async move {
                    let (engine, version) = if i % 2 == 0 {
                        (Engine::Postgres, "16")
                    } else {
                        (Engine::Mysql, "8.4")
                    };
                    let db = Database::new(
                        &format!("db-{i:05}"),
                        DatabaseSpec {
                            engine,
                            version: version.to_owned(),
                            replicas: 1,
                            storage: "1Gi".to_owned(),
                            retain_on_delete: false,
                        },
                    );
                    api.create(&PostParams::default(), &db).await
                }
            })
            .buffer_unordered(64)
            .try_for_each(|_| async { Ok(()) })
            .await
            .unwrap_or_else(|e| panic!("creating the Databases failed: {e}"));
    }

    /// Waits until `n` Databases are Ready or `deadline` passes; returns when each first
    /// became Ready, counted from `started`, sorted.
    async fn ready(&self, n: usize, started: Instant, deadline: Instant) -> Vec<Duration> {
        let api: Api<Database> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut phases: HashMap<String, bool> = HashMap::with_capacity(n);
        let mut first: HashMap<String, Duration> = HashMap::with_capacity(n);
        let mut ready = 0;
        let mut events = pin!(
            watcher(api, watcher::Config::default())
                .default_backoff()
                .applied_objects()
        );
        while ready < n {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(next) = tokio::time::timeout(left, events.next()).await else {
                break;
            };
            let Some(Ok(db)) = next else { continue };
            let now = db.phase() == Some("Ready");
            let was = phases.insert(db.name_any(), now).unwrap_or(false);
            match (was, now) {
                (false, true) => {
                    ready += 1;
                    first
                        .entry(db.name_any())
                        .or_insert_with(|| started.elapsed());
                }
                (true, false) => ready -= 1,
                _ => {}
            }
        }
        let mut times: Vec<Duration> = first.into_values().collect();
        times.sort_unstable();
        times.truncate(ready);
        times
    }
}

/// The DBaaS's own limit on its instance API, requests per second. The example's adaptive
/// budget has to find it from the DBaaS's answers (its 429s); the oracle is told it.
const DBAAS_LIMIT: u32 = 200;

/// An operator of either kind, running.
enum Running {
    Ours {
        operator: Box<example::Operator>,
        registry: Registry,
    },
    Naive(naive::NaiveOperator),
}

impl Running {
    fn start(kind: Operator, client: Client, namespace: &str, dbaas: DbaasClient) -> Running {
        match kind {
            Operator::Ours | Operator::Oracle => {
                let metrics = Metrics::default();
                let mut registry = Registry::default();
                metrics.register(&mut registry);
                let mut dbaas = example::dbaas(dbaas).expect("the DBaaS's settings");
                if kind == Operator::Oracle {
                    let quota = Quota::per_second(NonZeroU32::new(DBAAS_LIMIT).expect("non-zero"));
                    dbaas = dbaas.budget(RateBudget::new("dbaas", quota));
                }
                let dbaas = dbaas.build();
                // The lesson's deadlines: a turn at the DBaaS budget is paced, off
                // their clock, so even N = 10,000 (21 minutes of budget) fits them.
                let machine = DatabaseMachine::new(Duration::ZERO, READY_RESYNC)
                    .expect("the machine's table");
                let operator = example::operator(client.clone(), machine)
                    .and_then(|operator| {
                        let operator = operator.metrics(Some(metrics), "databases");
                        example::start(operator, Api::namespaced(client, namespace), dbaas)
                    })
                    .unwrap_or_else(|e| panic!("the example operator did not start: {e}"));
                Running::Ours {
                    operator: Box::new(operator),
                    registry,
                }
            }
            Operator::Naive => Running::Naive(naive::start(client, namespace, dbaas)),
        }
    }

    /// Reconciles so far (for ours, as its metrics count them).
    fn reconciles(&self) -> u64 {
        match self {
            Running::Ours { registry, .. } => {
                let mut text = String::new();
                encode(&mut text, registry).expect("metrics encode to a String");
                text.lines()
                    .filter(|l| l.starts_with("controller_runtime_reconcile_total{"))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                    .sum()
            }
            Running::Naive(naive) => naive.ctx.reconciles.load(Ordering::Relaxed),
        }
    }

    /// Stops the controller and waits until it has let go of everything it held.
    async fn stop(self) {
        match self {
            Running::Ours { operator, .. } => {
                operator.controller.shut_down(Duration::ZERO).await;
            }
            Running::Naive(naive) => {
                naive.controller.abort();
                let _ = naive.controller.await;
            }
        }
    }
}

/// One run: `n` Databases under `operator`, with `error_rate` of the API requests failing
/// and `health_failure_rate` of the DBaaS's `/healthz` checks answering 503.
pub(crate) async fn run(
    n: usize,
    operator: Operator,
    error_rate: f64,
    health_failure_rate: f64,
) -> Outcome {
    let world = World::new(0xC0_4E46 + n as u64).await;
    world_side(world.create(n)).await;
    world.dbaas.faults().flaky_health(health_failure_rate);
    if error_rate > 0.0 {
        world
            .server
            .faults()
            .inject(Fault::error(500).rate(error_rate));
    }
    let counter = RequestCounter::default();
    let client = counter.client(&world.server);

    let baseline = live_heap();
    let peak = PeakHeap::start();
    let started = Instant::now();
    let running = Running::start(
        operator,
        client.clone(),
        &world.namespace,
        world.dbaas.client(),
    );
    // Generous: four times what a budget of 40 calls a second, about 5 calls an object,
    // would need.
    let deadline = started + Duration::from_secs(60) + Duration::from_millis(250 * n as u64);
    let samples = std::sync::Mutex::new(Vec::new());
    let ready_at = world_side(async {
        tokio::select! {
            ready_at = world.ready(n, started, deadline) => ready_at,
            () = world.sample_dbaas(started, &samples) => unreachable!("sampling never ends"),
        }
    })
    .await;
    let mut dbaas_over_time = samples
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let last = world.dbaas.stats();
    dbaas_over_time.push(DbaasSample {
        at: started.elapsed(),
        calls: last.total_calls(),
        throttled: last.throttled,
    });
    let ready = ready_at.len();
    let converged = (ready == n).then(|| started.elapsed());
    let requests = counter.snapshot();
    let peak_heap = peak.stop().saturating_sub(baseline);
    let dbaas = world.dbaas.stats();
    let faults_fired = world.server.faults().fired();
    world.server.faults().clear();

    // What the converged operator holds: the heap it frees when it stops.
    let before = live_heap();
    running.stop().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let operator_heap = before.saturating_sub(live_heap());

    // Steady state: a fresh operator reconciles every Database once (its first list),
    // and nothing has changed since they converged.
    let steady = if error_rate == 0.0 && converged.is_some() {
        Some(
            steady(
                &counter,
                operator,
                client,
                &world.namespace,
                &world.dbaas,
                n,
            )
            .await,
        )
    } else {
        None
    };
    Outcome {
        n,
        operator,
        error_rate,
        health_failure_rate,
        converged,
        ready,
        ready_at,
        requests,
        dbaas_over_time,
        dbaas_calls: dbaas.total_calls(),
        dbaas_throttled: dbaas.throttled,
        faults_fired,
        peak_heap,
        operator_heap,
        steady,
    }
}

/// Restarts the operator and counts what it does until it has reconciled all `n`
/// Databases and gone quiet.
async fn steady(
    counter: &RequestCounter,
    kind: Operator,
    client: Client,
    namespace: &str,
    dbaas: &RunningDbaas,
    n: usize,
) -> Steady {
    let before = counter.snapshot();
    let running = Running::start(kind, client, namespace, dbaas.client());
    let deadline = Instant::now() + Duration::from_secs(60) + Duration::from_millis(20 * n as u64);
    let mut last = before.total();
    let mut quiet = 0;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let total = counter.snapshot().total();
        quiet = if total == last { quiet + 1 } else { 0 };
        last = total;
        if running.reconciles() >= n as u64 && quiet >= 5 {
            break;
        }
    }
    let reconciles = running.reconciles();
    let requests = counter.snapshot().since(&before);
    running.stop().await;
    Steady {
        reconciles,
        requests,
    }
}
