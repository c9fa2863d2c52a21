//! The controller of an adaptive [`RateBudget`](super::RateBudget): it finds a
//! dependency's capacity from the dependency's own answers, the way TCP finds a path's.
//!
//! - **Slow start**: while every call goes through and callers are waiting for cells, the
//!   rate doubles every half second, from a sixteenth of the ceiling.
//! - **Multiplicative decrease**: a call refused for load (a 429, [`Throttled`]) cuts the
//!   rate, to half when it ends the slow start, else to 70 %. So does an answer whose
//!   [rate-limit hint](crate::external::RateLimitHint) says the dependency is running
//!   out, as an ECN mark does for TCP: the cut comes before any refusal. Refusals and marks in the second that follows a cut answer calls sent at
//!   the old rate and cut nothing more.
//! - **Additive increase**: after a cut the rate climbs by a hundredth of the ceiling
//!   every second (at least one call a second, every second), probing past where it was
//!   refused until the next refusal.
//! - It grows only while callers are waiting for cells: an idle budget does not creep up
//!   to its ceiling and then burst into the dependency. The configured rate is a ceiling,
//!   never exceeded; the rate never falls below one call a second (or the ceiling, if lower).
//!
//! Budgets in several processes that share one dependency (and so one configured
//! ceiling) each cut by the same factor on their own refusals and climb by the same
//! amount, so the larger share loses more at every cut than it gains back and they
//! converge to about equal shares without talking to each other: the fairness of AIMD.
//!
//! [`Throttled`]: crate::ErrorClass::Throttled

use std::time::Duration;

use crate::clock::Nanos;

/// How often the slow start doubles the rate, in seconds.
const DOUBLING: f64 = 0.5;
/// What a cut leaves at the end of the slow start.
const SLOW_START_CUT: f64 = 0.5;
/// What a cut leaves after it.
const CUT: f64 = 0.7;
/// The additive increase, as a share of the ceiling, per second.
const CLIMB: f64 = 0.01;
/// After a cut, refusals this soon answer calls sent at the old rate.
const QUIET: Duration = Duration::from_secs(1);
/// Callers waited for cells this recently: the budget is the bottleneck, so it may grow.
const PRESSED: Duration = Duration::from_secs(1);

/// The adaptive rate, in calls per second.
#[derive(Debug)]
pub(super) struct Aimd {
    ceiling: f64,
    floor: f64,
    rate: f64,
    /// `None` during the slow start, else the slope of the additive increase (calls per
    /// second, per second).
    slope: Option<f64>,
    /// When the rate last moved forward.
    advanced: Nanos,
    /// Refusals before this answer calls sent at an older rate.
    quiet_until: Nanos,
    /// When a caller last found no cell.
    pressed: Option<Nanos>,
}

impl Aimd {
    /// Starts at a sixteenth of `ceiling` (calls per second), in slow start.
    pub(super) fn new(ceiling: f64, now: Nanos) -> Self {
        let floor = ceiling.min(1.0);
        Aimd {
            ceiling,
            floor,
            rate: (ceiling / 16.0).max(floor),
            slope: None,
            advanced: now,
            quiet_until: Nanos::ZERO,
            pressed: None,
        }
    }

    /// The rate now, in calls per second.
    pub(super) fn rate(&self) -> f64 {
        self.rate
    }

    /// The rate to space the turns of refused callers at: during the slow start, where
    /// the rate will be by the time they come back (four times now, a second of doubling),
    /// so that callers refused early are not spread at the starting rate long after it
    /// has grown; after it, the rate.
    pub(super) fn pace(&self) -> f64 {
        match self.slope {
            None => (self.rate * 4.0).min(self.ceiling),
            Some(_) => self.rate,
        }
    }

    /// A caller found no cell: the budget, not the dependency, is what holds work back.
    pub(super) fn refused(&mut self, now: Nanos) {
        self.pressed = Some(now);
    }

    /// A call went through: grow, if callers are waiting for cells.
    pub(super) fn answered(&mut self, now: Nanos) -> f64 {
        let elapsed = now.saturating_since(self.advanced).as_secs_f64();
        self.advanced = now;
        let pressed = self
            .pressed
            .is_some_and(|at| now.saturating_since(at) <= PRESSED);
        if pressed {
            self.rate = match self.slope {
                None => self.rate * (elapsed / DOUBLING).exp2(),
                Some(slope) => self.rate + slope * elapsed,
            }
            .min(self.ceiling);
        }
        self.rate
    }

