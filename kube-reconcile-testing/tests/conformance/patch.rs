//! The four patch types and server-side apply's field ownership.

use k8s_openapi::api::{apps::v1::Deployment, core::v1::ConfigMap};
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use kube_reconcile_test_support::both_tiers;
use serde_json::{Value, json};

use crate::{cm, status, widget, widgets};

fn json_patch(ops: Value) -> Patch<()> {
    Patch::Json(serde_json::from_value(ops).expect("a JSON patch"))
}

fn deployment(name: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [
                    {"name": "app", "image": "app:1"},
                    {"name": "sidecar", "image": "sidecar:1"},
                ]},
            },
        },
    }))
    .expect("a deployment")
}

/// The managers in `managedFields` with their operations, sorted.
fn managers(meta: &kube::core::ObjectMeta) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = meta
        .managed_fields
        .iter()
        .flatten()
        .map(|m| {
            (
                m.manager.clone().unwrap_or_default(),
                m.operation.clone().unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out
}

both_tiers! {
    async fn json_patch_tests_guard_the_operations(cx: Tier) {
        let cms: Api<ConfigMap> = cx.api();
        cms.create(&PostParams::default(), &cm("a")).await.unwrap();
        let pp = PatchParams::default();
        let ok = cms.patch("a", &pp, &json_patch(json!([
            {"op": "test", "path": "/data/k", "value": "v"},
            {"op": "replace", "path": "/data/k", "value": "w"},
            {"op": "add", "path": "/metadata/labels", "value": {"x": "y"}},
        ]))).await.unwrap();
        assert_eq!(ok.data.unwrap()["k"], "w");
        assert_eq!(ok.metadata.labels.unwrap()["x"], "y");

        let err = cms.patch("a", &pp, &json_patch(json!([
            {"op": "test", "path": "/data/k", "value": "v"},
            {"op": "replace", "path": "/data/k", "value": "never"},
        ]))).await.unwrap_err();
        let s = status(&err);
        assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"), "{s:?}");
        assert_eq!(s.message, "the server rejected our request due to an error in our request");
        assert_eq!(cms.get("a").await.unwrap().data.unwrap()["k"], "w", "nothing applied");

        let err = cms.patch("a", &pp, &json_patch(json!([{"op": "remove", "path": "/data/missing"}]))).await.unwrap_err();
        assert_eq!(status(&err).code, 422);
    }

    async fn merge_patches_merge_maps_and_null_deletes(cx: Tier) {
        let cms: Api<ConfigMap> = cx.api();
        let mut c = cm("a");
        c.data.as_mut().unwrap().insert("gone".into(), "soon".into());
        cms.create(&PostParams::default(), &c).await.unwrap();
        let got = cms.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"gone": null, "new": "1"}}))).await.unwrap();
        let data = got.data.unwrap();
        assert_eq!(data.keys().collect::<Vec<_>>(), ["k", "new"]);
    }

    async fn strategic_merge_patches_merge_lists_by_key_on_built_ins_only(cx: Tier) {
        let deployments: Api<Deployment> = cx.api();
        deployments.create(&PostParams::default(), &deployment("d")).await.unwrap();
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}}});
        let got = deployments.patch("d", &PatchParams::default(), &Patch::Strategic(patch)).await.unwrap();
        let containers = got.spec.template.spec.unwrap().containers;
        let images: Vec<(String, Option<String>)> = containers.into_iter().map(|c| (c.name, c.image)).collect();
        assert_eq!(images, [("app".to_string(), Some("app:2".to_string())), ("sidecar".to_string(), Some("sidecar:1".to_string()))]);

        let ws = widgets(&cx).await;
        ws.create(&PostParams::default(), &widget("w", 2)).await.unwrap();
        let err = ws.patch("w", &PatchParams::default(), &Patch::Strategic(json!({"spec": {"size": 3}}))).await.unwrap_err();
        let s = status(&err);
        assert_eq!((s.code, s.reason.as_str()), (415, "UnsupportedMediaType"), "{s:?}");
    }

    async fn server_side_apply_tracks_owners_and_conflicts_unless_forced(cx: Tier) {
        let cms: Api<ConfigMap> = cx.api();
        let apply = |data: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": data});
        let alice = PatchParams::apply("alice");
        let created = cms.patch("a", &alice, &Patch::Apply(apply(json!({"k": "1", "owned": "alice"})))).await.unwrap();
        assert_eq!(managers(&created.metadata), [("alice".to_string(), "Apply".to_string())]);

        // An identical apply changes nothing at all.
        let again = cms.patch("a", &alice, &Patch::Apply(apply(json!({"k": "1", "owned": "alice"})))).await.unwrap();
        assert_eq!(again.metadata.resource_version, created.metadata.resource_version);

        // Another manager touching alice's field conflicts…
        let bob = PatchParams::apply("bob");
        let err = cms.patch("a", &bob, &Patch::Apply(apply(json!({"k": "2"})))).await.unwrap_err();
        let s = status(&err);
        assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"), "{s:?}");
        assert!(s.message.contains(r#"conflict with "alice""#) && s.message.contains(".data.k"), "{}", s.message);
        let causes = s.details.as_ref().map(|d| d.causes.clone()).unwrap_or_default();
        assert!(causes.iter().any(|c| c.field == ".data.k" && c.reason == "FieldManagerConflict"), "{causes:?}");

        // …unless forced, which takes the field over.
        let forced = cms.patch("a", &bob.clone().force(), &Patch::Apply(apply(json!({"k": "2"})))).await.unwrap();
        assert_eq!(forced.data.as_ref().unwrap()["k"], "2");
        assert_eq!(managers(&forced.metadata), [("alice".to_string(), "Apply".to_string()), ("bob".to_string(), "Apply".to_string())]);

        // Alice drops a field she alone owns: it is removed.
        let dropped = cms.patch("a", &alice, &Patch::Apply(apply(json!({})))).await.unwrap();
        assert_eq!(dropped.data.unwrap().keys().collect::<Vec<_>>(), ["k"]);

        // A merge patch is an Update by its own manager.
        let updated = cms.patch("a", &PatchParams { field_manager: Some("carol".into()), ..PatchParams::default() }, &Patch::Merge(json!({"data": {"c": "3"}}))).await.unwrap();
        assert!(managers(&updated.metadata).contains(&("carol".to_string(), "Update".to_string())));

        // Apply without a field manager is rejected.
        let err = cms.patch("a", &PatchParams::default(), &Patch::Apply(apply(json!({})))).await.unwrap_err();
        let s = status(&err);
        assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"), "{s:?}");
        assert!(s.message.contains("fieldManager: Required value: is required for apply patch"), "{}", s.message);
    }

    async fn managed_fields_record_exactly_what_each_manager_set(cx: Tier) {
        let cms: Api<ConfigMap> = cx.api();
        let pp = PatchParams { field_manager: Some("writer".into()), ..PatchParams::default() };
        let got = cms.patch("a", &PatchParams::apply("applier"), &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": {"l": "1"}}, "data": {"k": "1"}}))).await.unwrap();
        let applied = got.metadata.managed_fields.unwrap()[0].fields_v1.clone().unwrap().0;
        assert_eq!(applied, json!({"f:data": {"f:k": {}}, "f:metadata": {"f:labels": {"f:l": {}}}}));
        let got = cms.patch("a", &pp, &Patch::Merge(json!({"data": {"u": "2"}}))).await.unwrap();
        let update = got.metadata.managed_fields.unwrap().into_iter().find(|m| m.manager.as_deref() == Some("writer")).unwrap();
        assert_eq!(update.operation.as_deref(), Some("Update"));
        assert_eq!(update.fields_v1.unwrap().0, json!({"f:data": {"f:u": {}}}), "an existing map gets no marker");
        // A map an update creates is marked with ".".
        let got = cms.patch("a", &pp, &Patch::Merge(json!({"metadata": {"annotations": {"n": "1"}}}))).await.unwrap();
        let update = got.metadata.managed_fields.unwrap().into_iter().find(|m| m.manager.as_deref() == Some("writer")).unwrap();
        assert_eq!(update.fields_v1.unwrap().0, json!({"f:data": {"f:u": {}}, "f:metadata": {"f:annotations": {".": {}, "f:n": {}}}}));

        // A create is an Update of everything it sets, maps marked.
        let mut c = crate::cm("created");
        c.metadata.labels = Some([("l".to_string(), "1".to_string())].into());
        let created = cms.create(&PostParams { field_manager: Some("creator".into()), ..PostParams::default() }, &c).await.unwrap();
        let entry = &created.metadata.managed_fields.unwrap()[0];
        assert_eq!((entry.manager.as_deref(), entry.operation.as_deref()), (Some("creator"), Some("Update")));
        assert_eq!(entry.fields_v1.clone().unwrap().0, json!({"f:data": {".": {}, "f:k": {}}, "f:metadata": {"f:labels": {".": {}, "f:l": {}}}}));

        // The same for a custom resource, whose spec is a map too.
        let ws = widgets(&cx).await;
        let w = ws.create(&PostParams { field_manager: Some("creator".into()), ..PostParams::default() }, &widget("w", 2)).await.unwrap();
        let entry = &w.metadata.managed_fields.unwrap()[0];
        assert_eq!(entry.fields_v1.clone().unwrap().0, json!({"f:spec": {".": {}, "f:colour": {}, "f:size": {}}}));
    }

    async fn a_conflict_inside_a_list_map_names_the_entry_by_its_key(cx: Tier) {
        let deployments: Api<Deployment> = cx.api();
        let apply = |image: &str| {
            let mut d = serde_json::to_value(deployment("d")).unwrap();
            d["apiVersion"] = json!("apps/v1");
            d["kind"] = json!("Deployment");
            d["spec"]["template"]["spec"]["containers"] = json!([{"name": "app", "image": image}]);
            Patch::Apply(d)
        };
        deployments.patch("d", &PatchParams::apply("alice"), &apply("app:1")).await.unwrap();
        let err = deployments.patch("d", &PatchParams::apply("bob"), &apply("app:2")).await.unwrap_err();
        let s = status(&err);
        assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"), "{s:?}");
        let field = r#".spec.template.spec.containers[name="app"].image"#;
        assert!(s.message.contains(&format!(r#"conflict with "alice": {field}"#)), "{}", s.message);
        let causes = s.details.as_ref().map(|d| d.causes.clone()).unwrap_or_default();
        assert!(causes.iter().any(|c| c.field == field && c.reason == "FieldManagerConflict"), "{causes:?}");
    }
}
