//! Where the servers differ on purpose: each test asserts each server's own behaviour.
//! The table in the `kube_reconcile_testing` docs lists these.

use kube_reconcile_test_support::both_tiers;
use std::time::Duration;

use k8s_openapi::{
    api::core::v1::{ConfigMap, Namespace},
    apimachinery::pkg::apis::meta::v1::OwnerReference,
};
use kube::{
    Api, Resource,
    api::{DeleteParams, PostParams},
};

use crate::{cm, status};

both_tiers! {
    async fn owner_references_are_collected_only_where_a_garbage_collector_runs(cx: Tier) {
        let cms: Api<ConfigMap> = cx.api();
        let owner = cms.create(&PostParams::default(), &cm("owner")).await.unwrap();
        let mut child = cm("child");
        child.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: "owner".into(),
            uid: owner.metadata.uid.clone().unwrap(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]);
        cms.create(&PostParams::default(), &child).await.unwrap();
        cms.delete("owner", &DeleteParams::background()).await.unwrap();
        let mut gone = false;
        for _ in 0..20 {
            if let Err(e) = cms.get("child").await {
                assert_eq!(status(&e).code, 404);
                gone = true;
                break;
            }
            if !cx.collects_garbage() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(gone, cx.collects_garbage(), "{}: dependents collected iff a garbage collector runs", cx.name());
        let _ = ConfigMap::kind(&());
    }

    async fn a_deleted_namespace_is_emptied_only_where_its_controller_runs(cx: Tier) {
        let namespaces: Api<Namespace> = Api::all(cx.client());
        let cms: Api<ConfigMap> = cx.api();
        cms.create(&PostParams::default(), &cm("inside")).await.unwrap();
        namespaces.delete(cx.namespace(), &DeleteParams::default()).await.unwrap();
        let ns = namespaces.get_opt(cx.namespace()).await.unwrap();
        if cx.collects_garbage() {
            assert!(ns.is_none(), "the embedded server empties and removes it");
            assert_eq!(status(&cms.get("inside").await.unwrap_err()).code, 404);
        } else {
            let ns = ns.expect("kube-apiserver alone leaves it Terminating");
            assert_eq!(ns.status.and_then(|s| s.phase).as_deref(), Some("Terminating"));
            assert!(cms.get("inside").await.is_ok());
            // Nothing new may be created in a terminating namespace.
            let err = cms.create(&PostParams::default(), &cm("late")).await.unwrap_err();
            assert_eq!(status(&err).code, 403);
        }
    }
}
