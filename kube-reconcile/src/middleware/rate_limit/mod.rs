//! [`RateLimit`]: GCRA rate limits per object, across all objects and per named dependency.
//!
//! A reconcile that finds no capacity is not run and not failed: it is deferred
//! ([`Outcome::Deferred`]) with the exact wait plus a little seeded jitter, which a
//! controller sees as `Ok(Action::requeue(wait))`. Nothing sleeps, nothing is held, and
//! backoff does not escalate.
//!
//! | Piece | What it limits |
//! |---|---|
//! | [`Quota`] | the rate: one cell per emission interval, at most `burst` at once |
//! | [`RateLimiter`] | one stream of calls, lock-free (one atomic) |
//! | [`RateBudget`] | a named dependency, shared by layers and API clients alike |
//! | [`RateLimitLayer`] | reconciles: `"object"`, `"global"` and budgets, combined |
//!
//! Combined limits **reserve and commit**: a call takes its cells from every limit or
//! from none, so an object refused by its own limit never burns a global or budget
//! cell, and a call refused by the global limit gives its object's cells back.
//!
//! # Examples
//!
//! ```
//! use std::{num::NonZeroU32, sync::Arc, time::Duration};
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use kube::{api::ObjectMeta, runtime::controller::Action};
//! use kube_reconcile::{DeferReason, Outcome, Reconciler, ReconcilerExt};
//! use kube_reconcile::middleware::rate_limit::{Quota, RateLimitLayer};
//!
//! async fn reconcile(_: Arc<ConfigMap>, _: Arc<()>) -> Result<Action, kube::Error> {
//!     Ok(Action::await_change())
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! // Each object at most once a minute.
//! let once_a_minute = Quota::per_minute(NonZeroU32::new(1).unwrap());
//! let reconciler = reconcile.with(RateLimitLayer::builder().per_object(once_a_minute).jitter(Duration::ZERO).build().unwrap());
//!
//! let cm = Arc::new(ConfigMap {
//!     metadata: ObjectMeta { name: Some("db".into()), uid: Some("u-1".into()), ..Default::default() },
//!     ..Default::default()
//! });
//! assert!(matches!(reconciler.call(cm.clone(), Arc::new(())).await, Outcome::Done(_)));
//!
//! let Outcome::Deferred(deferral) = reconciler.call(cm, Arc::new(())).await else { panic!() };
//! assert_eq!(deferral.retry_after, Duration::from_secs(60));
//! assert_eq!(deferral.reason, DeferReason::RateLimited { budget: "object".into() });
//! # }
//! ```

mod adaptive;
mod budget;
mod builder;
mod error;
mod gcra;
mod handle;
mod keyed_limiter;
mod layer;
mod limiter;
mod quota;

use std::sync::Arc;

use kube::{Resource, runtime::controller::Action};

use self::layer::Refusal;
pub use self::{
    budget::RateBudget,
    builder::RateLimitBuilder,
    error::{RateLimitError, RateLimited},
    keyed_limiter::KeyedLimiter,
    layer::RateLimitLayer,
    limiter::RateLimiter,
    quota::Quota,
};
pub(crate) use self::{error::RateLimitConfigError, handle::RateLimitHandle, quota::QuotaError};
use crate::reconciler::{DeferReason, Deferral, Outcome, Reconciler};

/// A reconciler that runs only when its rate limits have capacity, and defers otherwise.
///
/// Build it with [`RateLimitLayer`].
///
/// # Guarantees
///
/// - Admission is decided synchronously when the future is first polled: a future
///   dropped before that takes nothing. Once admitted, the cells stay taken however the
///   reconcile ends (it may already have called the API).
/// - A refused reconcile is not run, takes nothing from any limit, and returns
///   [`Outcome::Deferred`] with [`DeferReason::RateLimited`] naming the limit with the
///   longest wait: `"object"`, `"global"` or the budget's name.
/// - The deferral's `retry_after`: refused by a shared [`RateBudget`], the caller's own
///   turn in the budget's queue of refused callers (no earlier than the exact wait, one
///   emission interval per cell after the turn before it; the queue is the one an
///   external [`Dependency`](crate::external::Dependency) on the same budget
///   uses). Refused by the global or per-object limit, the exact wait plus a seeded
///   jitter of up to that limit's refill time, capped by [`RateLimitBuilder::jitter`].
/// - An admitted call's outcome, including an inner layer's deferral, passes through
///   unchanged; [`error_action`](Reconciler::error_action) is the inner reconciler's.
///
/// # Caveats
///
/// A deferral reserves nothing for later (holding nothing is the point). Objects refused
/// by a budget come back at the rate it refills, but one that finds its cell taken by a
/// caller that was never refused is refused again and queues anew. Objects refused by
/// the global limit come back spread over at most the jitter cap and may be deferred
/// again; size the global quota for the steady state, or make it a budget.
#[derive(Clone, Debug)]
#[doc(hidden)]
pub struct RateLimit<R> {
    inner: R,
    layer: RateLimitLayer,
}

impl<R> RateLimit<R> {
    /// Wraps `inner` in the limits of `layer` (shared with its other reconcilers).
    pub(crate) const fn new(inner: R, layer: RateLimitLayer) -> Self {
        RateLimit { inner, layer }
    }

    /// The wrapped reconciler.
    #[cfg(test)]
    pub(crate) const fn get_ref(&self) -> &R {
        &self.inner
    }

    fn defer<K: Resource>(&self, obj: &K, refusal: Refusal) -> Deferral {
        let shared = &self.layer.shared;
        // A budget's turns are already apart; jitter would only let a late caller take
        // the next one's cell.
        let retry_after = if let Some(budget) = &refusal.queue {
            budget.turn(shared.weight, refusal.wait)
        } else {
            let spread = refusal.refill.min(shared.jitter);
            let jitter = if spread.is_zero() {
                spread
            } else {
                shared.rng.up_to(spread)
            };
            refusal.wait.saturating_add(jitter)
        };
        let meta = obj.meta();
        tracing::debug!(
            budget = %refusal.budget,
            retry_after = ?retry_after,
            wait = ?refusal.wait,
            namespace = meta.namespace.as_deref().unwrap_or_default(),
            name = meta.name.as_deref().unwrap_or_default(),
            "reconcile deferred: rate limited"
        );
        Deferral {
            retry_after,
            reason: DeferReason::RateLimited {
                budget: refusal.budget,
            },
        }
    }
}

impl<K, Ctx, R> Reconciler<K, Ctx> for RateLimit<R>
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
        if let Err(refusal) = self.layer.shared.admit(&*obj) {
            return Outcome::Deferred(self.defer(&*obj, refusal));
        }
        self.inner.call(obj, ctx).await
    }

    fn error_action(&self, obj: &K, error: &Self::Error) -> Action {
        self.inner.error_action(obj, error)
    }
}

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
