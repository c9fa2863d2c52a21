//! The `Database` custom resource.

use kube::CustomResource;
use kube_reconcile::phase::{HasPhaseStatus, PhaseStatus};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A managed database: an instance at the DBaaS plus its credentials, configuration,
/// service and the `StatefulSet` of proxies in front of it.
#[derive(CustomResource, Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "example.kube-reconcile.dev",
    version = "v1alpha1",
    kind = "Database",
    namespaced,
    status = "DatabaseStatus",
    shortname = "db",
    category = "all"
)]
#[kube(printcolumn = r#"{"name":"Engine","type":"string","jsonPath":".spec.engine"}"#)]
#[kube(printcolumn = r#"{"name":"Version","type":"string","jsonPath":".spec.version"}"#)]
#[kube(printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".spec.replicas"}"#)]
#[kube(printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#)]
#[kube(
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#
)]
#[kube(
    printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".status.endpoint","priority":1}"#
)]
#[kube(printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSpec {
    /// The database engine.
    pub engine: Engine,
    /// The engine's major version, e.g. `16` for PostgreSQL or `8.4` for MySQL.
    #[schemars(length(min = 1, max = 16))]
    pub version: String,
    /// How many replicas serve the database; odd, so a quorum survives one loss.
    #[schemars(range(min = 1, max = 9))]
    pub replicas: i32,
    /// Storage per replica, as a Kubernetes quantity (`10Gi`).
    #[serde(default = "default_storage")]
    pub storage: String,
    /// Keep the external instance when the `Database` is deleted.
    #[serde(default)]
    pub retain_on_delete: bool,
}

fn default_storage() -> String {
    "1Gi".to_owned()
}

/// A supported engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// PostgreSQL.
    Postgres,
    /// MySQL.
    Mysql,
}

impl Engine {
    /// The name used in images and the DBaaS API.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::Mysql => "mysql",
        }
    }

    /// The port the engine listens on.
    pub fn port(self) -> i32 {
        match self {
            Engine::Postgres => 5432,
            Engine::Mysql => 3306,
        }
    }

    /// The versions the DBaaS offers.
    pub fn versions(self) -> &'static [&'static str] {
        match self {
            Engine::Postgres => &["14", "15", "16", "17"],
            Engine::Mysql => &["8.0", "8.4"],
        }
    }
}

/// What the operator observed.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseStatus {
    /// Phase, conditions, history and retries, kept by the phase engine.
    #[serde(flatten)]
    pub machine: PhaseStatus,
    /// The DBaaS instance id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// Where clients connect, once ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The Secret that holds the credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
}

impl HasPhaseStatus for Database {
    fn phase_status(&self) -> Option<&PhaseStatus> {
        self.status.as_ref().map(|s| &s.machine)
    }
}

impl Database {
    /// The phase as stored, if any.
    pub fn phase(&self) -> Option<&str> {
        self.phase_status().and_then(|s| s.phase.as_deref())
    }

    /// What is wrong with the spec that the schema cannot say, as a message for the user.
    pub fn spec_problem(&self) -> Option<String> {
        let name = self.metadata.name.as_deref().unwrap_or_default();
        let label = name.len() <= MAX_NAME
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !label {
            return Some(format!(
                "metadata.name {name:?} cannot name this Database's children: its Service and \
                 StatefulSet take the name, so it must be at most {MAX_NAME} characters of \
                 lowercase letters, digits and '-', starting with a letter; recreate it under \
                 such a name"
            ));
        }
        let spec = &self.spec;
        if !spec.engine.versions().contains(&spec.version.as_str()) {
            return Some(format!(
                "spec.version {:?} is not offered for {}; use one of {}",
                spec.version,
                spec.engine.as_str(),
                spec.engine.versions().join(", ")
            ));
        }
        if spec.replicas % 2 == 0 {
            return Some(format!(
                "spec.replicas is {}; use an odd number (1, 3, 5, ...) so a quorum survives the loss of one",
                spec.replicas
            ));
        }
        if storage_gi(&spec.storage).is_none() {
            return Some(format!(
                "spec.storage {:?} is not a size in Gi or Mi (e.g. 10Gi, 512Mi)",
                spec.storage
            ));
        }
        None
    }
}

/// The longest Database name: its Service needs a DNS label (63), and its StatefulSet's
/// `controller-revision-hash` label value is the name, a dash and a 10-character hash (63).
const MAX_NAME: usize = 52;

/// `10Gi` → 10, `512Mi` → 1 (rounded up); `None` for anything else.
pub fn storage_gi(quantity: &str) -> Option<u32> {
    if let Some(gi) = quantity.strip_suffix("Gi") {
        return gi.parse::<u32>().ok().filter(|g| *g > 0);
    }
    let mi = quantity
        .strip_suffix("Mi")?
        .parse::<u32>()
        .ok()
        .filter(|m| *m > 0)?;
    Some(mi.div_ceil(1024))
}
