//! The embedded API server, driven by real kube clients.

mod support;

use std::{sync::Arc, time::Duration};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::{
    api::core::v1::{ConfigMap, Event as CoreEvent},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    apimachinery::pkg::apis::meta::v1::OwnerReference,
};
use kube::{
    Api, Client, CustomResourceExt, Resource, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    runtime::{
        Controller, WatchStreamExt,
        controller::Action,
        events::{Event, EventType, Recorder, Reporter},
        finalizer::{Event as Finalizer, finalizer},
        wait::{await_condition, conditions},
        watcher,
    },
};
use kube_reconcile::testing::{ApiServer, Fault, Verb};
use serde_json::json;
use support::widget::{Widget, WidgetSpec, WidgetStatus};

fn cm(name: &str) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.into());
    cm.data = Some([("k".to_string(), "v".to_string())].into());
    cm
}

async fn with_widgets(server: &ApiServer) -> Api<Widget> {
    let client = server.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Widget::crd())
        .await
        .unwrap();
    let established = await_condition(
        crds,
        "widgets.test.kube-reconcile.dev",
        conditions::is_crd_established(),
    );
    tokio::time::timeout(Duration::from_secs(5), established)
        .await
        .unwrap()
        .unwrap();
    Api::default_namespaced(client)
}

fn widget(name: &str, size: i32) -> Widget {
    Widget::new(
        name,
        WidgetSpec {
            size,
            colour: "red".into(),
        },
    )
}

