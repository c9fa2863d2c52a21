//! [`Unavailable`]: why the gate held a call back, when to retry, and what to report.

use std::{fmt, sync::Arc, time::Duration};

use k8s_openapi::jiff::Timestamp;

use crate::conditions::{Condition, Conditions};

/// Why the gate held a call back; the `reason` of the condition it reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UnavailableReason {
    /// The health check says the dependency is down (or the check failed or timed out).
    ExternalSystemUnavailable,
    /// The circuit breaker is open (or forced open, or its half-open probes are all
    /// taken): recent calls failed, so none are made until it half-opens.
    CircuitOpen,
    /// The dependency's rate budget has no cell free: our own pacing, not an outage.
    RateLimited,
}

impl UnavailableReason {
    /// The reason as a condition stores it: `"ExternalSystemUnavailable"`, `"CircuitOpen"`
    /// or `"RateLimited"`.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            UnavailableReason::ExternalSystemUnavailable => "ExternalSystemUnavailable",
            UnavailableReason::CircuitOpen => "CircuitOpen",
            UnavailableReason::RateLimited => "RateLimited",
        }
    }
}

impl fmt::Display for UnavailableReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The gate held a call back: what happened, when to try again, and what to report.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Unavailable {
    /// The dependency's name.
    pub dependency: Arc<str>,
    /// Why the call was held back.
    pub reason: UnavailableReason,
    /// Why, for a human. For an open breaker or a spent budget it ends with
    /// `next attempt at <resume_at>`; for a failed health check it starts with when the
    /// outage began (`unavailable since <time>: <why>`), which the outage does not move.
    ///
    /// It holds nothing specific to this caller, so every object held back by the same
    /// outage gets the same message, and a reconcile triggered by the status write of
    /// the previous one finds nothing to change (no write loop).
    pub message: String,
    /// When this caller should try again, from now: [`resume_at`](Unavailable::resume_at)
    /// plus a random spread, so held-back objects do not all return at once; with a
    /// budget, this caller's own turn in the budget's queue, no earlier than that.
    pub retry_after: Duration,
    /// `retry_after` as a wall-clock time (this object's next attempt).
    pub next_attempt_time: Timestamp,
    /// When the dependency may be tried again, the same for every caller, rounded up to
    /// a second: the breaker's half-open time, the next health check, or the moment the
    /// budget has a cell. `None` while the breaker is forced open or its half-open
    /// probes are in flight (no time is known).
    pub resume_at: Option<Timestamp>,
    /// When the gate decided, on the dependency's wall clock.
    pub observed_at: Timestamp,
    /// The condition to set: `<type>=False` with this reason and message. `None` for
    /// [`RateLimited`](UnavailableReason::RateLimited): the dependency is fine and the
    /// wait is ours, so the condition is left as it is (and a busy budget does not turn
    /// every held-back reconcile into a status write).
    pub condition: Option<Condition>,
}

impl Unavailable {
    /// Sets [`condition`](Unavailable::condition) in `conditions`, stamped with
    /// [`observed_at`](Unavailable::observed_at); returns whether anything changed.
    /// Changes nothing when rate limited.
    pub fn apply(&self, conditions: &mut Conditions) -> bool {
        self.condition
            .as_ref()
            .is_some_and(|c| conditions.set(c.clone(), self.observed_at))
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
