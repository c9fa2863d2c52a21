//! The delay schedule and what is kept per key.

use std::time::Duration;

use crate::{
    clock::{Nanos, duration_to_nanos},
    error::ErrorClass,
    keyed::Expiring,
    rng::Rng,
};

/// How a delay is spread around its exponential value `d = base · factor^failures`.
///
/// The cap is applied after the jitter, so a delay is always in `[0, cap]`.
///
/// # Default
///
/// [`Jitter::Full`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Jitter {
    /// Uniform in `[0, d]` ("full jitter"): spreads retries the most, and does the least work.
    #[default]
    Full,
    /// Uniform in `[d/2, d]` ("equal jitter"): never retries much earlier than `d`.
    Equal,
    /// Exactly `d`, as client-go's `ItemExponentialFailureRateLimiter` does.
    None,
}

/// The checked schedule: what a [`BackoffConfig`](super::BackoffConfig) resolves to.
#[derive(Clone, Debug)]
pub(super) struct Policy {
    pub(super) base: Duration,
    pub(super) cap: Duration,
    pub(super) factor: f64,
    pub(super) jitter: Jitter,
    pub(super) conflict_delay: Duration,
    pub(super) idle_ttl: Duration,
}

/// The largest delay the schedule computes with before the cap, in nanoseconds (~584 years).
#[expect(
    clippy::cast_precision_loss,
    reason = "a bound for saturation; rounding up is harmless"
)]
const SATURATED_NS: f64 = u64::MAX as f64;

impl Policy {
    /// `base · factor^level` in nanoseconds: finite, non-negative, saturated.
    fn exponential_ns(&self, level: u32) -> f64 {
        #[expect(
            clippy::cast_precision_loss,
            reason = "delays are f64 math; exact below 2^53 ns (104 days)"
        )]
        let base = duration_to_nanos(self.base) as f64;
        let exp = i32::try_from(level).unwrap_or(i32::MAX);
        let d = base * self.factor.powi(exp);
        // base > 0 and factor >= 1 are finite, so d is never NaN, but it may overflow.
        if d.is_finite() {
            d.min(SATURATED_NS)
        } else {
            SATURATED_NS
        }
    }

    /// The delay after failure number `level` (counted from 0): `min(cap, jitter(base · factor^level))`.
    ///
    /// Draws from `rng` only when there is jitter to apply.
    pub(super) fn delay(&self, level: u32, rng: &Rng) -> Duration {
        let d = self.exponential_ns(level);
        let jittered = match self.jitter {
            Jitter::None => d,
            Jitter::Full => d * rng.fraction(),
            Jitter::Equal => d / 2.0 + d / 2.0 * rng.fraction(),
        };
        self.capped(jittered)
    }

    /// `min(cap, ns)` as a duration, for a finite, non-negative `ns`.
    fn capped(&self, ns: f64) -> Duration {
        #[expect(
            clippy::cast_precision_loss,
            reason = "a comparison bound; see the note below"
        )]
        let cap = duration_to_nanos(self.cap) as f64;
        // Every f64 below `cap` (the cap rounded to nearest) converts to at most the exact
        // cap in nanoseconds, so the cast below cannot exceed it or overflow.
        if ns.is_finite() && ns >= 0.0 && ns < cap {
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "ns is finite and in [0, cap), checked just above"
            )]
            let ns = ns as u64;
            Duration::from_nanos(ns).min(self.cap)
        } else {
            self.cap
        }
    }

    /// The idle horizon at `now`: entries whose next attempt was due before it are expired.
    ///
    /// The store only passes one instant to [`Expiring::expired`], so it is driven by
    /// `now + 1 ns - idle_ttl` instead of `now`: an entry has then expired exactly when
    /// `now >= not_before + idle_ttl`. Before `idle_ttl` has elapsed since the epoch the
    /// horizon is zero and nothing can expire, which is also exact.
    pub(super) fn horizon(&self, now: Nanos) -> Nanos {
        let horizon = now
            .as_raw()
            .saturating_add(1)
            .saturating_sub(duration_to_nanos(self.idle_ttl));
        Nanos::from_raw(horizon)
    }
}

/// What a failure does to the schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Failure {
    /// Transient or throttled: wait `max(delay, retry_after)`, and raise the exponent.
    Escalate { retry_after: Option<Duration> },
    /// A conflict: requeue after the conflict delay; the exponent is unchanged.
    Conflict,
}

impl Failure {
    /// What `class` does; `None` for a terminal error, which forgets the key.
    pub(super) const fn of(class: ErrorClass) -> Option<Self> {
        match class {
            ErrorClass::Transient => Some(Failure::Escalate { retry_after: None }),
            ErrorClass::Throttled { retry_after } => Some(Failure::Escalate { retry_after }),
            ErrorClass::Conflict => Some(Failure::Conflict),
            ErrorClass::Terminal => None,
        }
    }
}

/// What is kept per key: 24 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Entry {
    /// No attempt of this generation may start before this instant.
    pub(super) not_before: Nanos,
    /// `metadata.generation` at the last failure, or [`NO_GENERATION`].
    generation: i64,
    /// Failures that raised the exponent since the last reset.
    pub(super) failures: u32,
}

/// The generation recorded for keys without one (the API server starts at 1).
const NO_GENERATION: i64 = i64::MIN;