fn api_code(err: &kube::Error) -> u16 {
    match err {
        kube::Error::Api(s) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn crud_with_conflicts_on_stale_writes_and_duplicate_names() {
    let server = ApiServer::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let created = cms.create(&PostParams::default(), &cm("a")).await.unwrap();
    assert_eq!(
        api_code(
            &cms.create(&PostParams::default(), &cm("a"))
                .await
                .unwrap_err()
        ),
        409
    );
    let rv1: u64 = created.resource_version().unwrap().parse().unwrap();
    let mut changed = created.clone();
    changed.data = Some([("k".to_string(), "w".to_string())].into());
    let replaced = cms
        .replace("a", &PostParams::default(), &changed)
        .await
        .unwrap();
    let rv2: u64 = replaced.resource_version().unwrap().parse().unwrap();
    assert!(rv2 > rv1);
    // The old resourceVersion is stale now.
    assert_eq!(
        api_code(
            &cms.replace("a", &PostParams::default(), &changed)
                .await
                .unwrap_err()
        ),
        409
    );
    // A no-op write changes nothing.
    let same = cms
        .replace("a", &PostParams::default(), &replaced)
        .await
        .unwrap();
    assert_eq!(same.resource_version(), replaced.resource_version());
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_code(&cms.get("a").await.unwrap_err()), 404);
    assert_eq!(server.requests().get(Verb::Create, "configmaps"), 2);
}

#[tokio::test]
async fn generation_moves_only_with_the_spec() {
    let server = ApiServer::new();
    let widgets = with_widgets(&server).await;
    let w = widgets
        .create(&PostParams::default(), &widget("w", 3))
        .await
        .unwrap();
    assert_eq!(w.metadata.generation, Some(1));
    let pp = PatchParams::default();
    let status = json!({"status": {"phase": "Ready", "observed_generation": 1}});
    let w = widgets
        .patch_status("w", &pp, &Patch::Merge(&status))
        .await
        .unwrap();
    assert_eq!(w.metadata.generation, Some(1));
    assert_eq!(
        w.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Ready")
    );
    let w = widgets
        .patch(
            "w",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(w.metadata.generation, Some(1));
    let w = widgets
        .patch(
            "w",
            &pp,
            &Patch::Merge(json!({"spec": {"size": 4}, "status": {"phase": "ignored"}})),
        )
        .await
        .unwrap();
    assert_eq!(w.metadata.generation, Some(2));
    assert_eq!(
        w.status.unwrap().phase.as_deref(),
        Some("Ready"),
        "main writes keep the old status"
    );
}

#[tokio::test]
async fn crd_schema_defaults_and_422_with_field_path() {
    let server = ApiServer::new();
    let widgets = with_widgets(&server).await;
    let defaulted: Widget = serde_json::from_value(json!({
        "apiVersion": "test.kube-reconcile.dev/v1", "kind": "Widget",
        "metadata": {"name": "d"}, "spec": {"size": 2}
    }))
    .unwrap_or_else(|_| widget("d", 2));
    let raw: Api<kube::api::DynamicObject> = Api::default_namespaced_with(
        server.client(),
        &kube::api::ApiResource::erase::<Widget>(&()),
    );
    let obj: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "test.kube-reconcile.dev/v1", "kind": "Widget",
        "metadata": {"name": "d"}, "spec": {"size": 2, "unknown": true}
    }))
    .unwrap();
    let created = raw.create(&PostParams::default(), &obj).await.unwrap();
    assert_eq!(created.data["spec"], json!({"size": 2, "colour": "blue"}));
    let _ = defaulted;
    let err = widgets
        .create(&PostParams::default(), &widget("big", 11))
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), 422);
    assert!(
        err.to_string().contains(
            "spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn finalizers_hold_deletion_until_cleanup_removes_them() {
    let server = ApiServer::new();
    let widgets = with_widgets(&server).await;
    widgets
        .create(&PostParams::default(), &widget("f", 1))
        .await
        .unwrap();
    let reconcile = |w: Arc<Widget>| {
        let widgets = widgets.clone();
        async move {
            finalizer(
                &widgets,
                "test.kube-reconcile.dev/cleanup",
                w,
                |event| async move {
                    match event {
                        Finalizer::Apply(_) | Finalizer::Cleanup(_) => {
                            Ok::<_, kube::Error>(Action::await_change())
                        }
                    }
                },
            )
            .await
        }
    };
    reconcile(Arc::new(widgets.get("f").await.unwrap()))
        .await
        .unwrap();
    let w = widgets.get("f").await.unwrap();
    assert_eq!(w.finalizers(), ["test.kube-reconcile.dev/cleanup"]);
    widgets.delete("f", &DeleteParams::default()).await.unwrap();
    let deleting = widgets.get("f").await.unwrap();
    assert!(deleting.metadata.deletion_timestamp.is_some());
    assert_eq!(
        deleting.metadata.generation,
        Some(2),
        "deletionTimestamp bumps generation"
    );
    reconcile(Arc::new(deleting)).await.unwrap();
    assert_eq!(api_code(&widgets.get("f").await.unwrap_err()), 404);
}

#[tokio::test]
async fn deleting_an_owner_collects_its_dependents() {
    let server = ApiServer::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let owner = cms
        .create(&PostParams::default(), &cm("owner"))
        .await
        .unwrap();
    let mut child = cm("child");
    child.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "owner".into(),
        uid: owner.uid().unwrap(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    cms.create(&PostParams::default(), &child).await.unwrap();
    cms.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    assert_eq!(api_code(&cms.get("child").await.unwrap_err()), 404);
}

#[tokio::test]
async fn server_side_apply_tracks_managers_and_conflicts_unless_forced() {
    let server = ApiServer::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let apply = |data: serde_json::Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": data});
    let a = PatchParams::apply("manager-a");
    let b = PatchParams::apply("manager-b");
    cms.patch("ssa", &a, &Patch::Apply(apply(json!({"x": "1", "y": "1"}))))
        .await
        .unwrap();
    let err = cms
        .patch("ssa", &b, &Patch::Apply(apply(json!({"x": "2"}))))
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), 409);
    assert!(
        err.to_string()
            .contains("conflict with \"manager-a\": .data.x"),
        "{err}"
    );
    // Same value: shared ownership, no conflict.
    cms.patch("ssa", &b, &Patch::Apply(apply(json!({"y": "1"}))))
        .await
        .unwrap();
    let forced = cms
        .patch(
            "ssa",
            &b.clone().force(),
            &Patch::Apply(apply(json!({"x": "2", "y": "1"}))),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.as_ref().unwrap()["x"], "2");
    // manager-a stops applying x and y: y stays (manager-b owns it too), x is manager-b's.
    let nothing = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}});
    let after = cms.patch("ssa", &a, &Patch::Apply(nothing)).await.unwrap();
    assert_eq!(
        after.data.unwrap(),
        [
            ("x".to_string(), "2".to_string()),
            ("y".to_string(), "1".to_string())
        ]
        .into()
    );
    let managers: Vec<String> = after
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(managers, ["manager-b"]);
    // Re-applying the same configuration writes nothing.
    let rv = server.resource_version();
    cms.patch("ssa", &b, &Patch::Apply(apply(json!({"x": "2", "y": "1"}))))
        .await
        .unwrap();
    assert_eq!(server.resource_version(), rv);
}

