//! The sliding windows that counted outcomes go into.
//!
//! A count window is a ring of one byte per call plus one packed counter, updated with
//! atomics only: a call takes the next slot (`fetch_add`), swaps its outcome in and
//! applies the difference to the counter, which is skipped when the outcome it evicts
//! is the same (the steady state of a healthy dependency). The counter is always the
//! sum of the slots once in-flight updates land, so concurrent recorders never make it
//! drift; a reader in between may see it a call or two off and discards impossible
//! values.
//!
//! A time window ([`TimeWindow`]) is a ring of buckets behind a short lock.

use std::sync::{
    Mutex, PoisonError,
    atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering},
};

use crate::clock::Clock;

use super::{settings::WindowSettings, time_window::TimeWindow};

/// Outcome bits of one call.
pub(super) const COUNTED: u8 = 1;
pub(super) const FAILED: u8 = 2;
pub(super) const SLOW: u8 = 4;

/// Width of each field of the packed counter; fits [`Window::MAX_CALLS`](super::Window::MAX_CALLS).
const FIELD_BITS: u32 = 21;
const FIELD_MASK: u64 = (1 << FIELD_BITS) - 1;

/// Totals over a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Counts {
    pub(super) calls: u32,
    pub(super) failures: u32,
    pub(super) slow: u32,
}

impl Counts {
    pub(super) fn add(&mut self, outcome: u8) {
        self.calls += u32::from(outcome & COUNTED);
        self.failures += u32::from((outcome & FAILED) >> 1);
        self.slow += u32::from((outcome & SLOW) >> 2);
    }

    pub(super) fn sub(&mut self, other: Counts) {
        self.calls -= other.calls;
        self.failures -= other.failures;
        self.slow -= other.slow;
    }
}

/// The outcome bits as a packed counter value (one per field).
const fn packed(outcome: u8) -> u64 {
    (outcome & COUNTED) as u64
        | (((outcome & FAILED) >> 1) as u64) << FIELD_BITS
        | (((outcome & SLOW) >> 2) as u64) << (2 * FIELD_BITS)
}

pub(super) enum Window {
    Count(CountWindow),
    Time(Mutex<TimeWindow>),
}

impl Window {
    pub(super) fn new(settings: WindowSettings) -> Self {
        match settings {
            WindowSettings::Count(len) => Window::Count(CountWindow::new(len)),
            WindowSettings::Time { bucket, buckets } => {
                Window::Time(Mutex::new(TimeWindow::new(bucket, buckets)))
            }
        }
    }

    /// Records one counted outcome; returns the new totals if `totals` is asked for.
    #[inline]
    pub(super) fn record(&self, outcome: u8, clock: &Clock, totals: bool) -> Option<Counts> {
        match self {
            Window::Count(w) => w.record(outcome, totals),
            Window::Time(w) => Some(Self::record_timed(w, outcome, clock)),
        }
    }

    #[inline(never)]
    fn record_timed(w: &Mutex<TimeWindow>, outcome: u8, clock: &Clock) -> Counts {
        let now = clock.now();
        lock(w).record(now, outcome)
    }

    /// The current totals.
    pub(super) fn totals(&self, clock: &Clock) -> Counts {
        match self {
            Window::Count(w) => w.totals().unwrap_or_default(),
            Window::Time(w) => lock(w).totals(clock.now()),
        }
    }

