//! `OpenAPI` v3 schemas of the built-in kinds, generated on first use from k8s-openapi's
//! `JsonSchema` implementations (descriptions included), with the
//! `x-kubernetes-group-version-kind` extension on each served kind. Kinds newer than the
//! k8s-openapi version the crate is built with are served without a schema.

use std::sync::OnceLock;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use schemars::{JsonSchema, SchemaGenerator, generate::SchemaSettings};
use serde_json::{Map, Value, json};

/// Where `$ref`s point in the generated documents.
pub(crate) const REF_PREFIX: &str = "#/components/schemas/";

/// The component schema of one kind (or of `ObjectMeta`) and every schema it references.
#[derive(Debug)]
pub(crate) struct Catalog {
    pub(crate) defs: Map<String, Value>,
    /// The component name of the kind (`io.k8s.api.core.v1.ConfigMap`).
    pub(crate) root: String,
}

impl Catalog {
    /// The kind's own schema.
    pub(crate) fn root_schema(&self) -> &Value {
        static NULL: Value = Value::Null;
        self.defs.get(&self.root).unwrap_or(&NULL)
    }

    /// The schema a `$ref` (possibly wrapped in a one-element `allOf`) points at, else `schema`.
    pub(crate) fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        let target = schema.get("$ref").or_else(|| {
            schema
                .get("allOf")
                .and_then(Value::as_array)
                .filter(|all| all.len() == 1)
                .and_then(|all| all[0].get("$ref"))
        });
        target
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix(REF_PREFIX))
            .and_then(|name| self.defs.get(name))
            .unwrap_or(schema)
    }

    /// The named schemas and every schema they reference, transitively.
    pub(crate) fn closure<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Map<String, Value> {
        let mut out = Map::new();
        let mut todo: Vec<String> = names.into_iter().map(str::to_string).collect();
        while let Some(name) = todo.pop() {
            if out.contains_key(&name) {
                continue;
            }
            let Some(schema) = self.defs.get(&name) else {
                continue;
            };
            refs(schema, &mut todo);
            out.insert(name, schema.clone());
        }
        out
    }
}

