//! Watches: event order, resume, 410 Expired, streaming lists, the kube-runtime watcher.

use kube_reconcile_test_support::both_tiers;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;

use kube_reconcile_testing::ControlPlane;

use crate::{cm, rv_of};

/// The next event that is not a bookmark, within 10 s.
async fn next_change<S>(stream: &mut S) -> WatchEvent<ConfigMap>
where
    S: futures::Stream<Item = kube::Result<WatchEvent<ConfigMap>>> + Unpin,
{
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("an event within 10 s")
            .expect("stream open")
            .expect("event");
        if !matches!(event, WatchEvent::Bookmark(_)) {
            return event;
        }
    }
}

both_tiers! {
    async fn watches_deliver_changes_in_order_from_a_resource_version(cx: Tier) {
        let cms: Api<ConfigMap> = cx.api();
        let a = cms.create(&PostParams::default(), &cm("a")).await.unwrap();
        let from = a.metadata.resource_version.clone().unwrap();
        let mut stream = cms.watch(&WatchParams::default().timeout(60), &from).await.unwrap().boxed();
        cms.create(&PostParams::default(), &cm("b")).await.unwrap();
        cms.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "2"}}))).await.unwrap();
        cms.delete("b", &DeleteParams::default()).await.unwrap();
        let mut last = rv_of(&a.metadata);
        for expected in ["ADDED b", "MODIFIED a", "DELETED b"] {
            let (kind, obj) = match next_change(&mut stream).await {
                WatchEvent::Added(o) => ("ADDED", o),
                WatchEvent::Modified(o) => ("MODIFIED", o),
                WatchEvent::Deleted(o) => ("DELETED", o),
                other => panic!("unexpected {other:?}"),
            };
            assert_eq!(format!("{kind} {}", obj.metadata.name.as_deref().unwrap()), expected);
            assert!(rv_of(&obj.metadata) > last, "events carry increasing versions");
            last = rv_of(&obj.metadata);
        }
    }

    async fn a_watch_from_a_compacted_version_gets_410_expired(cx: Tier) {
        // kube-apiserver's watch cache answers old versions from memory (replaying current
        // objects) until its window has rolled over; without the cache a watch goes to
        // etcd, whose compaction gives 410. So the real half runs its own control plane.
        let uncached = if cx.is_real() {
            Some(ControlPlane::builder().apiserver_arg("--watch-cache=false").start().await.expect("start"))
        } else {
            None
        };
        let cms: Api<ConfigMap> = match &uncached {
            Some(cp) => Api::default_namespaced(cp.client()),
            None => cx.api(),
        };
        let old = cms.create(&PostParams::default(), &cm("a")).await.unwrap();
        cms.create(&PostParams::default(), &cm("b")).await.unwrap();
        match &uncached {
            Some(cp) => {
                cp.compact().await.expect("compact");
            }
            None => cx.compact().await,
        }
        let old = old.metadata.resource_version.unwrap();
        let mut stream = cms.watch(&WatchParams::default(), &old).await.unwrap().boxed();
        let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("an answer within 10 s")
            .expect("one event")
            .expect("decoded");
        match event {
            WatchEvent::Error(e) => {
                assert_eq!((e.code, e.reason.as_str()), (410, "Expired"), "{e:?}");
            }
            WatchEvent::Added(o) => panic!("expected a 410 ERROR event, got ADDED {:?} at {:?} (watched from {old})", o.metadata.name, o.metadata.resource_version),
            other => panic!("expected a 410 ERROR event, got {other:?}"),
        }
        // A list at the compacted version is gone too.
        let exact = ListParams::default().at(&old).matching(kube::api::VersionMatch::Exact);
        let err = cms.list(&exact).await.unwrap_err();
        assert_eq!(crate::status(&err).code, 410, "{err:?}");
    }

    async fn streaming_lists_end_with_the_initial_events_bookmark(cx: Tier) {
        let cms: Api<ConfigMap> = cx.api();
        for name in ["a", "b", "c"] {
            cms.create(&PostParams::default(), &cm(name)).await.unwrap();
        }
        let wp = WatchParams::default().initial_events().timeout(60);
        // No resource version: the initial events are a consistent read of the newest
        // state. ("0", any version, may be served from a watch cache that has not seen
        // the last create yet, and a real kube-apiserver sometimes does.)
        let mut stream = cms.watch(&wp, "").await.unwrap().boxed();
        let mut added = Vec::new();
        let bookmark = loop {
            match tokio::time::timeout(Duration::from_secs(10), stream.next()).await.expect("event in time").expect("open").expect("event") {
                WatchEvent::Added(o) => added.push(o.metadata.name.unwrap()),
                WatchEvent::Bookmark(b) if b.metadata.annotations.contains_key("k8s.io/initial-events-end") => break b,
                WatchEvent::Bookmark(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        };
        added.sort();
        assert_eq!(added, ["a", "b", "c"]);
        assert_eq!(bookmark.metadata.annotations["k8s.io/initial-events-end"], "true");
        assert!(!bookmark.metadata.resource_version.is_empty());
        // Then it continues as a watch.
        cms.create(&PostParams::default(), &cm("d")).await.unwrap();
        match next_change(&mut stream).await {
            WatchEvent::Added(o) => assert_eq!(o.metadata.name.as_deref(), Some("d")),
            other => panic!("unexpected {other:?}"),
        }
    }

    async fn the_runtime_watcher_works_in_both_initial_list_modes(cx: Tier) {
        let cms: Api<ConfigMap> = cx.api();
        cms.create(&PostParams::default(), &cm("before")).await.unwrap();
        for (i, config) in [watcher::Config::default(), watcher::Config::default().streaming_lists()].into_iter().enumerate() {
            let mut events = watcher(cms.clone(), config.clone()).boxed();
            // The initial list: every object that exists, then InitDone.
            let mut initial = Vec::new();
            loop {
                match tokio::time::timeout(Duration::from_secs(10), events.try_next()).await.expect("in time").unwrap().unwrap() {
                    watcher::Event::Init => {}
                    watcher::Event::InitApply(o) => initial.push(o.metadata.name.unwrap()),
                    watcher::Event::InitDone => break,
                    other => panic!("unexpected {other:?}"),
                }
            }
            initial.sort();
            let mut expected: Vec<String> = std::iter::once("before".to_string()).chain((0..i).map(|n| format!("after-{n}"))).collect();
            expected.sort();
            assert_eq!(initial, expected, "{config:?}");
            let name = format!("after-{i}");
            cms.create(&PostParams::default(), &cm(&name)).await.unwrap();
            let mut objects = events.applied_objects();
            let next = tokio::time::timeout(Duration::from_secs(10), objects.try_next()).await.expect("in time").unwrap().unwrap();
            assert_eq!(next.metadata.name.as_deref(), Some(name.as_str()), "{config:?}");
        }
        assert_eq!(cms.list(&ListParams::default()).await.unwrap().items.len(), 3);
    }
}
