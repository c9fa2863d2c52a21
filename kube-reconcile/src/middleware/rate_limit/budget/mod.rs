//! [`RateBudget`]: one named rate limit shared by every caller of a dependency.

use std::{
    fmt,
    future::Future,
    num::NonZeroU32,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use super::{
    adaptive::Aimd,
    error::{CheckError, RateLimitError, RateLimited},
    limiter::RateLimiter,
    quota::Quota,
};
use crate::clock::Nanos;

/// A named rate limit for one dependency, shared by everything that calls it.
///
/// Clones share one budget. Hand a clone to every [`RateLimitLayer`](super::RateLimitLayer)
/// and to the API client that talks to the dependency, and all of them draw from the
/// same cells: the reconciles of every object, the other controllers in the process, and
/// direct calls. A layer that defers because of this budget names it in
/// [`DeferReason::RateLimited`](crate::DeferReason::RateLimited).
///
/// Callers it refuses get turns in a queue, one emission interval apart, so they come
/// back at the rate it refills. Inside the phase engine the queue is ordered by how far
/// along each caller's object is (its phase's distance from the initial one, then
/// whether its work in that phase is under way; cleanups first): work that finishes
/// objects goes before work that starts new ones. Elsewhere it is first come, first
/// served.
///
/// # Examples
///
/// ```
/// use std::{num::NonZeroU32, time::Duration};
/// use kube_reconcile::middleware::rate_limit::{Quota, RateBudget, RateLimitError};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let dbaas = RateBudget::new("dbaas", Quota::per_second(NonZeroU32::new(1).unwrap()));
/// let created = dbaas.call(async { Ok::<_, std::io::Error>("instance-1") }).await;
/// assert_eq!(created.unwrap(), "instance-1");
///
/// let again = dbaas.clone().call(async { Ok::<_, std::io::Error>("instance-2") }).await;
/// assert!(matches!(again, Err(RateLimitError::RateLimited { retry_after }) if retry_after == Duration::from_secs(1)));
/// # }
/// ```
#[derive(Clone)]
pub struct RateBudget {
    inner: Arc<Inner>,
}

impl RateBudget {
    /// Whether `other` is this budget (a clone of it), not merely one with the same name.
    #[cfg(feature = "metrics")]
    pub(crate) fn is(&self, other: &RateBudget) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

#[derive(Debug)]
struct Inner {
    name: Arc<str>,
    limiter: RateLimiter,
    /// The queue of refused callers, by priority: for each priority that holds turns,
    /// the raw time on the limiter's clock after the last turn of a caller with that
    /// priority or a higher one (see [`RateBudget::turn`]).
    queue: Mutex<Vec<(u32, u64)>>,
    /// The controller of an [adaptive](RateBudget::adaptive) budget.
    adaptive: Option<Mutex<Aimd>>,
}

impl RateBudget {
    /// A full budget called `name` with `quota`, reading the tokio clock.
    pub fn new(name: impl Into<Arc<str>>, quota: Quota) -> Self {
        Self::from_limiter(name, RateLimiter::new(quota))
    }

    /// A budget called `name` that finds the dependency's capacity from its answers,
    /// never admitting more than `ceiling`.
    ///
    /// It starts at a sixteenth of the ceiling and doubles every half second while every call
    /// goes through and callers wait for cells; a call the dependency refuses for load
    /// (an error that classifies as [`Throttled`](crate::ErrorClass::Throttled), such as
    /// a 429) halves it, and later refusals cut it to 70 % (once a second at most); after
    /// a cut it climbs back to where it was refused in five seconds and keeps probing
    /// above. It grows only while callers wait for cells. Budgets in several processes
    /// that share a dependency settle at about equal shares without talking to each
    /// other. The burst is the ceiling's, at most 10 calls.
    ///
    /// It learns from the calls a [`Dependency`](crate::external::Dependency) makes
    /// through it; [`rate`](Self::rate) says where it is. A client that reports the
    /// rate-limit headers of its answers ([`RateLimitHint`](crate::external::RateLimitHint))
    /// lets it slow down when the dependency says it is nearly out of calls, before it
    /// refuses any.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use kube_reconcile::middleware::rate_limit::{Quota, RateBudget};
    ///
    /// // Never more than 500 calls a second; the dependency's answers say how many less.
    /// let budget = RateBudget::adaptive("dbaas", Quota::per_second(NonZeroU32::new(500).unwrap()));
    /// assert!(budget.rate() < 500.0);
    /// ```
    pub fn adaptive(name: impl Into<Arc<str>>, ceiling: Quota) -> Self {
        const MOST_BURST: NonZeroU32 = NonZeroU32::new(10).expect("10 is not zero");
        let ceiling = ceiling.burst(ceiling.max_burst().min(MOST_BURST));
        let limiter = RateLimiter::new(ceiling);
        let aimd = Aimd::new(ceiling.rate(), limiter.now());
        limiter.set_rate(aimd.rate());
        Self::with(name, limiter, Some(aimd))
    }

    /// A budget called `name` that draws from `limiter` (to choose its clock).
    pub(crate) fn from_limiter(name: impl Into<Arc<str>>, limiter: RateLimiter) -> Self {
        Self::with(name, limiter, None)
    }

    fn with(name: impl Into<Arc<str>>, limiter: RateLimiter, adaptive: Option<Aimd>) -> Self {
        RateBudget {
            inner: Arc::new(Inner {
                name: name.into(),
                limiter,
                queue: Mutex::new(Vec::new()),
                adaptive: adaptive.map(Mutex::new),
            }),
        }
    }

    /// Calls a second it admits now: the quota's rate, or where an adaptive budget is.
    pub fn rate(&self) -> f64 {
        self.inner.limiter.quota().rate()
    }

    /// Tells an adaptive budget that a call went through (a fixed one ignores it).
    pub(crate) fn answered(&self) {
        self.adapt(Aimd::answered);
    }

    /// Tells an adaptive budget that the dependency refused a call for load.
    pub(crate) fn throttled(&self) {
        self.adapt(Aimd::throttled);
    }

    /// Tells an adaptive budget what the dependency said of its limit in an answer
    /// ([`RateLimitHint`](crate::external::RateLimitHint)): running out at this budget's
    /// rate, it makes the cut of a refusal before any call is refused.
    pub(crate) fn hinted(&self, hint: crate::external::RateLimitHint) {
        if self.inner.adaptive.is_some() && hint.is_congested(self.rate()) {
            self.adapt(Aimd::throttled);
        }
    }

    fn adapt(&self, event: impl FnOnce(&mut Aimd, Nanos) -> f64) {
        if let Some(aimd) = &self.inner.adaptive {
            let limiter = &self.inner.limiter;
            let rate = event(
                &mut aimd.lock().unwrap_or_else(PoisonError::into_inner),
                limiter.now(),
            );
            limiter.set_rate(rate);
        }
    }

    /// Notes a caller that found no cell: an adaptive budget grows only while that
    /// happens.
    fn pressed(&self) {
        if let Some(aimd) = &self.inner.adaptive {
            let now = self.inner.limiter.now();
            aimd.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .refused(now);
        }
    }

    /// The dependency's name, as the metrics label its rate.
    #[cfg(any(test, feature = "metrics"))]
    pub(crate) fn name(&self) -> &str {
        &self.inner.name
    }

    /// Takes one cell.
    ///
    /// # Errors
    ///
    /// [`RateLimited`] with the exact wait if no cell is free; nothing is taken.
    pub fn check(&self) -> Result<(), RateLimited> {
        self.inner.limiter.check().inspect_err(|_| self.pressed())
    }

    /// Takes `n` cells at once, or none.
    ///
    /// # Errors
    ///
    /// As [`RateLimiter::check_n`].
    pub(crate) fn check_n(&self, n: NonZeroU32) -> Result<(), CheckError> {
        self.inner
            .limiter
            .check_n(n)
            .inspect_err(|_| self.pressed())
    }

    /// Runs `call` if the budget has a cell for it.
    ///
    /// The cell is taken when the returned future is first polled; a future dropped
    /// before that takes nothing. A call that was admitted keeps its cell however it
    /// ends: the dependency saw the request.
    ///
    /// # Errors
    ///
    /// [`RateLimitError::RateLimited`] without running `call` if no cell is free, else
    /// [`RateLimitError::Call`] with the call's own error.
    pub async fn call<T, E, F>(&self, call: F) -> Result<T, RateLimitError<E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        if let Err(refused) = self.check() {
            tracing::debug!(budget = %self.inner.name, retry_after = ?refused.retry_after, "call rate limited");
            return Err(RateLimitError::RateLimited {
                retry_after: refused.retry_after,
            });
        }
        call.await.map_err(RateLimitError::Call)
    }

    /// When a caller refused `n` cells with `wait` should come back: a turn of its own
    /// in the queue of refused callers, `n` emission intervals after the previous turn
    /// and no earlier than `wait` from now.
    ///
    /// Refused callers that all came back after the exact wait would all find the
    /// budget spent again but one: with a thousand callers, a thousand retries per
    /// admitted call. Turns hand the cells out one emission interval apart, so retries
    /// arrive at the rate the budget refills. A turn reserves nothing: a caller that
    /// comes back and finds its cell taken (by one that was never refused) is refused
    /// again and takes a new turn at the end of the queue.
    ///
    /// The queue is ordered by priority first: inside the phase engine, a caller's
    /// priority is how far along its object is, so work that finishes objects takes its
    /// turn before work that starts new ones. A turn handed to a caller of higher
    /// priority pushes the turns of every lower priority back by its cost (the callers
    /// holding them find their cells taken and queue again). Outside the engine every
    /// caller has the same priority, and the queue is first come, first served.
    pub(crate) fn turn(&self, n: NonZeroU32, wait: Duration) -> Duration {
        self.turn_at(crate::scope::priority(), n, wait)
    }

    fn turn_at(&self, priority: u32, n: NonZeroU32, wait: Duration) -> Duration {
        let limiter = &self.inner.limiter;
        let now = limiter.now();
        let earliest = now.saturating_add(wait).as_raw();
        let pace = self.inner.adaptive.as_ref().map_or_else(
            || limiter.quota(),
            |aimd| {
                let pace = aimd.lock().unwrap_or_else(PoisonError::into_inner).pace();
                limiter.quota().at_rate(pace)
            },
        );
        let cost = pace.emission_interval().saturating_mul(n.get());
        let cost = u64::try_from(cost.as_nanos()).unwrap_or(u64::MAX);
        let mut queue = self
            .inner
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Turns that ended in the past order nothing any more.
        queue.retain(|&(_, end)| end > now.as_raw());
        let ahead = queue
            .iter()
            .filter(|&&(p, _)| p >= priority)
            .map(|&(_, end)| end)
            .max()
            .unwrap_or(0);
        let turn = ahead.max(earliest);
        let after = turn.saturating_add(cost);
        for (p, end) in queue.iter_mut() {
            if *p < priority {
                *end = (*end).max(turn).saturating_add(cost);
            } else if *p == priority {
                *end = after;
            }
        }
        if !queue.iter().any(|&(p, _)| p == priority) {
            queue.push((priority, after));
        }
        Nanos::from_raw(turn).saturating_since(now)
    }

    /// The free capacity now.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> super::gcra::Capacity {
        self.inner.limiter.capacity()
    }

    /// The quota of this budget.
    pub(crate) fn quota(&self) -> Quota {
        self.inner.limiter.quota()
    }

    pub(super) fn limiter(&self) -> &RateLimiter {
        &self.inner.limiter
    }

    pub(super) fn shared_name(&self) -> &Arc<str> {
        &self.inner.name
    }
}

impl fmt::Debug for RateBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateBudget")
            .field("name", &self.inner.name)
            .field("quota", &self.inner.limiter.quota())
            .field("adaptive", &self.inner.adaptive.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
