//! The library's middleware on both servers: a `kube_runtime::Controller` running a
//! reconciler wrapped in `Backoff ∘ Timeout`, owning a StatefulSet made ready by the
//! workload simulator, writing status through the status subresource.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{Controller, controller::Action, watcher},
};
use kube_reconcile::{
    ControllerExt, ReconcilerExt,
    middleware::{backoff::BackoffConfig, timeout::TimeoutLayer},
};
use kube_reconcile_testing::WorkloadSimulator;
use serde_json::json;

use kube_reconcile_test_support::{
    both_tiers,
    widget::{Widget, widget, widgets},
};

struct Ctx {
    client: kube::Client,
}

/// Ensures a StatefulSet sized like the widget; reports Ready once it is.
async fn reconcile(w: Arc<Widget>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    let ns = w.namespace().unwrap_or_default();
    let name = w.name_any();
    let owner = w
        .controller_owner_ref(&())
        .expect("a stored widget has a uid");
    let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let desired = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "ownerReferences": [owner]},
        "spec": {
            "replicas": w.spec.size,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "example/app:1"}]},
            },
        },
    });
    let set = sets
        .patch(
            &name,
            &PatchParams::apply("widget-controller").force(),
            &Patch::Apply(&desired),
        )
        .await?;
    let ready = set
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    let phase = if ready == w.spec.size {
        "Ready"
    } else {
        "Deploying"
    };
    let widgets: Api<Widget> = Api::namespaced(ctx.client.clone(), &ns);
    let status = json!({"status": {"phase": phase, "observed_generation": w.metadata.generation}});
    widgets
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(if phase == "Ready" {
        Action::await_change()
    } else {
        Action::requeue(Duration::from_millis(200))
    })
}

fn error_policy(_: Arc<Widget>, _: &kube::Error, _: Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_millis(200))
}

async fn wait_for(ws: &Api<Widget>, name: &str, phase: &str, generation: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let w = ws.get(name).await.unwrap();
        let status = w.status.clone().unwrap_or_default();
        if status.phase.as_deref() == Some(phase) && status.observed_generation == Some(generation)
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never reached {phase} at generation {generation}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

both_tiers! {
    async fn a_controller_with_middleware_drives_widgets_to_ready(cx: Tier) {
        let ws = widgets(&cx).await;
        let _simulator = WorkloadSimulator::new(cx.client()).ready_after(Duration::from_millis(300)).namespace(cx.namespace()).start();
        let reconciler = reconcile
            .with(TimeoutLayer::new(Duration::from_secs(10)))
            .with(BackoffConfig::operator().build().unwrap());
        let ctx = Arc::new(Ctx { client: cx.client() });
        let controller = Controller::new(ws.clone(), watcher::Config::default())
            .owns(Api::<StatefulSet>::namespaced(cx.client(), cx.namespace()), watcher::Config::default())
            .run_reconciler(reconciler, ctx);
        let running = tokio::spawn(controller.for_each(|_| async {}));
        let _ = error_policy;

        for name in ["w1", "w2"] {
            ws.create(&kube::api::PostParams::default(), &widget(name, 2)).await.unwrap();
        }
        wait_for(&ws, "w1", "Ready", 1).await;
        wait_for(&ws, "w2", "Ready", 1).await;

        // A spec change: generation 2, the StatefulSet resized, Ready again.
        ws.patch("w1", &PatchParams::default(), &Patch::Merge(json!({"spec": {"size": 3}}))).await.unwrap();
        wait_for(&ws, "w1", "Ready", 2).await;
        let sets: Api<StatefulSet> = cx.api();
        let set = sets.get("w1").await.unwrap();
        assert_eq!(set.spec.replicas, Some(3));
        assert_eq!(set.metadata.owner_references.unwrap()[0].name, "w1");
        running.abort();
    }
}
