//! The wire format of the DBaaS API: the JSON both the server and the client speak.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// The request header that makes a create idempotent (HTTP header names are case-insensitive).
pub(crate) const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// What to provision: the body of `POST /v1/instances`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceSpec {
    /// A name for people; need not be unique (the idempotency key is what identifies a request).
    pub name: String,
    /// `postgres` or `mysql`.
    pub engine: String,
    /// The engine version, such as `16`.
    pub version: String,
    /// Storage in GiB, 1 to 16384; it can grow but never shrink.
    pub storage_gi: u32,
    /// Replicas, 1 to 9.
    pub replicas: u32,
}

/// A change to an instance: the body of `PATCH /v1/instances/{id}`. Absent fields stay.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct InstancePatch {
    /// Must equal the instance's engine if present: engines never change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// The new engine version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The new storage size in GiB; not smaller than today's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_gi: Option<u32>,
    /// The new replica count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
}

impl From<&InstanceSpec> for InstancePatch {
    /// Everything a spec says but its name, which is fixed at creation.
    fn from(spec: &InstanceSpec) -> Self {
        InstancePatch {
            engine: Some(spec.engine.clone()),
            version: Some(spec.version.clone()),
            storage_gi: Some(spec.storage_gi),
            replicas: Some(spec.replicas),
        }
    }
}

/// Where an instance is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceState {
    /// Accepted, being provisioned; no endpoint yet.
    Creating,
    /// A change is being applied; the endpoint keeps serving.
    Updating,
    /// Serving at its endpoint.
    Ready,
    /// Being torn down; gone (404) once done.
    Deleting,
}

impl InstanceState {
    /// The state as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Creating => "creating",
            InstanceState::Updating => "updating",
            InstanceState::Ready => "ready",
            InstanceState::Deleting => "deleting",
        }
    }
}

impl std::fmt::Display for InstanceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An instance as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    /// The server-assigned id, such as `db-3f9c0a1b2d4e`.
    pub id: String,
    /// The name given at creation.
    pub name: String,
    /// The current state.
    pub state: InstanceState,
    /// `host:port` to connect to, once the instance has first become ready.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The engine.
    pub engine: String,
    /// The engine version.
    pub version: String,
    /// Storage in GiB.
    pub storage_gi: u32,
    /// Replicas.
    pub replicas: u32,
    /// When the instance was created, RFC 3339 in UTC.
    pub created_at: String,
    /// The idempotency key of the request that created it.
    pub idempotency_key: String,
}

impl Instance {
    /// Whether the instance serves and no change is in flight.
    pub fn is_ready(&self) -> bool {
        self.state == InstanceState::Ready
    }

    /// The spec this instance now has.
    pub fn spec(&self) -> InstanceSpec {
        InstanceSpec {
            name: self.name.clone(),
            engine: self.engine.clone(),
            version: self.version.clone(),
            storage_gi: self.storage_gi,
            replicas: self.replicas,
        }
    }
}

/// The body of `GET /v1/instances`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InstanceList {
    /// The instances, by id.
    pub items: Vec<Instance>,
}

/// The body of `GET /v1/instances/{id}/health`: 200 when healthy, 503 when not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceHealth {
    /// Whether the instance passed its health check.
    pub healthy: bool,
    /// Why it did not, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The body of every error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApiError {
    /// A stable, machine-readable code such as `rate_limited` or `not_found`.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
    /// With 429: the same wait as the `Retry-After` header, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
}

/// Percent-encodes `text` for a path segment or query value (everything but RFC 3986 unreserved).
pub(crate) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            write!(out, "%{byte:02X}").expect("writing to a String cannot fail");
        }
    }
    out
}

/// Decodes `%XX` escapes and `+` (a space in query strings); `None` if the result is not UTF-8
/// or an escape is malformed.
pub(crate) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_round_trips_keys_with_reserved_characters() {
        for key in ["default/orders-7f3a", "a b+c%d", "ключ", ""] {
            let encoded = percent_encode(key);
            assert!(encoded.bytes().all(|b| b.is_ascii_graphic()), "{encoded}");
            assert_eq!(percent_decode(&encoded).as_deref(), Some(key));
        }
        assert_eq!(percent_encode("default/orders"), "default%2Forders");
    }

    #[test]
    fn malformed_escapes_do_not_decode() {
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("abc%4"), None);
        assert_eq!(percent_decode("%FF"), None);
    }

    #[test]
    fn a_patch_from_a_spec_carries_everything_but_the_name() {
        let spec = InstanceSpec {
            name: "orders".into(),
            engine: "postgres".into(),
            version: "16".into(),
            storage_gi: 20,
            replicas: 3,
        };
        let json = serde_json::to_value(InstancePatch::from(&spec)).expect("a patch serializes");
        assert_eq!(
            json,
            serde_json::json!({ "engine": "postgres", "version": "16", "storageGi": 20, "replicas": 3 })
        );
    }
}
