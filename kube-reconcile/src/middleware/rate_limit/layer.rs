//! [`RateLimitLayer`] and the reserve-and-commit admission of a call.

use std::{num::NonZeroU32, sync::Arc, time::Duration};

use kube::Resource;
use tower_layer::Layer;

use super::{
    RateLimit, budget::RateBudget, builder::RateLimitBuilder, error::CheckError,
    handle::RateLimitHandle, keyed_limiter::KeyedLimiter, limiter::RateLimiter, quota::Quota,
};
use crate::{
    clock::{Clock, Nanos},
    reconciler::ObjectKey,
    rng::Rng,
};

/// Builds [`RateLimit`] reconcilers that share one set of limits.
///
/// Every reconciler made from this layer (and every clone of it) draws from the same
/// limits; build another layer for separate ones. [`RateBudget`]s are shared further,
/// with any other layer or client holding a clone.
///
/// # Examples
///
/// ```
/// use std::num::NonZeroU32;
/// use kube_reconcile::middleware::rate_limit::{Quota, RateBudget, RateLimitLayer};
///
/// let nz = |n| NonZeroU32::new(n).unwrap();
/// let dbaas = RateBudget::new("dbaas", Quota::per_second(nz(20)));
///
/// // One limit:
/// let per_object = RateLimitLayer::per_object(Quota::per_minute(nz(6)));
///
/// // Several, checked together (a refusal by one returns what the others reserved):
/// let layer = RateLimitLayer::builder()
///     .per_object(Quota::per_minute(nz(6)))
///     .global(Quota::per_second(nz(50)))
///     .budget(dbaas.clone())
///     .weight(nz(2)) // each reconcile makes two calls to the DBaaS
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    pub(super) shared: Arc<Shared>,
}

/// The limits of one layer, shared by its clones and the reconcilers it made.
#[derive(Debug)]
pub(super) struct Shared {
    /// In the order they are checked: per object, budgets, global.
    pub(super) limits: Box<[Limit]>,
    /// The clock of the global and per-object limits, read once per call for both.
    pub(super) clock: Clock,
    pub(super) weight: NonZeroU32,
    pub(super) jitter: Duration,
    pub(super) rng: Rng,
}

#[derive(Debug)]
pub(super) enum Limit {
    Global(Arc<str>, RateLimiter),
    PerObject(Arc<str>, KeyedLimiter<ObjectKey>),
    Budget(RateBudget),
}

/// Why a call was not admitted: the binding limit and its exact wait.
#[derive(Debug)]
pub(super) struct Refusal {
    pub(super) budget: Arc<str>,
    pub(super) wait: Duration,
    /// The refill time of that limit: the spread for jitter.
    pub(super) refill: Duration,
    /// A shared budget, whose queue of refused callers hands out turns (instead of
    /// jitter).
    pub(super) queue: Option<RateBudget>,
}

impl Limit {
    pub(super) fn name(&self) -> &Arc<str> {
        match self {
            Limit::Global(name, _) | Limit::PerObject(name, _) => name,
            Limit::Budget(budget) => budget.shared_name(),
        }
    }

    pub(super) fn quota(&self) -> Quota {
        match self {
            Limit::Global(_, limiter) => limiter.quota(),
            Limit::PerObject(_, limiter) => limiter.quota(),
            Limit::Budget(budget) => budget.quota(),
        }
    }

    fn refusal(&self, wait: Duration) -> Refusal {
        Refusal {
            budget: Arc::clone(self.name()),
            wait,
            refill: self.quota().refill_time(),
            queue: match self {
                Limit::Budget(budget) => Some(budget.clone()),
                Limit::Global(..) | Limit::PerObject(..) => None,
            },
        }
    }

    /// How long until `n` cells would fit for `obj`, without taking them.
    fn wait<K: Resource>(&self, obj: &K, n: NonZeroU32) -> Duration {
        match self {
            Limit::Global(_, limiter) => limiter.wait(n),
            Limit::PerObject(_, limiter) => limiter.wait(&*ObjectKey::lookup(obj), n),
            Limit::Budget(budget) => budget.limiter().wait(n),
        }
    }
}

