//! The step scope: what the library's own pieces tell the phase engine about one
//! handler or cleanup run, without the handler passing anything along.
//!
//! The engine runs each handler and cleanup inside a scope (a tokio task-local). While it
//! runs, a [`Dependency`](crate::external::Dependency) notes there why it
//! held a call back and which dependencies answered a call. After the run the engine
//! reads the scope: a refusal becomes the right transition, and availability becomes a
//! condition. Outside a scope every note is a no-op.

use std::{cell::RefCell, future::Future};

use crate::{conditions::Condition, external::Unavailable};

tokio::task_local! {
    static SCOPE: RefCell<Notes>;
}

/// What one run noted.
#[derive(Debug, Default)]
pub(crate) struct Notes {
    /// The first call a dependency held back.
    pub(crate) refusal: Option<Unavailable>,
    /// The availability conditions of dependencies that answered a call, one per type.
    pub(crate) available: Vec<Condition>,
    /// How far along the object of this run is: a dependency's budget gives callers
    /// further along earlier turns.
    pub(crate) priority: u32,
    /// Where the dependencies called in this run export their breakers and budgets.
    #[cfg(feature = "metrics")]
    metrics: Option<crate::metrics::Metrics>,
}

/// The metrics a run's dependencies export themselves to (the operator's, if it has
/// any), so that no dependency has to be named to the metrics by hand.
#[derive(Clone, Debug, Default)]
pub(crate) struct Observer {
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Option<crate::metrics::Metrics>,
}

impl Notes {
    /// The conditions the run's dependencies reported: `True` for those that answered,
    /// `False` for the one that held a call back (unless it answered later).
    pub(crate) fn conditions(&self) -> Vec<Condition> {
        let mut out = self.available.clone();
        let refused = self.refusal.as_ref().and_then(|u| u.condition.clone());
        add_missing(&mut out, refused.into_iter().collect());
        out
    }
}

/// Adds each of `more` whose type `conditions` does not have yet.
pub(crate) fn add_missing(conditions: &mut Vec<Condition>, more: Vec<Condition>) {
    for condition in more {
        if !conditions.iter().any(|c| c.type_ == condition.type_) {
            conditions.push(condition);
        }
    }
}

/// Runs `f` in a fresh scope for an object `priority` along, its dependencies exporting
/// themselves to `observer`, and returns its output with what it noted.
pub(crate) async fn run<F: Future>(
    priority: u32,
    #[cfg_attr(
        not(feature = "metrics"),
        expect(unused_variables, reason = "no metrics")
    )]
    observer: &Observer,
    f: F,
) -> (F::Output, Notes) {
    let notes = Notes {
        priority,
        #[cfg(feature = "metrics")]
        metrics: observer.metrics.clone(),
        ..Notes::default()
    };
    SCOPE
        .scope(RefCell::new(notes), async move {
            let out = f.await;
            let notes = SCOPE.with(RefCell::take);
            (out, notes)
        })
        .await
}

/// The priority of the run this is called in; 0 outside the engine.
pub(crate) fn priority() -> u32 {
    SCOPE.try_with(|notes| notes.borrow().priority).unwrap_or(0)
}

/// Exports `gate`'s breaker and budget to the run's metrics, if it has any (once per
/// gate and metrics: later calls find them there).
#[cfg(feature = "metrics")]
pub(crate) fn called(gate: &crate::external::Gate) {
    let _ = SCOPE.try_with(|notes| {
        if let Some(metrics) = &notes.borrow().metrics {
            metrics.observe_gate(gate);
        }
    });
}

/// Without the `metrics` feature there is nothing to export to.
#[cfg(not(feature = "metrics"))]
pub(crate) const fn called(_: &crate::external::Gate) {}

/// Notes a refusal; the first one of a run is the one that counts.
pub(crate) fn held_back(unavailable: &Unavailable) {
    let _ = SCOPE.try_with(|notes| {
        let mut notes = notes.borrow_mut();
        if notes.refusal.is_none() {
            notes.refusal = Some(unavailable.clone());
        }
    });
}

/// Notes that a dependency answered a call: its condition is `True`.
pub(crate) fn answered(condition: impl FnOnce() -> Condition) {
    let _ = SCOPE.try_with(|notes| {
        let mut notes = notes.borrow_mut();
        let condition = condition();
        notes.available.retain(|c| c.type_ != condition.type_);
        notes.available.push(condition);
    });
}
