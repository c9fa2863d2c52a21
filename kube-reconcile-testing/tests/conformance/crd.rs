//! CRDs: registered by creating them, schema validation with field paths, defaults,
//! printer columns in Table output.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, CustomResourceExt,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams},
};
use kube_reconcile_test_support::both_tiers;
use serde_json::json;

use kube_reconcile_test_support::widget::Widget;

use crate::{status, widget, widgets};

/// A CRD of our own for this test, with `pattern` and `format` constraints.
fn gadget_crd(group: &str) -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("gadgets.{group}")},
        "spec": {
            "group": group,
            "names": {"kind": "Gadget", "plural": "gadgets", "singular": "gadget", "listKind": "GadgetList"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": {
                        "type": "object",
                        "required": ["code"],
                        "properties": {
                            "code": {"type": "string", "pattern": "^[A-Z]{3}$"},
                            "replicas": {"type": "integer", "minimum": 0, "default": 1},
                            "mode": {"type": "string", "enum": ["fast", "safe"]},
                        },
                    }},
                }},
            }],
        },
    }))
    .expect("a CRD")
}

both_tiers! {
    async fn a_created_crd_is_established_and_served_at_once(cx: Tier) {
        // A group unique to this namespace, so each run registers it afresh.
        let group = format!("{}.conformance.test", cx.namespace());
        let crd = gadget_crd(&group);
        let crds: Api<CustomResourceDefinition> = Api::all(cx.client());
        let created = crds.create(&PostParams::default(), &crd).await.unwrap();
        assert_eq!(created.metadata.generation, Some(1));
        cx.install_crd(&crd).await;
        let got = crds.get(crd.metadata.name.as_deref().unwrap()).await.unwrap();
        let conditions = got.status.unwrap().conditions.unwrap_or_default();
        for kind in ["NamesAccepted", "Established"] {
            assert!(conditions.iter().any(|c| c.type_ == kind && c.status == "True"), "{kind}: {conditions:?}");
        }
        let gvk = GroupVersionKind::gvk(&group, "v1", "Gadget");
        let gadgets: Api<DynamicObject> = Api::namespaced_with(cx.client(), cx.namespace(), &ApiResource::from_gvk(&gvk));
        let mut obj = DynamicObject::new("g", &ApiResource::from_gvk(&gvk));
        obj.data = json!({"spec": {"code": "ABC"}});
        let made = gadgets.create(&PostParams::default(), &obj).await.unwrap();
        assert_eq!(made.data["spec"]["replicas"], 1, "defaults applied on create");

        // Schema validation: every violation, each with its field path.
        let mut bad = DynamicObject::new("bad", &ApiResource::from_gvk(&gvk));
        bad.data = json!({"spec": {"code": "abcd", "replicas": -1, "mode": "slow"}});
        let err = gadgets.create(&PostParams::default(), &bad).await.unwrap_err();
        let s = status(&err);
        assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"), "{s:?}");
        let mut fields: Vec<String> = s.details.as_ref().unwrap().causes.iter().map(|c| c.field.clone()).collect();
        fields.sort();
        assert_eq!(fields, ["spec.code", "spec.mode", "spec.replicas"], "{s:?}");
        assert!(s.message.contains(r#"spec.code: Invalid value: "abcd": spec.code in body should match '^[A-Z]{3}$'"#), "{}", s.message);
        assert!(s.message.contains("spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0"), "{}", s.message);
        assert!(s.message.contains(r#"spec.mode: Unsupported value: "slow": supported values: "fast", "safe""#), "{}", s.message);

        let mut missing = DynamicObject::new("missing", &ApiResource::from_gvk(&gvk));
        missing.data = json!({"spec": {}});
        let err = gadgets.create(&PostParams::default(), &missing).await.unwrap_err();
        assert!(status(&err).message.contains("spec.code: Required value"), "{}", status(&err).message);

        // Unknown fields are pruned, not stored.
        let pruned = gadgets
            .patch("g", &PatchParams::default(), &Patch::Merge(json!({"spec": {"unknown": 1}})))
            .await
            .unwrap();
        assert!(pruned.data["spec"].get("unknown").is_none(), "{}", pruned.data);
    }

    async fn widget_schema_from_the_rust_type_validates_and_defaults(cx: Tier) {
        let ws = widgets(&cx).await;
        let err = ws.create(&PostParams::default(), &widget("big", 11)).await.unwrap_err();
        let s = status(&err);
        assert_eq!(s.code, 422);
        assert!(s.message.contains("spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10"), "{}", s.message);
        let raw: Api<DynamicObject> = Api::namespaced_with(cx.client(), cx.namespace(), &ApiResource::erase::<Widget>(&()));
        let mut w = DynamicObject::new("plain", &ApiResource::erase::<Widget>(&()));
        w.data = json!({"spec": {"size": 1}});
        let made = raw.create(&PostParams::default(), &w).await.unwrap();
        assert_eq!(made.data["spec"]["colour"], "blue", "the serde default is a schema default");
        let _ = Widget::crd();
    }

    async fn tables_show_the_printer_columns(cx: Tier) {
        let ws = widgets(&cx).await;
        ws.create(&PostParams::default(), &widget("w", 7)).await.unwrap();
        let path = format!("/apis/test.kube-reconcile.dev/v1/namespaces/{}/widgets", cx.namespace());
        let accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        let (code, content_type, table) = cx.get_json(&path, accept).await;
        assert_eq!(code, 200);
        assert!(content_type.starts_with("application/json"), "{content_type}");
        assert_eq!(table["kind"], "Table");
        assert_eq!(table["apiVersion"], "meta.k8s.io/v1");
        let columns: Vec<&str> = table["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(columns, ["Name", "Size", "Phase"], "printer columns replace the default Age column");
        assert_eq!(table["columnDefinitions"][0]["format"], "name");
        let row = &table["rows"][0];
        assert_eq!(row["cells"][0], "w");
        assert_eq!(row["cells"][1], 7);
        assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(row["object"]["metadata"]["name"], "w");
    }
}
