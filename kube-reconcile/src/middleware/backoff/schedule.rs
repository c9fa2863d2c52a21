//! The delay schedule alone, for retries that keep their own count.

use std::{fmt, time::Duration};

use super::{BackoffConfig, state::Policy};
use crate::rng::Rng;

/// The delays of a [`BackoffConfig`] without per-key state: for callers that persist
/// their own failure count, such as the phase machine's `Failed` retries.
pub(crate) struct RetrySchedule {
    policy: Policy,
    rng: Rng,
}

impl RetrySchedule {
    /// The delay after failure number `failures` (counted from 0):
    /// `min(cap, jitter(base · factor^failures))`.
    pub(crate) fn delay(&self, failures: u32) -> Duration {
        self.policy.delay(failures, &self.rng)
    }
}

impl fmt::Debug for RetrySchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetrySchedule")
            .field("base", &self.policy.base)
            .field("cap", &self.policy.cap)
            .field("factor", &self.policy.factor)
            .field("jitter", &self.policy.jitter)
            .finish_non_exhaustive()
    }
}

impl BackoffConfig {
    /// The delay schedule of this configuration, without per-key state.
    ///
    /// # Errors
    ///
    /// The same as [`BackoffConfig::validate`].
    pub(crate) fn schedule(self) -> Result<RetrySchedule, crate::ConfigError> {
        let resolved = self.resolve()?;
        Ok(RetrySchedule {
            policy: resolved.policy,
            rng: Rng::new(resolved.seed),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::middleware::backoff::{BackoffConfig, Jitter};

    #[test]
    fn the_schedule_doubles_from_the_base_up_to_the_cap() {
        let schedule = BackoffConfig::operator()
            .jitter(Jitter::None)
            .schedule()
            .expect("the operator preset is valid");
        assert_eq!(schedule.delay(0), Duration::from_secs(1));
        assert_eq!(schedule.delay(3), Duration::from_secs(8));
        assert_eq!(schedule.delay(40), Duration::from_secs(300));
    }
}
