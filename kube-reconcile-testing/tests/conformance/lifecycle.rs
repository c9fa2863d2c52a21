//! Finalizers, `deletionTimestamp` and what DELETE answers.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions},
};
use kube_reconcile_test_support::both_tiers;
use serde_json::json;

use crate::{cm, status, widget, widgets};

both_tiers! {
    async fn finalizers_hold_deletion_until_removed(cx: Tier) {
        let ws = widgets(&cx).await;
        let mut w = widget("w", 2);
        w.metadata.finalizers = Some(vec!["test/hold".into()]);
        ws.create(&PostParams::default(), &w).await.unwrap();

        let answer = ws.delete("w", &DeleteParams::default()).await.unwrap();
        let deleting = answer.left().expect("an object still held by a finalizer comes back");
        assert!(deleting.metadata.deletion_timestamp.is_some());
        assert_eq!(deleting.metadata.deletion_grace_period_seconds, Some(0));
        assert_eq!(deleting.metadata.finalizers.as_deref(), Some(&["test/hold".to_string()][..]));

        // A second delete changes nothing.
        let again = ws.delete("w", &DeleteParams::default()).await.unwrap().left().unwrap();
        assert_eq!(again.metadata.deletion_timestamp, deleting.metadata.deletion_timestamp);

        // No new finalizers while deleting; spec writes are still allowed.
        let err = ws
            .patch("w", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": ["test/hold", "test/late"]}})))
            .await
            .unwrap_err();
        let s = status(&err);
        assert_eq!(s.code, 422, "{s:?}");
        assert!(s.message.contains("no new finalizers can be added if the object is being deleted"), "{}", s.message);

        // Removing the last finalizer completes the deletion.
        let patch = json!([
            {"op": "test", "path": "/metadata/finalizers", "value": ["test/hold"]},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ]);
        ws.patch("w", &PatchParams::default(), &Patch::Json::<()>(serde_json::from_value(patch).unwrap()))
            .await
            .unwrap();
        assert_eq!(status(&ws.get("w").await.unwrap_err()).code, 404);
    }

    async fn delete_answers_with_a_status_and_honours_preconditions(cx: Tier) {
        let cms: Api<ConfigMap> = cx.api();
        let created = cms.create(&PostParams::default(), &cm("a")).await.unwrap();

        let wrong = DeleteParams {
            preconditions: Some(Preconditions { uid: Some("00000000-0000-0000-0000-000000000000".into()), resource_version: None }),
            ..DeleteParams::default()
        };
        let err = cms.delete("a", &wrong).await.unwrap_err();
        let s = status(&err);
        assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"), "{s:?}");
        let expected = format!(
            r#"Operation cannot be fulfilled on ConfigMap "a": the UID in the precondition (00000000-0000-0000-0000-000000000000) does not match the UID in record ({}). The object might have been deleted and then recreated"#,
            created.metadata.uid.as_deref().unwrap()
        );
        assert_eq!(s.message, expected);

        let stale_rv = DeleteParams {
            preconditions: Some(Preconditions { uid: None, resource_version: Some("1".into()) }),
            ..DeleteParams::default()
        };
        let err = cms.delete("a", &stale_rv).await.unwrap_err();
        let s = status(&err);
        assert_eq!(s.code, 409);
        assert!(s.message.contains("the ResourceVersion in the precondition (1) does not match the ResourceVersion in record"), "{}", s.message);

        let right = DeleteParams {
            preconditions: Some(Preconditions { uid: created.metadata.uid.clone(), resource_version: created.metadata.resource_version.clone() }),
            ..DeleteParams::default()
        };
        let deleted = cms.delete("a", &right).await.unwrap();
        // An object deleted at once is answered with a Success Status naming it.
        let done = deleted.right().expect("a Status for an object deleted at once");
        assert_eq!(done.status, Some(kube::core::response::StatusSummary::Success));
        let details = done.details.expect("details");
        assert_eq!((details.name.as_str(), details.kind.as_str(), details.group.as_str()), ("a", "configmaps", ""));
        assert_eq!(Some(details.uid), created.metadata.uid);
        assert_eq!(status(&cms.get("a").await.unwrap_err()).code, 404);
        assert_eq!(status(&cms.delete("a", &DeleteParams::default()).await.unwrap_err()).code, 404);
    }
}
