//! The GCRA cell: one atomic theoretical arrival time, reserved and rolled back by CAS.
//!
//! # The algorithm
//!
//! A cell keeps the theoretical arrival time `TAT`: the instant at which the limiter
//! would be full again. A call for `n` cells at `now` moves it to
//! `max(TAT, now) + n·T` and is admitted if that is at most `now + T·burst` ahead;
//! otherwise it is refused, `TAT` does not move, and the exact wait is the excess.
//! Any `TAT ≤ now` means "full", which is also what a fresh cell (`TAT = 0`) means.
//!
//! # Rollback
//!
//! A composite limit reserves on several cells and returns the reservations when a
//! later one refuses. Returning the full increment is not always safe: if the cell
//! drained while the reservation was held, a reservation stacked on top may have been
//! clamped to `now`, and subtracting the whole increment would credit cells that were
//! never taken. A rollback at time `r` of a reservation of `inc` taken at `t` therefore
//! refunds `inc − (r − t)` (nothing once it is older than `inc`).
//!
//! Why this never over-admits: write `true` for the `TAT` that the committed
//! reservations alone would give (the GCRA recurrence over them, in CAS order). The
//! cell keeps `TAT ≥ true`, so whatever it admits the exact GCRA would admit too.
//! Reserving keeps the invariant (`max` and `+` are monotone). After a rollback of
//! reservation `A`, `true` is the larger of (a) the chains that started before `A`,
//! which all carried `A`'s increment and so are at most `TAT − inc`, and (b) the
//! chains that started after `A`, at some `t_k ≤ r` with the later increments `S` on
//! top: at most `r + S`. `A`'s own chain shows `t + inc + S ≤ TAT`, so (b) is at most
//! `TAT − inc + (r − t)`, which is exactly what the cell is left with. When `r = t` (the
//! layer reserves and rolls back within one clock reading) the refund is exact.

use std::{
    num::NonZeroU32,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use super::quota::Quota;
use crate::clock::Nanos;

/// One GCRA state: the theoretical arrival time in nanoseconds on the limiter's clock.
#[derive(Debug, Default)]
pub(super) struct Gcra {
    tat: AtomicU64,
}

/// Cells taken from a [`Gcra`]: when, and how many nanoseconds of `TAT`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Reservation {
    at: u64,
    inc: u64,
}

impl Gcra {
    /// Takes `n` cells at `now`, or says exactly how long until they would fit.
    ///
    /// `n` must not exceed the burst (callers check); a larger `n` is simply refused.
    pub(super) fn reserve(
        &self,
        quota: &Quota,
        n: NonZeroU32,
        now: Nanos,
    ) -> Result<Reservation, Duration> {
        let now = now.as_raw();
        let inc = u128::from(quota.interval_nanos()) * u128::from(n.get());
        let limit = u128::from(now) + u128::from(quota.window());
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            let next = u128::from(tat.max(now)) + inc;
            if next > limit {
                return Err(nanos(next - limit));
            }
            let stored = u64::try_from(next).unwrap_or(u64::MAX);
            match self
                .tat
                .compare_exchange_weak(tat, stored, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return Ok(Reservation {
                        at: now,
                        inc: u64::try_from(inc).unwrap_or(u64::MAX),
                    });
                }
                Err(actual) => tat = actual,
            }
        }
    }

    /// Returns what is left of `reservation` at `now` (see the module docs).
    pub(super) fn rollback(&self, reservation: Reservation, now: Nanos) {
        let held = now.as_raw().saturating_sub(reservation.at);
        let refund = reservation.inc.saturating_sub(held);
        if refund > 0 {
            // The closure never returns `None`, so the update cannot fail.
            let _ = self
                .tat
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                    Some(tat.saturating_sub(refund))
                });
        }
    }

    /// How long until `n` cells would fit at `now`, without taking them (zero if now).
    pub(super) fn wait(&self, quota: &Quota, n: NonZeroU32, now: Nanos) -> Duration {
        let now = now.as_raw();
        let next = u128::from(self.tat.load(Ordering::Acquire).max(now))
            + u128::from(quota.interval_nanos()) * u128::from(n.get());
        nanos(next.saturating_sub(u128::from(now) + u128::from(quota.window())))
    }

    /// Cells that would be admitted at `now`, back to back.
    pub(super) fn remaining(&self, quota: &Quota, now: Nanos) -> u32 {
        let tat = self.tat.load(Ordering::Acquire);
        let free =
            (now.as_raw().saturating_add(quota.window())).saturating_sub(tat.max(now.as_raw()));
        u32::try_from(free / quota.interval_nanos())
            .unwrap_or(u32::MAX)
            .min(quota.max_burst().get())
    }

    /// How long until the cell is full again at `now` (zero if it is).
    pub(super) fn full_in(&self, now: Nanos) -> Duration {
        Duration::from_nanos(
            self.tat
                .load(Ordering::Acquire)
                .saturating_sub(now.as_raw()),
        )
    }

    /// The cell's free capacity at `now`.
    #[cfg(test)]
    pub(super) fn capacity(&self, quota: &Quota, now: Nanos) -> Capacity {
        Capacity {
            remaining: self.remaining(quota, now),
            full_in: self.full_in(now),
        }
    }

    /// Whether the cell is as good as fresh at `now` (full, so it can be forgotten).
    pub(super) fn is_full(&self, now: Nanos) -> bool {
        self.tat.load(Ordering::Acquire) <= now.as_raw()
    }
}

