//! [`CircuitBreaker`]: stop calling a dependency that is down, for every object at once.
//!
//! One [`Breaker`] per external dependency (`"dbaas"`), shared by all objects and by
//! any plain client of that dependency. While its circuit is open, a wrapped reconcile
//! is not run: it returns a [deferral](crate::Outcome::Deferred) (the controller
//! requeues it for when the breaker half-opens, plus a random spread so the objects do
//! not all come back at once). That is not a failure, so per-object backoff does not
//! grow while the dependency is down.
//!
//! ```text
//!   Closed ──── failure rate ≥ threshold (after min_calls), ─────▶ Open
//!     ▲         N consecutive failures, slow-call rate ≥ threshold   │  ▲
//!     │                                                              │  │ a probe fails, or
//!     │                                      open duration passes    │  │ every probe slot
//!     │                                      (grows per reopening,   │  │ hangs past
//!     │                                       at least Retry-After)  ▼  │ probe_timeout
//!     └──── probes_to_close probes succeed ──────────────────────── HalfOpen
//!                                               (at most permitted_probes at once)
//!
//!   By hand: force_open() → ForcedOpen, disable() → Disabled,
//!            metrics_only() → MetricsOnly, reset() → Closed
//! ```
//!
//! What counts: a success; a failure of class [`Transient`](crate::ErrorClass::Transient)
//! or [`Throttled`](crate::ErrorClass::Throttled) (whose `retry_after` is honoured when
//! opening); a [timeout](crate::Classify::is_timeout) counts as failed and slow.
//! [`Terminal`](crate::ErrorClass::Terminal) (not found, invalid) and
//! [`Conflict`](crate::ErrorClass::Conflict) errors say nothing about the dependency's
//! health and are never counted; nor are cancelled calls or inner deferrals.
//!
//! # Examples
//!
//! ```
//! use std::{num::NonZeroU32, sync::Arc, time::Duration};
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use kube::runtime::controller::Action;
//! use kube_reconcile::{DeferReason, ErrorClass, Outcome, Reconciler, ReconcilerExt};
//! use kube_reconcile::middleware::circuit_breaker::{BreakerConfig, CircuitBreakerLayer, State};
//!
//! async fn provision(_: Arc<ConfigMap>, _: Arc<()>) -> Result<Action, ErrorClass> {
//!     Err(ErrorClass::Transient) // the DBaaS is down
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dbaas = BreakerConfig::default().consecutive_failures(3).build("dbaas")?;
//! let reconciler = provision.with(CircuitBreakerLayer::from(dbaas.clone()));
//! let (obj, ctx) = (Arc::new(ConfigMap::default()), Arc::new(()));
//! for _ in 0..3 {
//!     assert!(matches!(reconciler.call(obj.clone(), ctx.clone()).await, Outcome::Failed(_)));
//! }
//! assert_eq!(dbaas.state(), State::Open);
//!
//! // Open: the reconcile is not run, and the controller requeues it for later.
//! let Outcome::Deferred(deferral) = reconciler.call(obj, ctx).await else { unreachable!() };
//! assert_eq!(deferral.reason, DeferReason::CircuitOpen { dependency: "dbaas".into() });
//! assert!(deferral.retry_after >= Duration::from_secs(27)); // 30 s, up to 10% jitter, + spread
//! # Ok(()) }
//! ```

use std::sync::Arc;

use kube::runtime::controller::Action;

use crate::reconciler::{DeferReason, Deferral, Outcome, Reconciler};

mod breaker;
mod config;
mod error;
mod layer;
mod permit;
mod settings;
mod shared;
mod state;
mod state_word;
mod time_window;
mod transition;
mod window;

#[cfg(feature = "metrics")]
pub(crate) use self::breaker::WeakBreaker;
pub(crate) use self::error::ConfigError;
pub use self::{
    breaker::Breaker,
    config::{BreakerConfig, Window},
    error::{BreakerError, Rejected},
    layer::CircuitBreakerLayer,
    permit::Permit,
    state::{Snapshot, State, StateChange, TransitionReason},
};

/// A reconciler behind a shared circuit breaker.
///
/// Build it with [`CircuitBreakerLayer`] or [`CircuitBreaker::new`]. While the breaker
/// refuses calls, [`call`](Reconciler::call) returns
/// [`Outcome::Deferred`] with [`DeferReason::CircuitOpen`] and does not run the inner
/// reconciler. Otherwise it runs it and records: `Done` as a success, `Failed` by the
/// error's class, and an inner `Deferred` not at all (its probe slot, if any, is given
/// back).
///
/// A breaker that an external [`Dependency`](crate::external::Dependency) was
/// built with is shared differently: the dependency records each call it lets through,
/// so the layer only refuses reconciles while the circuit is open, takes no half-open
/// probe slot and records no outcome. A reconcile whose handler was held back by the
/// dependency, or never called it, is then no sample, and the circuit closes from
/// half-open only after a real call succeeded.
///
/// # Guarantees
///
/// Cancel-safe: if the reconcile future is dropped at its `.await`, nothing is recorded
/// and a half-open probe slot is released.
#[derive(Clone, Debug)]
#[doc(hidden)]
pub struct CircuitBreaker<R> {
    inner: R,
    breaker: Breaker,
}

impl<R> CircuitBreaker<R> {
    /// Wraps `inner` behind `breaker`.
    pub(crate) const fn new(inner: R, breaker: Breaker) -> Self {
        CircuitBreaker { inner, breaker }
    }

    /// The wrapped reconciler.
    #[cfg(test)]
    pub(crate) const fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The shared breaker, for introspection and manual control.
    pub const fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    fn deferred<E>(&self, rejected: &Rejected) -> Outcome<E> {
        tracing::debug!(
            dependency = self.breaker.dependency(),
            state = rejected.state.as_str(),
            retry_after = ?rejected.retry_after,
            "circuit breaker deferred the reconcile"
        );
        Outcome::Deferred(Deferral {
            retry_after: rejected.retry_after,
            reason: DeferReason::CircuitOpen {
                dependency: self.breaker.dependency_arc(),
            },
        })
    }
}

impl<K, Ctx, R> Reconciler<K, Ctx> for CircuitBreaker<R>
where
    R: Reconciler<K, Ctx>,
    K: Send + Sync,
    Ctx: Send + Sync,
{
    type Error = R::Error;

    async fn reconcile(&self, obj: Arc<K>, ctx: Arc<Ctx>) -> Result<Action, Self::Error> {
        self.call(obj, ctx).await.into_result()
    }

    async fn call(&self, obj: Arc<K>, ctx: Arc<Ctx>) -> Outcome<Self::Error> {
        if self.breaker.is_gated() {
            // An external dependency shares this breaker and records each of its calls
            // itself: the reconcile is no call of its own. Refuse while the circuit is
            // open, and leave the half-open probe to a real call through the dependency.
            if let Err(rejected) = self.breaker.peek() {
                return self.deferred(&rejected);
            }
            return self.inner.call(obj, ctx).await;
        }
        let permit = match self.breaker.try_acquire() {
            Ok(permit) => permit,
            Err(rejected) => return self.deferred(&rejected),
        };
        let outcome = self.inner.call(obj, ctx).await;
        match &outcome {
            Outcome::Done(_) => permit.success(),
            Outcome::Deferred(_) => permit.cancel(),
            Outcome::Failed(error) => permit.record(&Err::<(), _>(error)),
        }
        outcome
    }

    fn error_action(&self, obj: &K, error: &Self::Error) -> Action {
        self.inner.error_action(obj, error)
    }
}

#[cfg(test)]
mod tests;