#[tokio::test]
async fn lists_paginate_with_continue_tokens() {
    let server = ApiServer::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    for i in 0..7 {
        cms.create(&PostParams::default(), &cm(&format!("cm-{i}")))
            .await
            .unwrap();
    }
    let mut names = Vec::new();
    let mut lp = ListParams::default().limit(3);
    loop {
        let page = cms.list(&lp).await.unwrap();
        assert!(page.items.len() <= 3);
        names.extend(page.items.iter().map(ResourceExt::name_any));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => lp = lp.continue_token(&token),
            _ => break,
        }
    }
    assert_eq!(names.len(), 7);
    let labelled = cms
        .list(&ListParams::default().fields("metadata.name=cm-3"))
        .await
        .unwrap();
    assert_eq!(labelled.items.len(), 1);
}

async fn watch_sees_changes(config: watcher::Config) {
    let server = ApiServer::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    cms.create(&PostParams::default(), &cm("before"))
        .await
        .unwrap();
    let mut seen = watcher(cms.clone(), config).applied_objects().boxed();
    let first = tokio::time::timeout(Duration::from_secs(5), seen.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.name_any(), "before");
    cms.create(&PostParams::default(), &cm("after"))
        .await
        .unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), seen.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(second.name_any(), "after");
}

#[tokio::test]
async fn watcher_works_in_list_watch_mode() {
    watch_sees_changes(watcher::Config::default()).await;
}

#[tokio::test]
async fn watcher_works_in_streaming_list_mode() {
    watch_sees_changes(watcher::Config::default().streaming_lists()).await;
}

#[tokio::test]
async fn watch_from_a_compacted_version_gets_410_and_the_watcher_relists() {
    let server = ApiServer::builder().history(5).build();
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    for i in 0..20 {
        cms.create(&PostParams::default(), &cm(&format!("old-{i}")))
            .await
            .unwrap();
    }
    let err = cms
        .watch(&kube::api::WatchParams::default(), "1")
        .await
        .unwrap()
        .boxed()
        .try_next()
        .await;
    match err {
        Ok(Some(kube::api::WatchEvent::Error(e))) => assert_eq!(e.code, 410),
        other => panic!("expected a 410 watch error, got {other:?}"),
    }
    server.faults().inject(
        Fault::expired()
            .verb(Verb::Watch)
            .resource("configmaps")
            .times(1),
    );
    let mut seen = watcher(cms.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    let first = tokio::time::timeout(Duration::from_secs(10), seen.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.name_any().starts_with("old-"));
}

#[tokio::test]
async fn events_from_the_recorder_show_as_core_v1_events() {
    let server = ApiServer::new();
    let client: Client = server.client();
    let widgets = with_widgets(&server).await;
    let w = widgets
        .create(&PostParams::default(), &widget("ev", 1))
        .await
        .unwrap();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "widget-controller".into(),
            instance: None,
        },
    );
    let event = Event {
        type_: EventType::Normal,
        reason: "Provisioning".into(),
        note: Some("started provisioning".into()),
        action: "Provision".into(),
        secondary: None,
    };
    recorder.publish(&event, &w.object_ref(&())).await.unwrap();
    let core: Api<CoreEvent> = Api::default_namespaced(client);
    let lp = ListParams::default().fields("involvedObject.kind=Widget,involvedObject.name=ev");
    let events = core.list(&lp).await.unwrap();
    assert_eq!(events.items.len(), 1);
    assert_eq!(
        events.items[0].message.as_deref(),
        Some("started provisioning")
    );
    assert_eq!(events.items[0].reason.as_deref(), Some("Provisioning"));
}

