//! What a phase handler decides.

use std::{borrow::Cow, time::Duration};

use serde::Serialize;

use crate::conditions::Condition;

/// What a phase handler decided: stay, move on, fail or rest.
///
/// Reasons are `CamelCase` words a program can match on; messages are for humans. Both
/// end up in the object's conditions, its phase history and its events.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use kube_reconcile::phase::Transition;
///
/// # kube_reconcile::phases! { enum DbPhase { Provisioning, Configuring } }
/// let waiting: Transition<DbPhase> =
///     Transition::stay(Duration::from_secs(5)).because("InstanceCreating", "the DBaaS is still creating it");
/// let next = Transition::to(DbPhase::Configuring).because("InstanceReady", "instance db-1 is up");
/// let broken: Transition<DbPhase> = Transition::fail_terminal("InvalidSpec", "spec.replicas must be 1, 3 or 5");
/// # let _ = (waiting, next, broken);
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct Transition<P> {
    pub(super) kind: Kind<P>,
    pub(super) reason: Option<Cow<'static, str>>,
    pub(super) message: Option<String>,
    pub(super) status: Option<serde_json::Value>,
    pub(super) status_error: Option<String>,
    pub(super) conditions: Vec<Condition>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind<P> {
    /// Stay; `paced`: held back by the operator's own pacing, off the deadline's clock.
    Stay {
        after: Option<Duration>,
        paced: bool,
    },
    To(P),
    Fail {
        retry: bool,
    },
    Done,
}

impl<P: Copy> Transition<P> {
    fn of(kind: Kind<P>) -> Self {
        Transition {
            kind,
            reason: None,
            message: None,
            status: None,
            status_error: None,
            conditions: Vec::new(),
        }
    }

    /// Stay in this phase and run its handler again after `requeue_after` (or sooner, at
    /// the phase's deadline).
    pub fn stay(requeue_after: Duration) -> Self {
        Transition::of(Kind::Stay {
            after: Some(requeue_after),
            paced: false,
        })
    }

    /// Stay in this phase, held back by the operator's *own* pacing, and run the handler
    /// again after `requeue_after`: for example when a shared
    /// [`RateBudget`](crate::middleware::rate_limit::RateBudget) or an
    /// external [`Dependency`](crate::external::Dependency) said
    /// [`RateLimited`](crate::external::UnavailableReason::RateLimited).
    ///
    /// The time until the handler next decides something else does not count toward
    /// the phase's deadline: a fleet of thousands queued behind a budget of a few calls
    /// a second is waiting its turn, not stuck. Paced time never causes a write (so a
    /// turn costs no status write and wakes nothing): the engine keeps it in memory and
    /// records it as the phase's `pacedSeconds` whenever it writes the status anyway. A
    /// restarted operator has lost what was not written yet, which then counts as time
    /// in the phase.
    ///
    /// Use it only for waits the operator imposes on itself. An external system that is
    /// down or slow is what deadlines are for: [`stay`](Transition::stay) with a reason.
    pub fn paced(requeue_after: Duration) -> Self {
        Transition::of(Kind::Stay {
            after: Some(requeue_after),
            paced: true,
        })
    }

    /// Stay in this phase until the object changes (or the phase's deadline).
    pub fn wait_for_change() -> Self {
        Transition::of(Kind::Stay {
            after: None,
            paced: false,
        })
    }

    /// Move to `phase`; the edge must be declared in the table.
    pub fn to(phase: P) -> Self {
        Transition::of(Kind::To(phase))
    }

    /// Fail: move to the failed phase and retry, with exponential backoff, from the
    /// table's retry phase.
    pub fn fail(reason: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Transition::of(Kind::Fail { retry: true }).because(reason, message)
    }

    /// Fail without retrying: the object rests in the failed phase (condition
    /// `Stalled=True`) until its spec changes, as for an invalid spec.
    pub fn fail_terminal(reason: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Transition::of(Kind::Fail { retry: false }).because(reason, message)
    }

    /// Nothing more to do until the object changes: the usual answer of the ready phase.
    pub fn done() -> Self {
        Transition::of(Kind::Done)
    }

    /// Why: a `CamelCase` reason and a message for humans.
    pub fn because(
        mut self,
        reason: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        self.reason = Some(reason.into());
        self.message = Some(message.into());
        self
    }

    /// Also writes these fields into `.status`, in the same write as the phase (for
    /// example an `endpoint`). `fields` must serialize to a JSON object; nested objects
    /// merge, `null` removes a field.
    pub fn with_status(mut self, fields: impl Serialize) -> Self {
        match serde_json::to_value(fields) {
            Ok(value @ serde_json::Value::Object(_)) => self.status = Some(value),
            Ok(other) => {
                self.status_error = Some(format!("status fields must be an object, not {other}"));
            }
            Err(e) => self.status_error = Some(e.to_string()),
        }
        self
    }

    /// Also sets `condition` (with `meta.SetStatusCondition` semantics) in the same write,
    /// for example an external dependency's availability. The engine's own condition
    /// types (`Ready`, `Reconciling`, `Stalled`) are its to set and are ignored here.
    pub fn with_condition(mut self, condition: Condition) -> Self {
        self.conditions.push(condition);
        self
    }
}
