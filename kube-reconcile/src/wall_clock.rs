//! Wall-clock times for a monotonic [`Clock`]: an anchor taken once, plus elapsed time.
//!
//! Conditions and messages need a wall-clock time ("next attempt at 12:00:30Z"), while
//! every timing decision in the crate reads the monotonic [`Clock`], which follows
//! `tokio::time::pause()`. Mapping one onto the other through a fixed anchor keeps
//! paused-time tests deterministic and never lets a wall-clock step (NTP, a VM resume)
//! move a deadline.

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::clock::{Clock, Nanos};

/// A monotonic clock with a wall-clock anchor.
#[derive(Clone, Debug)]
pub(crate) struct WallClock {
    clock: Clock,
    anchor: Nanos,
    anchor_wall: Timestamp,
}

impl WallClock {
    /// Anchors `clock`'s current reading at `wall`.
    pub(crate) fn new(clock: Clock, wall: Timestamp) -> Self {
        let anchor = clock.now();
        WallClock {
            clock,
            anchor,
            anchor_wall: wall,
        }
    }

    /// The monotonic clock.
    pub(crate) const fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The wall-clock time that corresponds to the monotonic point `at`.
    pub(crate) fn at(&self, at: Nanos) -> Timestamp {
        if at >= self.anchor {
            signed(at.saturating_since(self.anchor))
                .and_then(|d| self.anchor_wall.checked_add(d).ok())
                .unwrap_or(Timestamp::MAX)
        } else {
            signed(self.anchor.saturating_since(at))
                .and_then(|d| self.anchor_wall.checked_sub(d).ok())
                .unwrap_or(Timestamp::MIN)
        }
    }

    /// The wall-clock time now.
    pub(crate) fn now(&self) -> Timestamp {
        self.at(self.clock.now())
    }

    /// The wall-clock time `after` from now.
    pub(crate) fn after(&self, after: Duration) -> Timestamp {
        self.at(self.clock.now().saturating_add(after))
    }
}

/// `at` rounded up to a whole second, as `metav1.Time` stores it, so every caller names
/// the same instant.
pub(crate) fn ceil_second(at: Timestamp) -> Timestamp {
    if at.subsec_nanosecond() == 0 {
        return at;
    }
    Timestamp::from_second(at.as_second().saturating_add(1)).unwrap_or(Timestamp::MAX)
}

fn signed(d: Duration) -> Option<SignedDuration> {
    SignedDuration::try_from(d).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("in range")
    }

    #[test]
    fn wall_time_moves_with_the_monotonic_clock_from_the_anchor() {
        let manual = ManualClock::new();
        manual.advance(Duration::from_secs(100));
        let wall = WallClock::new(manual.clock(), at(1_000));
        assert_eq!(wall.now(), at(1_000));
        manual.advance(Duration::from_secs(30));
        assert_eq!(wall.now(), at(1_030));
        assert_eq!(wall.after(Duration::from_secs(5)), at(1_035));
        assert_eq!(wall.at(Nanos::from_raw(0)), at(900));
    }

    #[test]
    fn wall_time_saturates_instead_of_overflowing() {
        let manual = ManualClock::new();
        let wall = WallClock::new(manual.clock(), Timestamp::MAX);
        assert_eq!(wall.after(Duration::from_secs(1)), Timestamp::MAX);
    }
}