#[tokio::test]
async fn a_controller_reconciles_custom_resources() {
    let server = ApiServer::new();
    let widgets = with_widgets(&server).await;
    widgets
        .create(&PostParams::default(), &widget("c", 2))
        .await
        .unwrap();
    let reconcile = |w: Arc<Widget>, api: Arc<Api<Widget>>| async move {
        let status = WidgetStatus {
            phase: Some("Ready".into()),
            observed_generation: w.metadata.generation,
        };
        api.patch_status(
            &w.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await?;
        Ok::<_, kube::Error>(Action::await_change())
    };
    let controller = Controller::new(widgets.clone(), watcher::Config::default()).run(
        reconcile,
        |_, _, _| Action::requeue(Duration::from_secs(1)),
        Arc::new(widgets.clone()),
    );
    tokio::spawn(controller.for_each(|_| async {}));
    let ready = await_condition(widgets.clone(), "c", |w: Option<&Widget>| {
        w.and_then(|w| w.status.as_ref())
            .and_then(|s| s.phase.as_deref())
            == Some("Ready")
    });
    tokio::time::timeout(Duration::from_secs(5), ready)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
#[allow(clippy::too_many_lines, reason = "one request per kind of bad input")]
async fn bad_requests_get_typed_errors_and_never_a_panic() {
    let server = ApiServer::new();
    let send = |method: &str, path: &str, body: &'static [u8], ct: &str| {
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", ct)
            .body(bytes::Bytes::from_static(body))
            .unwrap();
        let server = server.clone();
        async move { server.call(req).await.status().as_u16() }
    };
    assert_eq!(
        send(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            b"{not json",
            "application/json"
        )
        .await,
        400
    );
    assert_eq!(
        send(
            "GET",
            "/apis/nope.example/v1/things",
            b"",
            "application/json"
        )
        .await,
        404
    );
    assert_eq!(
        send(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Bad_Name"}}"#,
            "application/json"
        )
        .await,
        422
    );
    assert_eq!(
        send(
            "PATCH",
            "/api/v1/namespaces/default/configmaps/x",
            b"{}",
            "text/plain"
        )
        .await,
        415
    );
    assert_eq!(
        send(
            "POST",
            "/api/v1/namespaces/missing/configmaps",
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}"#,
            "application/json"
        )
        .await,
        404
    );
    for garbage in [
        &b"\xff\xfe"[..],
        b"[]",
        b"null",
        b"{\"metadata\": 7}",
        b"{\"kind\": []}",
    ] {
        let req = http::Request::builder()
            .method("POST")
            .uri("/api/v1/namespaces/default/configmaps")
            .body(bytes::Bytes::from_static(garbage))
            .unwrap();
        let code = server.call(req).await.status().as_u16();
        assert!((400..500).contains(&code), "{garbage:?} → {code}");
    }
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let mut huge = cm("huge");
    huge.data = Some([("blob".to_string(), "x".repeat(1_600_000))].into());
    let err = cms.create(&PostParams::default(), &huge).await.unwrap_err();
    assert_eq!(api_code(&err), 422);
    assert!(
        err.to_string().contains(
            "ConfigMap \"huge\" is invalid: []: Too long: may not be more than 1048576 bytes"
        ),
        "{err}"
    );
    // Any object over etcd's 1.5 MiB: a 500 from etcd; a body over 3 MiB: 413 before decoding.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::default_namespaced(server.client());
    let lease = |n: usize| -> k8s_openapi::api::coordination::v1::Lease {
        serde_json::from_value(
            json!({"metadata": {"name": "huge"}, "spec": {"holderIdentity": "x".repeat(n)}}),
        )
        .unwrap()
    };
    let err = leases
        .create(&PostParams::default(), &lease(1_600_000))
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), 500);
    assert!(
        err.to_string().contains("etcdserver: request is too large"),
        "{err}"
    );
    assert_eq!(
        api_code(
            &leases
                .create(&PostParams::default(), &lease(3_200_000))
                .await
                .unwrap_err()
        ),
        413
    );
}

