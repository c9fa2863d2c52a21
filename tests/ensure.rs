//! `Ensure` on the embedded API server: every strategy's outcomes, no writes when nothing
//! changed (even after server defaults), the generated password, prune, objects that are
//! not ours, conflicts, and `DynamicObject`.

mod support;

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::{
    ByteString,
    api::{
        apps::v1::{StatefulSet, StatefulSetSpec},
        core::v1::{
            ConfigMap, Container, ContainerPort, PodSpec, PodTemplateSpec, ResourceRequirements,
            Secret, Service, ServicePort, ServiceSpec,
        },
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, OwnerReference},
    },
};
use kube::{
    Api, Client, CustomResourceExt, Resource, ResourceExt,
    api::{ApiResource, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams, PostParams},
    runtime::wait::{await_condition, conditions},
};
use kube_reconcile::{
    Classify, ErrorClass,
    ensure::{Ensure, EnsureConfig, EnsureError, Ensured},
    testing::{ApiServer, Fault, RequestCounts, Verb},
};
use serde_json::json;
use support::widget::{Widget, WidgetSpec};

/// A server with the Widget CRD, a Widget `owner` to own the children, and its client.
async fn setup() -> (ApiServer, Client, Widget) {
    let server = ApiServer::new();
    let client = server.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Widget::crd())
        .await
        .unwrap();
    let established = await_condition(
        crds,
        "widgets.test.kube-reconcile.dev",
        conditions::is_crd_established(),
    );
    tokio::time::timeout(Duration::from_secs(5), established)
        .await
        .unwrap()
        .unwrap();
    let owner = widget(&client, "owner").await;
    (server, client, owner)
}

