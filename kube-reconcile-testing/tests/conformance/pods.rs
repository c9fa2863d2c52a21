//! Pods that run: the workload simulator moves Pods from `Pending` to `Running` on both
//! tiers (neither runs a kubelet), and a plain kube-rs `Controller` over Pods converges
//! on what it writes.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::api::{
    apps::v1::{Deployment, ReplicaSet, StatefulSet},
    core::v1::Pod,
};
use kube::{
    Api, ResourceExt,
    api::{ListParams, Patch, PatchParams, PostParams},
    runtime::{Controller, controller::Action, watcher},
};
use kube_reconcile_test_support::both_tiers;
use kube_reconcile_testing::WorkloadSimulator;
use serde_json::json;

/// A Pod with one container.
fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": { "name": name, "labels": { "app": "web" } },
        "spec": { "containers": [{ "name": "web", "image": "nginx:1.27" }] },
    }))
    .expect("a valid Pod")
}

/// The controller under test, plain kube-rs: it labels each Pod with the phase it saw.
async fn reconcile(pod: Arc<Pod>, pods: Arc<Api<Pod>>) -> Result<Action, kube::Error> {
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Unknown".into());
    if pod.labels().get("seen-phase") != Some(&phase) {
        let label = json!({ "metadata": { "labels": { "seen-phase": phase } } });
        pods.patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&label),
        )
        .await?;
    }
    Ok(Action::await_change())
}

fn error_policy(_: Arc<Pod>, _: &kube::Error, _: Arc<Api<Pod>>) -> Action {
    Action::requeue(Duration::from_secs(1))
}

/// Polls `pods` (up to 20 s) until `done` holds for every Pod named.
async fn until(pods: &Api<Pod>, names: &[&str], what: &str, done: impl Fn(&Pod) -> bool) {
    for _ in 0..200 {
        let mut all = true;
        for name in names {
            all &= done(&pods.get(name).await.expect("get the Pod"));
        }
        if all {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("Pods {names:?} never {what}");
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref()
}

/// A `StatefulSet` or Deployment (`kind`) of `replicas` web Pods.
fn workload<K: serde::de::DeserializeOwned>(kind: &str, name: &str, replicas: i32) -> K {
    let mut spec = json!({
        "replicas": replicas,
        "selector": { "matchLabels": { "app": name } },
        "template": {
            "metadata": { "labels": { "app": name } },
            "spec": { "containers": [{ "name": "web", "image": "nginx:1.27" }] },
        },
    });
    if kind == "StatefulSet" {
        spec["serviceName"] = json!(name);
    }
    serde_json::from_value(json!({ "metadata": { "name": name }, "spec": spec }))
        .expect("a valid workload")
}

/// The names of the Pods with label `app=<app>`, polled (up to 20 s) until `done` holds.
async fn pods_of(
    pods: &Api<Pod>,
    app: &str,
    what: &str,
    done: impl Fn(&[Pod]) -> bool,
) -> Vec<Pod> {
    for _ in 0..200 {
        let found = pods
            .list(&ListParams::default().labels(&format!("app={app}")))
            .await
            .unwrap()
            .items;
        let live: Vec<Pod> = found
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        if done(&live) {
            return live;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the Pods of {app} never {what}");
}

both_tiers! {
    async fn the_simulator_runs_pods_and_a_controller_over_pods_converges(cx: Tier) {
        let pods: Api<Pod> = cx.api();
        let simulator = WorkloadSimulator::new(cx.client())
            .ready_after(Duration::from_millis(200))
            .namespace(cx.namespace())
            .start();
        simulator.keep_unready(cx.namespace(), "held");
        tokio::spawn(
            Controller::new(pods.clone(), watcher::Config::default())
                .run(reconcile, error_policy, Arc::new(pods.clone()))
                .for_each(|_| async {}),
        );
        for name in ["web-0", "web-1", "held"] {
            pods.create(&PostParams::default(), &pod(name)).await.expect("create a Pod");
        }

        let running = ["web-0", "web-1"];
        until(&pods, &running, "ran and were labelled Running", |p| {
            phase(p) == Some("Running")
                && p.labels().get("seen-phase").map(String::as_str) == Some("Running")
        })
        .await;
        let web = pods.get("web-0").await.unwrap();
        let status = web.status.expect("a status");
        let ready = status
            .conditions
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .expect("a Ready condition");
        assert_eq!(ready.status, "True");
        let containers = status.container_statuses.unwrap_or_default();
        assert_eq!(containers.len(), 1);
        assert!(containers[0].ready && containers[0].state.as_ref().unwrap().running.is_some());
        assert!(status.pod_ip.is_some_and(|ip| ip.starts_with("10.244.")));
        assert!(status.start_time.is_some());

        // The held Pod stays Pending, not ready, and the controller saw that too.
        until(&pods, &["held"], "were labelled Pending", |p| {
            p.labels().get("seen-phase").map(String::as_str) == Some("Pending")
        })
        .await;
        let held = pods.get("held").await.unwrap();
        assert_eq!(phase(&held), Some("Pending"));
    }

    async fn workloads_get_their_pods_which_follow_the_replica_count(cx: Tier) {
        let _simulator = WorkloadSimulator::new(cx.client()).ready_after(Duration::from_millis(100)).namespace(cx.namespace()).start();
        let pods: Api<Pod> = cx.api();
        let sets: Api<StatefulSet> = cx.api();
        sets.create(&PostParams::default(), &workload("StatefulSet", "db", 3)).await.unwrap();
        let running = pods_of(&pods, "db", "ran", |p| p.len() == 3 && p.iter().all(|p| phase(p) == Some("Running"))).await;
        let mut names: Vec<String> = running.iter().map(ResourceExt::name_any).collect();
        names.sort();
        assert_eq!(names, ["db-0", "db-1", "db-2"]);
        let owner = &running[0].owner_references()[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.controller), ("StatefulSet", "db", Some(true)));
        assert_eq!(running[0].spec.as_ref().and_then(|s| s.subdomain.as_deref()), Some("db"));
        sets.patch_scale("db", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "replicas": 1 } }))).await.unwrap();
        pods_of(&pods, "db", "scaled down to db-0", |p| p.len() == 1 && p[0].name_any() == "db-0").await;

        let deployments: Api<Deployment> = cx.api();
        deployments.create(&PostParams::default(), &workload("Deployment", "web", 2)).await.unwrap();
        let running = pods_of(&pods, "web", "ran", |p| p.len() == 2 && p.iter().all(|p| phase(p) == Some("Running"))).await;
        let sets: Api<ReplicaSet> = cx.api();
        let set = sets.list(&ListParams::default().labels("app=web")).await.unwrap().items.pop().expect("a ReplicaSet");
        assert_eq!(set.owner_references()[0].name, "web");
        assert!(running.iter().all(|p| p.owner_references()[0].uid == set.uid().unwrap()), "the Pods belong to the ReplicaSet");
        assert!(running.iter().all(|p| p.name_any().starts_with(&format!("{}-", set.name_any()))));
    }
}
