//! The step scope: what the library's own pieces tell the phase engine about one
//! handler or cleanup run, without the handler passing anything along.
//!
//! The engine runs each handler and cleanup inside a scope (a tokio task-local). While it
//! runs, an [`ExternalDependency`](crate::external::ExternalDependency) notes there why it
//! held a call back and which dependencies answered a call, and a journal notes the
//! `resourceVersion` of its own write to the object. After the run the engine reads the
//! scope: a refusal becomes the right transition, availability becomes a condition, and
//! the engine's next write is guarded by the library's own last write instead of
//! conflicting with it. Outside a scope every note is a no-op.

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
    /// The `resourceVersion` of the library's latest write to the object.
    pub(crate) resource_version: Option<String>,
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

/// Runs `f` in a fresh scope and returns its output with what it noted.
pub(crate) async fn run<F: Future>(f: F) -> (F::Output, Notes) {
    SCOPE
        .scope(RefCell::new(Notes::default()), async move {
            let out = f.await;
            let notes = SCOPE.with(RefCell::take);
            (out, notes)
        })
        .await
}

/// Runs `f` in a scope: the caller's if there is one, else a fresh one dropped after.
pub(crate) async fn within<F: Future>(f: F) -> F::Output {
    if SCOPE.try_with(|_| ()).is_ok() {
        f.await
    } else {
        run(f).await.0
    }
}

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

/// Notes the `resourceVersion` of the library's own write to the object.
pub(crate) fn wrote(resource_version: Option<String>) {
    let _ = SCOPE.try_with(|notes| {
        if resource_version.is_some() {
            notes.borrow_mut().resource_version = resource_version;
        }
    });
}

/// The `resourceVersion` of the library's latest write to the object in this run.
pub(crate) fn resource_version() -> Option<String> {
    SCOPE
        .try_with(|notes| notes.borrow().resource_version.clone())
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn notes_outside_a_scope_are_dropped_and_inside_are_returned() {
        wrote(Some("1".into()));
        assert_eq!(resource_version(), None);
        let ((), notes) = run(async {
            wrote(Some("7".into()));
            within(async { wrote(Some("8".into())) }).await;
            assert_eq!(resource_version().as_deref(), Some("8"));
        })
        .await;
        assert_eq!(notes.resource_version.as_deref(), Some("8"));
    }
}
