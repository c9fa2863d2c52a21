//! `Children` on both servers (each test as `<name>::embedded` and `<name>::real`): every
//! strategy's outcomes, no writes when nothing changed (even after the server's
//! defaults), the generated password, prune, objects that are not ours, conflicts from
//! real races, and `DynamicObject`. Writes are counted on the client side (see
//! `support::recorder`), so "zero writes" means zero write requests on both tiers; on
//! the embedded tier the server's own counters must agree.

use kube_reconcile_test_support::both_tiers;
use std::collections::BTreeMap;

use k8s_openapi::{
    ByteString,
    api::{
        apps::v1::{StatefulSet, StatefulSetSpec},
        core::v1::{
            ConfigMap, Container, ContainerPort, Namespace, PodSpec, PodTemplateSpec,
            ResourceRequirements, Secret, Service, ServicePort, ServiceSpec,
        },
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ManagedFieldsEntry, OwnerReference},
    },
};
use kube::{
    Api, CustomResourceExt, Resource, ResourceExt,
    api::{ApiResource, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams, PostParams},
};
use kube_reconcile::{
    Classify, ErrorClass,
    ensure::{Children, EnsureConfig, EnsureError, Ensured},
};
use kube_reconcile_test_support::{
    recorder::{Calls, Recorder, Verb},
    tier::Tier,
    widget::{Widget, WidgetSpec},
};
use kube_reconcile_testing::{ApiServer, Fault};
use serde_json::json;

/// A test's server (either tier) with the Widget CRD, a Widget `owner` to own the
/// children, and a recorder on the client the `Children`s use.
struct Env {
    cx: Tier,
    recorder: Recorder,
    owner: Widget,
}

impl Env {
    async fn new(cx: Tier) -> Env {
        cx.install_crd(&Widget::crd()).await;
        let owner = widget(&cx, "owner").await;
        let recorder = Recorder::new(&cx.client());
        Env {
            cx,
            recorder,
            owner,
        }
    }

    /// An `Children` for `owner` on the recorded client.
    fn ensure(&self) -> Children {
        self.ensure_with(EnsureConfig::default())
    }

    fn ensure_with(&self, config: EnsureConfig) -> Children {
        Children::with_config(self.recorder.client(), &self.owner, config).unwrap()
    }

    /// An `Children` for `owner` on the recorded client.
    fn ensure_for(&self, owner: &Widget, config: EnsureConfig) -> Children {
        Children::with_config(self.recorder.client(), owner, config).unwrap()
    }

    /// An unrecorded `Api` in the test's namespace, for looking and for interfering.
    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        self.cx.api()
    }

    /// Asserts that `before` is still as it was: same `resourceVersion` and `managedFields`.
    async fn assert_untouched<K>(&self, before: &K)
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        <K as Resource>::DynamicType: Default,
    {
        let now = self.api::<K>().get(&before.name_any()).await.unwrap();
        assert_eq!(
            stamp(&now),
            stamp(before),
            "{} was written",
            before.name_any()
        );
    }

    /// `namespace/name`, as errors show a child.
    fn shown(&self, name: &str) -> String {
        format!("{}/{name}", self.cx.namespace())
    }

    /// The requests `f` sent; on the embedded tier the server must count the same writes
    /// (unless a hook interfered: its writes are the server's to count, not ours).
    async fn counted<T>(&self, f: impl Future<Output = T>) -> (T, Calls) {
        let server_before = self.cx.embedded_server().map(ApiServer::requests);
        let (out, calls) = self.recorder.during(f).await;
        if let (Some(server), Some(before), 0) =
            (self.cx.embedded_server(), server_before, calls.hooks())
        {
            let seen = server.requests().since(&before);
            assert_eq!(
                usize::try_from(seen.writes()).unwrap(),
                calls.writes(),
                "server counted {seen}, client sent {calls}"
            );
        }
        (out, calls)
    }
}

async fn widget(cx: &Tier, name: &str) -> Widget {
    let spec = WidgetSpec {
        size: 3,
        colour: "red".into(),
    };
    cx.api::<Widget>()
        .create(&PostParams::default(), &Widget::new(name, spec))
        .await
        .unwrap()
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        ..ObjectMeta::default()
    }
}

fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: meta(name),
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
        ),
        ..ConfigMap::default()
    }
}

fn service(name: &str, port: i32) -> Service {
    Service {
        metadata: meta(name),
        spec: Some(ServiceSpec {
            selector: Some(BTreeMap::from([("app".into(), name.into())])),
            ports: Some(vec![ServicePort {
                name: Some("pg".into()),
                port,
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn stateful_set(name: &str, image: &str) -> StatefulSet {
    let labels = BTreeMap::from([("app".to_string(), name.to_string())]);
    StatefulSet {
        metadata: meta(name),
        spec: StatefulSetSpec {
            service_name: Some(name.into()),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "db".into(),
                        image: Some(image.into()),
                        ports: Some(vec![ContainerPort {
                            container_port: 5432,
                            ..ContainerPort::default()
                        }]),
                        // Not in canonical form: the server stores `500m` and `1Gi`.
                        resources: Some(ResourceRequirements {
                            requests: Some(BTreeMap::from([
                                ("cpu".into(), Quantity("0.5".into())),
                                ("memory".into(), Quantity("1024Mi".into())),
                            ])),
                            ..ResourceRequirements::default()
                        }),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            ..StatefulSetSpec::default()
        },
        ..StatefulSet::default()
    }
}

fn password_secret(name: &str) -> Secret {
    let password: String = std::iter::repeat_with(fastrand::alphanumeric)
        .take(24)
        .collect();
    Secret {
        metadata: meta(name),
        data: Some(BTreeMap::from([(
            "password".into(),
            ByteString(password.into_bytes()),
        )])),
        ..Secret::default()
    }
}

fn rv<K: Resource>(obj: &K) -> String {
    obj.meta().resource_version.clone().unwrap()
}

/// What any write to an object changes: its `resourceVersion` and `managedFields`.
fn stamp<K: Resource>(obj: &K) -> (String, Option<Vec<ManagedFieldsEntry>>) {
    (rv(obj), obj.meta().managed_fields.clone())
}

// ---------------------------------------------------------------- server-side apply

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

// ---------------------------------------------------------------- create or patch

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
        let other_replica = Children::new(env.cx.client(), &env.owner).unwrap();
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

// ---------------------------------------------------------------- create only

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

/// No tier: `Children::new` refuses the owner before any request is made.
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
        let err = Children::new(client.clone(), &owner).unwrap_err();
        assert_eq!(err.to_string(), "owner Widget/unsaved has no metadata.uid");
        assert_eq!(err.class(), ErrorClass::Terminal);
        owner.metadata.name = None;
        let err = Children::new(client, &owner).unwrap_err();
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

// ---------------------------------------------------------------- DynamicObject

both_tiers! {
    async fn dynamic_objects_work_like_typed_ones(cx: Tier) {
        let env = Env::new(cx).await;
        let ensure = env.ensure();
        let ar = ApiResource::erase::<Widget>(&());
        let child = |size: i64| DynamicObject::new("child", &ar).data(json!({"spec": {"size": size}}));

        assert_eq!(ensure.apply_with(&child(2), &ar).await.unwrap(), Ensured::Created);
        // The CRD schema defaults `spec.colour`; that is not a difference.
        let live = env.api::<Widget>().get("child").await.unwrap();
        assert_eq!(live.spec.colour, "blue");
        let (outcome, calls) = env.counted(ensure.apply_with(&child(2), &ar)).await;
        assert_eq!(outcome.unwrap(), Ensured::Unchanged);
        assert_eq!(calls.writes(), 0, "{calls}");
        assert_eq!(ensure.apply_with(&child(4), &ar).await.unwrap().fields(), ["spec.size"]);
        assert_eq!(ensure.patch_with(&child(4), &ar).await.unwrap(), Ensured::Unchanged);
        assert_eq!(ensure.patch_with(&child(5), &ar).await.unwrap().fields(), ["spec.size"]);
        assert_eq!(ensure.create_only_with(&child(9), &ar).await.unwrap(), Ensured::Unchanged);
        assert_eq!(
            ensure.prune_with::<DynamicObject>(&ar, &ensure.selector(), &["child"]).await.unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(ensure.absent_with::<DynamicObject>("child", &ar).await.unwrap(), Ensured::Deleted);
    }
}
