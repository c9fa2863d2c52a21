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
    /// The verbs it serves ([`CRUD`] for stored kinds, [`CREATE_ONLY`] for reviews).
    pub(crate) verbs: &'static [&'static str],
    /// Subresources besides `status`.
    pub(crate) subresources: Vec<Subresource>,
    /// Where the `scale` subresource reads and writes, if it has one.
    pub(crate) scale: Option<ScalePaths>,
}

/// The fields behind a `scale` subresource: dotted paths, as a CRD's
/// `subresources.scale` declares them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ScalePaths {
    pub(crate) spec_replicas: String,
    pub(crate) status_replicas: String,
    pub(crate) label_selector: Option<String>,
}

impl ScalePaths {
    /// Deployments, replica sets, stateful sets and replication controllers.
    fn built_in() -> Self {
        ScalePaths {
            spec_replicas: ".spec.replicas".into(),
            status_replicas: ".status.replicas".into(),
            label_selector: Some(".spec.selector".into()),
        }
    }
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

    /// Whether objects of this kind are stored (reviews and bindings are only answered).
    pub(crate) fn stored(&self) -> bool {
        self.verbs.contains(&"watch")
    }

    /// The subresource `name` besides `status`, if served.
    pub(crate) fn subresource(&self, name: &str) -> Option<&Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }
}

/// The verbs of a plain stored resource.
pub(crate) const CRUD: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Namespaces: no `deletecollection`.
const NAMESPACE_VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
/// Requests that are answered, never stored (reviews, bindings).
pub(crate) const CREATE_ONLY: &[&str] = &["create"];
/// Computed lists (`componentstatuses`).
const READ_ONLY: &[&str] = &["get", "list"];
/// Get, patch and update: `status`, `scale`, `approval`, ...
pub(crate) const GPU: &[&str] = &["get", "patch", "update"];
const CONNECT: &[&str] = &["create", "get"];
const PROXY: &[&str] = &["create", "delete", "get", "patch", "update"];

/// A subresource besides `status`: its name, the group, version and kind it answers
/// with (empty: the resource's own), and its verbs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Subresource {
    pub(crate) name: &'static str,
    pub(crate) group: &'static str,
    pub(crate) version: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) verbs: &'static [&'static str],
}

const fn sub(
    name: &'static str,
    gvk: (&'static str, &'static str, &'static str),
    verbs: &'static [&'static str],
) -> Subresource {
    Subresource {
        name,
        group: gvk.0,
        version: gvk.1,
        kind: gvk.2,
        verbs,
    }
}

const OWN: (&str, &str, &str) = ("", "", "");
const CORE: &str = "";
pub(crate) const SCALE: Subresource = sub("scale", ("autoscaling", "v1", "Scale"), GPU);
const FINALIZE: Subresource = sub("finalize", OWN, &["update"]);
const APPROVAL: Subresource = sub("approval", OWN, GPU);
const TOKEN: Subresource = sub(
    "token",
    ("authentication.k8s.io", "v1", "TokenRequest"),
    CREATE_ONLY,
);
const POD: &[Subresource] = &[
    sub("attach", (CORE, "v1", "PodAttachOptions"), CONNECT),
    sub("binding", (CORE, "v1", "Binding"), CREATE_ONLY),
    sub("ephemeralcontainers", OWN, GPU),
    sub("eviction", ("policy", "v1", "Eviction"), CREATE_ONLY),
    sub("exec", (CORE, "v1", "PodExecOptions"), CONNECT),
    sub("log", OWN, &["get"]),
    sub(
        "portforward",
        (CORE, "v1", "PodPortForwardOptions"),
        CONNECT,
    ),
    sub("proxy", (CORE, "v1", "PodProxyOptions"), PROXY),
    sub("resize", OWN, GPU),
];

/// One row of the built-in table.
struct BuiltIn {
    /// `apps/v1`, or `v1` for the core group.
    group_version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    /// Status subresource; generation maintained.
    status: bool,
    generation: bool,
    verbs: &'static [&'static str],
    short: &'static [&'static str],
    subresources: &'static [Subresource],
}

const NS: bool = true;
const CLUSTER: bool = false;

/// A stored kind with a status subresource and a generation (a spec the server tracks).
const fn spec_status(
    group_version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
) -> BuiltIn {
    BuiltIn {
        group_version,
        kind,
        plural,
        namespaced,
        status: true,
        generation: true,
        verbs: CRUD,
        short,
        subresources: &[],
    }
}