    /// The dependency refused a call for load: cut, unless a cut just happened.
    pub(super) fn throttled(&mut self, now: Nanos) -> f64 {
        self.advanced = now;
        if now < self.quiet_until {
            return self.rate;
        }
        let peak = self.rate;
        let cut = if self.slope.is_none() {
            SLOW_START_CUT
        } else {
            CUT
        };
        self.rate = (peak * cut).max(self.floor);
        self.slope = Some((self.ceiling * CLIMB).max(self.floor));
        self.quiet_until = now.saturating_add(QUIET);
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Nanos {
        Nanos::from_raw(ms * 1_000_000)
    }

    /// Successes every 10 ms from `from` to `to` (ms), with callers waiting throughout.
    fn busy(aimd: &mut Aimd, from: u64, to: u64) -> f64 {
        let mut rate = aimd.rate();
        for ms in (from..=to).step_by(10) {
            aimd.refused(at(ms));
            rate = aimd.answered(at(ms));
        }
        rate
    }

    #[test]
    fn it_starts_at_a_sixteenth_of_the_ceiling_and_doubles_every_busy_half_second() {
        let mut aimd = Aimd::new(320.0, at(0));
        assert!((aimd.rate() - 20.0).abs() < 1e-9);
        let after_one = busy(&mut aimd, 0, 500);
        assert!((after_one - 40.0).abs() < 0.5, "{after_one}");
        let after_three = busy(&mut aimd, 500, 1_500);
        assert!((after_three - 160.0).abs() < 2.0, "{after_three}");
        // Never past the ceiling.
        assert!((busy(&mut aimd, 3_000, 10_000) - 320.0).abs() < 1e-9);
    }

    #[test]
    fn an_idle_budget_does_not_grow() {
        let mut aimd = Aimd::new(320.0, at(0));
        // Calls go through, but nobody ever waited for a cell.
        for ms in (0..10_000).step_by(100) {
            aimd.answered(at(ms));
        }
        assert!((aimd.rate() - 20.0).abs() < 1e-9);
    }

    #[test]
    fn a_refusal_halves_the_slow_start_then_cuts_to_seventy_percent_once_a_second() {
        let mut aimd = Aimd::new(1_000.0, at(0));
        let peak = busy(&mut aimd, 0, 3_000);
        let first = aimd.throttled(at(3_000));
        assert!((first - peak * 0.5).abs() < 1e-9, "{peak} -> {first}");
        // More refusals within the second: calls sent at the old rate; no further cut.
        assert!((aimd.throttled(at(3_500)) - first).abs() < 1e-9);
        let second = aimd.throttled(at(4_100));
        assert!((second - first * 0.7).abs() < 1e-6, "{first} -> {second}");
    }

    #[test]
    fn after_a_cut_the_rate_climbs_a_hundredth_of_the_ceiling_a_second() {
        let mut aimd = Aimd::new(1_000.0, at(0));
        busy(&mut aimd, 0, 1_000);
        aimd.throttled(at(1_000));
        let cut_at = busy(&mut aimd, 1_000, 2_100);
        aimd.throttled(at(2_100));
        let low = aimd.rate();
        assert!((low - cut_at * 0.7).abs() < 1e-6, "{cut_at} -> {low}");
        // 10 calls a second more every second, past where it was refused.
        let later = busy(&mut aimd, 2_100, 7_100);
        assert!((later - (low + 50.0)).abs() < 0.5, "{low} -> {later}");
        assert!(busy(&mut aimd, 7_100, 12_100) > cut_at);
    }

    #[test]
    fn the_rate_stays_within_its_floor_and_ceiling() {
        let mut aimd = Aimd::new(0.5, at(0));
        assert!((aimd.rate() - 0.5).abs() < 1e-9);
        for s in 0..20 {
            aimd.throttled(at(s * 1_000));
            assert!((aimd.rate() - 0.5).abs() < 1e-9);
        }
        let mut aimd = Aimd::new(100.0, at(0));
        for s in 0..20 {
            aimd.throttled(at(s * 1_000));
        }
        assert!((aimd.rate() - 1.0).abs() < 1e-9);
    }
}
