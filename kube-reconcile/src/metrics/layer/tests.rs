use std::{future::Future, task::Poll};

use k8s_openapi::api::core::v1::ConfigMap;

use super::*;
use crate::{
    metrics::tests::sample,
    reconciler::{Deferral, ReconcilerExt},
};

/// Answers whatever outcome the object's name asks for.
#[derive(Clone, Debug)]
struct Scripted;

impl Reconciler<ConfigMap, ()> for Scripted {
    type Error = ErrorClass;

    async fn reconcile(&self, obj: Arc<ConfigMap>, ctx: Arc<()>) -> Result<Action, ErrorClass> {
        self.call(obj, ctx).await.into_result()
    }

    async fn call(&self, obj: Arc<ConfigMap>, _: Arc<()>) -> Outcome<ErrorClass> {
        let defer = |reason| {
            Outcome::Deferred(Deferral {
                retry_after: Duration::from_millis(750),
                reason,
            })
        };
        match obj.metadata.name.as_deref().unwrap_or_default() {
            "ok" => Outcome::Done(Action::await_change()),
            "periodic" => Outcome::Done(Action::requeue(Duration::from_secs(60))),
            "transient" => Outcome::Failed(ErrorClass::Transient),
            "terminal" => Outcome::Failed(ErrorClass::Terminal),
            "backing-off" => defer(DeferReason::BackingOff),
            "limited" => defer(DeferReason::RateLimited {
                budget: "dbaas".into(),
            }),
            _ => defer(DeferReason::CircuitOpen {
                dependency: "dbaas".into(),
            }),
        }
    }
}

fn named(name: &str) -> Arc<ConfigMap> {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.to_owned());
    Arc::new(cm)
}

fn value(metrics: &Metrics, name: &str, extra: &[(&str, &str)]) -> Option<f64> {
    let mut labels = vec![("controller", "cms")];
    labels.extend_from_slice(extra);
    sample(metrics, name, &labels)
}

#[tokio::test(start_paused = true)]
async fn each_outcome_lands_in_its_controller_runtime_result_and_our_reasons() {
    let metrics = Metrics::default();
    let reconciler = Scripted.with(metrics.layer("cms"));
    for name in [
        "ok",
        "ok",
        "periodic",
        "transient",
        "terminal",
        "backing-off",
        "limited",
        "open",
    ] {
        let _ = reconciler.call(named(name), Arc::new(())).await;
    }
    let result = |r| {
        value(
            &metrics,
            "controller_runtime_reconcile_total",
            &[("result", r)],
        )
    };
    assert_eq!(result("success"), Some(2.0));
    assert_eq!(
        result("requeue_after"),
        Some(4.0),
        "periodic and three deferrals"
    );
    assert_eq!(result("error"), Some(2.0));
    assert_eq!(result("requeue"), Some(0.0));
    let total = |name| value(&metrics, name, &[]);
    assert_eq!(
        total("controller_runtime_reconcile_errors_total"),
        Some(2.0)
    );
    assert_eq!(
        total("controller_runtime_terminal_reconcile_errors_total"),
        Some(1.0)
    );
    assert_eq!(
        total("controller_runtime_reconcile_time_seconds_count"),
        Some(8.0)
    );
    assert_eq!(total("controller_runtime_active_workers"), Some(0.0));
    let class = |c| value(&metrics, "kube_reconcile_errors_total", &[("class", c)]);
    assert_eq!(class("transient"), Some(1.0));
    assert_eq!(class("terminal"), Some(1.0));
    assert_eq!(class("conflict"), None);
    let deferred = |r| value(&metrics, "kube_reconcile_deferrals_total", &[("reason", r)]);
    assert_eq!(deferred("backing_off"), Some(1.0));
    assert_eq!(deferred("rate_limited"), Some(1.0));
    assert_eq!(deferred("circuit_open"), Some(1.0));
    let wait = value(
        &metrics,
        "kube_reconcile_deferral_wait_seconds_sum",
        &[("reason", "rate_limited")],
    );
    assert_eq!(wait, Some(0.75));
    let budget = value(
        &metrics,
        "kube_reconcile_rate_limit_rejections_total",
        &[("budget", "dbaas")],
    );
    assert_eq!(budget, Some(1.0));
}

#[tokio::test(start_paused = true)]
async fn error_policy_requeues_count_as_backoff_retries_and_terminal_waits_do_not() {
    let metrics = Metrics::default();
    let reconciler = Scripted.with(metrics.layer("cms"));
    let obj = ConfigMap::default();
    let action = reconciler.error_action(&obj, &ErrorClass::Transient);
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));
    reconciler.error_action(&obj, &ErrorClass::Conflict);
    let action = reconciler.error_action(&obj, &ErrorClass::Terminal);
    assert_eq!(action, Action::await_change());
    let retries = value(&metrics, "kube_reconcile_backoff_retries_total", &[]);
    assert_eq!(retries, Some(2.0));
}

#[tokio::test(start_paused = true)]
async fn durations_are_read_on_the_paused_clock() {
    async fn slow(_: Arc<ConfigMap>, _: Arc<()>) -> Result<Action, ErrorClass> {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        Ok(Action::await_change())
    }
    let metrics = Metrics::default();
    let reconciler = slow.with(metrics.layer("cms").max_concurrent_reconciles(4));
    reconciler.call(named("a"), Arc::new(())).await;
    let sum = value(
        &metrics,
        "controller_runtime_reconcile_time_seconds_sum",
        &[],
    );
    assert_eq!(sum, Some(1.2));
    let bucket = |le| {
        value(
            &metrics,
            "controller_runtime_reconcile_time_seconds_bucket",
            &[("le", le)],
        )
    };
    assert_eq!(bucket("1.0"), Some(0.0));
    assert_eq!(bucket("1.25"), Some(1.0));
    let max = value(
        &metrics,
        "controller_runtime_max_concurrent_reconciles",
        &[],
    );
    assert_eq!(max, Some(4.0));
}

async fn pending_forever(_: Arc<ConfigMap>, _: Arc<()>) -> Result<Action, ErrorClass> {
    std::future::pending().await
}

#[tokio::test(start_paused = true)]
async fn a_dropped_call_leaves_the_active_gauge_as_it_was_and_records_nothing() {
    let metrics = Metrics::default();
    let reconciler = pending_forever.with(metrics.layer("cms"));
    let mut call = Box::pin(reconciler.call(named("hung"), Arc::new(())));
    let pending = std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx).is_pending()));
    assert!(pending.await);
    let active = || value(&metrics, "controller_runtime_active_workers", &[]);
    assert_eq!(active(), Some(1.0));
    drop(call);
    assert_eq!(active(), Some(0.0));
    let count = value(
        &metrics,
        "controller_runtime_reconcile_time_seconds_count",
        &[],
    );
    assert_eq!(count, Some(0.0));
    let results: f64 = ["success", "error", "requeue", "requeue_after"]
        .iter()
        .filter_map(|r| {
            value(
                &metrics,
                "controller_runtime_reconcile_total",
                &[("result", r)],
            )
        })
        .sum();
    assert_eq!(results, 0.0);
}