/// A stored kind with no status subresource and no generation.
const fn plain(
    group_version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
) -> BuiltIn {
    BuiltIn {
        status: false,
        generation: false,
        ..spec_status(group_version, kind, plural, namespaced, short)
    }
}

impl BuiltIn {
    const fn subs(mut self, subresources: &'static [Subresource]) -> Self {
        self.subresources = subresources;
        self
    }
    const fn verbs(mut self, verbs: &'static [&'static str]) -> Self {
        self.verbs = verbs;
        self
    }
    /// A status subresource, but no generation (the server does not track the spec).
    const fn no_generation(mut self) -> Self {
        self.generation = false;
        self
    }
    /// A generation, but no status subresource.
    const fn generation(mut self) -> Self {
        self.generation = true;
        self
    }
}

/// What a bare kube-apiserver of the reported version serves, resource by resource
/// (the inventory conformance test compares this with a real one's discovery).
const BUILT_INS: &[BuiltIn] = &[
    // core/v1
    plain("v1", "Binding", "bindings", NS, &[]).verbs(CREATE_ONLY),
    plain(
        "v1",
        "ComponentStatus",
        "componentstatuses",
        CLUSTER,
        &["cs"],
    )
    .verbs(READ_ONLY),
    plain("v1", "ConfigMap", "configmaps", NS, &["cm"]),
    plain("v1", "Endpoints", "endpoints", NS, &["ep"]),
    plain("v1", "Event", "events", NS, &["ev"]),
    plain("v1", "LimitRange", "limitranges", NS, &["limits"]),
    spec_status("v1", "Namespace", "namespaces", CLUSTER, &["ns"])
        .no_generation()
        .verbs(NAMESPACE_VERBS)
        .subs(&[FINALIZE]),
    spec_status("v1", "Node", "nodes", CLUSTER, &["no"])
        .no_generation()
        .subs(&[sub("proxy", (CORE, "v1", "NodeProxyOptions"), PROXY)]),
    spec_status(
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        NS,
        &["pvc"],
    )
    .no_generation(),
    spec_status(
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        CLUSTER,
        &["pv"],
    )
    .no_generation(),
    spec_status("v1", "Pod", "pods", NS, &["po"]).subs(POD),
    plain("v1", "PodTemplate", "podtemplates", NS, &[]),
    spec_status(
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        NS,
        &["rc"],
    )
    .subs(&[SCALE]),
    spec_status("v1", "ResourceQuota", "resourcequotas", NS, &["quota"]).no_generation(),
    plain("v1", "Secret", "secrets", NS, &[]),
    plain("v1", "ServiceAccount", "serviceaccounts", NS, &["sa"]).subs(&[TOKEN]),
    spec_status("v1", "Service", "services", NS, &["svc"])
        .no_generation()
        .subs(&[sub("proxy", (CORE, "v1", "ServiceProxyOptions"), PROXY)]),
    // the aggregation layer
    spec_status(
        "apiregistration.k8s.io/v1",
        "APIService",
        "apiservices",
        CLUSTER,
        &[],
    )
    .no_generation(),
    // apps/v1
    plain(
        "apps/v1",
        "ControllerRevision",
        "controllerrevisions",
        NS,
        &[],
    ),
    spec_status("apps/v1", "DaemonSet", "daemonsets", NS, &["ds"]),
    spec_status("apps/v1", "Deployment", "deployments", NS, &["deploy"]).subs(&[SCALE]),
    spec_status("apps/v1", "ReplicaSet", "replicasets", NS, &["rs"]).subs(&[SCALE]),
    spec_status("apps/v1", "StatefulSet", "statefulsets", NS, &["sts"]).subs(&[SCALE]),
    plain("events.k8s.io/v1", "Event", "events", NS, &["ev"]),
    // reviews: answered, never stored
    plain(
        "authentication.k8s.io/v1",
        "SelfSubjectReview",
        "selfsubjectreviews",
        CLUSTER,
        &[],
    )
    .verbs(CREATE_ONLY),
    plain(
        "authentication.k8s.io/v1",
        "TokenReview",
        "tokenreviews",
        CLUSTER,
        &[],
    )
    .verbs(CREATE_ONLY),
    plain(
        "authorization.k8s.io/v1",
        "LocalSubjectAccessReview",
        "localsubjectaccessreviews",
        NS,
        &[],
    )
    .verbs(CREATE_ONLY),
    plain(
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        CLUSTER,
        &[],
    )
    .verbs(CREATE_ONLY),
    plain(
        "authorization.k8s.io/v1",
        "SelfSubjectRulesReview",
        "selfsubjectrulesreviews",
        CLUSTER,
        &[],
    )
    .verbs(CREATE_ONLY),
    plain(
        "authorization.k8s.io/v1",
        "SubjectAccessReview",
        "subjectaccessreviews",
        CLUSTER,
        &[],
    )
    .verbs(CREATE_ONLY),
    spec_status(
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        NS,
        &["hpa"],
    ),
    spec_status(
        "autoscaling/v1",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        NS,
        &["hpa"],
    ),
    spec_status("batch/v1", "CronJob", "cronjobs", NS, &["cj"]),
    spec_status("batch/v1", "Job", "jobs", NS, &[]),
    spec_status(
        "certificates.k8s.io/v1",
        "CertificateSigningRequest",
        "certificatesigningrequests",
        CLUSTER,
        &["csr"],
    )
    .no_generation()
    .subs(&[APPROVAL]),
    plain(
        "certificates.k8s.io/v1",
        "ClusterTrustBundle",
        "clustertrustbundles",
        CLUSTER,
        &[],
    ),
    spec_status(
        "certificates.k8s.io/v1",
        "PodCertificateRequest",
        "podcertificaterequests",
        NS,
        &[],
    ),
    plain(
        "networking.k8s.io/v1",
        "IngressClass",
        "ingressclasses",
        CLUSTER,
        &[],
    )
    .generation(),
    spec_status("networking.k8s.io/v1", "Ingress", "ingresses", NS, &["ing"]),
    plain(
        "networking.k8s.io/v1",
        "IPAddress",
        "ipaddresses",
        CLUSTER,
        &["ip"],
    ),
    plain(
        "networking.k8s.io/v1",
        "NetworkPolicy",
        "networkpolicies",
        NS,
        &["netpol"],
    )
    .generation(),
    spec_status(
        "networking.k8s.io/v1",
        "ServiceCIDR",
        "servicecidrs",
        CLUSTER,
        &[],
    )
    .no_generation(),
    spec_status(
        "policy/v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        NS,
        &["pdb"],
    ),
    plain(
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        CLUSTER,
        &[],
    ),
    plain(
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        "clusterroles",
        CLUSTER,
        &[],
    ),
    plain(
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        "rolebindings",
        NS,
        &[],
    ),
    plain("rbac.authorization.k8s.io/v1", "Role", "roles", NS, &[]),
    plain("storage.k8s.io/v1", "CSIDriver", "csidrivers", CLUSTER, &[]),
    spec_status("storage.k8s.io/v1", "CSINode", "csinodes", CLUSTER, &[]).no_generation(),
    plain(
        "storage.k8s.io/v1",
        "CSIStorageCapacity",
        "csistoragecapacities",
        NS,
        &[],
    ),
    plain(
        "storage.k8s.io/v1",
        "StorageClass",
        "storageclasses",
        CLUSTER,
        &["sc"],
    ),
    spec_status(
        "storage.k8s.io/v1",
        "VolumeAttachment",
        "volumeattachments",
        CLUSTER,
        &[],
    )
    .no_generation(),
    plain(
        "storage.k8s.io/v1",
        "VolumeAttributesClass",
        "volumeattributesclasses",
        CLUSTER,
        &["vac"],
    ),
    plain(
        "admissionregistration.k8s.io/v1",
        "MutatingAdmissionPolicy",
        "mutatingadmissionpolicies",
        CLUSTER,
        &[],
    )
    .generation(),
    plain(
        "admissionregistration.k8s.io/v1",
        "MutatingAdmissionPolicyBinding",
        "mutatingadmissionpolicybindings",
        CLUSTER,
        &[],
    )
    .generation(),
    plain(
        "admissionregistration.k8s.io/v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        CLUSTER,
        &[],
    ),
    spec_status(
        "admissionregistration.k8s.io/v1",
        "ValidatingAdmissionPolicy",
        "validatingadmissionpolicies",
        CLUSTER,
        &[],
    ),
    plain(
        "admissionregistration.k8s.io/v1",
        "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings",
        CLUSTER,
        &[],
    )
    .generation(),
    plain(
        "admissionregistration.k8s.io/v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        CLUSTER,
        &[],
    ),
    spec_status(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        CLUSTER,
        &["crd", "crds"],
    ),
    plain(
        "scheduling.k8s.io/v1",
        "PriorityClass",
        "priorityclasses",
        CLUSTER,
        &["pc"],
    ),
    plain("coordination.k8s.io/v1", "Lease", "leases", NS, &[]),
    plain(
        "node.k8s.io/v1",
        "RuntimeClass",
        "runtimeclasses",
        CLUSTER,
        &[],
    ),
    plain(
        "discovery.k8s.io/v1",
        "EndpointSlice",
        "endpointslices",
        NS,
        &[],
    ),
    plain(
        "resource.k8s.io/v1",
        "DeviceClass",
        "deviceclasses",
        CLUSTER,
        &[],
    )
    .generation(),
    spec_status(
        "resource.k8s.io/v1",
        "DeviceTaintRule",
        "devicetaintrules",
        CLUSTER,
        &[],
    ),
    spec_status(
        "resource.k8s.io/v1",
        "ResourceClaim",
        "resourceclaims",
        NS,
        &[],
    )
    .no_generation(),
    plain(
        "resource.k8s.io/v1",
        "ResourceClaimTemplate",
        "resourceclaimtemplates",
        NS,
        &[],
    ),
    plain(
        "resource.k8s.io/v1",
        "ResourceSlice",
        "resourceslices",
        CLUSTER,
        &[],
    )
    .generation(),
    spec_status(
        "flowcontrol.apiserver.k8s.io/v1",
        "FlowSchema",
        "flowschemas",
        CLUSTER,
        &[],
    ),
    spec_status(
        "flowcontrol.apiserver.k8s.io/v1",
        "PriorityLevelConfiguration",
        "prioritylevelconfigurations",
        CLUSTER,
        &[],
    ),
    spec_status(
        "storagemigration.k8s.io/v1",
        "StorageVersionMigration",
        "storageversionmigrations",
        CLUSTER,
        &[],
    )
    .no_generation(),
];

