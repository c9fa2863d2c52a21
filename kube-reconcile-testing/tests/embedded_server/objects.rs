//! Objects: CRUD and conflicts, generation, schemas, finalizers, owners, apply, lists.

use super::*;

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
