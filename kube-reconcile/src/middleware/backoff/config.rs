//! [`BackoffConfig`]: the schedule, the jitter, and how much state to keep.

use std::{num::NonZeroUsize, time::Duration};

use crate::clock::Clock;

use super::{
    error::BackoffConfigError,
    layer::BackoffLayer,
    state::{Jitter, Policy},
};

/// The per-object backoff schedule: `delay = min(cap, jitter(base · factor^failures))`.
///
/// Build a layer with [`build`](BackoffConfig::build), or a
/// standalone [`BackoffHandle`](super::BackoffHandle) for any async call. Values are
/// checked there: a bad one is a [`ConfigError`](crate::ConfigError), never clamped.
///
/// # Default
///
/// [`BackoffConfig::operator`]:
///
/// | Setting | Default |
/// |---|---|
/// | [`base`](BackoffConfig::base) | 1 s |
/// | [`cap`](BackoffConfig::cap) | 300 s |
/// | [`factor`](BackoffConfig::factor) | 2.0 |
/// | [`jitter`](BackoffConfig::jitter) | [`Jitter::Full`] |
/// | delay after a conflict (fixed) | the base delay |
/// | [`idle_ttl`](BackoffConfig::idle_ttl) | twice the cap |
/// | [`max_keys`](BackoffConfig::max_keys) | 100 000 |
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use kube_reconcile::{ConfigError, middleware::backoff::{BackoffConfig, Jitter}};
///
/// let layer = BackoffConfig::operator()
///     .cap(Duration::from_secs(60))
///     .jitter(Jitter::Equal)
///     .build()?;
/// assert_eq!(layer.handle().sweep(), 0, "no object tracked yet");
///
/// let bad = BackoffConfig::default().base(Duration::from_secs(600)).build();
/// assert_eq!(bad.unwrap_err().to_string(), "backoff base delay 600s is longer than the cap 300s");
/// # Ok::<(), ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct BackoffConfig {
    base: Duration,
    cap: Duration,
    factor: f64,
    jitter: Jitter,
    seed: Option<u64>,
    conflict_delay: Option<Duration>,
    idle_ttl: Option<Duration>,
    max_keys: NonZeroUsize,
    clock: Option<Clock>,
}

const DEFAULT_MAX_KEYS: NonZeroUsize = NonZeroUsize::new(100_000).expect("100 000 is not zero");

impl BackoffConfig {
    /// client-go's per-item limiter: 5 ms doubling to 1000 s, without jitter.
    ///
    /// Failure `n` (counted from 0) waits exactly `min(1000 s, 5 ms · 2^n)`, as with
    /// `workqueue.DefaultTypedControllerRateLimiter`'s `ItemExponentialFailureRateLimiter`.
    /// The 1000 s cap is reached after 18 failures; most operators want
    /// [`operator`](BackoffConfig::operator) instead.
    pub const fn client_go() -> Self {
        Self::operator()
            .base(Duration::from_millis(5))
            .cap(Duration::from_secs(1000))
            .jitter(Jitter::None)
    }

    /// The recommended schedule: 1 s doubling to 300 s, with full jitter.
    pub const fn operator() -> Self {
        BackoffConfig {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(300),
            factor: 2.0,
            jitter: Jitter::Full,
            seed: None,
            conflict_delay: None,
            idle_ttl: None,
            max_keys: DEFAULT_MAX_KEYS,
            clock: None,
        }
    }

    /// Sets the delay after the first failure (before jitter). Must be above zero.
    #[must_use]
    pub const fn base(mut self, base: Duration) -> Self {
        self.base = base;
        self
    }

    /// Sets the longest delay; every delay, jitter and `Retry-After` included, is at most this.
    #[must_use]
    pub const fn cap(mut self, cap: Duration) -> Self {
        self.cap = cap;
        self
    }

    /// Sets the growth per failure. Must be finite and at least 1 (1 gives a constant delay).
    #[must_use]
    pub const fn factor(mut self, factor: f64) -> Self {
        self.factor = factor;
        self
    }

    /// Sets how delays are jittered.
    #[must_use]
    pub const fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Seeds the jitter, so the same failures give the same delays (for tests and replays).
    #[cfg(test)]
    #[must_use]
    pub(crate) const fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Sets the quick requeue after a [`Conflict`](crate::ErrorClass::Conflict), which
    /// does not raise the exponent. At most the cap.
    #[cfg(test)]
    #[must_use]
    pub(crate) const fn conflict_delay(mut self, delay: Duration) -> Self {
        self.conflict_delay = Some(delay);
        self
    }

    /// Sets how long an object's state is kept after its next attempt was due, if it
    /// never comes back (deleted, or no longer watched). Must be above zero.
    ///
    /// Keep it well above the time a controller takes to act on a requeue: state dropped
    /// early only means the next failure starts again from the base delay.
    #[must_use]
    pub const fn idle_ttl(mut self, ttl: Duration) -> Self {
        self.idle_ttl = Some(ttl);
        self
    }