fn refs(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(name) = map
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix(REF_PREFIX))
            {
                out.push(name.to_string());
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// How to generate one kind's schemas: its group, version, kind, and the generator call.
type Entry = (
    &'static str,
    &'static str,
    &'static str,
    fn(&mut SchemaGenerator) -> String,
);

fn gen_for<T: JsonSchema>(generator: &mut SchemaGenerator) -> String {
    let _ = generator.subschema_for::<T>();
    T::schema_name().into_owned()
}

/// `group version Kind => type, ...` as entries.
macro_rules! kinds {
    ($($group:literal $version:literal $kind:literal => $ty:ty),* $(,)?) => {
        [$(($group, $version, $kind, gen_for::<$ty> as fn(&mut SchemaGenerator) -> String)),*]
    };
}

/// Every built-in kind k8s-openapi describes at the version the crate is built with.
#[allow(clippy::too_many_lines, reason = "one line per kind")]
fn entries() -> Vec<Entry> {
    use k8s_openapi::{
        api::{
            admissionregistration::v1 as admission, apps::v1 as apps, authentication::v1 as authn,
            authorization::v1 as authz, autoscaling, batch::v1 as batch,
            certificates::v1 as certificates, coordination::v1 as coordination, core::v1 as core,
            discovery::v1 as discovery, events::v1 as events, flowcontrol::v1 as flowcontrol,
            networking::v1 as networking, node::v1 as node, policy::v1 as policy, rbac::v1 as rbac,
            scheduling::v1 as scheduling, storage::v1 as storage,
        },
        apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions,
        kube_aggregator::pkg::apis::apiregistration::v1 as apiregistration,
    };
    #[allow(
        unused_mut,
        reason = "newer kinds are added only for newer k8s-openapi versions"
    )]
    let mut all = Vec::from(kinds![
        "" "v1" "Binding" => core::Binding,
        "" "v1" "ComponentStatus" => core::ComponentStatus,
        "" "v1" "ConfigMap" => core::ConfigMap,
        "" "v1" "Endpoints" => core::Endpoints,
        "" "v1" "Event" => core::Event,
        "" "v1" "LimitRange" => core::LimitRange,
        "" "v1" "Namespace" => core::Namespace,
        "" "v1" "Node" => core::Node,
        "" "v1" "PersistentVolumeClaim" => core::PersistentVolumeClaim,
        "" "v1" "PersistentVolume" => core::PersistentVolume,
        "" "v1" "Pod" => core::Pod,
        "" "v1" "PodTemplate" => core::PodTemplate,
        "" "v1" "ReplicationController" => core::ReplicationController,
        "" "v1" "ResourceQuota" => core::ResourceQuota,
        "" "v1" "Secret" => core::Secret,
        "" "v1" "ServiceAccount" => core::ServiceAccount,
        "" "v1" "Service" => core::Service,
        "apiregistration.k8s.io" "v1" "APIService" => apiregistration::APIService,
        "apps" "v1" "ControllerRevision" => apps::ControllerRevision,
        "apps" "v1" "DaemonSet" => apps::DaemonSet,
        "apps" "v1" "Deployment" => apps::Deployment,
        "apps" "v1" "ReplicaSet" => apps::ReplicaSet,
        "apps" "v1" "StatefulSet" => apps::StatefulSet,
        "events.k8s.io" "v1" "Event" => events::Event,
        "authentication.k8s.io" "v1" "SelfSubjectReview" => authn::SelfSubjectReview,
        "authentication.k8s.io" "v1" "TokenReview" => authn::TokenReview,
        "authorization.k8s.io" "v1" "LocalSubjectAccessReview" => authz::LocalSubjectAccessReview,
        "authorization.k8s.io" "v1" "SelfSubjectAccessReview" => authz::SelfSubjectAccessReview,
        "authorization.k8s.io" "v1" "SelfSubjectRulesReview" => authz::SelfSubjectRulesReview,
        "authorization.k8s.io" "v1" "SubjectAccessReview" => authz::SubjectAccessReview,
        "autoscaling" "v2" "HorizontalPodAutoscaler" => autoscaling::v2::HorizontalPodAutoscaler,
        "autoscaling" "v1" "HorizontalPodAutoscaler" => autoscaling::v1::HorizontalPodAutoscaler,
        "batch" "v1" "CronJob" => batch::CronJob,
        "batch" "v1" "Job" => batch::Job,
        "certificates.k8s.io" "v1" "CertificateSigningRequest" => certificates::CertificateSigningRequest,
        "networking.k8s.io" "v1" "IngressClass" => networking::IngressClass,
        "networking.k8s.io" "v1" "Ingress" => networking::Ingress,
        "networking.k8s.io" "v1" "IPAddress" => networking::IPAddress,
        "networking.k8s.io" "v1" "NetworkPolicy" => networking::NetworkPolicy,
        "networking.k8s.io" "v1" "ServiceCIDR" => networking::ServiceCIDR,
        "policy" "v1" "PodDisruptionBudget" => policy::PodDisruptionBudget,
        "rbac.authorization.k8s.io" "v1" "ClusterRoleBinding" => rbac::ClusterRoleBinding,
        "rbac.authorization.k8s.io" "v1" "ClusterRole" => rbac::ClusterRole,
        "rbac.authorization.k8s.io" "v1" "RoleBinding" => rbac::RoleBinding,
        "rbac.authorization.k8s.io" "v1" "Role" => rbac::Role,
        "storage.k8s.io" "v1" "CSIDriver" => storage::CSIDriver,
        "storage.k8s.io" "v1" "CSINode" => storage::CSINode,
        "storage.k8s.io" "v1" "CSIStorageCapacity" => storage::CSIStorageCapacity,
        "storage.k8s.io" "v1" "StorageClass" => storage::StorageClass,
        "storage.k8s.io" "v1" "VolumeAttachment" => storage::VolumeAttachment,
        "admissionregistration.k8s.io" "v1" "MutatingWebhookConfiguration" => admission::MutatingWebhookConfiguration,
        "admissionregistration.k8s.io" "v1" "ValidatingAdmissionPolicy" => admission::ValidatingAdmissionPolicy,
        "admissionregistration.k8s.io" "v1" "ValidatingAdmissionPolicyBinding" => admission::ValidatingAdmissionPolicyBinding,
        "admissionregistration.k8s.io" "v1" "ValidatingWebhookConfiguration" => admission::ValidatingWebhookConfiguration,
        "apiextensions.k8s.io" "v1" "CustomResourceDefinition" => apiextensions::CustomResourceDefinition,
        "scheduling.k8s.io" "v1" "PriorityClass" => scheduling::PriorityClass,
        "coordination.k8s.io" "v1" "Lease" => coordination::Lease,
        "node.k8s.io" "v1" "RuntimeClass" => node::RuntimeClass,
        "discovery.k8s.io" "v1" "EndpointSlice" => discovery::EndpointSlice,
        "flowcontrol.apiserver.k8s.io" "v1" "FlowSchema" => flowcontrol::FlowSchema,
        "flowcontrol.apiserver.k8s.io" "v1" "PriorityLevelConfiguration" => flowcontrol::PriorityLevelConfiguration,
    ]);
    k8s_openapi::k8s_if_ge_1_34! {
        all.extend(kinds![
            "storage.k8s.io" "v1" "VolumeAttributesClass" => storage::VolumeAttributesClass,
            "resource.k8s.io" "v1" "DeviceClass" => k8s_openapi::api::resource::v1::DeviceClass,
            "resource.k8s.io" "v1" "ResourceClaim" => k8s_openapi::api::resource::v1::ResourceClaim,
            "resource.k8s.io" "v1" "ResourceClaimTemplate" => k8s_openapi::api::resource::v1::ResourceClaimTemplate,
            "resource.k8s.io" "v1" "ResourceSlice" => k8s_openapi::api::resource::v1::ResourceSlice,
        ]);
    }
    k8s_openapi::k8s_if_ge_1_36! {
        all.extend(kinds![
            "admissionregistration.k8s.io" "v1" "MutatingAdmissionPolicy" => admission::MutatingAdmissionPolicy,
            "admissionregistration.k8s.io" "v1" "MutatingAdmissionPolicyBinding" => admission::MutatingAdmissionPolicyBinding,
        ]);
    }
    k8s_openapi::k8s_if_ge_1_37! {
        all.extend(kinds![
            "certificates.k8s.io" "v1" "ClusterTrustBundle" => certificates::ClusterTrustBundle,
            "certificates.k8s.io" "v1" "PodCertificateRequest" => certificates::PodCertificateRequest,
            "resource.k8s.io" "v1" "DeviceTaintRule" => k8s_openapi::api::resource::v1::DeviceTaintRule,
            "storagemigration.k8s.io" "v1" "StorageVersionMigration" => k8s_openapi::api::storagemigration::v1::StorageVersionMigration,
        ]);
    }
    all
}

