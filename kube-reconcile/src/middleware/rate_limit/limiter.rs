//! [`RateLimiter`]: one GCRA cell behind a clock.

use std::{
    num::NonZeroU32,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use super::{
    error::{CheckError, RateLimited},
    gcra::{Gcra, Reservation},
    quota::Quota,
};
use crate::clock::{Clock, Nanos};

/// A rate limiter for one stream of calls (GCRA on a single atomic).
///
/// Lock-free: a check is one clock read and a compare-and-swap loop. Refusals carry the
/// exact wait. Share it behind an `Arc`, or use a [`RateBudget`](super::RateBudget),
/// which is a named, cloneable limiter.
///
/// # Examples
///
/// ```
/// use std::{num::NonZeroU32, time::Duration};
/// use kube_reconcile::{testing::ManualClock, middleware::rate_limit::{Quota, RateLimiter}};
///
/// let manual = ManualClock::new();
/// let _entered = manual.enter(); // what is built now reads the manual clock
/// let limiter = RateLimiter::new(Quota::per_second(NonZeroU32::new(4).unwrap()));
/// for _ in 0..4 {
///     limiter.check().unwrap();
/// }
/// let refused = limiter.check().unwrap_err();
/// assert_eq!(refused.retry_after, Duration::from_millis(250));
/// manual.advance(refused.retry_after);
/// assert!(limiter.check().is_ok());
/// ```
#[derive(Debug)]
#[doc(hidden)] // Compared with governor's in the benches; users take a `RateBudget`.
pub struct RateLimiter {
    quota: Quota,
    /// The emission interval in force, in nanoseconds: the quota's, unless an adaptive
    /// budget moved it (the burst never changes).
    interval: AtomicU64,
    clock: Clock,
    cell: Gcra,
}

impl RateLimiter {
    /// A full limiter with `quota`, reading the tokio clock.
    pub fn new(quota: Quota) -> Self {
        RateLimiter {
            quota,
            interval: AtomicU64::new(quota.interval_nanos()),
            clock: Clock::default(),
            cell: Gcra::default(),
        }
    }

    /// The same limiter reading `clock`.
    ///
    /// # Default
    ///
    /// [`Clock::tokio`], taken when the limiter is created.
    #[must_use]
    pub(crate) fn clock(self, clock: Clock) -> Self {
        RateLimiter { clock, ..self }
    }

    /// Takes one cell.
    ///
    /// # Errors
    ///
    /// [`RateLimited`] with the exact wait if no cell is free; nothing is taken.
    pub fn check(&self) -> Result<(), RateLimited> {
        self.cell
            .reserve(&self.quota(), NonZeroU32::MIN, self.clock.now())
            .map(drop)
            .map_err(RateLimited::new)
    }

    /// Takes `n` cells at once, or none.
    ///
    /// # Errors
    ///
    /// [`CheckError::InsufficientCapacity`] if `n` exceeds the burst (it never fits),
    /// else [`CheckError::RateLimited`] with the exact wait; nothing is taken.
    pub(crate) fn check_n(&self, n: NonZeroU32) -> Result<(), CheckError> {
        fits(&self.quota(), n)?;
        self.cell
            .reserve(&self.quota(), n, self.clock.now())
            .map(drop)
            .map_err(limited)
    }

    /// How many cells it would admit now, back to back, out of its burst, and how long
    /// until it is full again: what a server's rate-limit headers say (the example's
    /// simulated DBaaS sends them).
    #[doc(hidden)]
    pub fn remaining(&self) -> (u32, NonZeroU32, Duration) {
        let (quota, now) = (self.quota(), self.clock.now());
        let remaining = self.cell.remaining(&quota, now);
        (remaining, quota.max_burst(), self.cell.full_in(now))
    }

    /// The free capacity now.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> super::gcra::Capacity {
        self.cell.capacity(&self.quota(), self.clock.now())
    }

    /// The quota this limiter enforces.
    pub(crate) fn quota(&self) -> Quota {
        self.quota
            .with_interval_nanos(self.interval.load(Ordering::Relaxed))
    }

    /// Moves the rate to `rate` cells a second (an adaptive budget's controller does).
    pub(super) fn set_rate(&self, rate: f64) {
        let interval = self.quota.at_rate(rate).interval_nanos();
        self.interval.store(interval, Ordering::Relaxed);
    }

    pub(super) fn now(&self) -> Nanos {
        self.clock.now()
    }

    pub(super) fn reserve(&self, n: NonZeroU32, now: Nanos) -> Result<Reservation, Duration> {
        self.cell.reserve(&self.quota(), n, now)
    }

    pub(super) fn rollback(&self, reservation: Reservation) {
        self.cell.rollback(reservation, self.clock.now());
    }

    pub(super) fn wait(&self, n: NonZeroU32) -> Duration {
        self.cell.wait(&self.quota(), n, self.clock.now())
    }
}

pub(super) fn fits(quota: &Quota, n: NonZeroU32) -> Result<(), CheckError> {
    if n > quota.max_burst() {
        return Err(CheckError::InsufficientCapacity {
            cells: n,
            burst: quota.max_burst(),
        });
    }
    Ok(())
}

pub(super) fn limited(retry_after: Duration) -> CheckError {
    CheckError::RateLimited { retry_after }
}