    /// Sets how many objects are tracked at most. Failures of further objects are not
    /// tracked (they requeue after the base delay) until entries expire.
    #[must_use]
    pub const fn max_keys(mut self, max_keys: NonZeroUsize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Sets the clock the layer reads (a [`ManualClock`](crate::testing::ManualClock) in tests).
    #[cfg(test)]
    #[must_use]
    pub(crate) fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Checks the values and builds a [`BackoffLayer`].
    ///
    /// # Errors
    ///
    /// A [`ConfigError`](crate::ConfigError) naming the first bad value.
    pub fn build(self) -> Result<BackoffLayer, crate::ConfigError> {
        BackoffLayer::new(self)
    }

    pub(crate) fn check(&self) -> Result<(), BackoffConfigError> {
        if self.base.is_zero() {
            return Err(BackoffConfigError::ZeroBase);
        }
        if self.base > self.cap {
            return Err(BackoffConfigError::BaseAboveCap {
                base: self.base,
                cap: self.cap,
            });
        }
        if !self.factor.is_finite() || self.factor < 1.0 {
            return Err(BackoffConfigError::InvalidFactor {
                factor: self.factor,
            });
        }
        let conflict_delay = self.effective_conflict_delay();
        if conflict_delay > self.cap {
            return Err(BackoffConfigError::ConflictDelayAboveCap {
                conflict_delay,
                cap: self.cap,
            });
        }
        if self.effective_idle_ttl().is_zero() {
            return Err(BackoffConfigError::ZeroIdleTtl);
        }
        Ok(())
    }

    /// Checks the values and splits them into what the layer keeps.
    pub(super) fn resolve(self) -> Result<Resolved, BackoffConfigError> {
        self.check()?;
        Ok(self.resolve_unchecked())
    }

    /// Splits the values into what the layer keeps, for configurations known to be valid
    /// (the presets, which a test validates).
    pub(super) fn resolve_unchecked(self) -> Resolved {
        Resolved {
            policy: Policy {
                base: self.base,
                cap: self.cap,
                factor: self.factor,
                jitter: self.jitter,
                conflict_delay: self.effective_conflict_delay(),
                idle_ttl: self.effective_idle_ttl(),
            },
            seed: self.seed,
            max_keys: self.max_keys,
            clock: self.clock.unwrap_or_default(),
        }
    }

    fn effective_conflict_delay(&self) -> Duration {
        self.conflict_delay.unwrap_or(self.base)
    }

    fn effective_idle_ttl(&self) -> Duration {
        self.idle_ttl.unwrap_or_else(|| self.cap.saturating_mul(2))
    }
}

/// A checked configuration, split into what the layer keeps.
#[derive(Debug)]
pub(super) struct Resolved {
    pub(super) policy: Policy,
    pub(super) seed: Option<u64>,
    pub(super) max_keys: NonZeroUsize,
    pub(super) clock: Clock,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self::operator()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn policy(config: BackoffConfig) -> Policy {
        config
            .clock(ManualClock::new().clock())
            .resolve()
            .unwrap()
            .policy
    }

    #[test]
    fn presets_are_valid_and_default_is_the_operator_preset() {
        let operator = policy(BackoffConfig::default());
        assert_eq!(
            (operator.base, operator.cap),
            (Duration::from_secs(1), Duration::from_secs(300))
        );
        assert_eq!(operator.jitter, Jitter::Full);
        assert_eq!(operator.conflict_delay, Duration::from_secs(1));
        assert_eq!(operator.idle_ttl, Duration::from_secs(600));
        let client_go = policy(BackoffConfig::client_go());
        assert_eq!(
            (client_go.base, client_go.cap),
            (Duration::from_millis(5), Duration::from_secs(1000))
        );
        assert_eq!(client_go.jitter, Jitter::None);
        assert_eq!(client_go.conflict_delay, Duration::from_millis(5));
    }

    #[test]
    fn bad_values_are_typed_errors() {
        let c = BackoffConfig::operator;
        assert_eq!(
            c().base(Duration::ZERO).check(),
            Err(BackoffConfigError::ZeroBase)
        );
        assert_eq!(
            c().base(Duration::from_secs(9))
                .cap(Duration::from_secs(3))
                .check(),
            Err(BackoffConfigError::BaseAboveCap {
                base: Duration::from_secs(9),
                cap: Duration::from_secs(3)
            })
        );
        for factor in [0.5, -1.0, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(
                c().factor(factor).check(),
                Err(BackoffConfigError::InvalidFactor { factor })
            );
        }
        assert!(matches!(
            c().factor(f64::NAN).check(),
            Err(BackoffConfigError::InvalidFactor { factor }) if factor.is_nan()
        ));
        assert!(matches!(
            c().conflict_delay(Duration::from_secs(301)).check(),
            Err(BackoffConfigError::ConflictDelayAboveCap { .. })
        ));
        assert_eq!(
            c().idle_ttl(Duration::ZERO).check(),
            Err(BackoffConfigError::ZeroIdleTtl)
        );
        assert_eq!(c().factor(1.0).check(), Ok(()));
        assert_eq!(
            BackoffConfigError::ZeroBase.to_string(),
            "backoff base delay must be above zero"
        );
    }
}
