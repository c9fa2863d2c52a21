//! Server-side apply: zero writes when nothing changed, removed fields, server defaults,
//! other managers, adoption and conflicts.

use super::*;

both_tiers! {
    async fn apply_creates_then_writes_nothing_then_reports_changed_fields(cx: Tier) {
        let env = Env::new(cx).await;
        let ensure = env.ensure();
        let cms: Api<ConfigMap> = env.api();

        let desired = config_map("settings", &[("a", "1"), ("b", "2")]);
        assert_eq!(ensure.apply(&desired).await.unwrap(), Ensured::Created);
        let created = cms.get("settings").await.unwrap();

        let (outcome, calls) = env.counted(ensure.apply(&desired)).await;
        assert_eq!(outcome.unwrap(), Ensured::Unchanged);
        assert_eq!(calls.writes(), 0, "{calls}");
        assert_eq!(calls.get(Verb::Get, "configmaps"), 1, "{calls}");
        assert_eq!(stamp(&cms.get("settings").await.unwrap()), stamp(&created));

        let changed = config_map("settings", &[("a", "1"), ("b", "3")]);
        let (outcome, calls) = env.counted(ensure.apply(&changed)).await;
        assert_eq!(outcome.unwrap(), Ensured::Updated { fields: vec!["data.b".into()] });
        assert_eq!(calls.get(Verb::Patch, "configmaps"), 1, "{calls}");
        assert_eq!(cms.get("settings").await.unwrap().data.unwrap()["b"], "3");
    }

    async fn apply_removes_a_field_it_no_longer_applies(cx: Tier) {
        let env = Env::new(cx).await;
        let ensure = env.ensure();
        ensure.apply(&config_map("settings", &[("a", "1"), ("b", "2")])).await.unwrap();
        let outcome = ensure.apply(&config_map("settings", &[("a", "1")])).await.unwrap();
        assert_eq!(outcome.fields(), ["data.b"]);
        let data = env.api::<ConfigMap>().get("settings").await.unwrap().data.unwrap();
        assert_eq!(data, BTreeMap::from([("a".to_string(), "1".to_string())]));
    }

    /// The point of running this on a real kube-apiserver: its defaults for Services and
    /// StatefulSets are far richer than the embedded server's.
    async fn apply_never_churns_on_server_defaults_of_services_and_stateful_sets(cx: Tier) {
        let env = Env::new(cx).await;
        let ensure = env.ensure();
        let svc = service("db", 5432);
        let sts = stateful_set("db", "postgres:16");
        assert_eq!(ensure.apply(&svc).await.unwrap(), Ensured::Created);
        assert_eq!(ensure.apply(&sts).await.unwrap(), Ensured::Created);

        // The server filled in defaults our desired objects do not set.
        let live_svc = env.api::<Service>().get("db").await.unwrap();
        let live_spec = live_svc.spec.clone().unwrap();
        assert!(live_spec.cluster_ip.is_some());
        assert_eq!(live_spec.ports.unwrap()[0].protocol.as_deref(), Some("TCP"));
        let live_sts = env.api::<StatefulSet>().get("db").await.unwrap();
        let pod = live_sts.spec.template.spec.clone().unwrap();
        assert_eq!(pod.dns_policy.as_deref(), Some("ClusterFirst"));
        assert_eq!(pod.containers[0].termination_message_path.as_deref(), Some("/dev/termination-log"));
        let requests = pod.containers[0].resources.clone().unwrap().requests.unwrap();
        // A real server stores quantities in canonical form; the embedded one keeps them as sent.
        let stored = if env.cx.is_real() { ("500m", "1Gi") } else { ("0.5", "1024Mi") };
        assert_eq!((requests["cpu"].0.as_str(), requests["memory"].0.as_str()), stored);

        let (outcomes, calls) = env.counted(async {
            let mut outcomes = Vec::new();
            for _ in 0..20 {
                outcomes.push(ensure.apply(&svc).await.unwrap());
                outcomes.push(ensure.apply(&sts).await.unwrap());
            }
            outcomes
        })
        .await;
        assert!(outcomes.iter().all(|o| *o == Ensured::Unchanged), "{outcomes:?}");
        assert_eq!(calls.writes(), 0, "{calls}");
        env.assert_untouched(&live_svc).await;
        env.assert_untouched(&live_sts).await;

        // A real change is one apply, and names the field.
        let (outcome, calls) = env.counted(ensure.apply(&stateful_set("db", "postgres:17"))).await;
        assert_eq!(outcome.unwrap().fields(), ["spec.template.spec.containers[name=db].image"]);
        assert_eq!(calls.writes(), 1, "{calls}");
        assert_eq!(ensure.apply(&stateful_set("db", "postgres:17")).await.unwrap(), Ensured::Unchanged);
    }

    async fn apply_keeps_fields_of_other_managers_and_takes_back_its_own(cx: Tier) {
        let env = Env::new(cx).await;
        let ensure = env.ensure();
        let cms: Api<ConfigMap> = env.api();
        let desired = config_map("settings", &[("a", "1")]);
        ensure.apply(&desired).await.unwrap();

        // Someone else adds an annotation and a key of their own: not our business.
        let theirs = PatchParams { field_manager: Some("kubectl-edit".into()), ..PatchParams::default() };
        cms.patch(
            "settings",
            &theirs,
            &Patch::Merge(json!({"metadata": {"annotations": {"note": "x"}}, "data": {"extra": "y"}})),
        )
        .await
        .unwrap();
        let (outcome, calls) = env.counted(ensure.apply(&desired)).await;
        assert_eq!(outcome.unwrap(), Ensured::Unchanged);
        assert_eq!(calls.writes(), 0, "{calls}");

        // Someone else changes our key: the apply takes it back.
        cms.patch("settings", &theirs, &Patch::Merge(json!({"data": {"a": "tampered"}})))
            .await
            .unwrap();
        let outcome = ensure.apply(&desired).await.unwrap();
        assert_eq!(outcome.fields(), ["data.a"]);
        let live = cms.get("settings").await.unwrap();
        let data = live.data.unwrap();
        assert_eq!(data["a"], "1");
        assert_eq!(data["extra"], "y");
        assert_eq!(live.metadata.annotations.unwrap()["note"], "x");
        assert_eq!(ensure.apply(&desired).await.unwrap(), Ensured::Unchanged);
    }

    /// The server property Children's no-op check mirrors.
    async fn identical_server_side_applies_do_not_bump_the_resource_version(cx: Tier) {
        let cms: Api<ConfigMap> = cx.api();
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": {"name": "x", "labels": {"a": "b"}}, "data": {"k": "v"}});
        let params = PatchParams::apply("me").force();
        let first = cms.patch("x", &params, &Patch::Apply(&body)).await.unwrap();
        let second = cms.patch("x", &params, &Patch::Apply(&body)).await.unwrap();
        assert_eq!(stamp(&first), stamp(&second));
    }

    async fn apply_adopts_an_object_its_field_manager_wrote_through_the_patch_strategy(cx: Tier) {
        let env = Env::new(cx).await;
        let ensure = env.ensure();
        let desired = config_map("settings", &[("a", "1")]);
        assert_eq!(ensure.patch(&desired).await.unwrap(), Ensured::Created);
        // Switching strategies: the first apply takes ownership of the fields (one write)...
        let outcome = ensure.apply(&desired).await.unwrap();
        assert!(matches!(outcome, Ensured::Updated { .. }), "{outcome:?}");
        // ...and from then on nothing is written.
        let (outcome, calls) = env.counted(ensure.apply(&desired)).await;
        assert_eq!(outcome.unwrap(), Ensured::Unchanged);
        assert_eq!(calls.writes(), 0, "{calls}");
    }

    /// With `force` off, a field another manager owns is a conflict: the server's 409,
    /// a re-read, the same 409, and Children gives up without touching the field.
    async fn an_unforced_apply_of_a_field_another_manager_owns_is_a_conflict(cx: Tier) {
        let env = Env::new(cx).await;
        let ensure = env.ensure_with(EnsureConfig::default().force(false));
        let cms: Api<ConfigMap> = env.api();
        ensure.apply(&config_map("settings", &[("a", "1")])).await.unwrap();
        let theirs = PatchParams::apply("someone-else").force();
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": {"name": "settings"}, "data": {"a": "theirs"}});
        cms.patch("settings", &theirs, &Patch::Apply(&body)).await.unwrap();

        let (outcome, calls) = env.counted(ensure.apply(&config_map("settings", &[("a", "1")]))).await;
        let err = outcome.unwrap_err();
        assert!(matches!(&err, EnsureError::Conflict { .. }), "{err:?}");
        assert_eq!(err.class(), ErrorClass::Conflict);
        assert_eq!(calls.get(Verb::Patch, "configmaps"), 2, "{calls}");
        assert_eq!(cms.get("settings").await.unwrap().data.unwrap()["a"], "theirs");
    }
}
