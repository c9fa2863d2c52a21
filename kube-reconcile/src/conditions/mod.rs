//! Status conditions with the semantics of apimachinery's `meta.SetStatusCondition`.
//!
//! A [`Condition`] is one observation about an object (`type: Ready`, `status: "True"`),
//! and [`Conditions`] is the list kept in `status.conditions`. Setting a condition follows
//! `meta.SetStatusCondition` exactly:
//!
//! - a new type is appended, stamped with the time of the call (or its own
//!   `lastTransitionTime` when it has one);
//! - for an existing type, `lastTransitionTime` moves **only when `status` changes**;
//!   `reason`, `message` and `observedGeneration` are updated in place;
//! - the call says whether anything changed, so a caller writes status only when needed.
//!
//! [`Conditions`] declares itself to the schema generator as a map-list keyed by `type`
//! (`x-kubernetes-list-type: map`, `x-kubernetes-list-map-keys: [type]`), so server-side
//! apply merges conditions per type and two field managers can each own their own
//! conditions on one object.
//!
//! Reading is lenient: a stored condition with a missing field or an unknown status
//! still deserializes (the status reads as [`ConditionStatus::Unknown`]), an entry that is
//! not an object is dropped and a `conditions` that is not a list reads as empty, so one
//! corrupt entry never makes the whole object unreadable to a controller.
//!
//! # Examples
//!
//! ```
//! use k8s_openapi::jiff::Timestamp;
//! use kube_reconcile::conditions::{Condition, Conditions};
//!
//! let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
//! let t1: Timestamp = "2026-01-01T00:05:00Z".parse().unwrap();
//! let mut conditions = Conditions::default();
//!
//! assert!(conditions.set(Condition::new("Ready", false, "Provisioning", "creating the instance"), t0));
//! // Same status, new reason: updated, but the transition time stays.
//! assert!(conditions.set(Condition::new("Ready", false, "Configuring", "writing the config"), t1));
//! assert_eq!(conditions.find("Ready").unwrap().last_transition_time.as_ref().unwrap().0, t0);
//! // Setting the very same condition again changes nothing.
//! assert!(!conditions.set(Condition::new("Ready", false, "Configuring", "writing the config"), t1));
//! // A status change moves the transition time.
//! assert!(conditions.set(Condition::new("Ready", true, "Available", "serving"), t1));
//! assert!(conditions.is_true("Ready"));
//! assert_eq!(conditions.find("Ready").unwrap().last_transition_time.as_ref().unwrap().0, t1);
//! ```

use std::{borrow::Cow, fmt};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1 as meta, jiff::Timestamp};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The status of a [`Condition`]: `"True"`, `"False"` or `"Unknown"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// The controller cannot tell (also what an unreadable stored value reads as).
    #[default]
    Unknown,
}

impl ConditionStatus {
    /// The string Kubernetes stores: `"True"`, `"False"` or `"Unknown"` (also its
    /// `Display`).
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }

    /// Reads a stored status; anything but `"True"` and `"False"` is `Unknown`.
    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "True" => ConditionStatus::True,
            "False" => ConditionStatus::False,
            _ => ConditionStatus::Unknown,
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(value: bool) -> Self {
        if value {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    }
}

impl fmt::Display for ConditionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ConditionStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ConditionStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Lenient on purpose: a corrupt value must not make the object unreadable.
        let value = serde_json::Value::deserialize(deserializer)?;
        Ok(value
            .as_str()
            .map_or(ConditionStatus::Unknown, ConditionStatus::parse))
    }
}

/// One condition of an object's status, as `metav1.Condition` stores it.
///
/// Every field reads with a default when missing, so a hand-edited or corrupt entry
/// still deserializes; [`Conditions::set`] fills `lastTransitionTime`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Condition {
    /// The kind of observation, in `CamelCase` (`Ready`, `Reconciling`).
    #[serde(rename = "type", default, deserialize_with = "lenient")]
    pub type_: String,
    /// Whether it holds.
    #[serde(default)]
    pub status: ConditionStatus,
    /// Why, as one `CamelCase` word a program can match on.
    #[serde(default, deserialize_with = "lenient")]
    pub reason: String,
    /// Why, for a human.
    #[serde(default, deserialize_with = "lenient")]
    pub message: String,
    /// The `metadata.generation` this observation was made at.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub observed_generation: Option<i64>,
    /// When `status` last changed.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_transition_time: Option<meta::Time>,
}

/// Reads a field, or its default when the stored value has the wrong shape.
pub(crate) fn lenient<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned + Default,
{
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).unwrap_or_default())
}

impl Condition {
    /// A condition of `type_` with `status`, `reason` and `message`.
    pub fn new(
        type_: impl Into<String>,
        status: impl Into<ConditionStatus>,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: None,
            last_transition_time: None,
        }
    }

    /// A condition that holds.
    pub(crate) fn true_(
        type_: impl Into<String>,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Condition::new(type_, ConditionStatus::True, reason, message)
    }

    /// A condition that does not hold.
    pub(crate) fn false_(
        type_: impl Into<String>,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Condition::new(type_, ConditionStatus::False, reason, message)
    }

    /// This condition observed at `generation`.
    #[must_use]
    pub(crate) fn observed_generation(mut self, generation: Option<i64>) -> Self {
        self.observed_generation = generation;
        self
    }

    /// When `status` last changed, if stamped.
    pub(crate) fn last_transition(&self) -> Option<Timestamp> {
        self.last_transition_time.as_ref().map(|t| t.0)
    }
}

impl From<meta::Condition> for Condition {
    fn from(c: meta::Condition) -> Self {
        Condition {
            type_: c.type_,
            status: ConditionStatus::parse(&c.status),
            reason: c.reason,
            message: c.message,
            observed_generation: c.observed_generation,
            last_transition_time: Some(c.last_transition_time),
        }
    }
}

impl From<Condition> for meta::Condition {
    /// Converts to the `k8s-openapi` type; a condition never stamped gets the Unix epoch.
    fn from(c: Condition) -> Self {
        meta::Condition {
            type_: c.type_,
            status: c.status.as_str().to_owned(),
            reason: c.reason,
            message: c.message,
            observed_generation: c.observed_generation,
            last_transition_time: c
                .last_transition_time
                .unwrap_or(meta::Time(Timestamp::UNIX_EPOCH)),
        }
    }
}

impl JsonSchema for Condition {
    fn schema_name() -> Cow<'static, str> {
        "Condition".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "One observation of the object's state (metav1.Condition).",
            "type": "object",
            "required": ["type", "status", "reason", "message", "lastTransitionTime"],
            "properties": {
                "type": { "type": "string", "maxLength": 316 },
                "status": { "type": "string", "enum": ["True", "False", "Unknown"] },
                "reason": { "type": "string", "maxLength": 1024 },
                "message": { "type": "string", "maxLength": 32768 },
                "observedGeneration": { "type": "integer", "format": "int64", "minimum": 0 },
                "lastTransitionTime": { "type": "string", "format": "date-time" }
            }
        })
    }
}

mod list;

pub use self::list::Conditions;

#[cfg(test)]
mod tests;
