//! Create-only (a generated password), objects that are not ours, owner references and
//! labels, namespaces, absent and prune.

use super::*;

both_tiers! {
    async fn a_generated_password_survives_a_thousand_reconciles(cx: Tier) {
        let env = Env::new(cx).await;
        let ensure = env.ensure();
        let secrets: Api<Secret> = env.api();
        assert_eq!(ensure.create_only(&password_secret("db-credentials")).await.unwrap(), Ensured::Created);
        let original = secrets.get("db-credentials").await.unwrap();
        let (unchanged, calls) = env.counted(async {
            let mut unchanged = 0;
            for _ in 0..1000 {
                // A fresh random password every time, as a naive reconcile would make.
                if ensure.create_only(&password_secret("db-credentials")).await.unwrap() == Ensured::Unchanged {
                    unchanged += 1;
                }
            }
            unchanged
        })
        .await;
        assert_eq!(unchanged, 1000);
        assert_eq!(calls.writes(), 0, "{calls}");
        let after = secrets.get("db-credentials").await.unwrap();
        assert_eq!(after.data, original.data);
        assert_eq!(stamp(&after), stamp(&original));
    }

    async fn create_only_refuses_a_password_someone_else_made(cx: Tier) {
        let env = Env::new(cx).await;
        env.api::<Secret>()
            .create(&PostParams::default(), &password_secret("db-credentials"))
            .await
            .unwrap();
        let (outcome, calls) = env.counted(env.ensure().create_only(&password_secret("db-credentials"))).await;
        let err = outcome.unwrap_err();
        assert!(matches!(&err, EnsureError::NotOwned { owner: None, .. }), "{err:?}");
        assert_eq!(calls.writes(), 0, "{calls}");
    }
}

// ---------------------------------------------------------------- not ours

both_tiers! {
    async fn an_object_of_another_owner_is_never_taken_over(cx: Tier) {
        let env = Env::new(cx).await;
        let other = widget(&env.cx, "other").await;
        let theirs = env.ensure_for(&other, EnsureConfig::default());
        let ours = env.ensure_with(EnsureConfig::default().adopt(true));
        theirs.apply(&config_map("shared", &[("a", "theirs")])).await.unwrap();

        let desired = config_map("shared", &[("a", "ours")]);
        let (results, calls) = env.counted(async {
            vec![
                ours.apply(&desired).await,
                ours.patch(&desired).await,
                ours.create_only(&desired).await,
                ours.absent::<ConfigMap>("shared").await,
            ]
        })
        .await;
        for result in results {
            let err = result.unwrap_err();
            assert_eq!(err.class(), ErrorClass::Terminal);
            assert_eq!(
                err.to_string(),
                format!("ConfigMap {} exists and is not ours: it is controlled by Widget/other", env.shown("shared"))
            );
        }
        assert_eq!(calls.writes(), 0, "{calls}");
        assert_eq!(env.api::<ConfigMap>().get("shared").await.unwrap().data.unwrap()["a"], "theirs");
    }

    async fn an_object_without_a_controller_is_adopted_only_when_allowed(cx: Tier) {
        let env = Env::new(cx).await;
        let cms: Api<ConfigMap> = env.api();
        cms.create(&PostParams::default(), &config_map("handmade", &[("a", "1")])).await.unwrap();

        let strict = env.ensure();
        let err = strict.apply(&config_map("handmade", &[("a", "2")])).await.unwrap_err();
        assert!(matches!(&err, EnsureError::NotOwned { owner: None, .. }), "{err:?}");

        let adopting = env.ensure_with(EnsureConfig::default().adopt(true));
        let outcome = adopting.apply(&config_map("handmade", &[("a", "2")])).await.unwrap();
        assert!(outcome.fields().contains(&"data.a".to_string()), "{outcome:?}");
        let live = cms.get("handmade").await.unwrap();
        assert_eq!(live.owner_references()[0].uid, env.owner.metadata.uid.clone().unwrap());
        // Now it is ours for the strict one too.
        assert_eq!(strict.apply(&config_map("handmade", &[("a", "2")])).await.unwrap(), Ensured::Unchanged);
    }
}

/// No tier: `Children::with_config` refuses the owner before any request is made.
#[test]
fn an_owner_without_a_uid_is_a_typed_error() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = kube_reconcile_testing::ApiServer::new().client();
        let mut owner = Widget::new(
            "unsaved",
            WidgetSpec {
                size: 1,
                colour: "red".into(),
            },
        );
        let err =
            Children::with_config(client.clone(), &owner, EnsureConfig::default()).unwrap_err();
        assert_eq!(err.to_string(), "owner Widget/unsaved has no metadata.uid");
        assert_eq!(err.class(), ErrorClass::Terminal);
        owner.metadata.name = None;
        let err = Children::with_config(client, &owner, EnsureConfig::default()).unwrap_err();
        assert!(matches!(
            err,
            EnsureError::MissingField {
                field: "metadata.name",
                ..
            }
        ));
    });
}

// ---------------------------------------------------------------- owner references, labels, namespaces

