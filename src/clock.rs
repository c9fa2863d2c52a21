//! One injectable clock for every timing decision in the crate.
//!
//! All middleware reads time through [`Clock`]. The default clock is tokio's
//! ([`tokio::time::Instant`]), so it follows `tokio::time::pause()` and
//! `tokio::time::advance()` in tests. A [`ManualClock`] moves only when told to,
//! which suits property tests that run without a runtime.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::time::Instant;

/// A point on a [`Clock`]'s time line: nanoseconds since the clock's epoch.
///
/// Eight bytes, so middleware can keep it in an atomic and per-key state stays small.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nanos(u64);

impl Nanos {
    /// The clock's epoch.
    pub const ZERO: Nanos = Nanos(0);

    /// Builds a point from raw nanoseconds since the epoch.
    pub const fn from_raw(nanos: u64) -> Self {
        Nanos(nanos)
    }

    /// Raw nanoseconds since the epoch.
    pub const fn as_raw(self) -> u64 {
        self.0
    }

    /// This point moved later by `d`, saturating at the end of time.
    #[must_use]
    pub fn saturating_add(self, d: Duration) -> Self {
        Nanos(self.0.saturating_add(duration_to_nanos(d)))
    }

    /// Time from `earlier` to `self`, or zero if `earlier` is later.
    pub const fn saturating_since(self, earlier: Nanos) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

/// Converts a duration to whole nanoseconds, saturating at `u64::MAX` (about 584 years).
pub(crate) fn duration_to_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The time source that middleware reads.
///
/// Cloning is cheap; clones share the same time line.
///
/// # Default
///
/// [`Clock::tokio`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use kube_reconcile::clock::{Clock, ManualClock};
///
/// let manual = ManualClock::new();
/// let clock: Clock = manual.clock();
/// let start = clock.now();
/// manual.advance(Duration::from_secs(3));
/// assert_eq!(clock.now().saturating_since(start), Duration::from_secs(3));
/// ```
#[derive(Clone)]
pub struct Clock {
    source: Source,
}

#[derive(Clone)]
enum Source {
    Tokio { epoch: Instant },
    Manual(Arc<AtomicU64>),
}

impl Clock {
    /// tokio's clock, which follows `tokio::time::pause()` and `advance()`.
    ///
    /// The epoch is taken now, so create middleware inside the runtime whose
    /// (possibly paused) clock it should follow.
    pub fn tokio() -> Self {
        Clock {
            source: Source::Tokio {
                epoch: Instant::now(),
            },
        }
    }

    /// The current time on this clock.
    pub fn now(&self) -> Nanos {
        match &self.source {
            Source::Tokio { epoch } => Nanos(duration_to_nanos(
                Instant::now().saturating_duration_since(*epoch),
            )),
            Source::Manual(now) => Nanos(now.load(Ordering::Acquire)),
        }
    }

    /// The tokio instant that corresponds to `at` (for `sleep_until` and logs).
    pub fn instant_at(&self, at: Nanos) -> Instant {
        let now = self.now();
        let real_now = Instant::now();
        if at >= now {
            real_now + at.saturating_since(now)
        } else {
            real_now
                .checked_sub(now.saturating_since(at))
                .unwrap_or(real_now)
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::tokio()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::Tokio { .. } => f.write_str("Clock::Tokio"),
            Source::Manual(now) => write!(f, "Clock::Manual({}ns)", now.load(Ordering::Relaxed)),
        }
    }
}

/// A clock that moves only when [`advance`](ManualClock::advance) is called.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    now: Arc<AtomicU64>,
}

impl ManualClock {
    /// A manual clock at its epoch.
    pub fn new() -> Self {
        Self::default()
    }

    /// A [`Clock`] that reads this manual clock.
    pub fn clock(&self) -> Clock {
        Clock {
            source: Source::Manual(Arc::clone(&self.now)),
        }
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.now.fetch_add(duration_to_nanos(d), Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let clock = Clock::tokio();
        let t0 = clock.now();
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(
            clock.now().saturating_since(t0),
            Duration::from_millis(1500)
        );
    }

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let manual = ManualClock::new();
        let clock = manual.clock();
        assert_eq!(clock.now(), Nanos::ZERO);
        manual.advance(Duration::from_nanos(7));
        assert_eq!(clock.now(), Nanos::from_raw(7));
    }

    #[test]
    fn nanos_arithmetic_saturates() {
        assert_eq!(
            Nanos::from_raw(5).saturating_since(Nanos::from_raw(9)),
            Duration::ZERO
        );
        assert_eq!(
            Nanos::from_raw(u64::MAX).saturating_add(Duration::from_secs(1)),
            Nanos::from_raw(u64::MAX)
        );
    }
}
