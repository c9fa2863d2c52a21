//! The errors of this module: a refused or failed call, and a configuration mistake.

use std::{sync::Arc, time::Duration};

use crate::error::{Classify, ErrorClass};

use super::state::State;

/// The breaker refused a call: it is open, forced open, or its half-open probes are all taken.
///
/// Nothing was reserved and nothing is recorded; try again after `retry_after`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker refused the call; retry after {retry_after:?}")]
#[non_exhaustive]
pub struct Rejected {
    /// When to try again: the time left until the breaker half-opens plus a jittered
    /// spread, so refused callers do not all come back at the same instant.
    pub retry_after: Duration,
    /// The state that refused the call ([`State::Open`], [`State::HalfOpen`] or
    /// [`State::ForcedOpen`]).
    pub state: State,
}

/// The error of [`Breaker::call`](super::Breaker::call).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BreakerError<E> {
    /// The breaker refused the call, which did not run.
    #[error("circuit breaker for {dependency} is open; retry after {retry_after:?}")]
    Open {
        /// The dependency the breaker protects.
        dependency: Arc<str>,
        /// When to try again (see [`Rejected::retry_after`]).
        retry_after: Duration,
    },
    /// The call ran and failed.
    #[error(transparent)]
    Inner(E),
}

/// An open breaker is the dependency saying "not now": [`ErrorClass::Throttled`] with
/// the time to wait. A failed call keeps its own class.
impl<E: Classify> Classify for BreakerError<E> {
    fn class(&self) -> ErrorClass {
        match self {
            BreakerError::Open { retry_after, .. } => ErrorClass::Throttled {
                retry_after: Some(*retry_after),
            },
            BreakerError::Inner(e) => e.class(),
        }
    }

    fn is_timeout(&self) -> bool {
        match self {
            BreakerError::Open { .. } => false,
            BreakerError::Inner(e) => e.is_timeout(),
        }
    }
}

/// A [`BreakerConfig`](super::BreakerConfig) that cannot work.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ConfigError {
    /// The failure-rate threshold is not in `(0, 1]`.
    #[error("failure rate threshold must be in (0, 1], got {0}")]
    FailureRateThreshold(f64),
    /// The slow-call-rate threshold is not in `(0, 1]`.
    #[error("slow call rate threshold must be in (0, 1], got {0}")]
    SlowCallRateThreshold(f64),
    /// The slow-call duration is zero, so every call would be slow.
    #[error("slow call duration must be positive")]
    ZeroSlowCallDuration,
    /// A count window longer than [`Window::MAX_CALLS`](super::Window::MAX_CALLS).
    #[error("count window of {calls} calls exceeds the maximum of {max}")]
    WindowTooLarge {
        /// The requested length.
        calls: u32,
        /// The longest count window.
        max: u32,
    },
    /// A time window that is zero long or whose buckets are shorter than a millisecond.
    #[error("time window of {duration:?} in {buckets} buckets needs buckets of at least 1ms")]
    TimeWindow {
        /// The requested window.
        duration: Duration,
        /// The requested number of buckets.
        buckets: u32,
    },
    /// A count window can never hold `min_calls`, so the failure rate would never be evaluated.
    #[error("min_calls ({min_calls}) exceeds the count window ({window} calls)")]
    MinCallsExceedWindow {
        /// The requested minimum.
        min_calls: u32,
        /// The window length.
        window: u32,
    },
    /// The open duration is zero.
    #[error("open duration must be positive")]
    ZeroOpenDuration,
    /// The longest open duration is shorter than the first.
    #[error("max open duration {max:?} is shorter than the open duration {base:?}")]
    MaxOpenDuration {
        /// The first open duration.
        base: Duration,
        /// The requested maximum.
        max: Duration,
    },
    /// The growth factor of the open duration is not a finite number of at least 1.
    #[error("open duration growth must be a finite factor of at least 1, got {0}")]
    OpenDurationGrowth(f64),
    /// The jitter of the open duration is not in `[0, 1]`.
    #[error("open duration jitter must be in [0, 1], got {0}")]
    OpenDurationJitter(f64),
    /// The probe timeout is zero, so every half-open period would end at once.
    #[error("probe timeout must be positive")]
    ZeroProbeTimeout,
    /// The stampede spread is zero, so refused callers would retry at once and together.
    #[error("spread must be positive")]
    ZeroSpread,
}
