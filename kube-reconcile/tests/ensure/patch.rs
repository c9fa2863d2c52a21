//! Create or patch (a semantic subset compare), and conflicts: retried once after a re-read,
//! races with another replica on both tiers.

use super::*;

both_tiers! {
    async fn patch_compares_only_the_fields_it_sets(cx: Tier) {
        let env = Env::new(cx).await;
        let ensure = env.ensure();
        let svc = service("db", 5432);
        let sts = stateful_set("db", "postgres:16");
        let secret = Secret {
            metadata: meta("db-config"),
            string_data: None,
            data: Some(BTreeMap::from([("user".into(), ByteString(b"app".to_vec()))])),
            ..Secret::default()
        };
        for outcome in [
            ensure.patch(&svc).await.unwrap(),
            ensure.patch(&sts).await.unwrap(),
            ensure.patch(&secret).await.unwrap(),
        ] {
            assert_eq!(outcome, Ensured::Created);
        }
        let live_svc = env.api::<Service>().get("db").await.unwrap();
        let live_sts = env.api::<StatefulSet>().get("db").await.unwrap();
        let (outcomes, calls) = env.counted(async {
            let mut outcomes = Vec::new();
            for _ in 0..20 {
                outcomes.push(ensure.patch(&svc).await.unwrap());
                outcomes.push(ensure.patch(&sts).await.unwrap());
                outcomes.push(ensure.patch(&secret).await.unwrap());
            }
            outcomes
        })
        .await;
        assert!(outcomes.iter().all(|o| *o == Ensured::Unchanged), "{outcomes:?}");
        assert_eq!(calls.writes(), 0, "{calls}");
        env.assert_untouched(&live_svc).await;
        env.assert_untouched(&live_sts).await;

        // A change patches what differs and keeps what the server allocated.
        let outcome = ensure.patch(&service("db", 5433)).await.unwrap();
        assert_eq!(outcome.fields(), ["spec.ports[0].port"]);
        let spec = env.api::<Service>().get("db").await.unwrap().spec.unwrap();
        assert_eq!(spec.cluster_ip, live_svc.spec.unwrap().cluster_ip);
        assert_eq!(spec.ports.unwrap()[0].port, 5433);
        assert_eq!(ensure.patch(&service("db", 5433)).await.unwrap(), Ensured::Unchanged);
    }

    /// Someone else updates the object between our read and our patch: the server refuses
    /// the patch (it carries the `resourceVersion` it was computed from), Children reads
    /// again and patches once more, keeping the other writer's change.
    async fn patch_retries_a_conflict_once_after_a_re_read(cx: Tier) {
        let env = Env::new(cx).await;
        let ensure = env.ensure();
        ensure.patch(&config_map("settings", &[("a", "1")])).await.unwrap();
        env.recorder.before(Verb::Patch, "configmaps", 1, interfere(env.api(), "settings"));
        let (outcome, calls) = env.counted(ensure.patch(&config_map("settings", &[("a", "2")]))).await;
        assert_eq!(outcome.unwrap().fields(), ["data.a"]);
        assert_eq!(calls.get(Verb::Get, "configmaps"), 2, "{calls}");
        assert_eq!(calls.get(Verb::Patch, "configmaps"), 2, "{calls}");
        let live = env.api::<ConfigMap>().get("settings").await.unwrap();
        assert_eq!(live.data.as_ref().unwrap()["a"], "2");
        assert_eq!(live.annotations()["interfered"], "1");
    }

    /// Both attempts are stale: the first 409 is retried, the second is a Conflict, and
    /// no stale patch lands.
    async fn patch_carries_the_resource_version_it_compared_against(cx: Tier) {
        let env = Env::new(cx).await;
        let ensure = env.ensure();
        ensure.patch(&config_map("settings", &[("a", "1")])).await.unwrap();
        env.recorder.before(Verb::Patch, "configmaps", 2, interfere(env.api(), "settings"));
        let (outcome, calls) = env.counted(ensure.patch(&config_map("settings", &[("a", "2")]))).await;
        let err = outcome.unwrap_err();
        assert!(
            matches!(&err, EnsureError::Conflict { kind, name, .. }
                if kind == "ConfigMap" && *name == env.shown("settings")),
            "{err:?}"
        );
        assert_eq!(err.class(), ErrorClass::Conflict);
        assert!(std::error::Error::source(&err).is_some());
        assert_eq!(calls.get(Verb::Patch, "configmaps"), 2, "{calls}");
        let live = env.api::<ConfigMap>().get("settings").await.unwrap();
        assert_eq!(live.data.as_ref().unwrap()["a"], "1", "a stale patch must not land");
        assert_eq!(live.annotations()["interfered"], "2");
    }
}