/// Resources in the `all` category (`kubectl get all`).
const IN_ALL: &[&str] = &[
    "pods",
    "replicationcontrollers",
    "services",
    "daemonsets",
    "deployments",
    "replicasets",
    "statefulsets",
    "horizontalpodautoscalers",
    "cronjobs",
    "jobs",
];

/// Groups whose resources are in the `api-extensions` category.
const API_EXTENSIONS: &[&str] = &[
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "apiregistration.k8s.io",
];

/// The built-in kinds every embedded server serves.
pub(crate) fn built_ins() -> Vec<ResourceType> {
    BUILT_INS
        .iter()
        .map(|b| {
            let (group, version) = b
                .group_version
                .rsplit_once('/')
                .unwrap_or(("", b.group_version));
            let storage = if group.is_empty() {
                b.plural.to_string()
            } else if group == "events.k8s.io" {
                // core/v1 events are a view of the same storage.
                "events".to_string()
            } else {
                format!("{group}/{}", b.plural)
            };
            let mut categories = Vec::new();
            if IN_ALL.contains(&b.plural) {
                categories.push("all".to_string());
            }
            if API_EXTENSIONS.contains(&group) && b.verbs == CRUD {
                categories.push("api-extensions".to_string());
            }
            ResourceType {
                group: group.to_string(),
                version: version.to_string(),
                kind: b.kind.to_string(),
                plural: b.plural.to_string(),
                singular: b.kind.to_lowercase(),
                short_names: b.short.iter().map(|s| (*s).to_string()).collect(),
                categories,
                namespaced: b.namespaced,
                status_subresource: b.status,
                generation: b.generation,
                storage: Arc::from(storage),
                schema: None,
                printer_columns: Vec::new(),
                selectable_fields: Vec::new(),
                built_in: true,
                view: group.is_empty() && b.plural == "events",
                verbs: b.verbs,
                subresources: b.subresources.to_vec(),
                scale: b.subresources.contains(&SCALE).then(ScalePaths::built_in),
            }
        })
        .collect()
}
