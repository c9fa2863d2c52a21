//! Label and field selectors, pagination, and lists at a resource version.

use kube_reconcile_test_support::both_tiers;
use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    api::{ListParams, PostParams, VersionMatch},
};

use crate::{cm, status};

async fn names(api: &Api<ConfigMap>, lp: &ListParams) -> BTreeSet<String> {
    api.list(lp)
        .await
        .unwrap_or_else(|e| panic!("list {lp:?}: {e}"))
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_string()).collect()
}

both_tiers! {
    async fn label_and_field_selectors_filter_lists(cx: Tier) {
        let cms: Api<ConfigMap> = cx.api();
        for (name, labels) in [("a", vec![("tier", "web"), ("env", "prod")]), ("b", vec![("tier", "db")]), ("c", vec![])] {
            let mut c = cm(name);
            c.metadata.labels = Some(labels.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
            cms.create(&PostParams::default(), &c).await.unwrap();
        }
        let lp = |l: &str| ListParams::default().labels(l);
        assert_eq!(names(&cms, &lp("tier=web")).await, set(&["a"]));
        assert_eq!(names(&cms, &lp("tier!=web")).await, set(&["b", "c"]));
        assert_eq!(names(&cms, &lp("tier in (web,db)")).await, set(&["a", "b"]));
        assert_eq!(names(&cms, &lp("tier notin (web)")).await, set(&["b", "c"]));
        assert_eq!(names(&cms, &lp("tier")).await, set(&["a", "b"]));
        assert_eq!(names(&cms, &lp("!tier")).await, set(&["c"]));
        assert_eq!(names(&cms, &lp("tier,env=prod")).await, set(&["a"]));

        let fp = |f: &str| ListParams::default().fields(f);
        assert_eq!(names(&cms, &fp("metadata.name=b")).await, set(&["b"]));
        assert_eq!(names(&cms, &fp("metadata.name!=b")).await, set(&["a", "c"]));
        let ns = format!("metadata.namespace={}", cx.namespace());
        assert_eq!(names(&cms, &fp(&ns)).await, set(&["a", "b", "c"]));
        let all: Api<ConfigMap> = Api::all(cx.client());
        let across = names(&all, &fp(&format!("{ns},metadata.name=a"))).await;
        assert_eq!(across, set(&["a"]));

        let err = cms.list(&fp("data.k=v")).await.unwrap_err();
        let s = status(&err);
        assert_eq!(s.code, 400, "{s:?}");
        assert_eq!(s.message, r#""data.k" is not a known field selector: only "metadata.name", "metadata.namespace""#);
        let err = cms.list(&lp("a b")).await.unwrap_err();
        assert_eq!(status(&err).code, 400);
    }

    async fn lists_paginate_with_continue_tokens(cx: Tier) {
        let cms: Api<ConfigMap> = cx.api();
        for i in 0..7 {
            cms.create(&PostParams::default(), &cm(&format!("cm-{i}"))).await.unwrap();
        }
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        let mut pages = 0;
        let mut first_rv = None;
        loop {
            let mut lp = ListParams::default().limit(3);
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            let page = cms.list(&lp).await.unwrap();
            pages += 1;
            assert!(page.items.len() <= 3);
            let rv = page.metadata.resource_version.clone().expect("list resourceVersion");
            // Every page is a snapshot at the first page's version.
            assert_eq!(*first_rv.get_or_insert_with(|| rv.clone()), rv);
            if pages == 1 {
                assert_eq!(page.metadata.remaining_item_count, Some(4));
                // A write between pages does not show up in later pages.
                cms.create(&PostParams::default(), &cm("cm-late")).await.unwrap();
            }
            seen.extend(page.items.into_iter().filter_map(|c| c.metadata.name));
            match page.metadata.continue_ {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        assert_eq!(pages, 3);
        let expected: Vec<String> = (0..7).map(|i| format!("cm-{i}")).collect();
        assert_eq!(seen, expected, "name order, no duplicates, nothing missing");

        let err = cms.list(&ListParams::default().continue_token("garbage")).await.unwrap_err();
        assert_eq!(status(&err).code, 400);
    }

    async fn lists_at_an_exact_resource_version_show_that_version(cx: Tier) {
        let cms: Api<ConfigMap> = cx.api();
        cms.create(&PostParams::default(), &cm("a")).await.unwrap();
        let before = cms.list(&ListParams::default()).await.unwrap();
        let rv = before.metadata.resource_version.clone().unwrap();
        cms.create(&PostParams::default(), &cm("b")).await.unwrap();
        let now = names(&cms, &ListParams::default()).await;
        assert_eq!(now, set(&["a", "b"]));
        let exact = ListParams::default().at(&rv).matching(VersionMatch::Exact);
        let then = cms.list(&exact).await.unwrap();
        assert_eq!(then.metadata.resource_version.as_deref(), Some(rv.as_str()));
        let then: BTreeSet<String> = then.items.into_iter().filter_map(|c| c.metadata.name).collect();
        assert_eq!(then, set(&["a"]));
        // NotOlderThan may answer with anything at least as new.
        let newer = ListParams::default().at(&rv).matching(VersionMatch::NotOlderThan);
        let newer = cms.list(&newer).await.unwrap();
        assert!(newer.metadata.resource_version.unwrap().parse::<u64>().unwrap() >= rv.parse::<u64>().unwrap());
    }
}
