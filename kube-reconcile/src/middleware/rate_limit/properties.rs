//! Properties of the limiters: exact bursts, exact waits, weights, and threads.

use std::{
    num::{NonZeroU32, NonZeroUsize},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use proptest::prelude::*;

use super::error::CheckError;
use super::*;
use crate::clock::ManualClock;

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("test values are not zero")
}

fn ns(n: u64) -> Duration {
    Duration::from_nanos(n)
}

fn quota(interval: u64, burst: u32) -> Quota {
    Quota::with_period(ns(interval))
        .expect("intervals are not zero")
        .burst(nz(burst))
}

/// Runs `attempts` calls of `check` on each of two threads at once; returns the admitted.
fn race(attempts: u32, check: impl Fn() -> bool + Sync) -> u32 {
    let admitted = AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..attempts {
                    if check() {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    admitted.into_inner()
}

proptest! {
    #[test]
    fn a_limiter_admits_exactly_the_burst_then_one_per_emission_interval(
        interval in 1u64..10_000_000_000,
        burst in 1u32..50,
        rounds in 1usize..20,
    ) {
        let manual = ManualClock::new();
        let limiter = RateLimiter::new(quota(interval, burst)).clock(manual.clock());
        for _ in 0..burst {
            prop_assert!(limiter.check().is_ok());
        }
        for _ in 0..rounds {
            prop_assert_eq!(limiter.check(), Err(RateLimited::new(ns(interval))));
            manual.advance(ns(interval));
            prop_assert!(limiter.check().is_ok());
        }
        prop_assert!(limiter.check().is_err());
    }

    #[test]
    fn the_refusal_wait_is_exact_to_the_nanosecond(
        interval in 1u64..1_000_000,
        burst in 1u32..10,
        steps in proptest::collection::vec((0u64..3, 1u32..10), 1..40),
    ) {
        let manual = ManualClock::new();
        let limiter = RateLimiter::new(quota(interval, burst)).clock(manual.clock());
        for (idle, n) in steps {
            manual.advance(ns(idle * interval / 2));
            let n = nz(n.min(burst));
            if let Err(refused) = limiter.check_n(n) {
                let wait = refused.retry_after().expect("n fits the burst");
                prop_assert!(wait > Duration::ZERO);
                manual.advance(wait.saturating_sub(ns(1)));
                prop_assert_eq!(limiter.check_n(n), Err(CheckError::RateLimited { retry_after: ns(1) }));
                manual.advance(ns(1));
                prop_assert_eq!(limiter.check_n(n), Ok(()));
            }
        }
    }

    #[test]
    fn weighted_checks_take_exactly_their_weight_in_cells(
        burst in 1u32..30,
        weights in proptest::collection::vec(1u32..40, 1..20),
    ) {
        let manual = ManualClock::new();
        let limiter = RateLimiter::new(quota(1_000, burst)).clock(manual.clock());
        for n in weights {
            let before = limiter.capacity().remaining();
            match limiter.check_n(nz(n)) {
                Ok(()) => prop_assert_eq!(limiter.capacity().remaining(), before - n),
                Err(CheckError::InsufficientCapacity { cells, burst: b }) => {
                    prop_assert!(n > burst);
                    prop_assert_eq!((cells, b), (nz(n), nz(burst)));
                }
                Err(_) => {
                    prop_assert!(n > before && n <= burst);
                    prop_assert_eq!(limiter.capacity().remaining(), before);
                }
            }
        }
    }

    #[test]
    fn two_threads_never_admit_more_than_the_quota_allows(
        interval in 1u64..1_000_000,
        burst in 1u32..100,
        refills in 0u32..150,
    ) {
        let manual = ManualClock::new();
        let limiter = RateLimiter::new(quota(interval, burst)).clock(manual.clock());
        prop_assert_eq!(race(burst + 20, || limiter.check().is_ok()), burst);
        manual.advance(ns(interval * u64::from(refills)));
        prop_assert_eq!(race(burst + 20, || limiter.check().is_ok()), refills.min(burst));
    }

    #[test]
    fn two_threads_on_one_key_never_admit_more_than_its_quota(
        interval in 1u64..1_000_000,
        burst in 1u32..100,
        refills in 0u32..150,
    ) {
        let manual = ManualClock::new();
        let limiter = KeyedLimiter::<String>::new(quota(interval, burst)).clock(manual.clock());
        prop_assert_eq!(race(burst + 20, || limiter.check_key("k").is_ok()), burst);
        manual.advance(ns(interval * u64::from(refills)));
        prop_assert_eq!(race(burst + 20, || limiter.check_key("k").is_ok()), refills.min(burst));
        prop_assert_eq!(limiter.len(), 1);
    }
}

#[test]
fn keys_are_limited_independently() {
    let manual = ManualClock::new();
    let limiter = KeyedLimiter::<String>::new(quota(100, 2)).clock(manual.clock());
    assert!(limiter.check_key("a").is_ok());
    assert!(limiter.check_key_n("a", nz(1)).is_ok());
    assert_eq!(limiter.check_key("a"), Err(RateLimited::new(ns(100))));
    assert!(limiter.check_key_n("b", nz(2)).is_ok());
    assert_eq!(limiter.capacity("c").remaining(), 2);
    assert_eq!(
        limiter.check_key_n("c", nz(3)),
        Err(CheckError::InsufficientCapacity {
            cells: nz(3),
            burst: nz(2)
        })
    );
    assert_eq!(
        limiter.len(),
        2,
        "an impossible check does not track its key"
    );
}

#[test]
fn a_full_keyed_limiter_refuses_new_keys_until_tracked_ones_expire() {
    let manual = ManualClock::new();
    let limiter = KeyedLimiter::<u64>::new(quota(1_000, 1))
        .clock(manual.clock())
        .max_keys(NonZeroUsize::new(2).expect("not zero"));
    assert!(limiter.check_key(&1).is_ok());
    assert!(limiter.check_key(&2).is_ok());
    let refused = limiter
        .check_key_n(&3, NonZeroU32::MIN)
        .expect_err("two live keys fill the limiter");
    assert_eq!(
        refused,
        CheckError::TooManyKeys {
            max_keys: 2,
            retry_after: ns(1_000)
        }
    );
    assert_eq!(
        refused.to_string(),
        "too many keys tracked (2), retry after 1µs"
    );
    manual.advance(ns(1_000));
    assert!(limiter.check_key(&3).is_ok());
    assert_eq!(limiter.len(), 1, "the expired keys made room");
}

#[test]
fn idle_keys_are_pruned_when_new_keys_arrive_and_by_sweep() {
    let manual = ManualClock::new();
    let limiter = KeyedLimiter::<u64>::new(Quota::per_second(nz(10))).clock(manual.clock());
    for key in 0..1_000 {
        limiter.check_key(&key).expect("a new key is full");
    }
    assert_eq!(limiter.len(), 1_000);
    manual.advance(Duration::from_secs(1));
    limiter.check_key(&5_000).expect("a new key is full");
    assert_eq!(limiter.len(), 1, "only the new key is left");
    manual.advance(Duration::from_millis(100));
    assert_eq!(limiter.sweep(), 0);
    assert_eq!(limiter.len(), 0);
}

#[test]
fn zero_period_and_oversized_checks_are_typed_errors() {
    assert_eq!(
        Quota::with_period(Duration::ZERO).map_err(crate::ConfigError::quota),
        Err(QuotaError::ZeroPeriod)
    );
    let limiter = RateLimiter::new(quota(10, 4));
    let err = limiter
        .check_n(nz(5))
        .expect_err("5 cells never fit a burst of 4");
    assert_eq!(err.retry_after(), None);
    assert_eq!(
        err.to_string(),
        "5 cells exceed the burst of 4 and can never be admitted"
    );
    assert!(limiter.capacity().is_full(), "nothing was taken");
}