/// A hook that updates `name` (an annotation counting the interferences) through `cms`.
fn interfere(
    cms: Api<ConfigMap>,
    name: &'static str,
) -> impl FnMut() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + 'static {
    let mut n = 0;
    move || {
        n += 1;
        let (cms, n) = (cms.clone(), n);
        Box::pin(async move {
            let mut live = cms.get(name).await.unwrap();
            live.annotations_mut()
                .insert("interfered".into(), n.to_string());
            cms.replace(name, &PostParams::default(), &live)
                .await
                .unwrap();
        })
    }
}

// ---------------------------------------------------------------- conflicts

/// Embedded only: with `force` on, a real server never answers an apply with 409, so
/// the conflicts are injected.
#[tokio::test]
async fn a_single_conflict_is_retried_and_two_are_a_conflict() {
    let env = Env::new(Tier::embedded("a_single_conflict").await).await;
    let server = env.cx.embedded_server().unwrap();
    let ensure = env.ensure();
    let desired = config_map("settings", &[("a", "1")]);

    server.faults().inject(
        Fault::error(409)
            .verb(Verb::Patch)
            .resource("configmaps")
            .times(1),
    );
    let (outcome, calls) = env.counted(ensure.apply(&desired)).await;
    assert_eq!(outcome.unwrap(), Ensured::Created);
    assert_eq!(calls.get(Verb::Get, "configmaps"), 2, "{calls}");
    assert_eq!(calls.get(Verb::Patch, "configmaps"), 2, "{calls}");

    server.faults().clear();
    server.faults().inject(
        Fault::error(409)
            .verb(Verb::Patch)
            .resource("configmaps")
            .times(2),
    );
    let err = ensure
        .apply(&config_map("settings", &[("a", "2")]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EnsureError::Conflict { kind, name, .. }
        if kind == "ConfigMap" && *name == env.shown("settings")),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::Conflict);
    assert!(std::error::Error::source(&err).is_some());
}

/// Embedded only: a 409 on create with nothing there to read afterwards is injected.
#[tokio::test]
async fn a_create_refused_with_a_conflict_reads_again_and_creates() {
    let env = Env::new(Tier::embedded("a_create_refused").await).await;
    env.cx.embedded_server().unwrap().faults().inject(
        Fault::error(409)
            .verb(Verb::Create)
            .resource("secrets")
            .times(1),
    );
    let (outcome, calls) = env
        .counted(env.ensure().create_only(&password_secret("pw")))
        .await;
    assert_eq!(outcome.unwrap(), Ensured::Created);
    assert_eq!(calls.get(Verb::Create, "secrets"), 2, "{calls}");
}

both_tiers! {
    /// Another replica of the operator creates the secret between our read and our
    /// create: the server's `AlreadyExists`, a re-read, and the winner's password is kept.
    async fn a_create_that_races_another_replica_keeps_the_winners_password(cx: Tier) {
        let env = Env::new(cx).await;
        let winner = password_secret("pw");
        let other_replica = Children::with_config(env.cx.client(), &env.owner, EnsureConfig::default()).unwrap();
        let first = winner.clone();
        env.recorder.before(Verb::Create, "secrets", 1, move || {
            let (other_replica, first) = (other_replica.clone(), first.clone());
            async move {
                assert_eq!(other_replica.create_only(&first).await.unwrap(), Ensured::Created);
            }
        });
        let (outcome, calls) = env.counted(env.ensure().create_only(&password_secret("pw"))).await;
        assert_eq!(outcome.unwrap(), Ensured::Unchanged);
        assert_eq!(calls.get(Verb::Create, "secrets"), 1, "{calls}");
        assert_eq!(calls.get(Verb::Get, "secrets"), 2, "{calls}");
        let live = env.api::<Secret>().get("pw").await.unwrap();
        assert_eq!(live.data, winner.data);
    }
}