#[tokio::test]
async fn kubectl_style_table_output_uses_printer_columns() {
    let server = ApiServer::new();
    let widgets = with_widgets(&server).await;
    widgets
        .create(&PostParams::default(), &widget("t", 7))
        .await
        .unwrap();
    let req = http::Request::builder()
        .uri("/apis/test.kube-reconcile.dev/v1/namespaces/default/widgets")
        .header(
            "accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(bytes::Bytes::new())
        .unwrap();
    let resp = server.call(req).await;
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let table: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let names: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Name", "Size", "Phase"]); // printer columns replace the default Age, as in kube-apiserver
    assert_eq!(table["rows"][0]["cells"][0], "t");
    assert_eq!(table["rows"][0]["cells"][1], 7);
}

#[tokio::test]
async fn discovery_finds_custom_resources_both_ways() {
    let server = ApiServer::new();
    with_widgets(&server).await;
    for aggregated in [false, true] {
        let discovery = kube::Discovery::new(server.client());
        let discovery = if aggregated {
            discovery.run_aggregated().await
        } else {
            discovery.run().await
        }
        .unwrap();
        let group = discovery
            .get("test.kube-reconcile.dev")
            .expect("group discovered");
        let (ar, caps) = group.recommended_kind("Widget").expect("kind discovered");
        assert_eq!(ar.plural, "widgets");
        assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
    }
    let version = server.client().apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");
}

#[tokio::test]
async fn injected_faults_fire_deterministically_and_are_counted() {
    let server = ApiServer::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    server.faults().inject(
        Fault::error(500)
            .verb(Verb::Create)
            .resource("configmaps")
            .nth(&[2]),
    );
    server.faults().inject(
        Fault::error(429)
            .retry_after(3)
            .verb(Verb::Get)
            .resource("configmaps")
            .times(1),
    );
    cms.create(&PostParams::default(), &cm("one"))
        .await
        .unwrap();
    assert_eq!(
        api_code(
            &cms.create(&PostParams::default(), &cm("two"))
                .await
                .unwrap_err()
        ),
        500
    );
    cms.create(&PostParams::default(), &cm("two"))
        .await
        .unwrap();
    match cms.get("one").await.unwrap_err() {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 429);
            assert_eq!(s.details.map(|d| d.retry_after_seconds), Some(3));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.faults().fired(), 2);
    assert_eq!(server.requests().get(Verb::Create, "configmaps"), 3);
}

#[tokio::test]
async fn kubectl_can_reach_the_http_listener() {
    let server = ApiServer::new();
    let http = server.serve().await.unwrap();
    let config = kube::Config::new(http.url().parse().unwrap());
    let client = Client::try_from(config).unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    cms.create(&PostParams::default(), &cm("over-http"))
        .await
        .unwrap();
    assert!(http.kubeconfig().contains(&http.url()));
    assert_eq!(
        Api::<ConfigMap>::default_namespaced(server.client())
            .get("over-http")
            .await
            .unwrap()
            .name_any(),
        "over-http"
    );
}

#[tokio::test(start_paused = true)]
async fn the_simulator_marks_workloads_ready_after_a_delay_unless_held() {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use kube_reconcile::testing::WorkloadSimulator;
    let server = ApiServer::new();
    let simulator = WorkloadSimulator::new(server.client())
        .ready_after(Duration::from_secs(3))
        .start();
    simulator.keep_unready("default", "held");
    let sts: Api<StatefulSet> = Api::default_namespaced(server.client());
    let manifest = |name: &str| -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": name}},
                "serviceName": name,
                "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "db", "image": "postgres:16"}]}}
            }
        }))
        .unwrap()
    };
    let started = tokio::time::Instant::now();
    let created = sts
        .create(&PostParams::default(), &manifest("db"))
        .await
        .unwrap();
    assert_eq!(
        created.spec.pod_management_policy.as_deref(),
        Some("OrderedReady"),
        "server defaults applied"
    );
    sts.create(&PostParams::default(), &manifest("held"))
        .await
        .unwrap();
    let ready = await_condition(sts.clone(), "db", |s: Option<&StatefulSet>| {
        s.and_then(|s| s.status.as_ref())
            .and_then(|st| st.ready_replicas)
            == Some(2)
    });
    tokio::time::timeout(Duration::from_secs(30), ready)
        .await
        .unwrap()
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(3));
    tokio::time::sleep(Duration::from_secs(10)).await;
    let held = sts.get("held").await.unwrap();
    assert_eq!(held.status.and_then(|s| s.ready_replicas), Some(0));
    simulator.make_ready("default", "held");
    sts.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"poke": "1"}}})),
    )
    .await
    .unwrap();
    let released = await_condition(sts.clone(), "held", |s: Option<&StatefulSet>| {
        s.and_then(|s| s.status.as_ref())
            .and_then(|st| st.ready_replicas)
            == Some(2)
    });
    tokio::time::timeout(Duration::from_secs(30), released)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn dropped_watch_streams_are_resumed_by_the_watcher() {
    let server = ApiServer::new();
    server
        .faults()
        .inject(Fault::drop_watch(Duration::from_secs(5)).resource("configmaps"));
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = watcher(cms.clone(), watcher::Config::default()).applied_objects();
    tokio::spawn(stream.for_each(move |o| {
        let _ = tx.send(o.map(|o| o.name_any()));
        async {}
    }));
    cms.create(&PostParams::default(), &cm("one"))
        .await
        .unwrap();
    assert_eq!(rx.recv().await.unwrap().unwrap(), "one");
    tokio::time::sleep(Duration::from_secs(12)).await;
    cms.create(&PostParams::default(), &cm("two"))
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(next, "two");
    assert!(
        server.requests().get(Verb::Watch, "configmaps") >= 2,
        "the stream was dropped and resumed: {}",
        server.requests()
    );
}

