//! The engine's main flows in real time on both servers (`<name>::embedded` and
//! `<name>::real`): a real kube-apiserver validates the status the engine writes against
//! the CRD schema, prunes what the schema does not know, checks events strictly and runs
//! deletion with finalizers its own way. Retries use a short schedule, so each test takes
//! well under a few seconds.

use kube_reconcile_test_support::both_tiers;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use kube::Resource;
use kube_reconcile::middleware::backoff::BackoffConfig;

use super::*;
use kube_reconcile_test_support::{
    recorder::{Recorder, Verb},
    tier::Tier,
};

/// The engine on the tier's client (through `recorder` when given), with the Pipeline CRD
/// installed, objects in the test's namespace.
async fn tier_env(cx: &Tier, config: PhaseConfig, recorder: Option<&Recorder>) -> Env {
    cx.install_crd(&Pipeline::crd()).await;
    let client = recorder.map_or_else(|| cx.client(), Recorder::client);
    Env::new(client, cx.namespace(), config, None)
}

/// A retry schedule of 100 ms doubling to at most 500 ms.
fn short_retries() -> PhaseConfig {
    PhaseConfig::default().retry(
        BackoffConfig::operator()
            .base(Duration::from_millis(100))
            .cap(Duration::from_millis(500)),
    )
}