async fn widget(client: &Client, name: &str) -> Widget {
    let spec = WidgetSpec {
        size: 3,
        colour: "red".into(),
    };
    Api::<Widget>::default_namespaced(client.clone())
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
                        resources: Some(ResourceRequirements {
                            requests: Some(BTreeMap::from([
                                ("cpu".into(), Quantity("500m".into())),
                                ("memory".into(), Quantity("1Gi".into())),
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

/// What happened on the server while `f` ran.
async fn counted<T>(server: &ApiServer, f: impl Future<Output = T>) -> (T, RequestCounts) {
    let before = server.requests();
    let out = f.await;
    (out, server.requests().since(&before))
}

fn rv<K: Resource>(obj: &K) -> String {
    obj.meta().resource_version.clone().unwrap()
}

// ---------------------------------------------------------------- server-side apply

#[tokio::test]
async fn apply_creates_then_writes_nothing_then_reports_changed_fields() {
    let (server, client, owner) = setup().await;
    let ensure = Ensure::new(client.clone(), &owner).unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(client);

    let desired = config_map("settings", &[("a", "1"), ("b", "2")]);
    assert_eq!(ensure.apply(&desired).await.unwrap(), Ensured::Created);
    let created = cms.get("settings").await.unwrap();

    let (outcome, requests) = counted(&server, ensure.apply(&desired)).await;
    assert_eq!(outcome.unwrap(), Ensured::Unchanged);
    assert_eq!(requests.writes(), 0, "{requests}");
    assert_eq!(requests.get(Verb::Get, "configmaps"), 1);
    assert_eq!(rv(&cms.get("settings").await.unwrap()), rv(&created));

    let changed = config_map("settings", &[("a", "1"), ("b", "3")]);
    let (outcome, requests) = counted(&server, ensure.apply(&changed)).await;
    assert_eq!(
        outcome.unwrap(),
        Ensured::Updated {
            fields: vec!["data.b".into()]
        }
    );
    assert_eq!(requests.get(Verb::Patch, "configmaps"), 1);
    assert_eq!(cms.get("settings").await.unwrap().data.unwrap()["b"], "3");
}

#[tokio::test]
async fn apply_removes_a_field_it_no_longer_applies() {
    let (_server, client, owner) = setup().await;
    let ensure = Ensure::new(client.clone(), &owner).unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(client);

    ensure
        .apply(&config_map("settings", &[("a", "1"), ("b", "2")]))
        .await
        .unwrap();
    let outcome = ensure
        .apply(&config_map("settings", &[("a", "1")]))
        .await
        .unwrap();
    assert_eq!(outcome.fields(), ["data.b"]);
    let data = cms.get("settings").await.unwrap().data.unwrap();
    assert_eq!(data, BTreeMap::from([("a".to_string(), "1".to_string())]));
}

#[tokio::test]
async fn apply_never_churns_on_server_defaults_of_services_and_stateful_sets() {
    let (server, client, owner) = setup().await;
    let ensure = Ensure::new(client.clone(), &owner).unwrap();

    let svc = service("db", 5432);
    let sts = stateful_set("db", "postgres:16");
    assert_eq!(ensure.apply(&svc).await.unwrap(), Ensured::Created);
    assert_eq!(ensure.apply(&sts).await.unwrap(), Ensured::Created);

    // The server filled in defaults our desired objects do not set.
    let live_svc = Api::<Service>::default_namespaced(client.clone())
        .get("db")
        .await
        .unwrap();
    let live_spec = live_svc.spec.clone().unwrap();
    assert!(live_spec.cluster_ip.is_some());
    assert_eq!(live_spec.ports.unwrap()[0].protocol.as_deref(), Some("TCP"));
    let live_sts = Api::<StatefulSet>::default_namespaced(client.clone())
        .get("db")
        .await
        .unwrap();
    let pod = live_sts.spec.template.spec.clone().unwrap();
    assert_eq!(pod.dns_policy.as_deref(), Some("ClusterFirst"));

    let (outcomes, requests) = counted(&server, async {
        let mut outcomes = Vec::new();
        for _ in 0..20 {
            outcomes.push(ensure.apply(&svc).await.unwrap());
            outcomes.push(ensure.apply(&sts).await.unwrap());
        }
        outcomes
    })
    .await;
    assert!(
        outcomes.iter().all(|o| *o == Ensured::Unchanged),
        "{outcomes:?}"
    );
    assert_eq!(requests.writes(), 0, "{requests}");
    let again = Api::<StatefulSet>::default_namespaced(client)
        .get("db")
        .await
        .unwrap();
    assert_eq!(rv(&again), rv(&live_sts));

    // A real change is one apply, and names the field.
    let outcome = ensure
        .apply(&stateful_set("db", "postgres:17"))
        .await
        .unwrap();
    assert_eq!(
        outcome.fields(),
        ["spec.template.spec.containers[name=db].image"]
    );
}

#[tokio::test]
async fn apply_keeps_fields_of_other_managers_and_takes_back_its_own() {
    let (server, client, owner) = setup().await;
    let ensure = Ensure::new(client.clone(), &owner).unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let desired = config_map("settings", &[("a", "1")]);
    ensure.apply(&desired).await.unwrap();

    // Someone else adds an annotation and a key of their own: not our business.
    let theirs = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..PatchParams::default()
    };
    cms.patch(
        "settings",
        &theirs,
        &Patch::Merge(json!({"metadata": {"annotations": {"note": "x"}}, "data": {"extra": "y"}})),
    )
    .await
    .unwrap();
    let (outcome, requests) = counted(&server, ensure.apply(&desired)).await;
    assert_eq!(outcome.unwrap(), Ensured::Unchanged);
    assert_eq!(requests.writes(), 0);

    // Someone else changes our key: the apply takes it back.
    cms.patch(
        "settings",
        &theirs,
        &Patch::Merge(json!({"data": {"a": "tampered"}})),
    )
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

#[tokio::test]
async fn identical_server_side_applies_do_not_bump_the_resource_version() {
    // The embedded server itself: the property Ensure's no-op check mirrors.
    let server = ApiServer::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": "x", "labels": {"a": "b"}}, "data": {"k": "v"}});
    let params = PatchParams::apply("me").force();
    let first = cms.patch("x", &params, &Patch::Apply(&body)).await.unwrap();
    let second = cms.patch("x", &params, &Patch::Apply(&body)).await.unwrap();
    assert_eq!(rv(&first), rv(&second));
    assert_eq!(
        first.metadata.managed_fields,
        second.metadata.managed_fields
    );
}

#[tokio::test]
async fn apply_adopts_an_object_its_field_manager_wrote_through_the_patch_strategy() {
    let (server, client, owner) = setup().await;
    let ensure = Ensure::new(client, &owner).unwrap();
    let desired = config_map("settings", &[("a", "1")]);
    assert_eq!(ensure.patch(&desired).await.unwrap(), Ensured::Created);
    // Switching strategies: the first apply takes ownership of the fields (one write)...
    let outcome = ensure.apply(&desired).await.unwrap();
    assert!(matches!(outcome, Ensured::Updated { .. }), "{outcome:?}");
    // ...and from then on nothing is written.
    let (outcome, requests) = counted(&server, ensure.apply(&desired)).await;
    assert_eq!(outcome.unwrap(), Ensured::Unchanged);
    assert_eq!(requests.writes(), 0);
}

// ---------------------------------------------------------------- create or patch

#[tokio::test]
async fn patch_compares_only_the_fields_it_sets() {
    let (server, client, owner) = setup().await;
    let ensure = Ensure::new(client.clone(), &owner).unwrap();
    let svc = service("db", 5432);
    let sts = stateful_set("db", "postgres:16");
    let secret = Secret {
        metadata: meta("db-config"),
        string_data: None,
        data: Some(BTreeMap::from([(
            "user".into(),
            ByteString(b"app".to_vec()),
        )])),
        ..Secret::default()
    };
    for outcome in [
        ensure.patch(&svc).await.unwrap(),
        ensure.patch(&sts).await.unwrap(),
        ensure.patch(&secret).await.unwrap(),
    ] {
        assert_eq!(outcome, Ensured::Created);
    }
    let live_svc = Api::<Service>::default_namespaced(client.clone())
        .get("db")
        .await
        .unwrap();
    let (outcomes, requests) = counted(&server, async {
        let mut outcomes = Vec::new();
        for _ in 0..20 {
            outcomes.push(ensure.patch(&svc).await.unwrap());
            outcomes.push(ensure.patch(&sts).await.unwrap());
            outcomes.push(ensure.patch(&secret).await.unwrap());
        }
        outcomes
    })
    .await;
    assert!(
        outcomes.iter().all(|o| *o == Ensured::Unchanged),
        "{outcomes:?}"
    );
    assert_eq!(requests.writes(), 0, "{requests}");

    // A change patches what differs and keeps what the server allocated.
    let outcome = ensure.patch(&service("db", 5433)).await.unwrap();
    assert_eq!(outcome.fields(), ["spec.ports[0].port"]);
    let patched = Api::<Service>::default_namespaced(client)
        .get("db")
        .await
        .unwrap();
    let spec = patched.spec.unwrap();
    assert_eq!(spec.cluster_ip, live_svc.spec.unwrap().cluster_ip);
    assert_eq!(spec.ports.unwrap()[0].port, 5433);
    assert_eq!(
        ensure.patch(&service("db", 5433)).await.unwrap(),
        Ensured::Unchanged
    );
}

#[tokio::test]
async fn patch_retries_a_conflict_once_after_a_re_read() {
    let (server, client, owner) = setup().await;
    let ensure = Ensure::new(client, &owner).unwrap();
    ensure
        .patch(&config_map("settings", &[("a", "1")]))
        .await
        .unwrap();
    server.faults().inject(
        Fault::error(409)
            .verb(Verb::Patch)
            .resource("configmaps")
            .times(1),
    );
    let (outcome, requests) = counted(
        &server,
        ensure.patch(&config_map("settings", &[("a", "2")])),
    )
    .await;
    assert_eq!(outcome.unwrap().fields(), ["data.a"]);
    assert_eq!(requests.get(Verb::Get, "configmaps"), 2, "{requests}");
    assert_eq!(requests.get(Verb::Patch, "configmaps"), 2, "{requests}");
}

#[tokio::test(start_paused = true)]
async fn patch_carries_the_resource_version_it_compared_against() {
    let (server, client, owner) = setup().await;
    let ensure = Ensure::new(client.clone(), &owner).unwrap();
    ensure
        .patch(&config_map("settings", &[("a", "1")]))
        .await
        .unwrap();
    // Our patches are slow; while each is in flight someone else updates the object, so
    // both attempts are stale: the first 409 is retried, the second is a Conflict.
    server.faults().inject(
        Fault::latency(Duration::from_millis(50))
            .verb(Verb::Patch)
            .resource("configmaps")
            .name("settings"),
    );
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let interfere = async {
        for i in 0..2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let mut live = cms.get("settings").await.unwrap();
            live.annotations_mut().insert("n".into(), i.to_string());
            cms.replace("settings", &PostParams::default(), &live)
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let desired = config_map("settings", &[("a", "2")]);
    let (outcome, ()) = tokio::join!(ensure.patch(&desired), interfere);
    let err = outcome.unwrap_err();
    assert!(matches!(err, EnsureError::Conflict { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Conflict);
    let live = cms.get("settings").await.unwrap();
    assert_eq!(live.data.unwrap()["a"], "1", "a stale patch must not land");
}

// ---------------------------------------------------------------- conflicts

#[tokio::test]
async fn a_single_conflict_is_retried_and_two_are_a_conflict() {
    let (server, client, owner) = setup().await;
    let ensure = Ensure::new(client, &owner).unwrap();
    let desired = config_map("settings", &[("a", "1")]);

    server.faults().inject(
        Fault::error(409)
            .verb(Verb::Patch)
            .resource("configmaps")
            .times(1),
    );
    let (outcome, requests) = counted(&server, ensure.apply(&desired)).await;
    assert_eq!(outcome.unwrap(), Ensured::Created);
    assert_eq!(requests.get(Verb::Get, "configmaps"), 2);
    assert_eq!(requests.get(Verb::Patch, "configmaps"), 2);

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
        if kind == "ConfigMap" && name == "default/settings"),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::Conflict);
    assert!(std::error::Error::source(&err).is_some());
}

#[tokio::test]
async fn a_create_that_races_another_creator_reads_again() {
    let (server, client, owner) = setup().await;
    let ensure = Ensure::new(client, &owner).unwrap();
    server.faults().inject(
        Fault::error(409)
            .verb(Verb::Create)
            .resource("secrets")
            .times(1),
    );
    let (outcome, requests) = counted(&server, ensure.create_only(&password_secret("pw"))).await;
    assert_eq!(outcome.unwrap(), Ensured::Created);
    assert_eq!(requests.get(Verb::Create, "secrets"), 2);
}

// ---------------------------------------------------------------- create only

#[tokio::test]
async fn a_generated_password_survives_a_thousand_reconciles() {
    let (server, client, owner) = setup().await;
    let ensure = Ensure::new(client.clone(), &owner).unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(client);

    assert_eq!(
        ensure
            .create_only(&password_secret("db-credentials"))
            .await
            .unwrap(),
        Ensured::Created
    );
    let original = secrets.get("db-credentials").await.unwrap();
    let (outcomes, requests) = counted(&server, async {
        let mut unchanged = 0;
        for _ in 0..1000 {
            // A fresh random password every time, as a naive reconcile would make.
            if ensure
                .create_only(&password_secret("db-credentials"))
                .await
                .unwrap()
                == Ensured::Unchanged
            {
                unchanged += 1;
            }
        }
        unchanged
    })
    .await;
    assert_eq!(outcomes, 1000);
    assert_eq!(requests.writes(), 0, "{requests}");
    let after = secrets.get("db-credentials").await.unwrap();
    assert_eq!(after.data, original.data);
    assert_eq!(rv(&after), rv(&original));
}

#[tokio::test]
async fn create_only_refuses_a_password_someone_else_made() {
    let (server, client, owner) = setup().await;
    let ensure = Ensure::new(client.clone(), &owner).unwrap();
    Api::<Secret>::default_namespaced(client)
        .create(&PostParams::default(), &password_secret("db-credentials"))
        .await
        .unwrap();
    let (outcome, requests) = counted(
        &server,
        ensure.create_only(&password_secret("db-credentials")),
    )
    .await;
    let err = outcome.unwrap_err();
    assert!(
        matches!(&err, EnsureError::NotOwned { owner: None, .. }),
        "{err:?}"
    );
    assert_eq!(requests.writes(), 0);
}

// ---------------------------------------------------------------- not ours

#[tokio::test]
async fn an_object_of_another_owner_is_never_taken_over() {
    let (server, client, owner) = setup().await;
    let other = widget(&client, "other").await;
    let theirs = Ensure::new(client.clone(), &other).unwrap();
    let ours =
        Ensure::with_config(client.clone(), &owner, EnsureConfig::default().adopt(true)).unwrap();
    theirs
        .apply(&config_map("shared", &[("a", "theirs")]))
        .await
        .unwrap();

    let desired = config_map("shared", &[("a", "ours")]);
    let (results, requests) = counted(&server, async {
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
            "ConfigMap default/shared exists and is not ours: it is controlled by Widget/other"
        );
    }
    assert_eq!(requests.writes(), 0);
    let live = Api::<ConfigMap>::default_namespaced(client)
        .get("shared")
        .await
        .unwrap();
    assert_eq!(live.data.unwrap()["a"], "theirs");
}

#[tokio::test]
async fn an_object_without_a_controller_is_adopted_only_when_allowed() {
    let (_server, client, owner) = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    cms.create(
        &PostParams::default(),
        &config_map("handmade", &[("a", "1")]),
    )
    .await
    .unwrap();

    let strict = Ensure::new(client.clone(), &owner).unwrap();
    let err = strict
        .apply(&config_map("handmade", &[("a", "2")]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EnsureError::NotOwned { owner: None, .. }),
        "{err:?}"
    );

    let adopting =
        Ensure::with_config(client, &owner, EnsureConfig::default().adopt(true)).unwrap();
    let outcome = adopting
        .apply(&config_map("handmade", &[("a", "2")]))
        .await
        .unwrap();
    assert!(
        outcome.fields().contains(&"data.a".to_string()),
        "{outcome:?}"
    );
    let live = cms.get("handmade").await.unwrap();
    assert_eq!(
        live.owner_references()[0].uid,
        owner.metadata.uid.clone().unwrap()
    );
    // Now it is ours for the strict one too.
    assert_eq!(
        strict
            .apply(&config_map("handmade", &[("a", "2")]))
            .await
            .unwrap(),
        Ensured::Unchanged
    );
}

#[test]
fn an_owner_without_a_uid_is_a_typed_error() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = ApiServer::new().client();
        let mut owner = Widget::new(
            "unsaved",
            WidgetSpec {
                size: 1,
                colour: "red".into(),
            },
        );
        let err = Ensure::new(client.clone(), &owner).unwrap_err();
        assert_eq!(err.to_string(), "owner Widget/unsaved has no metadata.uid");
        assert_eq!(err.class(), ErrorClass::Terminal);
        owner.metadata.name = None;
        let err = Ensure::new(client, &owner).unwrap_err();
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

#[tokio::test]
async fn children_get_a_controller_reference_and_the_standard_labels() {
    let (_server, client, owner) = setup().await;
    let ensure = Ensure::with_config(
        client.clone(),
        &owner,
        EnsureConfig::default()
            .field_manager("widget-operator")
            .part_of("shop"),
    )
    .unwrap();
    let mut desired = config_map("settings", &[("a", "1")]);
    desired.metadata.labels = Some(BTreeMap::from([(
        "app.kubernetes.io/name".to_string(),
        "custom".to_string(),
    )]));
    ensure.apply(&desired).await.unwrap();
    let live = Api::<ConfigMap>::default_namespaced(client.clone())
        .get("settings")
        .await
        .unwrap();
    let expected = OwnerReference {
        api_version: "test.kube-reconcile.dev/v1".into(),
        kind: "Widget".into(),
        name: "owner".into(),
        uid: owner.metadata.uid.clone().unwrap(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    assert_eq!(live.owner_references(), [expected]);
    let labels = live.labels();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "widget-operator");
    assert_eq!(labels["app.kubernetes.io/instance"], "owner");
    assert_eq!(labels["app.kubernetes.io/name"], "custom"); // ours never overwrite yours
    assert_eq!(labels["app.kubernetes.io/part-of"], "shop");
    assert!(
        live.metadata
            .managed_fields
            .unwrap()
            .iter()
            .any(|m| m.manager.as_deref() == Some("widget-operator"))
    );

    let bare = Ensure::with_config(
        client.clone(),
        &owner,
        EnsureConfig::default().owner_reference(false).labels(false),
    )
    .unwrap();
    bare.apply(&config_map("bare", &[("a", "1")]))
        .await
        .unwrap();
    let live = Api::<ConfigMap>::default_namespaced(client)
        .get("bare")
        .await
        .unwrap();
    assert!(live.owner_references().is_empty());
    assert!(live.labels().is_empty());
    assert_eq!(
        bare.apply(&config_map("bare", &[("a", "1")]))
            .await
            .unwrap(),
        Ensured::Unchanged
    );
}

#[tokio::test]
async fn namespaced_children_follow_the_owner_unless_they_name_a_namespace() {
    let (_server, client, owner) = setup().await;
    let ensure = Ensure::new(client.clone(), &owner).unwrap();
    let mut elsewhere = config_map("elsewhere", &[("a", "1")]);
    elsewhere.metadata.namespace = Some("team-a".into());
    Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &k8s_openapi::api::core::v1::Namespace {
                metadata: meta("team-a"),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    ensure.apply(&config_map("here", &[])).await.unwrap();
    ensure.apply(&elsewhere).await.unwrap();
    assert!(
        Api::<ConfigMap>::namespaced(client.clone(), "default")
            .get_opt("here")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        Api::<ConfigMap>::namespaced(client, "team-a")
            .get_opt("elsewhere")
            .await
            .unwrap()
            .is_some()
    );
}

// ---------------------------------------------------------------- absent and prune

#[tokio::test]
async fn absent_deletes_our_child_once() {
    let (server, client, owner) = setup().await;
    let ensure = Ensure::new(client.clone(), &owner).unwrap();
    assert_eq!(
        ensure.absent::<ConfigMap>("settings").await.unwrap(),
        Ensured::Unchanged
    );
    ensure
        .apply(&config_map("settings", &[("a", "1")]))
        .await
        .unwrap();
    assert_eq!(
        ensure.absent::<ConfigMap>("settings").await.unwrap(),
        Ensured::Deleted
    );
    let (outcome, requests) = counted(&server, ensure.absent::<ConfigMap>("settings")).await;
    assert_eq!(outcome.unwrap(), Ensured::Unchanged);
    assert_eq!(requests.writes(), 0);
    assert!(
        Api::<ConfigMap>::default_namespaced(client)
            .get_opt("settings")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn prune_removes_only_labelled_orphans_of_this_owner() {
    let (_server, client, owner) = setup().await;
    let ensure = Ensure::new(client.clone(), &owner).unwrap();
    let other = Ensure::new(client.clone(), &widget(&client, "other").await).unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(client);

    for name in ["keep", "orphan-1", "orphan-2"] {
        ensure
            .apply(&config_map(name, &[("a", "1")]))
            .await
            .unwrap();
    }
    other
        .apply(&config_map("other-child", &[("a", "1")]))
        .await
        .unwrap();
    // Someone copied our labels onto an object of theirs: labels alone prove nothing.
    let mut impostor = config_map("impostor", &[("a", "1")]);
    impostor.metadata.labels = Some(ensure.standard_labels());
    cms.create(&PostParams::default(), &impostor).await.unwrap();
    cms.create(&PostParams::default(), &config_map("unlabelled", &[]))
        .await
        .unwrap();

    let mut deleted = ensure.prune::<ConfigMap>(&["keep"]).await.unwrap();
    deleted.sort();
    assert_eq!(deleted, ["orphan-1", "orphan-2"]);
    let mut left: Vec<String> = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(ResourceExt::name_any)
        .filter(|n| n != "owner")
        .collect();
    left.sort();
    assert_eq!(left, ["impostor", "keep", "other-child", "unlabelled"]);
    assert!(
        ensure
            .prune::<ConfigMap>(&["keep"])
            .await
            .unwrap()
            .is_empty()
    );
}

// ---------------------------------------------------------------- DynamicObject

#[tokio::test]
async fn dynamic_objects_work_like_typed_ones() {
    let (server, client, owner) = setup().await;
    let ensure = Ensure::new(client.clone(), &owner).unwrap();
    let ar = ApiResource::erase::<Widget>(&());
    let child = |size: i64| DynamicObject::new("child", &ar).data(json!({"spec": {"size": size}}));

    assert_eq!(
        ensure.apply_with(&child(2), &ar).await.unwrap(),
        Ensured::Created
    );
    // The CRD schema defaults `spec.colour`; that is not a difference.
    let live = Api::<Widget>::default_namespaced(client.clone())
        .get("child")
        .await
        .unwrap();
    assert_eq!(live.spec.colour, "blue");
    let (outcome, requests) = counted(&server, ensure.apply_with(&child(2), &ar)).await;
    assert_eq!(outcome.unwrap(), Ensured::Unchanged);
    assert_eq!(requests.writes(), 0);
    assert_eq!(
        ensure.apply_with(&child(4), &ar).await.unwrap().fields(),
        ["spec.size"]
    );
    assert_eq!(
        ensure.patch_with(&child(4), &ar).await.unwrap(),
        Ensured::Unchanged
    );
    assert_eq!(
        ensure.patch_with(&child(5), &ar).await.unwrap().fields(),
        ["spec.size"]
    );
    assert_eq!(
        ensure.create_only_with(&child(9), &ar).await.unwrap(),
        Ensured::Unchanged
    );
    assert_eq!(
        ensure
            .prune_with::<DynamicObject>(&ar, &ensure.selector(), &["child"])
            .await
            .unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        ensure
            .absent_with::<DynamicObject>("child", &ar)
            .await
            .unwrap(),
        Ensured::Deleted
    );
}
