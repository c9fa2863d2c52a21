//! Leader election on the embedded API server with paused time: configuration, acquiring
//! a missing lease, a waiting second candidate, takeover after a crash and after a
//! release, stepping down when renewals fail, reconciles cut off at the end of a term,
//! clock skew (`skew`), two real controllers that never reconcile an object at the same
//! time (`controllers`), and the hand-overs again in real time on both servers (`tiers`).

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::{coordination::v1::Lease, core::v1::ConfigMap};
use kube::{Api, Client, runtime::controller::Action};
use kube_reconcile::{
    DeferReason, ErrorClass, Outcome, Reconciler, ReconcilerExt,
    leader::{LeaderElector, LeaderError, LeaderHandle, LeaseConfig},
};
use kube_reconcile_testing::{ApiServer, Fault, Verb};
use tokio::time::Instant;

mod controllers;
mod skew;
mod tiers;

const LEASE: Duration = Duration::from_secs(15);
const RENEW: Duration = Duration::from_secs(10);
const RETRY: Duration = Duration::from_secs(2);
/// The longest gap between a candidate's polls (retry period plus 20 % jitter).
const POLL: Duration = Duration::from_millis(2400);
/// `LEASE - RETRY`: the earliest takeover after the leader's last renewal attempt.
const EARLIEST_TAKEOVER: Duration = Duration::from_secs(13);
/// `RENEW - RETRY`: the earliest step-down after renewals start failing.
const EARLIEST_STEP_DOWN: Duration = Duration::from_secs(8);
const LEASES: &str = "leases.coordination.k8s.io";

fn config(identity: &str) -> LeaseConfig {
    LeaseConfig::new("default", "lock").identity(identity)
}

fn elector(client: &Client, identity: &str) -> LeaderElector {
    LeaderElector::new(client.clone(), config(identity)).expect("a valid config")
}

/// Starts an elector on a task of its own, returning the handle and the task (aborting
/// it is a crash: the lease is not released).
fn start(client: &Client, identity: &str) -> (LeaderHandle, tokio::task::JoinHandle<()>) {
    let elector = elector(client, identity);
    let handle = elector.handle();
    (handle, tokio::spawn(elector.run()))
}

async fn lease(client: &Client) -> Lease {
    Api::<Lease>::namespaced(client.clone(), "default")
        .get("lock")
        .await
        .expect("the lease exists")
}

fn holder(lease: &Lease) -> Option<&str> {
    lease.spec.as_ref()?.holder_identity.as_deref()
}

fn transitions(lease: &Lease) -> Option<i32> {
    lease.spec.as_ref()?.lease_transitions
}

async fn stopped_leading(handle: &LeaderHandle) {
    let _ = handle.subscribe().wait_for(|l| !l.is_leader()).await;
}

#[tokio::test]
async fn invalid_timings_and_names_are_refused_with_typed_errors() {
    let client = ApiServer::new().client();
    let refuse = |config: LeaseConfig| {
        LeaderElector::new(client.clone(), config).expect_err("an invalid config")
    };
    let err = refuse(config("a").renew_deadline(LEASE));
    assert!(matches!(
        err,
        LeaderError::RenewDeadlineNotBelowLeaseDuration { renew_deadline, lease_duration }
            if renew_deadline == LEASE && lease_duration == LEASE
    ));
    let err = refuse(config("a").retry_period(RENEW));
    assert_eq!(
        err.to_string(),
        "retry period 10s must be shorter than the renew deadline 10s"
    );
    assert!(matches!(
        refuse(config("a").retry_period(Duration::ZERO)),
        LeaderError::ZeroRetryPeriod
    ));
    assert!(matches!(
        refuse(config("")),
        LeaderError::Empty { field: "identity" }
    ));
    assert!(matches!(
        refuse(LeaseConfig::new("default", "")),
        LeaderError::Empty { field: "name" }
    ));
}

