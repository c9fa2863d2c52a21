//! Server-owned metadata: resource versions, conflicts, uid, timestamps, generation, the
//! status subresource and `metav1.Status` errors.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use kube_reconcile_test_support::both_tiers;
use serde_json::json;

use kube_reconcile_test_support::widget::Widget;

use crate::{cm, rv_of, status, widget, widgets};

both_tiers! {
    async fn resource_versions_increase_strictly_across_kinds(cx: Tier) {
        let cms: Api<ConfigMap> = cx.api();
        let secrets: Api<Secret> = cx.api();
        let created = cms.create(&PostParams::default(), &cm("a")).await.unwrap();
        let mut secret = Secret::default();
        secret.metadata.name = Some("s".into());
        let secret = secrets.create(&PostParams::default(), &secret).await.unwrap();
        let patch = json!({"data": {"k": "w"}});
        let patched = cms.patch("a", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        let mut replaced = patched.clone();
        replaced.data = Some([("k".to_string(), "x".to_string())].into());
        let replaced = cms.replace("a", &PostParams::default(), &replaced).await.unwrap();
        let rvs = [rv_of(&created.metadata), rv_of(&secret.metadata), rv_of(&patched.metadata), rv_of(&replaced.metadata)];
        assert!(rvs.windows(2).all(|w| w[0] < w[1]), "{rvs:?}");
        let list = cms.list(&kube::api::ListParams::default()).await.unwrap();
        let list_rv: u64 = list.metadata.resource_version.unwrap().parse().unwrap();
        assert!(list_rv >= rvs[3], "a list is at least as new as the last write");
    }

    async fn stale_writes_and_duplicate_names_get_409(cx: Tier) {
        let cms: Api<ConfigMap> = cx.api();
        let created = cms.create(&PostParams::default(), &cm("a")).await.unwrap();

        let err = cms.create(&PostParams::default(), &cm("a")).await.unwrap_err();
        let s = status(&err);
        assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists"), "{s:?}");
        assert_eq!(s.status, Some(kube::core::response::StatusSummary::Failure));
        let details = s.details.as_ref().expect("details");
        assert_eq!((details.name.as_str(), details.kind.as_str()), ("a", "configmaps"));

        let patch = json!({"data": {"k": "newer"}});
        cms.patch("a", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        let mut stale = created.clone();
        stale.data = Some([("k".to_string(), "stale".to_string())].into());
        let err = cms.replace("a", &PostParams::default(), &stale).await.unwrap_err();
        let s = status(&err);
        assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"), "{s:?}");
        assert!(s.message.contains("the object has been modified"), "{}", s.message);

        // A merge patch carrying a stale resourceVersion is a precondition too.
        let patch = json!({"metadata": {"resourceVersion": created.metadata.resource_version}, "data": {"k": "p"}});
        let err = cms.patch("a", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap_err();
        assert_eq!(status(&err).code, 409);
    }

    async fn the_server_sets_uid_creation_timestamp_and_generation(cx: Tier) {
        let ws = widgets(&cx).await;
        let w = ws.create(&PostParams::default(), &widget("w", 2)).await.unwrap();
        let uid = w.metadata.uid.clone().expect("uid");
        assert_eq!(uid.len(), 36, "a UUID: {uid}");
        assert!(w.metadata.creation_timestamp.is_some());
        assert_eq!(w.metadata.generation, Some(1));
        // Client-supplied server fields are ignored on create.
        let mut mine = widget("mine", 2);
        mine.metadata.uid = Some("not-a-uid".into());
        mine.metadata.generation = Some(7);
        let created = ws.create(&PostParams::default(), &mine).await.unwrap();
        assert_ne!(created.metadata.uid.as_deref(), Some("not-a-uid"));
        assert_eq!(created.metadata.generation, Some(1));
        // A recreated name is a new object.
        ws.delete("w", &kube::api::DeleteParams::default()).await.unwrap();
        let again = ws.create(&PostParams::default(), &widget("w", 2)).await.unwrap();
        assert_ne!(again.metadata.uid, Some(uid));
    }

    async fn generation_moves_with_the_spec_and_deletion_only(cx: Tier) {
        let ws = widgets(&cx).await;
        let g = |w: &Widget| w.metadata.generation.expect("generation");
        let w = ws.create(&PostParams::default(), &widget("w", 2)).await.unwrap();
        assert_eq!(g(&w), 1);
        let pp = PatchParams::default();
        let w = ws.patch("w", &pp, &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}, "annotations": {"x": "y"}}}))).await.unwrap();
        assert_eq!(g(&w), 1, "labels and annotations");
        let w = ws.patch("w", &pp, &Patch::Merge(json!({"metadata": {"finalizers": ["test/hold"]}}))).await.unwrap();
        assert_eq!(g(&w), 1, "finalizers");
        let w = ws.patch_status("w", &pp, &Patch::Merge(json!({"status": {"phase": "Ready"}}))).await.unwrap();
        assert_eq!(g(&w), 1, "status");
        let w = ws.patch("w", &pp, &Patch::Merge(json!({"spec": {"size": 3}}))).await.unwrap();
        assert_eq!(g(&w), 2, "spec");
        let same = ws.patch("w", &pp, &Patch::Merge(json!({"spec": {"size": 3}}))).await.unwrap();
        assert_eq!(g(&same), 2, "a no-op spec write");
        assert_eq!(same.metadata.resource_version, w.metadata.resource_version, "a no-op write keeps the resourceVersion");
        ws.delete("w", &kube::api::DeleteParams::default()).await.unwrap();
        let w = ws.get("w").await.unwrap();
        assert!(w.metadata.deletion_timestamp.is_some());
        assert_eq!(g(&w), 3, "deletionTimestamp");
        ws.patch("w", &pp, &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.unwrap();
    }

    async fn the_status_subresource_splits_spec_and_status_writes(cx: Tier) {
        let ws = widgets(&cx).await;
        ws.create(&PostParams::default(), &widget("w", 2)).await.unwrap();
        let pp = PatchParams::default();
        // The main resource ignores status.
        let w = ws.patch("w", &pp, &Patch::Merge(json!({"spec": {"size": 4}, "status": {"phase": "Ignored"}}))).await.unwrap();
        assert_eq!(w.spec.size, 4);
        assert!(w.status.as_ref().and_then(|s| s.phase.clone()).is_none(), "{:?}", w.status);
        // The status subresource ignores everything but status.
        let w = ws.patch_status("w", &pp, &Patch::Merge(json!({"spec": {"size": 9}, "status": {"phase": "Ready"}}))).await.unwrap();
        assert_eq!(w.spec.size, 4);
        assert_eq!(w.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Ready"));
        // PUT on status with a stale resourceVersion conflicts like any write.
        let mut stale = w.clone();
        ws.patch_status("w", &pp, &Patch::Merge(json!({"status": {"phase": "Later"}}))).await.unwrap();
        stale.status.as_mut().unwrap().phase = Some("Stale".into());
        let err = ws.replace_status("w", &PostParams::default(), &stale).await.unwrap_err();
        assert_eq!(status(&err).code, 409);
        // Status writes keep labels as they are.
        let got = ws.get_status("w").await.unwrap();
        assert_eq!(got.status.unwrap().phase.as_deref(), Some("Later"));
    }

    async fn errors_are_metav1_status_objects(cx: Tier) {
        let cms: Api<ConfigMap> = cx.api();
        let err = cms.get("missing").await.unwrap_err();
        let s = status(&err);
        assert_eq!((s.code, s.reason.as_str()), (404, "NotFound"));
        assert_eq!(s.message, r#"configmaps "missing" not found"#);
        let details = s.details.as_ref().expect("details");
        assert_eq!((details.name.as_str(), details.kind.as_str(), details.group.as_str()), ("missing", "configmaps", ""));

        let mut bad = cm("Not_A_Name");
        bad.metadata.name = Some("Not_A_Name".into());
        let err = cms.create(&PostParams::default(), &bad).await.unwrap_err();
        let s = status(&err);
        assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"), "{s:?}");
        let causes = s.details.as_ref().map(|d| d.causes.clone()).unwrap_or_default();
        assert!(causes.iter().any(|c| c.field == "metadata.name"), "{causes:?}");

        let ws = widgets(&cx).await;
        let err = ws.get("missing").await.unwrap_err();
        let s = status(&err);
        assert_eq!(s.message, r#"widgets.test.kube-reconcile.dev "missing" not found"#);
        assert_eq!(s.details.as_ref().map(|d| d.group.as_str()), Some("test.kube-reconcile.dev"));
    }
}
