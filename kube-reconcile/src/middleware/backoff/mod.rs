//! [`Backoff`]: per-object exponential backoff with a not-before gate.
//!
//! After a failure, an object waits `min(cap, jitter(base · factor^failures))` before its
//! next reconcile. The cap is applied after the jitter, so a delay never exceeds it.
//! What happens next depends on the outcome and the [`ErrorClass`]:
//!
//! | Outcome | State of the object | Next reconcile |
//! |---|---|---|
//! | success (also while being deleted) | forgotten | as the reconciler's `Action` says |
//! | [`Transient`](ErrorClass::Transient) | exponent + 1 | after the delay |
//! | [`Throttled`](ErrorClass::Throttled) | exponent + 1 | after `max(delay, retry_after)`, capped |
//! | [`Conflict`](ErrorClass::Conflict) | exponent unchanged | after the conflict delay |
//! | [`Terminal`](ErrorClass::Terminal) | forgotten | when the object changes |
//! | deferred by an inner layer | unchanged | as that layer says |
//!
//! Two rules keep the delay honest where client-go's limiter is not:
//!
//! - **A watch event cannot skip a pending delay** (kubernetes#112325). While an object is
//!   backing off, a reconcile triggered by an event returns a deferral for the remaining
//!   time without running, unless `metadata.generation` changed: a new spec gets a fresh
//!   start.
//! - **Early re-triggers do not escalate** (kubernetes#132805). If an attempt that started
//!   before the pending delay was over fails, the exponent stays; only the delay is re-armed.
//!
//! State is kept only for failing objects, per object UID (so a recreated object
//! starts fresh): 24 bytes beside the key, under 48 with the map's own overhead (see the
//! `middleware` bench). The gate of an object that is not failing reads no clock and
//! allocates nothing. State is forgotten on success and on terminal errors, and swept once idle
//! for the configured TTL after its next attempt was due, so objects deleted while failing
//! do not linger. [`DeferralStatusLayer`](crate::phase::DeferralStatusLayer) shows each
//! failing object's count and next attempt in its status;
//! [`Running::tracked`](crate::phase::Running::tracked) counts them.
//!
//! # Examples
//!
//! ```
//! use std::{sync::Arc, time::Duration};
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use kube::{api::ObjectMeta, runtime::controller::Action};
//! use kube_reconcile::{ErrorClass, Outcome, Reconciler, ReconcilerExt, testing::ManualClock};
//! use kube_reconcile::middleware::backoff::{BackoffConfig, BackoffLayer};
//!
//! async fn reconcile(_: Arc<ConfigMap>, _: Arc<()>) -> Result<Action, ErrorClass> {
//!     Err(ErrorClass::Transient) // the database is down
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let time = ManualClock::new();
//! let _entered = time.enter();
//! let layer = BackoffConfig::client_go().build()?;
//! let handle = layer.handle();
//! let reconciler = reconcile.with(layer);
//!
//! let cm = Arc::new(ConfigMap {
//!     metadata: ObjectMeta { name: Some("db".into()), uid: Some("1234".into()), ..ObjectMeta::default() },
//!     ..ConfigMap::default()
//! });
//! let err = reconciler.reconcile(cm.clone(), Arc::new(())).await.unwrap_err();
//! // The controller's error_policy asks for the object's own delay.
//! assert_eq!(reconciler.error_action(&cm, &err), Action::requeue(Duration::from_millis(5)));
//! assert_eq!(handle.attempts("1234"), 1);
//!
//! // A watch event 2 ms later does not run the reconciler: the delay is still pending.
//! time.advance(Duration::from_millis(2));
//! let Outcome::Deferred(deferral) = reconciler.call(cm.clone(), Arc::new(())).await else { panic!() };
//! assert_eq!(deferral.retry_after, Duration::from_millis(3));
//! # Ok(()) }
//! ```

use std::{fmt, sync::Arc};

use kube::{Resource, api::ObjectMeta, runtime::controller::Action};

use crate::{
    error::{Classify, ErrorClass},
    reconciler::{DeferReason, Deferral, ObjectKey, Outcome, Reconciler, default_error_action},
};

