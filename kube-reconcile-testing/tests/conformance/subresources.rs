//! Subresources and answers beyond plain objects: `scale` (built-in and a CRD's),
//! `serviceaccounts/token` with its review, eviction and binding, access reviews,
//! metadata-only responses, and the objects every cluster starts with.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        authentication::v1::{
            SelfSubjectReview, TokenRequest, TokenRequestSpec, TokenReview, TokenReviewSpec,
        },
        authorization::v1::{
            ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
        },
        core::v1::{Binding, ConfigMap, Namespace, ObjectReference, Pod, Service, ServiceAccount},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api,
    api::{
        ApiResource, DynamicObject, EvictParams, GroupVersionKind, ListParams, Patch, PatchParams,
        PostParams,
    },
    core::PartialObjectMeta,
    runtime::{WatchStreamExt, watcher},
};
use kube_reconcile_test_support::both_tiers;
use serde_json::json;

use crate::{cm, status};

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "web", "image": "nginx:1.27" }] },
            },
        },
    }))
    .expect("a valid Deployment")
}

/// A CRD whose version declares `status` and `scale` subresources.
fn scalable_crd(group: &str) -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "metadata": { "name": format!("pools.{group}") },
        "spec": {
            "group": group,
            "names": { "kind": "Pool", "plural": "pools", "singular": "pool", "listKind": "PoolList" },
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {
                    "status": {},
                    "scale": { "specReplicasPath": ".spec.size", "statusReplicasPath": ".status.size", "labelSelectorPath": ".status.selector" },
                },
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": { "type": "object", "properties": { "size": { "type": "integer" } } },
                        "status": { "type": "object", "properties": { "size": { "type": "integer" }, "selector": { "type": "string" } } },
                    },
                } },
            }],
        },
    }))
    .expect("a CRD")
}

