//! The kinds the server serves: built-ins, and custom resources registered from CRDs.

use std::sync::Arc;

use serde_json::Value;

/// One served resource (a group/version/plural) and the rules its objects follow.
#[derive(Clone, Debug)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent facts about a kind, as in APIResource"
)]
pub(crate) struct ResourceType {
    pub(crate) group: String,
    pub(crate) version: String,
    pub(crate) kind: String,
    pub(crate) plural: String,
    pub(crate) singular: String,
    pub(crate) short_names: Vec<String>,
    pub(crate) categories: Vec<String>,
    pub(crate) namespaced: bool,
    /// Has a `/status` subresource: main writes keep the old status, status writes keep the rest.
    pub(crate) status_subresource: bool,
    /// The server maintains `metadata.generation` for this kind.
    pub(crate) generation: bool,
    /// Where objects live; two views of one storage (core/v1 and events.k8s.io/v1 events) share it.
    pub(crate) storage: Arc<str>,
    /// The `openAPIV3Schema` of a custom resource version.
    pub(crate) schema: Option<Arc<Value>>,
    /// `additionalPrinterColumns` of a custom resource version.
    pub(crate) printer_columns: Vec<PrinterColumn>,
    /// `selectableFields` of a custom resource version (`spec.colour`), usable in field
    /// selectors besides `metadata.name` and `metadata.namespace`.
    pub(crate) selectable_fields: Vec<String>,
    /// Built into the server (strategic merge patch allowed) rather than from a CRD.
    pub(crate) built_in: bool,
    /// A converted view of another type's storage (core/v1 events over events.k8s.io/v1).
    pub(crate) view: bool,
}

/// A Table column: from a CRD's `additionalPrinterColumns`, or a built-in one.
#[derive(Clone, Debug)]
pub(crate) struct PrinterColumn {
    pub(crate) name: String,
    pub(crate) type_: String,
    pub(crate) format: String,
    pub(crate) description: String,
    pub(crate) priority: i64,
    pub(crate) json_path: String,
}

impl ResourceType {
    pub(crate) fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub(crate) fn group_version(&self) -> (String, String) {
        (self.group.clone(), self.version.clone())
    }
}

struct BuiltIn {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    status: bool,
    generation: bool,
    short: &'static [&'static str],
    storage: &'static str,
}

const BUILT_INS: &[BuiltIn] = &[
    BuiltIn {
        group: "",
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        namespaced: false,
        status: true,
        generation: false,
        short: &["ns"],
        storage: "namespaces",
    },
    BuiltIn {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        plural: "configmaps",
        namespaced: true,
        status: false,
        generation: false,
        short: &["cm"],
        storage: "configmaps",
    },
    BuiltIn {
        group: "",
        version: "v1",
        kind: "Secret",
        plural: "secrets",
        namespaced: true,
        status: false,
        generation: false,
        short: &[],
        storage: "secrets",
    },
    BuiltIn {
        group: "",
        version: "v1",
        kind: "Service",
        plural: "services",
        namespaced: true,
        status: true,
        generation: false,
        short: &["svc"],
        storage: "services",
    },
    BuiltIn {
        group: "",
        version: "v1",
        kind: "Pod",
        plural: "pods",
        namespaced: true,
        status: true,
        generation: true,
        short: &["po"],
        storage: "pods",
    },
    BuiltIn {
        group: "",
        version: "v1",
        kind: "PersistentVolumeClaim",
        plural: "persistentvolumeclaims",
        namespaced: true,
        status: true,
        generation: false,
        short: &["pvc"],
        storage: "persistentvolumeclaims",
    },
    BuiltIn {
        group: "",
        version: "v1",
        kind: "ServiceAccount",
        plural: "serviceaccounts",
        namespaced: true,
        status: false,
        generation: false,
        short: &["sa"],
        storage: "serviceaccounts",
    },
    BuiltIn {
        group: "",
        version: "v1",
        kind: "Event",
        plural: "events",
        namespaced: true,
        status: false,
        generation: false,
        short: &["ev"],
        storage: "events",
    },
    BuiltIn {
        group: "events.k8s.io",
        version: "v1",
        kind: "Event",
        plural: "events",
        namespaced: true,
        status: false,
        generation: false,
        short: &["ev"],
        storage: "events",
    },
    BuiltIn {
        group: "apps",
        version: "v1",
        kind: "StatefulSet",
        plural: "statefulsets",
        namespaced: true,
        status: true,
        generation: true,
        short: &["sts"],
        storage: "apps/statefulsets",
    },
    BuiltIn {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        namespaced: true,
        status: true,
        generation: true,
        short: &["deploy"],
        storage: "apps/deployments",
    },
    BuiltIn {
        group: "coordination.k8s.io",
        version: "v1",
        kind: "Lease",
        plural: "leases",
        namespaced: true,
        status: false,
        generation: false,
        short: &[],
        storage: "coordination.k8s.io/leases",
    },
    BuiltIn {
        group: "apiextensions.k8s.io",
        version: "v1",
        kind: "CustomResourceDefinition",
        plural: "customresourcedefinitions",
        namespaced: false,
        status: true,
        generation: true,
        short: &["crd", "crds"],
        storage: "apiextensions.k8s.io/customresourcedefinitions",
    },
];

/// The built-in kinds every embedded server serves.
pub(crate) fn built_ins() -> Vec<ResourceType> {
    BUILT_INS
        .iter()
        .map(|b| ResourceType {
            group: b.group.to_string(),
            version: b.version.to_string(),
            kind: b.kind.to_string(),
            plural: b.plural.to_string(),
            singular: b.kind.to_lowercase(),
            short_names: b.short.iter().map(|s| (*s).to_string()).collect(),
            categories: if matches!(
                b.plural,
                "pods" | "services" | "statefulsets" | "deployments"
            ) {
                vec!["all".to_string()]
            } else {
                Vec::new()
            },
            namespaced: b.namespaced,
            status_subresource: b.status,
            generation: b.generation,
            storage: Arc::from(b.storage),
            schema: None,
            printer_columns: Vec::new(),
            selectable_fields: Vec::new(),
            built_in: true,
            view: b.group.is_empty() && b.plural == "events",
        })
        .collect()
}