mod garbage {
    use super::*;
    use proptest::prelude::*;

    const PREFIXES: &[&str] = &[
        "/api/v1/namespaces/default/configmaps",
        "/api/v1/namespaces",
        "/apis/apps/v1/namespaces/default/statefulsets",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        "/apis/events.k8s.io/v1/namespaces/default/events",
        "/api/v1/namespaces/default/events",
        "/apis",
        "/openapi/v3",
        "",
    ];
    const CONTENT_TYPES: &[&str] = &[
        "application/json",
        "application/merge-patch+json",
        "application/json-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
        "text/plain",
    ];

    fn body() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..120),
            Just(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{"a":"b"}}"#.to_vec()),
            Just(br#"[{"op":"replace","path":"/metadata/labels","value":{"a":"b"}}]"#.to_vec()),
            Just(br#"{"metadata":{"finalizers":null,"ownerReferences":[{"uid":7}]}}"#.to_vec()),
            Just(br#"{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{"name":"a.b.c"},"spec":{}}"#.to_vec()),
            "[ -~]{0,80}".prop_map(String::into_bytes),
        ]
    }

    /// Headers a client might send, sensible or not.
    fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
        let name = prop_oneof![
            prop::sample::select(vec![
                "accept",
                "content-type",
                "content-length",
                "authorization",
                "user-agent",
                "x-kubernetes-pb",
                "transfer-encoding",
            ])
            .prop_map(str::to_owned),
            "[a-z][a-z0-9-]{0,12}",
        ];
        let value = prop_oneof![
            prop::sample::select(vec![
                "application/json",
                "application/json;as=Table;v=v1;g=meta.k8s.io",
                "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
                "application/vnd.kubernetes.protobuf",
                "application/yaml",
                "*/*",
                "0",
                "99999999999",
                "chunked",
            ])
            .prop_map(str::to_owned),
            "[ -~]{0,30}",
        ];
        prop::collection::vec((name, value), 0..4)
    }

    /// Paths into what exists (a CRD, a widget, a config map, their status) and around it.
    const OBJECT_PATHS: &[&str] = &[
        "/apis/test.kube-reconcile.dev/v1/namespaces/default/widgets",
        "/apis/test.kube-reconcile.dev/v1/namespaces/default/widgets/w",
        "/apis/test.kube-reconcile.dev/v1/namespaces/default/widgets/w/status",
        "/apis/test.kube-reconcile.dev/v1/widgets",
        "/apis/test.kube-reconcile.dev/v1",
        "/apis/test.kube-reconcile.dev",
        "/api/v1/namespaces/default/configmaps/x",
        "/api/v1/namespaces/default/configmaps/x/status",
        "/api/v1/namespaces/default",
        "/api/v1/namespaces/default/status",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.test.kube-reconcile.dev",
        "/api",
        "/version",
        "/healthz",
    ];

    /// Every error answer is a `metav1.Status` whose code is the HTTP status.
    async fn check_status_body(
        resp: http::Response<kube_reconcile::testing::Body>,
        what: &str,
    ) -> Result<u16, String> {
        let code = resp.status().as_u16();
        if !(200..600).contains(&code) {
            return Err(format!("{what} -> {code}"));
        }
        if code < 400 {
            // Success bodies may be watch streams: not read.
            return Ok(code);
        }
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .map_err(|e| format!("{what}: {e}"))?
            .to_bytes();
        let status: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
            format!("{what} -> {code} with a body that is not JSON ({e}): {body:?}")
        })?;
        let ok = status["kind"] == "Status"
            && status["apiVersion"] == "v1"
            && status["status"] == "Failure"
            && status["code"] == code
            && status["message"].as_str().is_some_and(|m| !m.is_empty());
        if ok {
            Ok(code)
        } else {
            Err(format!("{what} -> {code} with {status}"))
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn any_request_gets_an_http_answer_and_never_a_panic(
            method in prop::sample::select(vec![
                "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "get", "BREW",
            ]),
            prefix in prop::sample::select([PREFIXES, OBJECT_PATHS].concat()),
            tail in prop::collection::vec("[a-zA-Z0-9._%-]{0,10}", 0..4),
            query in prop_oneof![
                4 => "(watch=true&timeoutSeconds=0|watch=1&timeoutSeconds=0&allowWatchBookmarks=true|limit=[0-9]{1,2}|limit=-1|continue=[a-zA-Z0-9]{0,12}|labelSelector=[a-z!=(), ]{0,12}|fieldSelector=[a-z.=,]{0,12}|resourceVersion=[0-9a-z]{0,4}|resourceVersionMatch=(Exact|NotOlderThan|x)|dryRun=(All|x)|fieldManager=x&force=(true|maybe)|propagationPolicy=(Foreground|Orphan|x)|gracePeriodSeconds=-?[0-9]{1,3}|sendInitialEvents=true&watch=true&timeoutSeconds=0){0,1}",
                1 => "[a-zA-Z0-9=&%._-]{0,40}",
            ],
            headers in headers(),
            ct in prop::sample::select(CONTENT_TYPES.to_vec()),
            body in body(),
        ) {
            let path = format!("{prefix}/{}?{query}", tail.join("/"));
            let mut builder = http::Request::builder().method(method).uri(&path).header("content-type", ct);
            for (name, value) in &headers {
                builder = builder.header(name.as_str(), value.as_str());
            }
            let Ok(req) = builder.body(bytes::Bytes::from(body)) else {
                return Ok(());
            };
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
            let what = format!("{method} {path} {headers:?}");
            let answer = rt.block_on(async {
                let server = ApiServer::new();
                // Something to address: a custom resource with status, a config map.
                let widgets = with_widgets(&server).await;
                widgets.create(&PostParams::default(), &widget("w", 1)).await.unwrap();
                Api::<ConfigMap>::default_namespaced(server.client())
                    .create(&PostParams::default(), &cm("x"))
                    .await
                    .unwrap();
                let resp = server.call(req).await;
                check_status_body(resp, &what).await
            });
            prop_assert!(answer.is_ok(), "{}", answer.unwrap_err());
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_simulator_retries_a_status_write_that_failed() {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use kube_reconcile::testing::{Fault, Verb, WorkloadSimulator};
    let server = ApiServer::new();
    let _simulator = WorkloadSimulator::new(server.client())
        .ready_after(Duration::from_secs(1))
        .start();
    // The first two status writes fail, as a flaky API server would answer them.
    server.faults().inject(
        Fault::error(500)
            .verb(Verb::Patch)
            .resource("statefulsets.apps/status")
            .times(2),
    );
    let sts: Api<StatefulSet> = Api::default_namespaced(server.client());
    let manifest: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "spec": {
            "selector": {"matchLabels": {"app": "db"}},
            "serviceName": "db",
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "postgres:16"}]}}
        }
    }))
    .unwrap();
    sts.create(&PostParams::default(), &manifest).await.unwrap();
    let ready = await_condition(sts.clone(), "db", |s: Option<&StatefulSet>| {
        s.and_then(|s| s.status.as_ref())
            .and_then(|st| st.ready_replicas)
            == Some(1)
    });
    tokio::time::timeout(Duration::from_secs(30), ready)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(server.faults().fired(), 2);
}

#[tokio::test]
async fn field_validation_from_kube_patch_params_is_honoured() {
    use kube::api::ValidationDirective;
    let server = ApiServer::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("fv".into());
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let patch = Patch::Merge(json!({"data": {"k": "v"}, "unknownTop": true}));

    let strict = PatchParams::default().validation(ValidationDirective::Strict);
    let err = cms.patch("fv", &strict, &patch).await.unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("expected an API error, got {err:?}")
    };
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert!(
        status
            .message
            .ends_with(r#": strict decoding error: unknown field "unknownTop""#),
        "{}",
        status.message
    );

    // Warn (the default) and Ignore admit the patch and drop the unknown field.
    for params in [
        PatchParams::default(),
        PatchParams::default().validation(ValidationDirective::Ignore),
    ] {
        let patched = cms.patch("fv", &params, &patch).await.unwrap();
        assert_eq!(patched.data.unwrap()["k"], "v");
    }
    let raw: Api<kube::api::DynamicObject> = Api::default_namespaced_with(
        server.client(),
        &kube::api::ApiResource::erase::<ConfigMap>(&()),
    );
    let stored = raw.get("fv").await.unwrap();
    assert!(stored.data.get("unknownTop").is_none(), "{:?}", stored.data);
}
