//! Discovery (legacy and aggregated), `/version`, and events seen through core/v1.

use kube_reconcile_test_support::both_tiers;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent};
use kube::{
    Api, Discovery, Resource,
    api::{ListParams, PostParams},
    runtime::events::{Event, EventType, Recorder, Reporter},
};

use crate::{cm, widgets};

both_tiers! {
    async fn discovery_finds_built_ins_and_custom_resources_both_ways(cx: Tier) {
        widgets(&cx).await;
        for aggregated in [false, true] {
            let discovery = Discovery::new(cx.client()).filter(&["", "apps", "test.kube-reconcile.dev"]);
            let discovery = if aggregated { discovery.run_aggregated().await } else { discovery.run().await }.unwrap();
            let (widgets, caps) = discovery
                .groups()
                .flat_map(kube::discovery::ApiGroup::recommended_resources)
                .find(|(r, _)| r.kind == "Widget")
                .unwrap_or_else(|| panic!("Widget discovered (aggregated: {aggregated})"));
            assert_eq!((widgets.plural.as_str(), widgets.group.as_str()), ("widgets", "test.kube-reconcile.dev"));
            assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
            assert!(caps.subresources.iter().any(|(r, _)| r.plural == "status"), "aggregated: {aggregated}: {:?}", caps.subresources);
            let core = discovery.get("").expect("core group");
            assert!(core.recommended_resources().iter().any(|(r, _)| r.kind == "ConfigMap"));
        }
        let (code, content_type, list) = cx.get_json("/apis", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json").await;
        assert_eq!(code, 200);
        assert!(content_type.contains("as=APIGroupDiscoveryList"), "{content_type}");
        assert_eq!(list["kind"], "APIGroupDiscoveryList");
    }

    async fn version_reports_a_release(cx: Tier) {
        let info = cx.client().apiserver_version().await.unwrap();
        assert_eq!(info.major, "1");
        assert!(info.git_version.starts_with("v1."), "{info:?}");
        assert!(!info.git_version.contains("$Format"), "version ldflags set: {info:?}");
        let minor: u32 = info.minor.trim_end_matches('+').parse().unwrap();
        assert!(minor >= 30, "{info:?}");
    }

    async fn recorder_events_are_visible_as_core_v1_events(cx: Tier) {
        let cms: Api<ConfigMap> = cx.api();
        let target = cms.create(&PostParams::default(), &cm("target")).await.unwrap();
        let recorder = Recorder::new(cx.client(), Reporter { controller: "conformance".into(), instance: None });
        let reference = target.object_ref(&());
        for _ in 0..2 {
            recorder
                .publish(&Event { type_: EventType::Normal, reason: "Tested".into(), note: Some("it works".into()), action: "Test".into(), secondary: None }, &reference)
                .await
                .unwrap();
        }
        let core: Api<CoreEvent> = cx.api();
        let selector = format!(
            "involvedObject.name=target,involvedObject.namespace={},involvedObject.kind=ConfigMap,involvedObject.uid={}",
            cx.namespace(),
            target.metadata.uid.as_deref().unwrap()
        );
        let mut found = Vec::new();
        for _ in 0..50 {
            found = core.list(&ListParams::default().fields(&selector)).await.unwrap().items;
            if found.first().and_then(|e| e.count) == Some(2) || found.first().and_then(|e| e.series.as_ref()).is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(found.len(), 1, "one event, its repeat counted as a series: {found:?}");
        let e = &found[0];
        assert_eq!(e.reason.as_deref(), Some("Tested"));
        assert_eq!(e.message.as_deref(), Some("it works"));
        assert_eq!(e.type_.as_deref(), Some("Normal"));
        assert_eq!(e.involved_object.name.as_deref(), Some("target"));
        assert_eq!(e.reporting_component.as_deref(), Some("conformance"));
        assert_eq!(e.series.as_ref().map(|s| s.count), Some(Some(2)), "{e:?}");
    }
}
