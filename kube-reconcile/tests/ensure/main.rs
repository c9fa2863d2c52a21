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

mod apply;
mod ownership;
mod patch;

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