fn nanos(n: u128) -> Duration {
    Duration::from_nanos(u64::try_from(n).unwrap_or(u64::MAX))
}

/// A snapshot of a limiter's free capacity, for tests.
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Capacity {
    remaining: u32,
    full_in: Duration,
}

#[cfg(test)]
impl Capacity {
    /// Cells that would be admitted right now, back to back.
    pub(crate) const fn remaining(&self) -> u32 {
        self.remaining
    }

    /// Whether nothing has been taken (or everything taken has come back).
    pub(crate) const fn is_full(&self) -> bool {
        self.full_in.is_zero()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).expect("test values are not zero")
    }

    fn at(ns: u64) -> Nanos {
        Nanos::from_raw(ns)
    }

    /// The exact GCRA over the reservations that were kept, in order: the reference
    /// the cell must never be more permissive than.
    fn model_tat(kept: &[(u64, u64)]) -> u64 {
        kept.iter().fold(0, |tat, &(t, inc)| tat.max(t) + inc)
    }

    #[derive(Clone, Debug)]
    enum Op {
        Advance(u64),
        Reserve(u32),
        Rollback(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u64..40).prop_map(Op::Advance),
            (1u32..4).prop_map(Op::Reserve),
            (0usize..8).prop_map(Op::Rollback),
        ]
    }

    #[test]
    fn an_immediate_rollback_restores_the_cell_exactly() {
        let quota = Quota::with_period(Duration::from_nanos(10))
            .expect("not zero")
            .burst(nz(3));
        let cell = Gcra::default();
        cell.reserve(&quota, nz(1), at(100))
            .expect("full cell admits");
        let before = cell.capacity(&quota, at(100));
        let r = cell
            .reserve(&quota, nz(2), at(100))
            .expect("two cells left");
        assert_eq!(cell.capacity(&quota, at(100)).remaining(), 0);
        cell.rollback(r, at(100));
        assert_eq!(cell.capacity(&quota, at(100)), before);
    }

    #[test]
    fn a_rollback_after_the_cell_drained_refunds_nothing_it_did_not_hold() {
        let quota = Quota::with_period(Duration::from_nanos(10))
            .expect("not zero")
            .burst(nz(2));
        let cell = Gcra::default();
        let a = cell.reserve(&quota, nz(1), at(0)).expect("admitted");
        // `a` has drained by t = 100; `b` starts a new chain at 100.
        cell.reserve(&quota, nz(1), at(100)).expect("admitted");
        cell.rollback(a, at(100));
        assert_eq!(
            cell.capacity(&quota, at(100)).remaining(),
            1,
            "b keeps its cell"
        );
    }

    proptest! {
        /// Whatever the interleaving of reservations, rollbacks and time, the cell is
        /// never more permissive than the exact GCRA over the reservations it kept.
        #[test]
        fn rollback_never_credits_cells_that_were_not_returned(
            interval in 1u64..20,
            burst in 1u32..6,
            ops in proptest::collection::vec(op(), 1..60),
        ) {
            let quota = Quota::with_period(Duration::from_nanos(interval)).expect("not zero").burst(nz(burst));
            let cell = Gcra::default();
            let mut now = 0u64;
            let mut log: Vec<(u64, u64, Option<Reservation>)> = Vec::new();
            for op in ops {
                match op {
                    Op::Advance(d) => now += d,
                    Op::Reserve(n) => {
                        let n = nz(n.min(burst));
                        let admitted = cell.reserve(&quota, n, at(now));
                        let kept: Vec<_> = log.iter().map(|&(t, inc, _)| (t, inc)).collect();
                        let model = model_tat(&kept).max(now) + interval * u64::from(n.get());
                        if admitted.is_ok() {
                            prop_assert!(model <= now + interval * u64::from(burst), "the exact GCRA would refuse");
                        }
                        if let Ok(r) = admitted {
                            log.push((now, interval * u64::from(n.get()), Some(r)));
                        }
                    }
                    Op::Rollback(i) => {
                        if !log.is_empty() {
                            let i = i % log.len();
                            if let Some(r) = log[i].2.take() {
                                cell.rollback(r, at(now));
                                log.remove(i);
                            }
                        }
                    }
                }
                let kept: Vec<_> = log.iter().map(|&(t, inc, _)| (t, inc)).collect();
                let cell_tat = cell.tat.load(Ordering::Relaxed).max(now);
                prop_assert!(cell_tat >= model_tat(&kept).max(now));
            }
        }
    }
}
