//! [`RateLimitBuilder`]: combines limits into a [`RateLimitLayer`] and checks the result.

use std::{
    num::{NonZeroU32, NonZeroUsize},
    sync::Arc,
    time::Duration,
};

use super::{
    budget::RateBudget,
    error::RateLimitConfigError,
    keyed_limiter::{DEFAULT_MAX_KEYS, KeyedLimiter},
    layer::{Limit, RateLimitLayer, Shared},
    limiter::RateLimiter,
    quota::Quota,
};
use crate::{clock::Clock, rng::Rng};

/// Configures a [`RateLimitLayer`] with several limits; [`build`](Self::build) checks it.
///
/// # Default
///
/// No limits (add at least one), weight 1, jitter up to 1 s, 100 000 objects tracked by
/// the per-object limit.
#[derive(Clone, Debug)]
#[must_use]
pub struct RateLimitBuilder {
    global: Option<Quota>,
    per_object: Option<Quota>,
    budgets: Vec<RateBudget>,
    weight: NonZeroU32,
    clock: Option<Clock>,
    jitter: Duration,
    seed: Option<u64>,
    max_keys: NonZeroUsize,
}

impl Default for RateLimitBuilder {
    fn default() -> Self {
        RateLimitBuilder {
            global: None,
            per_object: None,
            budgets: Vec::new(),
            weight: NonZeroU32::MIN,
            clock: None,
            jitter: Duration::from_secs(1),
            seed: None,
            max_keys: DEFAULT_MAX_KEYS,
        }
    }
}

impl RateLimitBuilder {
    /// Limits all reconciles together to `quota` (reported as `"global"`).
    pub fn global(self, quota: Quota) -> Self {
        RateLimitBuilder {
            global: Some(quota),
            ..self
        }
    }

    /// Limits each object to `quota` (reported as `"object"`).
    pub fn per_object(self, quota: Quota) -> Self {
        RateLimitBuilder {
            per_object: Some(quota),
            ..self
        }
    }

    /// Draws from `budget` too (reported by its name); may be called more than once.
    pub fn budget(mut self, budget: RateBudget) -> Self {
        self.budgets.push(budget);
        self
    }

    /// Each reconcile takes `weight` cells from every limit.
    #[doc(hidden)]
    pub fn weight(self, weight: NonZeroU32) -> Self {
        RateLimitBuilder { weight, ..self }
    }

    /// Reads `clock` for the global and per-object limits (a budget keeps its own).
    #[cfg(test)]
    pub(crate) fn clock(self, clock: Clock) -> Self {
        RateLimitBuilder {
            clock: Some(clock),
            ..self
        }
    }

    /// A deferred reconcile waits the exact time plus a uniform extra of up to the
    /// refusing limit's refill time, but never more than `jitter`; zero disables it.
    pub fn jitter(self, jitter: Duration) -> Self {
        RateLimitBuilder { jitter, ..self }
    }

    /// Seeds the jitter, for reproducible tests.
    #[cfg(test)]
    pub(crate) fn seed(self, seed: u64) -> Self {
        RateLimitBuilder {
            seed: Some(seed),
            ..self
        }
    }

    /// Tracks at most `max_keys` objects in the per-object limit; a new object beyond
    /// that is deferred until tracked ones are full again.
    pub fn max_keys(self, max_keys: NonZeroUsize) -> Self {
        RateLimitBuilder { max_keys, ..self }
    }

    /// The layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`](crate::ConfigError) without any limit, if a call could never
    /// fit a limit (its weight exceeds the burst), or if two limits share a name.
    pub fn build(self) -> Result<RateLimitLayer, crate::ConfigError> {
        Ok(self.checked()?)
    }

    fn checked(self) -> Result<RateLimitLayer, RateLimitConfigError> {
        let layer = self.assemble();
        let limits = &layer.shared.limits;
        if limits.is_empty() {
            return Err(RateLimitConfigError::NoLimits);
        }
        for (i, limit) in limits.iter().enumerate() {
            let burst = limit.quota().max_burst();
            if layer.shared.weight > burst {
                return Err(RateLimitConfigError::WeightExceedsBurst {
                    budget: Arc::clone(limit.name()),
                    weight: layer.shared.weight,
                    burst,
                });
            }
            if limits[..i]
                .iter()
                .any(|earlier| earlier.name() == limit.name())
            {
                return Err(RateLimitConfigError::DuplicateName {
                    budget: Arc::clone(limit.name()),
                });
            }
        }
        Ok(layer)
    }

    /// The layer, unchecked: only for configurations that cannot be wrong.
    pub(super) fn assemble(self) -> RateLimitLayer {
        let clock = self.clock.unwrap_or_default();
        let per_object = self.per_object.map(|quota| {
            let limiter = KeyedLimiter::new(quota)
                .clock(clock.clone())
                .max_keys(self.max_keys);
            Limit::PerObject(Arc::from("object"), limiter)
        });
        let global = self.global.map(|quota| {
            Limit::Global(
                Arc::from("global"),
                RateLimiter::new(quota).clock(clock.clone()),
            )
        });
        let limits = per_object
            .into_iter()
            .chain(self.budgets.into_iter().map(Limit::Budget))
            .chain(global)
            .collect();
        RateLimitLayer {
            shared: Arc::new(Shared {
                limits,
                clock,
                weight: self.weight,
                jitter: self.jitter,
                rng: Rng::new(self.seed),
            }),
        }
    }
}