#[tokio::test(start_paused = true)]
async fn a_lone_candidate_takes_a_missing_lease_at_once_and_keeps_renewing_it() {
    let server = ApiServer::new();
    let client = server.client();
    let started = Instant::now();
    let a = elector(&client, "a").spawn();
    a.leading().await;
    assert!(started.elapsed() < Duration::from_millis(10));
    assert!(a.is_leader());
    assert_eq!(a.subscribe().borrow().term(), 1);
    let first = lease(&client).await;
    assert_eq!(holder(&first), Some("a"));
    assert_eq!(transitions(&first), Some(0));
    let spec = first.spec.clone().unwrap_or_default();
    assert_eq!(spec.lease_duration_seconds, Some(15));
    assert!(spec.acquire_time.is_some() && spec.renew_time.is_some());

    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(a.is_leader());
    let renewals = server.requests().get(Verb::Update, LEASES);
    assert!((29..=31).contains(&renewals), "{renewals} renewals in 60 s");
    let later = lease(&client).await;
    let later_spec = later.spec.clone().unwrap_or_default();
    assert_eq!(later_spec.acquire_time, spec.acquire_time);
    assert!(later_spec.renew_time > spec.renew_time);
}

#[tokio::test(start_paused = true)]
async fn a_second_candidate_waits_while_the_leader_renews() {
    let client = ApiServer::new().client();
    let a = elector(&client, "a").spawn();
    a.leading().await;
    let b = elector(&client, "b").spawn();
    let mut b_changes = b.subscribe();
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(a.is_leader());
    assert!(!b.is_leader());
    assert!(!b_changes.borrow_and_update().is_leader());
    assert_eq!(b.subscribe().borrow().holder(), Some("a"));
    assert_eq!(holder(&lease(&client).await), Some("a"));
}

#[tokio::test(start_paused = true)]
async fn a_crashed_leader_is_replaced_within_the_lease_duration() {
    let client = ApiServer::new().client();
    let (a, a_task) = start(&client, "a");
    a.leading().await;
    let b = elector(&client, "b").spawn();
    tokio::time::sleep(Duration::from_millis(31_300)).await;

    a_task.abort();
    let _ = a_task.await;
    let crashed = Instant::now();
    assert!(!a.is_leader(), "a dropped elector steps down at once");
    assert_eq!(
        holder(&lease(&client).await),
        Some("a"),
        "but leaves the lease"
    );

    b.leading().await;
    let took = crashed.elapsed();
    // b saw a's last renewal (sent at most a retry period before the crash) and waited
    // a lease duration from then, plus at most one poll.
    assert!(
        took >= EARLIEST_TAKEOVER && took <= LEASE + POLL,
        "took over after {took:?}"
    );
    let taken = lease(&client).await;
    assert_eq!(holder(&taken), Some("b"));
    assert_eq!(transitions(&taken), Some(1));
}

#[tokio::test(start_paused = true)]
async fn a_released_lease_is_taken_over_within_one_poll() {
    let client = ApiServer::new().client();
    let a = elector(&client, "a").spawn();
    a.leading().await;
    let b = elector(&client, "b").spawn();
    tokio::time::sleep(Duration::from_secs(7)).await;

    a.release().await.expect("a clean release");
    let released = Instant::now();
    assert!(!a.is_leader());
    assert_eq!(holder(&lease(&client).await), None);
    b.leading().await;
    assert!(
        released.elapsed() <= POLL,
        "took over after {:?}",
        released.elapsed()
    );
    assert_eq!(transitions(&lease(&client).await), Some(1));
    // Releasing again is a no-op: the elector has ended.
    a.release().await.expect("a second release does nothing");
    assert_eq!(holder(&lease(&client).await), Some("b"));
}