impl Entry {
    /// State equivalent to no failures, at `generation` if known.
    pub(super) const fn fresh(generation: Option<i64>) -> Self {
        Entry {
            not_before: Nanos::ZERO,
            generation: match generation {
                Some(g) => g,
                None => NO_GENERATION,
            },
            failures: 0,
        }
    }

    /// How long an attempt at `now` must still wait, if at all.
    ///
    /// `observed` is the object's current generation; a different one than recorded
    /// passes (a new spec gets a fresh start). `None` (unknown, or an object without a
    /// generation) never passes on that ground.
    pub(super) fn wait(&self, observed: Option<i64>, now: Nanos) -> Option<Duration> {
        if observed.is_some_and(|g| g != self.generation) {
            return None;
        }
        (now < self.not_before).then(|| self.not_before.saturating_since(now))
    }

    /// Records a failed attempt that started at `started` and ended at `now`; returns
    /// the delay until the next attempt may start.
    ///
    /// A generation other than the recorded one resets the state first. An attempt
    /// that started while a backoff delay was still pending (the gate was bypassed, or
    /// attempts overlapped) does not raise the exponent; it only re-arms the delay at
    /// the current level (kubernetes#132805). `started` is `None` for an attempt whose
    /// key was not tracked when it started: every delay recorded since is later.
    pub(super) fn record_failure(
        &mut self,
        policy: &Policy,
        rng: &Rng,
        failure: Failure,
        observed: Option<i64>,
        started: Option<Nanos>,
        now: Nanos,
    ) -> Duration {
        if observed.is_some_and(|g| g != self.generation) {
            *self = Entry::fresh(observed);
        }
        let delay = match failure {
            Failure::Conflict => policy.conflict_delay,
            Failure::Escalate { retry_after } => {
                let early = self.failures > 0 && started.is_none_or(|s| s < self.not_before);
                let level = if early {
                    self.failures - 1
                } else {
                    let level = self.failures;
                    self.failures = level.saturating_add(1);
                    level
                };
                let delay = policy.delay(level, rng);
                retry_after.map_or(delay, |r| delay.max(r).min(policy.cap))
            }
        };
        self.not_before = now.saturating_add(delay);
        delay
    }
}

impl Expiring for Entry {
    /// `horizon` is [`Policy::horizon`] of now, not now itself.
    fn expired(&self, horizon: Nanos) -> bool {
        horizon > self.not_before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(jitter: Jitter) -> Policy {
        Policy {
            base: Duration::from_millis(5),
            cap: Duration::from_secs(1000),
            factor: 2.0,
            jitter,
            conflict_delay: Duration::from_millis(5),
            idle_ttl: Duration::from_secs(2000),
        }
    }

    #[test]
    fn huge_failure_counts_saturate_at_the_cap() {
        let rng = Rng::new(Some(1));
        for jitter in [Jitter::None, Jitter::Equal] {
            let p = policy(jitter);
            for level in [64, 1100, u32::MAX] {
                assert_eq!(p.delay(level, &rng), p.cap, "{jitter:?} {level}");
            }
        }
        let huge_factor = Policy {
            factor: f64::MAX,
            ..policy(Jitter::Full)
        };
        assert!(huge_factor.delay(u32::MAX, &rng) <= huge_factor.cap);
    }

    #[test]
    fn full_jitter_stays_below_the_exponential_value() {
        let rng = Rng::new(Some(7));
        let p = policy(Jitter::Full);
        for level in 0..10 {
            let ceiling = Duration::from_millis(5) * 2u32.pow(level);
            for _ in 0..50 {
                assert!(p.delay(level, &rng) <= ceiling);
            }
        }
    }

    #[test]
    fn equal_jitter_stays_in_the_upper_half() {
        let rng = Rng::new(Some(7));
        let p = policy(Jitter::Equal);
        for _ in 0..100 {
            let d = p.delay(3, &rng);
            assert!(
                d >= Duration::from_millis(20) && d <= Duration::from_millis(40),
                "{d:?}"
            );
        }
    }

    #[test]
    fn the_horizon_expires_entries_exactly_idle_ttl_after_their_due_time() {
        let p = policy(Jitter::None);
        let at = |s: u64| Nanos::ZERO.saturating_add(Duration::from_secs(s));
        let entry = Entry {
            not_before: at(10),
            ..Entry::fresh(None)
        };
        assert!(!entry.expired(p.horizon(at(2009))));
        assert!(!entry.expired(p.horizon(Nanos::from_raw(at(2010).as_raw() - 1))));
        assert!(entry.expired(p.horizon(at(2010))));
        let due_at_epoch = Entry::fresh(None);
        assert!(!due_at_epoch.expired(p.horizon(at(1))));
    }

    #[test]
    fn a_new_generation_resets_the_count() {
        let (p, rng) = (policy(Jitter::None), Rng::new(None));
        let mut e = Entry::fresh(Some(1));
        let fail = Failure::Escalate { retry_after: None };
        e.record_failure(&p, &rng, fail, Some(1), None, Nanos::ZERO);
        let t = e.not_before;
        e.record_failure(&p, &rng, fail, Some(1), Some(t), t);
        assert_eq!(e.failures, 2);
        let d = e.record_failure(&p, &rng, fail, Some(2), Some(t), t);
        assert_eq!((e.failures, d), (1, p.base));
    }
}