mod config;
mod error;
mod gate;
mod handle;
mod layer;
mod schedule;
mod state;

pub use self::config::BackoffConfig;
pub(crate) use self::error::BackoffConfigError;
pub use self::error::BackoffError;
pub use self::handle::{Attempt, BackoffHandle};
pub use self::layer::BackoffLayer;
pub(crate) use self::schedule::RetrySchedule;
pub use self::state::Jitter;

/// A reconciler that backs off per object after failures.
///
/// Build it with [`BackoffLayer`]. See the [module docs](self) for the rules.
///
/// # Guarantees
///
/// - The wrapped reconciler never runs for an object whose delay is pending, unless the
///   object's generation changed.
/// - Nothing sleeps: a held-back reconcile returns [`Outcome::Deferred`] at once, which a
///   controller sees as `Ok(Action::requeue(remaining))`.
/// - Cancel-safe: if the future is dropped at its `.await`, nothing is recorded.
/// - [`error_action`](Reconciler::error_action) answers with the object's own delay, so
///   the controller's requeue and the gate agree.
///
/// # Caveats
///
/// - The layer owns the error policy: the wrapped reconciler's `error_action` is not
///   consulted.
/// - Objects without a generation (config maps, secrets) always wait out their delay.
/// - When [`max_keys`](BackoffConfig::max_keys) objects are tracked, failures of further
///   objects are not tracked and requeue by [`default_error_action`].
#[derive(Clone, Debug)]
#[doc(hidden)]
pub struct Backoff<R> {
    inner: R,
    handle: BackoffHandle,
}

impl<R> Backoff<R> {
    /// Wraps `inner`, keeping per-object state in `handle` (shared with its clones).
    pub(crate) const fn new(inner: R, handle: BackoffHandle) -> Self {
        Backoff { inner, handle }
    }

    /// The per-object state.
    #[cfg(test)]
    pub(crate) const fn handle(&self) -> &BackoffHandle {
        &self.handle
    }
}

impl<K, Ctx, R> Reconciler<K, Ctx> for Backoff<R>
where
    R: Reconciler<K, Ctx>,
    K: Resource + Send + Sync,
    Ctx: Send + Sync,
{
    type Error = R::Error;

    async fn reconcile(&self, obj: Arc<K>, ctx: Arc<Ctx>) -> Result<Action, Self::Error> {
        self.call(obj, ctx).await.into_result()
    }

    async fn call(&self, obj: Arc<K>, ctx: Arc<Ctx>) -> Outcome<Self::Error> {
        let generation = obj.meta().generation;
        let started = match self.handle.gate(&*ObjectKey::lookup(&*obj), generation) {
            Ok(started) => started,
            Err(retry_after) => {
                tracing::trace!(object = %Name(obj.meta()), retry_after = ?retry_after, "backing off, reconcile deferred");
                return Outcome::Deferred(Deferral {
                    retry_after,
                    reason: DeferReason::BackingOff,
                });
            }
        };
        let outcome = self.inner.call(Arc::clone(&obj), ctx).await;
        let key = ObjectKey::lookup(&*obj);
        match &outcome {
            Outcome::Done(_) => {
                self.handle.forget(&*key);
            }
            Outcome::Deferred(_) => {}
            Outcome::Failed(error) => {
                let to_key = || ObjectKey::of(&*obj);
                let label = Name(obj.meta());
                self.handle
                    .fail(&*key, to_key, error.class(), generation, started, &label);
            }
        }
        outcome
    }

    fn error_action(&self, obj: &K, error: &Self::Error) -> Action {
        match error.class() {
            ErrorClass::Terminal => Action::await_change(),
            class => match self.handle.remaining(&*ObjectKey::lookup(obj)) {
                Some(wait) => Action::requeue(wait),
                None => default_error_action(class),
            },
        }
    }
}

/// `namespace/name` of an object, formatted only if a log event is enabled.
struct Name<'a>(&'a ObjectMeta);

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.0.name.as_deref().unwrap_or_default();
        match self.0.namespace.as_deref() {
            Some(ns) => write!(f, "{ns}/{name}"),
            None => f.write_str(name),
        }
    }
}

#[cfg(test)]
mod tests;
