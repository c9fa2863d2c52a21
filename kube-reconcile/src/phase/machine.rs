//! The trait an operator implements: one handler per phase, and a cleanup.

use std::{sync::Arc, time::Duration};

use k8s_openapi::jiff::Timestamp;
use kube::{Client, Resource};

use super::{Cleanup, Phase, Transition, Transitions};
use crate::{
    ensure::{Children, Ensure, EnsureConfig, EnsureError, Ensured, Readiness},
    error::Classify,
};

/// A phased reconciler: a phase enum, its transition table, one handler per phase and a
/// cleanup for deletion. Run it with [`PhaseEngine`](super::PhaseEngine).
///
/// Handlers make the world match the object for their phase and say what comes next. They
/// must be idempotent: the engine may run a handler again after a crash, a conflict or a
/// retry, and a handler may be cancelled at any `.await`.
pub trait PhaseMachine<K, Ctx>: Send + Sync + 'static {
    /// The phases, usually declared with [`phases!`](crate::phases).
    type Phase: Phase;
    /// What a handler fails with; its [`class`](Classify::class) decides what happens:
    /// a `Terminal` error moves the object to the failed phase (no retry until its spec
    /// changes), the others keep the phase and go to the middleware (backoff).
    type Error: Classify + std::error::Error + Send + Sync + 'static;

    /// The transition table. Called on every reconcile: keep it in a field.
    fn transitions(&self) -> &Transitions<Self::Phase>;

    /// Runs the handler of `phase` for `obj`.
    ///
    /// A handler that fails because an
    /// [`Dependency`](crate::external::Dependency) held a call back
    /// (`?` on its error) needs no handling of its own: the engine turns the refusal into
    /// the right transition ([`Transition::paced`] for the operator's own pacing, off the
    /// deadline's clock; a stay with the dependency's condition for an outage or an open
    /// circuit), and sets the availability condition of each dependency
    /// that answered a call. Calls made from a task the handler spawns are not seen.
    ///
    /// The failed phase has no handler of its own: the engine retries it. `phase` is
    /// never the failed phase.
    fn handle(
        &self,
        phase: Self::Phase,
        obj: &K,
        step: &Step<'_, Self::Phase, Ctx>,
    ) -> impl Future<Output = Result<Transition<Self::Phase>, Self::Error>> + Send;

    /// Releases what the object holds outside Kubernetes before it is deleted; runs,
    /// possibly many times, while the engine's finalizer is on a deleted object, until
    /// it returns [`Cleanup::done`].
    ///
    /// It can wait ([`Cleanup::wait`], [`Cleanup::paced`]) without failing. A call an
    /// [`Dependency`](crate::external::Dependency) held back needs no
    /// handling: return its error (`?`) and the engine waits for the dependency's turn
    /// ([`Cleanup::paced`], or [`Cleanup::wait`] with the dependency's condition), with
    /// no `CleanupFailed` event and no backoff.
    ///
    /// The default is done at once.
    fn cleanup(
        &self,
        obj: &K,
        step: &Step<'_, Self::Phase, Ctx>,
    ) -> impl Future<Output = Result<Cleanup, Self::Error>> + Send {
        let _ = (obj, step);
        async { Ok(Cleanup::done()) }
    }
}

/// What a handler knows about the step it runs in.
pub struct Step<'a, P, Ctx> {
    pub(super) ctx: &'a Arc<Ctx>,
    pub(super) client: &'a Client,
    pub(super) children: &'a EnsureConfig,
    pub(super) cache: &'a crate::ensure::ChildCache,
    pub(super) phase: P,
    pub(super) entered_at: Option<Timestamp>,
    pub(super) now: Timestamp,
}

impl<P: Phase, Ctx> Step<'_, P, Ctx> {
    /// The controller's context.
    pub fn ctx(&self) -> &Arc<Ctx> {
        self.ctx
    }

    /// The engine's client.
    pub fn client(&self) -> &Client {
        self.client
    }

    /// Writes `child` of `owner` by its [strategy](Ensure::strategy), with the engine's
    /// [settings for children](super::PhaseConfig::children): owner reference, standard
    /// labels, **no write when nothing changed**.
    ///
    /// # Errors
    ///
    /// [`EnsureError`]: `MissingField` when the owner has no name or UID, `NotOwned`
    /// (terminal) for a child of that name that is not ours, `Conflict` after two
    /// conflicts in a row, `Api` for other API errors.
    pub async fn ensure<K, E>(&self, owner: &K, child: &E) -> Result<Ensured, EnsureError>
    where
        K: Resource<DynamicType = ()>,
        E: Ensure<K>,
        <E::Child as Resource>::Scope: 'static,
    {
        self.children_of(owner)?.ensure(owner, child).await
    }

    /// Reads `child` of `owner` and asks it whether it is
    /// [ready](Ensure::readiness); a child that does not exist yet is waiting.
    ///
    /// # Errors
    ///
    /// As for [`ensure`](Self::ensure).
    pub async fn readiness<K, E>(&self, owner: &K, child: &E) -> Result<Readiness, EnsureError>
    where
        K: Resource<DynamicType = ()>,
        E: Ensure<K>,
        <E::Child as Resource>::Scope: 'static,
    {
        self.children_of(owner)?.readiness(owner, child).await
    }

    /// The children of `owner`, with the engine's client and settings.
    fn children_of<K: Resource<DynamicType = ()>>(
        &self,
        owner: &K,
    ) -> Result<Children, EnsureError> {
        Ok(
            Children::with_config(self.client.clone(), owner, self.children.clone())?
                .with_cache(Some(self.cache.clone())),
        )
    }

    /// How long the object has been in this phase (zero if unknown).
    pub fn time_in_phase(&self) -> Duration {
        self.entered_at
            .and_then(|at| Duration::try_from(self.now.duration_since(at)).ok())
            .unwrap_or_default()
    }
}

impl<P: Phase, Ctx> std::fmt::Debug for Step<'_, P, Ctx> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Step")
            .field("phase", &self.phase)
            .field("entered_at", &self.entered_at)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}
