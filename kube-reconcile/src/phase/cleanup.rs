//! What a cleanup decides: done, not yet, or held back by the operator's own pacing.

use std::{borrow::Cow, time::Duration};

use crate::conditions::Condition;

/// What [`PhaseMachine::cleanup`](super::PhaseMachine::cleanup) decided.
///
/// | Decision | The finalizer | Status write | Event |
/// |---|---|---|---|
/// | [`done`](Self::done) | removed | none | `Normal CleanedUp` |
/// | [`wait`](Self::wait) | stays; back after the wait | only if [`because`](Self::because) or a condition changes something | none |
/// | [`paced`](Self::paced) | stays; back after the wait | none | none |
///
/// Waiting is not failing: no `CleanupFailed` event, no `lastError`, no backoff, no
/// breaker sample. A cleanup that fails because an external dependency held a call
/// back (its budget, an outage, an open circuit) is turned into the matching decision
/// by the engine; only a real error is a failure.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use kube_reconcile::phase::Cleanup;
///
/// let not_yet = Cleanup::wait(Duration::from_secs(5))
///     .because("DeprovisionPending", "the DBaaS is still deleting instance inst-7");
/// assert_ne!(not_yet, Cleanup::done());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct Cleanup {
    pub(super) kind: CleanupKind,
    pub(super) reason: Option<Cow<'static, str>>,
    pub(super) message: Option<String>,
    pub(super) conditions: Vec<Condition>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CleanupKind {
    Done,
    Wait(Duration),
    Paced(Duration),
}

impl Cleanup {
    const fn of(kind: CleanupKind) -> Self {
        Cleanup {
            kind,
            reason: None,
            message: None,
            conditions: Vec::new(),
        }
    }

    /// Everything outside Kubernetes is released: the engine removes its finalizer.
    pub const fn done() -> Self {
        Cleanup::of(CleanupKind::Done)
    }

    /// Not yet (an external deletion is still running, say): run the cleanup again
    /// after `after`.
    pub const fn wait(after: Duration) -> Self {
        Cleanup::of(CleanupKind::Wait(after))
    }

    /// Held back by the operator's own pacing (its rate budget): run the cleanup again
    /// after `after`, writing nothing.
    pub const fn paced(after: Duration) -> Self {
        Cleanup::of(CleanupKind::Paced(after))
    }

    /// A `CamelCase` reason and a message for the `Ready` condition while waiting.
    pub fn because(
        mut self,
        reason: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        self.reason = Some(reason.into());
        self.message = Some(message.into());
        self
    }

    /// Sets `condition` in the same write (a dependency's availability, say).
    pub fn with_condition(mut self, condition: Condition) -> Self {
        self.conditions.push(condition);
        self
    }
}
