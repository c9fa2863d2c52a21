//! The hand-overs in real time, short timings, on both servers: the embedded one and a
//! real kube-apiserver (skipped with a reason when its binaries are absent).

use kube::api::PostParams;
use kube_reconcile_test_support::both_tiers;

use super::controllers::{Log, configmap, run_controller};
use super::*;
use kube_reconcile_test_support::tier::Tier;

const FAST_LEASE: Duration = Duration::from_secs(2);
const FAST_RENEW: Duration = Duration::from_secs(1);
const FAST_RETRY: Duration = Duration::from_millis(200);
/// Slack for request latency and scheduling on a busy machine.
const SLACK: Duration = Duration::from_millis(1500);

fn fast(cx: &Tier, identity: &str) -> LeaderElector {
    let config = LeaseConfig::new(cx.namespace(), "lock")
        .identity(identity)
        .lease_duration(FAST_LEASE)
        .renew_deadline(FAST_RENEW)
        .retry_period(FAST_RETRY);
    LeaderElector::new(cx.client(), config).expect("a valid config")
}

async fn within<F: std::future::Future>(limit: Duration, what: &str, f: F) -> F::Output {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| panic!("{what} within {limit:?}"))
}

both_tiers! {
    async fn candidates_hand_over_after_a_crash_and_after_a_release(cx: Tier) {
        let a_elector = fast(&cx, "a");
        let a = a_elector.handle();
        let a_task = tokio::spawn(a_elector.run());
        within(SLACK, "a leads", a.leading()).await;
        let b = fast(&cx, "b").spawn();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(a.is_leader() && !b.is_leader(), "b waits while a renews");
        assert_eq!(b.subscribe().borrow().holder(), Some("a"));

        a_task.abort();
        let _ = a_task.await;
        let crashed = Instant::now();
        within(FAST_LEASE + SLACK, "b takes over after a crash", b.leading()).await;
        let took = crashed.elapsed();
        // FAST_LEASE - FAST_RETRY, less 100 ms of timer granularity.
        assert!(took >= Duration::from_millis(1700), "took over after {took:?}");

        let c = fast(&cx, "c").spawn();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!c.is_leader());
        b.release().await.expect("b releases");
        let released = Instant::now();
        within(FAST_RETRY * 2 + SLACK, "c takes over after a release", c.leading()).await;
        assert!(released.elapsed() < FAST_LEASE, "c did not wait for expiry");
        let leases: Api<Lease> = cx.api();
        let lease = leases.get("lock").await.expect("the lease");
        assert_eq!(holder(&lease), Some("c"));
        assert_eq!(transitions(&lease), Some(2));
        c.release().await.expect("c releases");
    }

    async fn controllers_of_two_candidates_never_reconcile_an_object_together(cx: Tier) {
        let cms: Api<ConfigMap> = cx.api();
        for name in ["db-0", "db-1", "db-2"] {
            cms.create(&PostParams::default(), &configmap(name)).await.expect("create");
        }
        let log = Arc::new(Log::default());
        let work = Duration::from_millis(150);
        let a = fast(&cx, "a").spawn();
        within(SLACK, "a leads", a.leading()).await;
        let _a_controller = run_controller(cms.clone(), &a, "a", &log, work);
        let b = fast(&cx, "b").spawn();
        let _b_controller = run_controller(cms.clone(), &b, "b", &log, work);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(log.by("b").is_empty(), "the follower never reconciled");
        assert!(!log.by("a").is_empty(), "the leader reconciled");

        a.release().await.expect("a releases");
        let released = Instant::now();
        within(FAST_RETRY * 2 + SLACK, "b takes over", b.leading()).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let a_last = log.by("a").iter().map(|i| i.end).max().expect("a reconciled");
        let b_first = log.by("b").iter().map(|i| i.start).min().expect("b reconciled");
        assert!(a_last <= released && a_last <= b_first);
        log.assert_no_overlap();
        b.release().await.expect("b releases");
    }
}