    /// Forgets every outcome.
    pub(super) fn clear(&self) {
        match self {
            Window::Count(w) => w.clear(),
            Window::Time(w) => lock(w).clear(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Window updates cannot panic half-way, so a poisoned lock still guards valid totals.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) struct CountWindow {
    slots: Box<[AtomicU8]>,
    len: u32,
    /// `n % len` without a division: see [`fast_mod`].
    magic: u64,
    next: AtomicU32,
    counts: AtomicU64,
}

impl CountWindow {
    fn new(len: u32) -> Self {
        CountWindow {
            slots: (0..len).map(|_| AtomicU8::new(0)).collect(),
            len,
            magic: fast_mod_magic(len),
            next: AtomicU32::new(0),
            counts: AtomicU64::new(0),
        }
    }

    #[inline]
    fn record(&self, outcome: u8, totals: bool) -> Option<Counts> {
        // Slot choice and swap need no ordering with other memory: the counter is only
        // read for decisions that tolerate a call in flight.
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // `len` is never zero (a NonZeroU32 in the config). When `n` wraps at 2^32 one
        // slot may be overwritten early, once every four billion calls.
        let i = fast_mod(n, self.magic, self.len) as usize;
        let slot = self.slots.get(i)?;
        let old = slot.swap(outcome, Ordering::Relaxed);
        if old == outcome {
            return if totals { self.totals() } else { None };
        }
        let delta = packed(outcome).wrapping_sub(packed(old));
        let now = self
            .counts
            .fetch_add(delta, Ordering::Relaxed)
            .wrapping_add(delta);
        if totals { self.checked(now) } else { None }
    }

    fn totals(&self) -> Option<Counts> {
        self.checked(self.counts.load(Ordering::Relaxed))
    }

    /// Unpacks `raw`, or `None` if it is caught between two updates (a field below zero).
    fn checked(&self, raw: u64) -> Option<Counts> {
        let field =
            |k: u32| u32::try_from((raw >> (k * FIELD_BITS)) & FIELD_MASK).unwrap_or(u32::MAX);
        let counts = Counts {
            calls: field(0),
            failures: field(1),
            slow: field(2),
        };
        let plausible = raw >> (3 * FIELD_BITS) == 0
            && counts.calls <= self.len
            && counts.failures <= counts.calls
            && counts.slow <= counts.calls;
        plausible.then_some(counts)
    }

    fn clear(&self) {
        for slot in &*self.slots {
            let old = slot.swap(0, Ordering::Relaxed);
            if old != 0 {
                self.counts.fetch_sub(packed(old), Ordering::Relaxed);
            }
        }
    }
}

/// The multiplier that lets [`fast_mod`] divide by `d` (Lemire, Kaser and Kurz, "Faster
/// remainder by direct computation", 2019). Wraps to 0 for `d == 1`, which is right.
const fn fast_mod_magic(d: u32) -> u64 {
    (u64::MAX / d as u64).wrapping_add(1)
}

/// `n % d` for any 32-bit `n` and `d > 0`, with two multiplications instead of a
/// division (which dominates the closed path otherwise).
#[inline]
#[expect(
    clippy::cast_possible_truncation,
    reason = "the high half of low * d is below d, a u32"
)]
const fn fast_mod(n: u32, magic: u64, d: u32) -> u32 {
    let low = magic.wrapping_mul(n as u64);
    ((low as u128 * d as u128) >> 64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{clock::ManualClock, middleware::circuit_breaker::config::Window as WindowConfig};
    use std::time::Duration;

    #[test]
    fn count_window_keeps_only_the_last_calls() {
        let w = Window::new(WindowSettings::Count(3));
        let clock = ManualClock::new().clock();
        w.record(COUNTED | FAILED, &clock, false);
        w.record(COUNTED, &clock, false);
        w.record(COUNTED, &clock, false);
        assert_eq!(
            w.totals(&clock),
            Counts {
                calls: 3,
                failures: 1,
                slow: 0
            }
        );
        let after = w.record(COUNTED | SLOW, &clock, true);
        assert_eq!(
            after,
            Some(Counts {
                calls: 3,
                failures: 0,
                slow: 1
            })
        );
        w.clear();
        assert_eq!(w.totals(&clock), Counts::default());
    }

    #[test]
    fn fast_mod_handles_the_edges() {
        for d in [1, 2, 3, 50, WindowConfig::MAX_CALLS] {
            for n in [0, 1, d - 1, d, u32::MAX - 1, u32::MAX] {
                assert_eq!(fast_mod(n, fast_mod_magic(d), d), n % d, "{n} % {d}");
            }
        }
    }

    #[test]
    fn time_window_drops_buckets_that_slide_out() {
        let manual = ManualClock::new();
        let clock = manual.clock();
        let second = 1_000_000_000;
        let w = Window::new(WindowSettings::Time {
            bucket: second,
            buckets: 3,
        });
        w.record(COUNTED | FAILED, &clock, false);
        manual.advance(Duration::from_secs(1));
        w.record(COUNTED, &clock, false);
        assert_eq!(
            w.totals(&clock),
            Counts {
                calls: 2,
                failures: 1,
                slow: 0
            }
        );
        manual.advance(Duration::from_secs(2));
        assert_eq!(
            w.totals(&clock),
            Counts {
                calls: 1,
                failures: 0,
                slow: 0
            }
        );
        manual.advance(Duration::from_secs(60));
        assert_eq!(w.totals(&clock), Counts::default());
    }

    proptest::proptest! {
        #[test]
        fn fast_mod_is_the_remainder(n in proptest::num::u32::ANY, d in 1u32..=WindowConfig::MAX_CALLS) {
            proptest::prop_assert_eq!(fast_mod(n, fast_mod_magic(d), d), n % d);
        }

        #[test]
        fn count_window_totals_equal_the_last_outcomes(
            len in 1u32..40,
            outcomes in proptest::collection::vec(0u8..8, 0..200),
        ) {
            let w = Window::new(WindowSettings::Count(len));
            let clock = ManualClock::new().clock();
            for &o in &outcomes {
                w.record(o | COUNTED, &clock, false);
            }
            let mut expected = Counts::default();
            for &o in outcomes.iter().rev().take(len as usize) {
                expected.add(o | COUNTED);
            }
            proptest::prop_assert_eq!(w.totals(&clock), expected);
        }
    }
}