both_tiers! {
    async fn children_get_a_controller_reference_and_the_standard_labels(cx: Tier) {
        let env = Env::new(cx).await;
        let ensure = env.ensure_with(EnsureConfig::default().field_manager("widget-operator").part_of("shop"));
        let cms: Api<ConfigMap> = env.api();
        let mut desired = config_map("settings", &[("a", "1")]);
        desired.metadata.labels = Some(BTreeMap::from([("app.kubernetes.io/name".to_string(), "custom".to_string())]));
        ensure.apply(&desired).await.unwrap();
        let live = cms.get("settings").await.unwrap();
        let expected = OwnerReference {
            api_version: "test.kube-reconcile.dev/v1".into(),
            kind: "Widget".into(),
            name: "owner".into(),
            uid: env.owner.metadata.uid.clone().unwrap(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        assert_eq!(live.owner_references(), [expected]);
        let labels = live.labels();
        assert_eq!(labels["app.kubernetes.io/managed-by"], "widget-operator");
        assert_eq!(labels["app.kubernetes.io/instance"], "owner");
        assert_eq!(labels["app.kubernetes.io/name"], "custom"); // ours never overwrite yours
        assert_eq!(labels["app.kubernetes.io/part-of"], "shop");
        assert!(live.metadata.managed_fields.unwrap().iter().any(|m| m.manager.as_deref() == Some("widget-operator")));

        let bare = env.ensure_with(EnsureConfig::default().owner_reference(false).labels(false));
        bare.apply(&config_map("bare", &[("a", "1")])).await.unwrap();
        let live = cms.get("bare").await.unwrap();
        assert!(live.owner_references().is_empty());
        assert!(live.labels().is_empty());
        assert_eq!(bare.apply(&config_map("bare", &[("a", "1")])).await.unwrap(), Ensured::Unchanged);
    }

    async fn namespaced_children_follow_the_owner_unless_they_name_a_namespace(cx: Tier) {
        let env = Env::new(cx).await;
        let ensure = env.ensure();
        // Real tests share one cluster: a namespace name of this test's own.
        let team = format!("{}-team", env.cx.namespace());
        Api::<Namespace>::all(env.cx.client())
            .create(&PostParams::default(), &Namespace { metadata: meta(&team), ..Namespace::default() })
            .await
            .unwrap();
        let mut elsewhere = config_map("elsewhere", &[("a", "1")]);
        elsewhere.metadata.namespace = Some(team.clone());
        ensure.apply(&config_map("here", &[])).await.unwrap();
        ensure.apply(&elsewhere).await.unwrap();
        assert!(env.api::<ConfigMap>().get_opt("here").await.unwrap().is_some());
        assert!(Api::<ConfigMap>::namespaced(env.cx.client(), &team).get_opt("elsewhere").await.unwrap().is_some());
        assert!(env.api::<ConfigMap>().get_opt("elsewhere").await.unwrap().is_none());
    }
}

// ---------------------------------------------------------------- absent and prune

both_tiers! {
    async fn absent_deletes_our_child_once(cx: Tier) {
        let env = Env::new(cx).await;
        let ensure = env.ensure();
        assert_eq!(ensure.absent::<ConfigMap>("settings").await.unwrap(), Ensured::Unchanged);
        ensure.apply(&config_map("settings", &[("a", "1")])).await.unwrap();
        assert_eq!(ensure.absent::<ConfigMap>("settings").await.unwrap(), Ensured::Deleted);
        let (outcome, calls) = env.counted(ensure.absent::<ConfigMap>("settings")).await;
        assert_eq!(outcome.unwrap(), Ensured::Unchanged);
        assert_eq!(calls.writes(), 0, "{calls}");
        assert!(env.api::<ConfigMap>().get_opt("settings").await.unwrap().is_none());
    }

    async fn prune_removes_only_labelled_orphans_of_this_owner(cx: Tier) {
        let env = Env::new(cx).await;
        let ensure = env.ensure();
        let other = env.ensure_for(&widget(&env.cx, "other").await, EnsureConfig::default());
        let cms: Api<ConfigMap> = env.api();

        for name in ["keep", "orphan-1", "orphan-2"] {
            ensure.apply(&config_map(name, &[("a", "1")])).await.unwrap();
        }
        other.apply(&config_map("other-child", &[("a", "1")])).await.unwrap();
        // Someone copied our labels onto an object of theirs: labels alone prove nothing.
        let mut impostor = config_map("impostor", &[("a", "1")]);
        impostor.metadata.labels = Some(ensure.standard_labels());
        cms.create(&PostParams::default(), &impostor).await.unwrap();
        cms.create(&PostParams::default(), &config_map("unlabelled", &[])).await.unwrap();

        let (deleted, calls) = env.counted(ensure.prune::<ConfigMap>(&["keep"])).await;
        let mut deleted = deleted.unwrap();
        deleted.sort();
        assert_eq!(deleted, ["orphan-1", "orphan-2"]);
        assert_eq!(calls.get(Verb::Delete, "configmaps"), 2, "{calls}");
        let mut left: Vec<String> = cms
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(ResourceExt::name_any)
            .collect();
        left.sort();
        assert_eq!(left, ["impostor", "keep", "other-child", "unlabelled"]);
        assert!(ensure.prune::<ConfigMap>(&["keep"]).await.unwrap().is_empty());
    }
}
