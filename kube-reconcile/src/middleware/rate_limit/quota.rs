//! [`Quota`]: how many cells a limiter admits, and how fast they come back.

use std::{num::NonZeroU32, time::Duration};

use crate::clock::duration_to_nanos;

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// A GCRA rate: one cell every emission interval `T`, and at most `burst` cells at once.
///
/// A limiter with this quota admits `burst` calls back to back, then one more per
/// emission interval; idle time refills it up to `burst` and no further. In GCRA terms
/// the tolerance is `τ = T·(burst − 1)`.
///
/// Time is counted in whole nanoseconds: `per_second(3)` has an emission interval of
/// 333 333 333 ns, and rates above 10⁹ per second are held to one cell per nanosecond.
///
/// # Default
///
/// 10 per second with a burst of 100: client-go's default controller bucket.
///
/// # Examples
///
/// ```
/// use std::{num::NonZeroU32, time::Duration};
/// use kube_reconcile::middleware::rate_limit::Quota;
///
/// let five = NonZeroU32::new(5).unwrap();
/// let quota = Quota::per_second(five).burst(NonZeroU32::new(20).unwrap());
/// let every_200ms = Quota::with_period(Duration::from_millis(200)).unwrap();
/// assert_eq!(quota, every_200ms.burst(NonZeroU32::new(20).unwrap()));
///
/// assert!(Quota::with_period(Duration::ZERO).is_err());
/// ```
///
/// A zero rate or burst does not compile: both are `NonZeroU32`.
///
/// ```compile_fail
/// use kube_reconcile::middleware::rate_limit::Quota;
///
/// let never = Quota::per_second(0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Quota {
    /// The emission interval `T` in nanoseconds; never zero.
    interval: u64,
    burst: NonZeroU32,
}

/// A [`Quota`] that cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum QuotaError {
    /// The period between cells was zero, which would admit without limit.
    #[error("a quota period must be longer than zero")]
    ZeroPeriod,
}

impl Quota {
    /// `rate` cells per second; the burst is `rate`.
    pub const fn per_second(rate: NonZeroU32) -> Self {
        Self::spread(NANOS_PER_SECOND, rate)
    }

    /// `rate` cells per minute; the burst is `rate`.
    pub const fn per_minute(rate: NonZeroU32) -> Self {
        Self::spread(60 * NANOS_PER_SECOND, rate)
    }

    /// `rate` cells per hour; the burst is `rate`.
    #[cfg(test)]
    pub(crate) const fn per_hour(rate: NonZeroU32) -> Self {
        Self::spread(3600 * NANOS_PER_SECOND, rate)
    }

    /// One cell every `period`, with a burst of one.
    ///
    /// Periods longer than `u64::MAX` nanoseconds (about 584 years) are held to that.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`](crate::ConfigError) if `period` is zero.
    pub fn with_period(period: Duration) -> Result<Self, crate::ConfigError> {
        match duration_to_nanos(period) {
            0 => Err(QuotaError::ZeroPeriod.into()),
            interval => Ok(Quota {
                interval,
                burst: NonZeroU32::MIN,
            }),
        }
    }

    /// The same rate with at most `burst` cells at once.
    #[must_use]
    pub const fn burst(self, burst: NonZeroU32) -> Self {
        Quota {
            interval: self.interval,
            burst,
        }
    }

    /// The time `T` for one cell to come back.
    pub(crate) const fn emission_interval(&self) -> Duration {
        Duration::from_nanos(self.interval)
    }

    /// How many cells a full limiter admits back to back.
    pub(crate) const fn max_burst(&self) -> NonZeroU32 {
        self.burst
    }

    /// The time an empty limiter needs to fill up again: `T · burst`.
    pub(crate) const fn refill_time(&self) -> Duration {
        Duration::from_nanos(self.window())
    }

    /// `T` in nanoseconds (at least one).
    pub(super) const fn interval_nanos(&self) -> u64 {
        self.interval
    }

    /// `T · burst` in nanoseconds, saturating: the limiter admits a call only if the
    /// theoretical arrival time after it is at most this far ahead of now.
    pub(super) const fn window(&self) -> u64 {
        self.interval.saturating_mul(self.burst.get() as u64)
    }

    /// `rate` cells a second (fractions allowed, at least one cell an hour), keeping
    /// this quota's burst.
    pub(crate) fn at_rate(self, rate: f64) -> Self {
        let per_second = rate.clamp(1.0 / 3_600.0, 1e9);
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "clamped above: between 1 ns and an hour"
        )]
        let interval = (1e9 / per_second).round() as u64;
        Quota {
            interval: interval.max(1),
            burst: self.burst,
        }
    }

    pub(crate) const fn with_interval_nanos(self, interval: u64) -> Self {
        Quota {
            interval: if interval == 0 { 1 } else { interval },
            burst: self.burst,
        }
    }

    /// Calls a second at this quota's pace.
    pub(crate) fn rate(&self) -> f64 {
        #[allow(
            clippy::cast_precision_loss,
            reason = "an interval in nanoseconds; a rate, not an exact count"
        )]
        let interval = self.interval as f64;
        1e9 / interval
    }

    const fn spread(total: u64, rate: NonZeroU32) -> Self {
        let interval = total / rate.get() as u64;
        Quota {
            interval: if interval == 0 { 1 } else { interval },
            burst: rate,
        }
    }
}

impl Default for Quota {
    fn default() -> Self {
        const TEN: NonZeroU32 = NonZeroU32::new(10).expect("10 is not zero");
        const HUNDRED: NonZeroU32 = NonZeroU32::new(100).expect("100 is not zero");
        Quota::per_second(TEN).burst(HUNDRED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).expect("test values are not zero")
    }

    #[test]
    fn rates_spread_cells_evenly_over_their_period() {
        assert_eq!(
            Quota::per_second(nz(4)).emission_interval(),
            Duration::from_millis(250)
        );
        assert_eq!(
            Quota::per_minute(nz(6)).emission_interval(),
            Duration::from_secs(10)
        );
        assert_eq!(
            Quota::per_hour(nz(60)).emission_interval(),
            Duration::from_secs(60)
        );
        assert_eq!(Quota::per_second(nz(7)).max_burst(), nz(7));
    }

    #[test]
    fn a_zero_period_is_a_typed_error() {
        assert_eq!(
            Quota::with_period(Duration::ZERO).map_err(crate::ConfigError::quota),
            Err(QuotaError::ZeroPeriod)
        );
        assert_eq!(
            QuotaError::ZeroPeriod.to_string(),
            "a quota period must be longer than zero"
        );
        let one = Quota::with_period(Duration::from_nanos(1)).expect("1 ns is a period");
        assert_eq!(one.max_burst(), nz(1));
    }

    #[test]
    fn rates_beyond_a_nanosecond_per_cell_are_held_to_one_nanosecond() {
        let fast = Quota::per_second(nz(u32::MAX));
        assert_eq!(fast.emission_interval(), Duration::from_nanos(1));
        assert_eq!(fast.max_burst(), nz(u32::MAX));
    }

    #[test]
    fn refill_time_is_the_interval_times_the_burst() {
        let quota = Quota::per_second(nz(10)).burst(nz(100));
        assert_eq!(quota.refill_time(), Duration::from_secs(10));
        assert_eq!(Quota::default(), quota);
        let forever = Quota::with_period(Duration::MAX)
            .expect("not zero")
            .burst(nz(3));
        assert_eq!(forever.window(), u64::MAX);
    }
}