/// Waits until the events about `name` include every reason of `expected`.
async fn until_events(env: &Env, name: &str, expected: &[&str]) -> Vec<String> {
    let mut reasons = Vec::new();
    for _ in 0..100 {
        reasons = env.event_reasons(name).await;
        if expected.iter().all(|e| reasons.iter().any(|r| r == e)) {
            return reasons;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("events about {name}: {reasons:?}, expected {expected:?}");
}

/// What any write to an object changes: its `resourceVersion` and `managedFields`.
fn stamp(obj: &Pipeline) -> (Option<String>, Option<Vec<ManagedFieldsEntry>>) {
    (
        obj.meta().resource_version.clone(),
        obj.meta().managed_fields.clone(),
    )
}

both_tiers! {
    async fn the_happy_path_with_a_controller_writes_status_conditions_and_history(cx: Tier) {
        let env = tier_env(&cx, PhaseConfig::default(), None).await;
        let (seen, recorder) = env.record("db").await;
        let controller = env.run_controller();
        env.create("db", 3, "").await;
        let ready = env.until_phase("db", "Ready").await;

        let status = machine(&ready);
        assert_eq!(status.observed_generation, Some(1));
        assert_eq!(condition(&ready, "Ready"), Some((ConditionStatus::True, "Verified".into())));
        assert_eq!(condition(&ready, "Reconciling"), None);
        assert_eq!(condition(&ready, "Stalled"), None);
        for c in &status.conditions {
            assert_eq!(c.observed_generation, Some(1), "{c:?}");
            assert!(c.last_transition_time.is_some(), "{c:?}");
        }
        assert_eq!(history(&ready), ["Pending", "Provisioning", "Configuring", "Deploying", "Verifying", "Ready"]);
        let records = &status.phase_history;
        assert_eq!((records[0].from.as_deref(), records[0].reason.as_str()), (None, "Created"));
        for pair in records.windows(2) {
            assert_eq!(pair[1].from.as_deref(), Some(pair[0].phase.as_str()));
            assert!(pair[1].entered_at >= pair[0].entered_at);
        }
        assert_eq!((status.retry, status.last_error), (None, None));
        // A field of the object's own status, next to the machine's, survives the schema.
        assert_eq!(ready.status.as_ref().unwrap().endpoint.as_deref(), Some("db.svc:5432"));
        assert_eq!(ready.finalizers(), ["test.kube-reconcile.dev/cleanup"]);

        // One event per transition, accepted by the server.
        until_events(&env, "db", &["Created", "Provisioning", "Configuring", "Deploying", "Verifying", "Verified"]).await;
        // Every intermediate status as the watch saw it.
        super::flows::check_every_step(&seen.lock().unwrap());
        controller.abort();
        recorder.abort();
    }

    async fn a_spec_change_on_a_ready_object_goes_through_updating_and_verifying(cx: Tier) {
        let env = tier_env(&cx, PhaseConfig::default(), None).await;
        let controller = env.run_controller();
        env.create("db", 3, "").await;
        env.until_phase("db", "Ready").await;
        env.resize("db", 5).await;
        let obj = env.until_ready_at("db", 2).await;
        assert_eq!(history(&obj)[5..], ["Ready", "Updating", "Verifying", "Ready"]);
        assert_eq!(machine(&obj).phase_history[6].reason, "SpecChanged");
        assert_eq!(env.ctx.runs("db", P::Updating), 1);
        // (Not a count of handler runs: on the real tier a reconcile on a cache that lags
        // the engine's own write may run a handler again, which its next write refuses.)
        assert_eq!(
            history(&obj).iter().filter(|p| *p == "Provisioning").count(),
            1,
            "updating does not start over"
        );
        assert!(machine(&obj).conditions.iter().all(|c| c.observed_generation == Some(2)));
        controller.abort();
    }

    async fn deletion_runs_the_cleanup_then_the_object_is_gone(cx: Tier) {
        let env = tier_env(&cx, PhaseConfig::default(), None).await;
        let controller = env.run_controller();
        env.create("db", 3, "").await;
        env.until_phase("db", "Ready").await;
        env.api.delete("db", &DeleteParams::default()).await.unwrap();
        // The finalizer holds the object until the cleanup ran.
        for _ in 0..100 {
            if env.api.get_opt("db").await.unwrap().is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(env.api.get_opt("db").await.unwrap().is_none(), "{} kept the object", cx.name());
        assert_eq!(env.ctx.cleanups.load(Ordering::SeqCst), 1);
        controller.abort();
    }

    async fn a_failure_is_recorded_then_retried_on_the_configured_schedule(cx: Tier) {
        let env = tier_env(&cx, short_retries(), None).await;
        let (seen, recorder) = env.record("db").await;
        let controller = env.run_controller();
        let started = std::time::Instant::now();
        env.create("db", 3, "fail-verify-once").await;
        let ready = env.until_phase("db", "Ready").await;
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());

        // While Failed: the error, the retry and the conditions.
        let failed = seen
            .lock()
            .unwrap()
            .iter()
            .find(|o| phase_of(o) == Some("Failed"))
            .cloned()
            .expect("the watch saw Failed");
        let status = machine(&failed);
        let retry = status.retry.clone().expect("a retry is scheduled");
        assert_eq!(retry.attempts, 1);
        assert!(retry.next_attempt_time.is_some());
        assert_eq!(condition(&failed, "Ready"), Some((ConditionStatus::False, "VerificationFailed".into())));
        assert_eq!(condition(&failed, "Reconciling").unwrap().0, ConditionStatus::True);
        assert_eq!(condition(&failed, "Stalled"), None);
        let last = status.last_error.clone().unwrap();
        assert_eq!((last.phase.as_str(), last.reason.as_str()), ("Verifying", "VerificationFailed"));

        // Then the retry, all the way to Ready.
        let records = &machine(&ready).phase_history;
        let retried = records.iter().position(|r| r.from.as_deref() == Some("Failed")).expect("left Failed");
        assert_eq!((records[retried].phase.as_str(), records[retried].reason.as_str()), ("Provisioning", "Retrying"));
        assert_eq!(env.ctx.runs("db", P::Verifying), 2);
        assert_eq!(machine(&ready).retry, None, "retries reset once ready");
        assert_eq!(machine(&ready).last_error, None, "the last error ({}) is cleared once ready", last.reason);
        controller.abort();
        recorder.abort();
    }

    async fn a_ready_object_costs_zero_writes_per_reconcile(cx: Tier) {
        let client_log = Recorder::new(&cx.client());
        let env = tier_env(&cx, PhaseConfig::default(), Some(&client_log)).await;
        let controller = env.run_controller();
        env.create("db", 3, "").await;
        let ready = env.until_phase("db", "Ready").await;
        controller.abort();
        let server_before = cx.embedded_server().map(ApiServer::requests);
        let (actions, calls) = client_log
            .during(async {
                let mut actions = Vec::new();
                for _ in 0..20 {
                    actions.push(env.reconcile("db").await.unwrap());
                }
                actions
            })
            .await;
        assert!(actions.iter().all(|a| *a == kube::runtime::controller::Action::await_change()), "{actions:?}");
        assert_eq!(calls.writes(), 0, "{calls}");
        assert_eq!(calls.get(Verb::Get, "pipelines"), 20, "{calls}");
        assert_eq!(stamp(&env.get("db").await), stamp(&ready));
        if let (Some(server), Some(before)) = (cx.embedded_server(), server_before) {
            assert_eq!(server.requests().since(&before).writes(), 0);
        }
    }
}