impl Shared {
    /// Takes `weight` cells from every limit for `obj`, or none.
    pub(super) fn admit<K: Resource>(&self, obj: &K) -> Result<(), Refusal> {
        let now = self.clock.now();
        admit_all(&self.limits, obj, self.weight, now).map_err(|(at, refusal)| {
            // Later limits may be further from free than the one that refused: report
            // the longest wait, so the retry is not refused again by another limit.
            self.limits[at + 1..].iter().fold(refusal, |worst, limit| {
                let wait = limit.wait(obj, self.weight);
                if wait > worst.wait {
                    limit.refusal(wait)
                } else {
                    worst
                }
            })
        })
    }
}

/// Reserves on `limits[0]`, then on the rest; if the rest refuses, returns the first
/// reservation before passing the refusal (and the index of the refusing limit) up.
/// Recursion keeps each reservation (and a keyed one's shard guard) on the stack
/// without allocating; the depth is the number of limits. `now` is the layer clock's
/// time (budgets read their own clocks).
fn admit_all<K: Resource>(
    limits: &[Limit],
    obj: &K,
    n: NonZeroU32,
    now: Nanos,
) -> Result<(), (usize, Refusal)> {
    let Some((first, rest)) = limits.split_first() else {
        return Ok(());
    };
    let deeper =
        |result: Result<(), (usize, Refusal)>| result.map_err(|(at, refusal)| (at + 1, refusal));
    match first {
        Limit::PerObject(_, limiter) => {
            let lookup = ObjectKey::lookup(obj);
            match limiter.reserve_with(&*lookup, || ObjectKey::of(obj), n, now) {
                Ok(reservation) => {
                    deeper(admit_all(rest, obj, n, now)).inspect_err(|_| reservation.rollback())
                }
                Err(
                    CheckError::RateLimited { retry_after }
                    | CheckError::TooManyKeys { retry_after, .. },
                ) => Err((0, first.refusal(retry_after))),
                // `build` checked the weight against every burst.
                Err(CheckError::InsufficientCapacity { .. }) => {
                    Err((0, first.refusal(first.quota().refill_time())))
                }
            }
        }
        Limit::Global(_, limiter) => reserve_direct(limiter, now, (first, rest), obj, n, now),
        Limit::Budget(budget) => {
            let limiter = budget.limiter();
            reserve_direct(limiter, limiter.now(), (first, rest), obj, n, now)
        }
    }
}

/// Reserves on a single-cell limit at `at` (its own clock's time), then on the rest.
fn reserve_direct<K: Resource>(
    limiter: &RateLimiter,
    at: Nanos,
    (first, rest): (&Limit, &[Limit]),
    obj: &K,
    n: NonZeroU32,
    now: Nanos,
) -> Result<(), (usize, Refusal)> {
    match limiter.reserve(n, at) {
        Ok(reservation) => admit_all(rest, obj, n, now).map_err(|(at, refusal)| {
            limiter.rollback(reservation);
            (at + 1, refusal)
        }),
        Err(wait) => Err((0, first.refusal(wait))),
    }
}

impl RateLimitLayer {
    /// One rate limit for every reconcile, across all objects (builder defaults otherwise).
    #[cfg(test)]
    pub(crate) fn global(quota: Quota) -> Self {
        RateLimitBuilder::default().global(quota).assemble()
    }

    /// A rate limit for each object (by UID), so an object that keeps requeueing cannot
    /// monopolise the controller (builder defaults otherwise).
    pub fn per_object(quota: Quota) -> Self {
        RateLimitBuilder::default().per_object(quota).assemble()
    }

    /// Every reconcile draws one cell from `budget` (builder defaults otherwise).
    #[cfg(test)]
    pub(crate) fn budget(budget: RateBudget) -> Self {
        RateLimitBuilder::default().budget(budget).assemble()
    }

    /// A builder to combine limits and set the weight, clock and jitter.
    pub fn builder() -> RateLimitBuilder {
        RateLimitBuilder::default()
    }

    /// A handle to inspect the limits.
    pub(crate) fn handle(&self) -> RateLimitHandle {
        RateLimitHandle::new(Arc::clone(&self.shared))
    }
}

impl<R> Layer<R> for RateLimitLayer {
    type Service = RateLimit<R>;

    fn layer(&self, inner: R) -> RateLimit<R> {
        RateLimit::new(inner, self.clone())
    }
}