both_tiers! {
    async fn deployments_scale_through_their_scale_subresource(cx: Tier) {
        let deployments: Api<Deployment> = cx.api();
        deployments.create(&PostParams::default(), &deployment("web", 2)).await.unwrap();
        let scale = deployments.get_scale("web").await.unwrap();
        assert_eq!(scale.spec.as_ref().and_then(|s| s.replicas), Some(2));
        assert_eq!(scale.status.as_ref().and_then(|s| s.selector.clone()).as_deref(), Some("app=web"));
        let patched = deployments
            .patch_scale("web", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "replicas": 5 } })))
            .await
            .unwrap();
        assert_eq!(patched.spec.and_then(|s| s.replicas), Some(5));
        assert_eq!(deployments.get("web").await.unwrap().spec.replicas, Some(5));
        let mut stale = scale.clone();
        stale.spec = Some(k8s_openapi::api::autoscaling::v1::ScaleSpec { replicas: Some(1) });
        let err = deployments.replace_scale("web", &PostParams::default(), &stale).await.unwrap_err();
        assert_eq!(status(&err).code, 409, "an old resourceVersion conflicts");
        stale.metadata.resource_version = None;
        let replaced = deployments.replace_scale("web", &PostParams::default(), &stale).await.unwrap();
        assert_eq!(replaced.spec.and_then(|s| s.replicas), Some(1));
        let err = deployments
            .patch_scale("web", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "replicas": -1 } })))
            .await
            .unwrap_err();
        assert_eq!(status(&err).code, 422);
    }

    async fn a_crd_scale_subresource_reads_and_writes_its_declared_paths(cx: Tier) {
        let group = format!("{}.conformance.test", cx.namespace());
        cx.install_crd(&scalable_crd(&group)).await;
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(&group, "v1", "Pool"));
        let pools: Api<DynamicObject> = Api::namespaced_with(cx.client(), cx.namespace(), &resource);
        let mut pool = DynamicObject::new("p", &resource);
        pool.data = json!({ "spec": { "size": 3 } });
        pools.create(&PostParams::default(), &pool).await.unwrap();
        pools
            .patch_status("p", &PatchParams::default(), &Patch::Merge(json!({ "status": { "size": 2, "selector": "pool=p" } })))
            .await
            .unwrap();
        let scale = pools.get_scale("p").await.unwrap();
        assert_eq!(scale.spec.and_then(|s| s.replicas), Some(3));
        let scale_status = scale.status.unwrap();
        assert_eq!((scale_status.replicas, scale_status.selector.as_deref()), (2, Some("pool=p")));
        pools
            .patch_scale("p", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "replicas": 7 } })))
            .await
            .unwrap();
        assert_eq!(pools.get("p").await.unwrap().data["spec"]["size"], 7);
    }

    async fn a_service_account_token_is_issued_and_reviewed(cx: Tier) {
        let accounts: Api<ServiceAccount> = cx.api();
        let mut account = ServiceAccount::default();
        account.metadata.name = Some("robot".into());
        accounts.create(&PostParams::default(), &account).await.unwrap();
        let request = TokenRequest { spec: Some(TokenRequestSpec { expiration_seconds: Some(3600), ..Default::default() }), ..Default::default() };
        let issued = accounts.create_token_request("robot", &PostParams::default(), &request).await.unwrap();
        let token = issued.status.and_then(|s| s.token).expect("a token");
        assert_eq!(token.split('.').count(), 3, "a JSON Web Token");
        let reviews: Api<TokenReview> = Api::all(cx.client());
        let review = TokenReview { spec: TokenReviewSpec { token, ..Default::default() }, ..Default::default() };
        let reviewed = reviews.create(&PostParams::default(), &review).await.unwrap().status.expect("a status");
        assert_eq!(reviewed.authenticated, Some(true), "{reviewed:?}");
        let user = reviewed.user.expect("a user");
        assert_eq!(user.username.as_deref(), Some(format!("system:serviceaccount:{}:robot", cx.namespace()).as_str()));
        let forged = TokenReview { spec: TokenReviewSpec { token: "not.a.token".into(), ..Default::default() }, ..Default::default() };
        let rejected = reviews.create(&PostParams::default(), &forged).await.unwrap().status.expect("a status");
        assert_ne!(rejected.authenticated, Some(true));
        let err = accounts.create_token_request("nobody", &PostParams::default(), &request).await.unwrap_err();
        assert_eq!(status(&err).code, 404);
    }

    async fn the_admin_is_who_it_says_and_may_do_everything(cx: Tier) {
        let me = Api::<SelfSubjectReview>::all(cx.client())
            .create(&PostParams::default(), &SelfSubjectReview::default())
            .await
            .unwrap();
        let user = me.status.and_then(|s| s.user_info).expect("user info");
        assert!(user.groups.unwrap_or_default().contains(&"system:masters".to_string()));
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes { verb: Some("delete".into()), resource: Some("secrets".into()), namespace: Some(cx.namespace().into()), ..Default::default() }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = Api::<SelfSubjectAccessReview>::all(cx.client()).create(&PostParams::default(), &review).await.unwrap();
        assert!(answer.status.expect("a status").allowed);
        // Reviews are answered, not stored.
        let err = Api::<SelfSubjectAccessReview>::all(cx.client()).list(&ListParams::default()).await.unwrap_err();
        assert!(matches!(status(&err).code, 404 | 405), "{err:?}");
    }

    async fn pods_are_bound_once_and_evicted(cx: Tier) {
        let pods: Api<Pod> = cx.api();
        for name in ["a", "b"] {
            let pod: Pod = serde_json::from_value(json!({
                "metadata": { "name": name },
                "spec": { "containers": [{ "name": "c", "image": "busybox" }] },
            })).unwrap();
            pods.create(&PostParams::default(), &pod).await.unwrap();
        }
        let mut binding = Binding { target: ObjectReference { kind: Some("Node".into()), name: Some("node-1".into()), ..Default::default() }, ..Default::default() };
        binding.metadata.name = Some("b".into());
        let err = pods.create_subresource::<_, kube::core::Status>("binding", "a", &PostParams::default(), &binding).await.unwrap_err();
        assert_eq!(status(&err).code, 400, "the names must match");
        binding.metadata.name = Some("a".into());
        let _: kube::core::Status = pods.create_subresource("binding", "a", &PostParams::default(), &binding).await.unwrap();
        assert_eq!(pods.get("a").await.unwrap().spec.unwrap().node_name.as_deref(), Some("node-1"));
        let err = pods.create_subresource::<_, kube::core::Status>("binding", "a", &PostParams::default(), &binding).await.unwrap_err();
        assert_eq!(status(&err).code, 409, "a bound pod is not bound again");
        // An unscheduled pod ran nothing: its log is empty.
        assert_eq!(pods.logs("b", &kube::api::LogParams::default()).await.unwrap(), "");
        pods.evict("b", &EvictParams::default()).await.unwrap();
        assert!(pods.get_opt("b").await.unwrap().is_none(), "an unscheduled pod goes at once");
    }

    async fn metadata_only_reads_lists_and_watches(cx: Tier) {
        let cms: Api<ConfigMap> = cx.api();
        cms.create(&PostParams::default(), &cm("m")).await.unwrap();
        let meta = cms.get_metadata("m").await.unwrap();
        assert_eq!(meta.metadata.name.as_deref(), Some("m"));
        assert_eq!(meta.types.as_ref().map(|t| t.kind.as_str()), Some("PartialObjectMetadata"));
        let list = cms.list_metadata(&ListParams::default()).await.unwrap();
        assert_eq!(list.items.len(), 1);
        let metas: Api<PartialObjectMeta<ConfigMap>> = cx.api();
        let first = watcher(metas, watcher::Config::default())
            .applied_objects()
            .boxed()
            .try_next()
            .await
            .unwrap()
            .expect("an object");
        assert_eq!(first.metadata.name.as_deref(), Some("m"));
    }

    async fn every_cluster_starts_with_its_system_objects(cx: Tier) {
        let namespaces: Api<Namespace> = Api::all(cx.client());
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            assert!(namespaces.get_opt(ns).await.unwrap().is_some(), "{ns}");
        }
        let kubernetes = Api::<Service>::namespaced(cx.client(), "default").get("kubernetes").await.unwrap();
        let spec = kubernetes.spec.unwrap();
        assert_eq!(spec.ports.unwrap()[0].port, 443);
        assert!(spec.cluster_ip.is_some());
        let discovery = kube::Discovery::new(cx.client()).run_aggregated().await.unwrap();
        let groups: Vec<&str> = discovery.groups().map(kube::discovery::ApiGroup::name).collect();
        for group in ["", "apps", "batch", "apiregistration.k8s.io", "rbac.authorization.k8s.io", "certificates.k8s.io", "policy", "storage.k8s.io"] {
            assert!(groups.contains(&group), "{group} in {groups:?}");
        }
    }
}