/// The schemas of a built-in kind, generated on first use (each kind on its own, so a
/// test touching ConfigMaps does not pay for Pods).
pub(crate) fn of_kind(group: &str, version: &str, kind: &str) -> Option<&'static Catalog> {
    static KINDS: OnceLock<(Vec<Entry>, Vec<OnceLock<Catalog>>)> = OnceLock::new();
    let (kinds, cells) = KINDS.get_or_init(|| {
        let kinds = entries();
        let cells = kinds.iter().map(|_| OnceLock::new()).collect();
        (kinds, cells)
    });
    let i = kinds
        .iter()
        .position(|(g, v, k, _)| *g == group && *v == version && *k == kind)?;
    let (group, version, kind, generate) = kinds[i];
    Some(cells[i].get_or_init(|| {
        let mut catalog = build(generate);
        if let Some(schema) = catalog
            .defs
            .get_mut(&catalog.root)
            .and_then(Value::as_object_mut)
        {
            schema.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{ "group": group, "version": version, "kind": kind }]),
            );
        }
        catalog
    }))
}

/// `ObjectMeta`'s schemas, for the `metadata` of custom resources.
pub(crate) fn object_meta() -> &'static Catalog {
    static CELL: OnceLock<Catalog> = OnceLock::new();
    CELL.get_or_init(|| build(gen_for::<ObjectMeta>))
}

fn build(generate: fn(&mut SchemaGenerator) -> String) -> Catalog {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let root = generate(&mut generator);
    Catalog {
        defs: generator.take_definitions(true),
        root,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_kind_has_a_described_schema_with_its_gvk() {
        let c = of_kind("", "v1", "ConfigMap").unwrap();
        assert_eq!(c.root, "io.k8s.api.core.v1.ConfigMap");
        let cm = c.root_schema();
        assert!(
            cm["description"]
                .as_str()
                .unwrap()
                .contains("configuration data")
        );
        assert_eq!(
            cm["x-kubernetes-group-version-kind"][0]["kind"],
            "ConfigMap"
        );
        let meta = c.resolve(&cm["properties"]["metadata"]);
        assert!(meta["properties"]["labels"].is_object(), "{meta}");
        for (group, version, kind, _) in entries() {
            let schema = of_kind(group, version, kind).unwrap().root_schema();
            assert_eq!(schema["x-kubernetes-group-version-kind"][0]["kind"], kind);
            assert!(schema["properties"]["metadata"].is_object(), "{kind}");
        }
        assert!(of_kind("apps", "v1", "Widget").is_none());
        assert!(object_meta().root_schema()["properties"]["name"].is_object());
    }
}