#[tokio::test(start_paused = true)]
async fn a_leader_whose_renewals_fail_steps_down_by_the_renew_deadline() {
    let server = ApiServer::new();
    let client = server.client();
    let a = elector(&client, "a").spawn();
    a.leading().await;
    tokio::time::sleep(Duration::from_millis(5_500)).await;

    server
        .faults()
        .inject(Fault::error(500).verb(Verb::Update).resource(LEASES));
    let failing = Instant::now();
    stopped_leading(&a).await;
    let took = failing.elapsed();
    // The last success was sent less than a retry period before the faults began.
    assert!(
        took > EARLIEST_STEP_DOWN && took <= RENEW,
        "stepped down after {took:?}"
    );
    assert!(!a.is_leader());
    assert_eq!(
        holder(&lease(&client).await),
        Some("a"),
        "nobody else wrote"
    );

    // Once the server accepts updates again, a takes its own lease back with a new term.
    server.faults().clear();
    let healed = Instant::now();
    a.leading().await;
    assert!(healed.elapsed() <= POLL);
    assert_eq!(a.subscribe().borrow().term(), 2);
}

async fn slow(_: Arc<ConfigMap>, ctx: Arc<Duration>) -> Result<Action, ErrorClass> {
    tokio::time::sleep(*ctx).await;
    Ok(Action::await_change())
}

#[tokio::test(start_paused = true)]
async fn a_reconcile_in_flight_is_cut_off_when_the_term_ends() {
    let server = ApiServer::new();
    let client = server.client();
    let a = elector(&client, "a").spawn();
    a.leading().await;
    let reconciler = slow.with(a.layer());
    let call = tokio::spawn(async move {
        reconciler
            .call(
                Arc::new(ConfigMap::default()),
                Arc::new(Duration::from_secs(3600)),
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(!call.is_finished(), "the slow reconcile still runs");

    server
        .faults()
        .inject(Fault::error(500).verb(Verb::Update).resource(LEASES));
    let failing = Instant::now();
    let outcome = call.await.expect("the call does not panic");
    assert!(failing.elapsed() <= RENEW);
    let Outcome::Deferred(deferral) = outcome else {
        panic!("expected a deferral, got {outcome:?}");
    };
    assert_eq!(
        deferral.reason,
        DeferReason::NotLeader {
            lease: "default/lock".into()
        }
    );
    assert_eq!(deferral.retry_after, RETRY);
}

#[tokio::test(start_paused = true)]
async fn a_follower_defers_without_calling_the_reconciler() {
    let client = ApiServer::new().client();
    let a = elector(&client, "a").spawn();
    a.leading().await;
    let b = elector(&client, "b").spawn();
    let called = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&called);
    let counting = move |_: Arc<ConfigMap>, _: Arc<()>| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async { Ok::<_, ErrorClass>(Action::await_change()) }
    };
    let on_b = counting.with(b.layer().defer(Duration::from_secs(30)));
    let outcome = on_b
        .call(Arc::new(ConfigMap::default()), Arc::new(()))
        .await;
    assert!(
        matches!(&outcome, Outcome::Deferred(d) if d.retry_after == Duration::from_secs(30)),
        "{outcome:?}"
    );
    assert_eq!(
        on_b.reconcile(Arc::new(ConfigMap::default()), Arc::new(()))
            .await
            .expect("a deferral is not an error"),
        Action::requeue(Duration::from_secs(30))
    );
    assert_eq!(called.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn a_release_lets_reconciles_in_flight_finish_first() {
    let client = ApiServer::new().client();
    let a = elector(&client, "a").spawn();
    a.leading().await;
    let reconciler = slow.with(a.layer());
    let call = tokio::spawn(async move {
        reconciler
            .call(
                Arc::new(ConfigMap::default()),
                Arc::new(Duration::from_secs(3)),
            )
            .await
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let releasing = Instant::now();
    a.release().await.expect("a clean release");
    assert_eq!(
        releasing.elapsed(),
        Duration::from_secs(2),
        "waited for the reconcile"
    );
    assert!(matches!(call.await.expect("no panic"), Outcome::Done(_)));
    assert_eq!(holder(&lease(&client).await), None);
}
