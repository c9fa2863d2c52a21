//! A real `kube_runtime::Controller` running reconcilers wrapped in the middleware.

mod support;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, ResourceExt,
    runtime::{Controller, controller::Action, watcher},
};
use kube_reconcile::{ControllerExt, ErrorClass, ReconcilerExt, middleware::timeout::TimeoutLayer};
use support::ScriptedApi;
use tokio::time::Instant;

#[derive(Default)]
struct Ctx {
    calls: Mutex<HashMap<String, Vec<Instant>>>,
}

impl Ctx {
    fn calls(&self, name: &str) -> Vec<Instant> {
        self.calls.lock().unwrap().get(name).cloned().unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("scripted failure")]
struct Scripted(ErrorClass);

impl kube_reconcile::Classify for Scripted {
    fn class(&self) -> ErrorClass {
        self.0
    }
}

async fn reconcile(cm: Arc<ConfigMap>, ctx: Arc<Ctx>) -> Result<Action, Scripted> {
    let name = cm.name_any();
    ctx.calls.lock().unwrap().entry(name.clone()).or_default().push(Instant::now());
    match cm.data.as_ref().and_then(|d| d.get("mode")).map(String::as_str) {
        Some("slow") => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(Action::await_change())
        }
        Some("terminal") => Err(Scripted(ErrorClass::Terminal)),
        _ => Ok(Action::await_change()),
    }
}

#[tokio::test(start_paused = true)]
async fn controller_runs_a_wrapped_reconciler_and_times_out_slow_calls() {
    let api = ScriptedApi::new();
    api.put("ok", &[("mode", "ok")]);
    api.put("slow", &[("mode", "slow")]);
    let ctx = Arc::new(Ctx::default());
    let reconciler = reconcile.with(TimeoutLayer::new(Duration::from_secs(10)));
    let controller = Controller::new(Api::<ConfigMap>::default_namespaced(api.client()), watcher::Config::default())
        .run_reconciler(reconciler, Arc::clone(&ctx));
    let results = tokio::time::timeout(Duration::from_secs(30), controller.take(3).collect::<Vec<_>>())
        .await
        .unwrap_or_default();
    assert_eq!(ctx.calls("ok").len(), 1);
    // slow: timed out at 10 s, requeued 5 s later (Transient default), timed out again.
    let slow = ctx.calls("slow");
    assert!(slow.len() >= 2, "slow was called {} times", slow.len());
    assert_eq!(slow[1] - slow[0], Duration::from_secs(15));
    assert!(results.iter().any(Result::is_err));
}
