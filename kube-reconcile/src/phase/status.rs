//! What the engine keeps in `.status`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::conditions::{Conditions, lenient};

/// The part of an object's status that the phase engine owns.
///
/// Flatten it into your status type, so its fields sit at the top of `.status`
/// (`status.phase`, `status.conditions`, ...), and implement [`HasPhaseStatus`]:
///
/// ```
/// use kube_reconcile::phase::{HasPhaseStatus, PhaseStatus};
///
/// #[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
/// #[serde(rename_all = "camelCase")]
/// pub struct DatabaseStatus {
///     #[serde(flatten)]
///     pub machine: PhaseStatus,
///     /// Set by the operator's own handlers.
///     pub endpoint: Option<String>,
/// }
/// # struct Database { status: Option<DatabaseStatus> }
/// impl HasPhaseStatus for Database {
///     fn phase_status(&self) -> Option<&PhaseStatus> {
///         self.status.as_ref().map(|s| &s.machine)
///     }
/// }
/// ```
///
/// Every field reads leniently: a corrupt value reads as absent, and the engine repairs
/// it on its next write instead of leaving the object unreadable.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PhaseStatus {
    /// The current phase, for humans and `kubectl get`; the conditions are the source
    /// of truth for programs.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub phase: Option<String>,
    /// The `metadata.generation` whose spec the current pass through the phases started
    /// from.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling` and `Stalled` (kstatus conventions), plus any others.
    #[serde(default, skip_serializing_if = "<[_]>::is_empty")]
    pub conditions: Conditions,
    /// The latest phase changes, oldest first; the last entry is the current phase.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub phase_history: Vec<PhaseRecord>,
    /// While failing: how many retries so far and when the next one is due.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub retry: Option<RetryStatus>,
    /// The most recent failure, kept until another replaces it or the object enters
    /// the ready phase.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_error: Option<ErrorRecord>,
}

/// One entry of the phase history: when the object entered a phase, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PhaseRecord {
    /// The phase entered.
    pub phase: String,
    /// The phase left, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// When.
    #[schemars(schema_with = "date_time")]
    pub entered_at: Time,
    /// Why, as a `CamelCase` reason.
    pub reason: String,
    /// Why, for a human.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Whole seconds this phase spent held back by the operator's own pacing (waiting
    /// for a turn at a rate budget, `Transition::paced`), as of the last status write;
    /// they do not count toward the phase's deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paced_seconds: Option<u64>,
}

/// Retry state of a failed object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RetryStatus {
    /// Failures since the object was last ready.
    pub attempts: u32,
    /// When the next retry starts; absent when the failure waits for a spec change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time")]
    pub next_attempt_time: Option<Time>,
}

/// A failure, as recorded in status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ErrorRecord {
    /// The phase it happened in.
    pub phase: String,
    /// A `CamelCase` reason.
    pub reason: String,
    /// What happened, for a human.
    pub message: String,
    /// When it was first seen.
    #[schemars(schema_with = "date_time")]
    pub time: Time,
}

fn date_time(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "format": "date-time" })
}

/// A resource whose status carries a [`PhaseStatus`].
pub trait HasPhaseStatus {
    /// The phase machine's part of the status, if the object has a status.
    fn phase_status(&self) -> Option<&PhaseStatus>;
}
