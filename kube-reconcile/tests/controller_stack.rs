//! A real `kube_runtime::Controller` on the embedded API server, running a reconciler
//! wrapped in the whole middleware stack: `Backoff ∘ RateLimit ∘ CircuitBreaker ∘ Timeout`.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams, PostParams},
    runtime::{Controller, controller::Action, watcher},
};
use kube_reconcile::{
    Classify, ControllerExt, ErrorClass, ReconcilerExt,
    middleware::{
        backoff::{BackoffConfig, Jitter},
        circuit_breaker::{Breaker, CircuitBreakerLayer, State},
        rate_limit::{Quota, RateLimitLayer},
        timeout::TimeoutLayer,
    },
};
use kube_reconcile_testing::ApiServer;
use serde_json::json;
use tokio::time::Instant;

#[derive(Default)]
struct Ctx {
    calls: Mutex<HashMap<String, Vec<Instant>>>,
}

impl Ctx {
    fn calls(&self, name: &str) -> Vec<Instant> {
        self.calls
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("scripted failure ({0})")]
struct Scripted(ErrorClass);

impl Classify for Scripted {
    fn class(&self) -> ErrorClass {
        self.0
    }
}

async fn reconcile(cm: Arc<ConfigMap>, ctx: Arc<Ctx>) -> Result<Action, Scripted> {
    let name = cm.name_any();
    let attempt = {
        let mut calls = ctx.calls.lock().unwrap();
        let list = calls.entry(name).or_default();
        list.push(Instant::now());
        list.len()
    };
    match cm
        .data
        .as_ref()
        .and_then(|d| d.get("mode"))
        .map(String::as_str)
    {
        Some("flaky") if attempt <= 3 => Err(Scripted(ErrorClass::Transient)),
        Some("terminal") => Err(Scripted(ErrorClass::Terminal)),
        Some("slow") => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(Action::await_change())
        }
        _ => Ok(Action::await_change()),
    }
}

fn cm(name: &str, mode: &str) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.into());
    cm.data = Some([("mode".to_string(), mode.to_string())].into());
    cm
}

#[tokio::test(start_paused = true)]
async fn the_whole_stack_backs_off_gates_watch_events_and_times_out() {
    let server = ApiServer::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    for (name, mode) in [
        ("ok", "ok"),
        ("flaky", "flaky"),
        ("bad", "terminal"),
        ("slow", "slow"),
    ] {
        cms.create(&PostParams::default(), &cm(name, mode))
            .await
            .unwrap();
    }
    let backoff = BackoffConfig::operator()
        .jitter(Jitter::None)
        .build()
        .unwrap();
    let backoff_state = backoff.handle();
    let breaker = Breaker::new("dependency");
    let reconciler = reconcile
        .with(TimeoutLayer::new(Duration::from_secs(10)))
        .with(CircuitBreakerLayer::from(breaker.clone()))
        .with(RateLimitLayer::per_object(Quota::per_second(
            NonZeroU32::new(50).unwrap(),
        )))
        .with(backoff);
    let ctx = Arc::new(Ctx::default());
    let controller = Controller::new(cms.clone(), watcher::Config::default())
        .run_reconciler(reconciler, Arc::clone(&ctx));
    tokio::spawn(controller.for_each(|_| async {}));

    // While flaky backs off (1 s, 2 s, 4 s), label changes trigger the controller, but
    // the not-before gate keeps the reconcile from running early.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..3 {
        let touch = json!({"metadata": {"labels": {"touched": "yes"}}});
        cms.patch("flaky", &PatchParams::default(), &Patch::Merge(&touch))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    tokio::time::sleep(Duration::from_secs(30)).await;

    assert_eq!(ctx.calls("ok").len(), 1);
    let flaky = ctx.calls("flaky");
    assert_eq!(flaky.len(), 4, "three failures, then a success");
    let gaps: Vec<Duration> = flaky.windows(2).map(|w| w[1] - w[0]).collect();
    for (gap, want) in gaps.iter().zip([1, 2, 4]) {
        let want = Duration::from_secs(want);
        assert!(
            *gap >= want && *gap < want + Duration::from_millis(50),
            "gaps {gaps:?}"
        );
    }
    assert_eq!(
        ctx.calls("bad").len(),
        1,
        "a terminal error waits for a change"
    );
    // slow: timed out at 10 s, then backed off 1 s, 2 s: calls at 0, 11, 23 (+ timeouts).
    let slow = ctx.calls("slow");
    assert!(slow.len() >= 3, "slow was called {} times", slow.len());
    assert_eq!(slow[1] - slow[0], Duration::from_secs(11));
    // Success and terminal errors leave no per-object backoff state; slow still backs off.
    assert_eq!(backoff_state.sweep(), 1, "one object still backs off");
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_defers_every_object_without_calling_the_reconciler() {
    let server = ApiServer::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let breaker = Breaker::new("dbaas");
    breaker.force_open();
    let ctx = Arc::new(Ctx::default());
    let reconciler = reconcile.with(CircuitBreakerLayer::from(breaker.clone()));
    let controller = Controller::new(cms.clone(), watcher::Config::default())
        .run_reconciler(reconciler, Arc::clone(&ctx));
    tokio::spawn(controller.for_each(|_| async {}));
    for i in 0..5 {
        cms.create(&PostParams::default(), &cm(&format!("db-{i}"), "ok"))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!((0..5).all(|i| ctx.calls(&format!("db-{i}")).is_empty()));
    breaker.reset();
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!((0..5).all(|i| ctx.calls(&format!("db-{i}")).len() == 1));
}

async fn requeue_soon(_: Arc<ConfigMap>, _: Arc<()>) -> Result<Action, Scripted> {
    Ok(Action::requeue(Duration::from_millis(200)))
}

#[tokio::test]
async fn a_requeue_of_an_object_deleted_meanwhile_is_no_error_in_the_stream() {
    let server = ApiServer::new();
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let (items, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let controller = tokio::spawn(
        Controller::new(api.clone(), watcher::Config::default())
            .run_reconciler(requeue_soon, Arc::new(()))
            .for_each(move |item| {
                let _ = items.send(
                    item.map(|(object, _)| object.name)
                        .map_err(|e| e.to_string()),
                );
                async {}
            }),
    );
    let next = async |seen: &mut tokio::sync::mpsc::UnboundedReceiver<Result<String, String>>| {
        tokio::time::timeout(Duration::from_secs(10), seen.recv())
            .await
            .expect("the controller reports within 10 s")
            .expect("the controller runs")
    };
    let mut errors = Vec::new();
    let cm = |name: &str| ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        ..Default::default()
    };
    api.create(&PostParams::default(), &cm("short-lived"))
        .await
        .unwrap();
    // Reconciled once, requeued, then deleted before its requeue comes up.
    loop {
        match next(&mut seen).await {
            Ok(name) if name == "short-lived" => break,
            Ok(_) => {}
            Err(e) => errors.push(e),
        }
    }
    api.delete("short-lived", &kube::api::DeleteParams::default())
        .await
        .unwrap();
    // A witness requeued on the same period: three of its turns are well past the
    // deleted object's requeue.
    api.create(&PostParams::default(), &cm("witness"))
        .await
        .unwrap();
    let mut witnessed = 0;
    while witnessed < 3 {
        match next(&mut seen).await {
            Ok(name) if name == "witness" => witnessed += 1,
            Ok(_) => {}
            Err(e) => errors.push(e),
        }
    }
    controller.abort();
    assert!(errors.is_empty(), "errors in the stream: {errors:?}");
}
