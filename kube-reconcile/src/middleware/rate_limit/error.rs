//! The errors of rate limiting: refusals, impossible requests and bad layer configurations.

use std::{num::NonZeroU32, sync::Arc, time::Duration};

use crate::error::{Classify, ErrorClass};

/// A limiter refused: no capacity until `retry_after` from now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("rate limited, retry after {retry_after:?}")]
#[non_exhaustive]
pub struct RateLimited {
    /// The exact wait until the same check would be admitted (no jitter).
    pub retry_after: Duration,
}

impl RateLimited {
    pub(super) const fn new(retry_after: Duration) -> Self {
        RateLimited { retry_after }
    }
}

/// Why a weighted or keyed check was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum CheckError {
    /// No capacity until `retry_after` from now.
    #[error("rate limited, retry after {retry_after:?}")]
    RateLimited {
        /// The exact wait until the same check would be admitted.
        retry_after: Duration,
    },
    /// The check asked for more cells than the burst: it can never succeed.
    #[error("{cells} cells exceed the burst of {burst} and can never be admitted")]
    InsufficientCapacity {
        /// The cells asked for.
        cells: NonZeroU32,
        /// The quota's burst.
        burst: NonZeroU32,
    },
    /// The keyed limiter tracks `max_keys` live keys and cannot take a new one yet.
    #[error("too many keys tracked ({max_keys}), retry after {retry_after:?}")]
    TooManyKeys {
        /// The bound on tracked keys.
        max_keys: usize,
        /// When every key tracked now will have expired (one refill time).
        retry_after: Duration,
    },
}

impl CheckError {
    /// How long to wait before the same check can succeed; `None` if it never can.
    pub(crate) const fn retry_after(&self) -> Option<Duration> {
        match self {
            CheckError::RateLimited { retry_after }
            | CheckError::TooManyKeys { retry_after, .. } => Some(*retry_after),
            CheckError::InsufficientCapacity { .. } => None,
        }
    }
}

impl From<RateLimited> for CheckError {
    fn from(refused: RateLimited) -> Self {
        CheckError::RateLimited {
            retry_after: refused.retry_after,
        }
    }
}

/// The error of a call made through a [`RateBudget`](super::RateBudget).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitError<E> {
    /// The budget had no capacity; the call was not made.
    #[error("rate limited, retry after {retry_after:?}")]
    RateLimited {
        /// The exact wait until the budget would admit the call.
        retry_after: Duration,
    },
    /// The call was made and failed.
    #[error(transparent)]
    Call(E),
}

/// A refusal is [`Throttled`](ErrorClass::Throttled) with its exact wait, so backoff
/// honours it; a failed call keeps its own class.
impl<E: Classify> Classify for RateLimitError<E> {
    fn class(&self) -> ErrorClass {
        match self {
            RateLimitError::RateLimited { retry_after } => ErrorClass::Throttled {
                retry_after: Some(*retry_after),
            },
            RateLimitError::Call(e) => e.class(),
        }
    }

    fn is_timeout(&self) -> bool {
        match self {
            RateLimitError::Call(e) => e.is_timeout(),
            RateLimitError::RateLimited { .. } => false,
        }
    }
}

/// A [`RateLimitBuilder`](super::RateLimitBuilder) that cannot become a layer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum RateLimitConfigError {
    /// No limit was configured, so the layer would admit everything.
    #[error("a rate limit layer needs at least one limit")]
    NoLimits,
    /// The weight of a call exceeds a limit's burst, so no call could ever be admitted.
    #[error("a weight of {weight} exceeds the burst of {burst} of the `{budget}` limit")]
    WeightExceedsBurst {
        /// The limit: `"global"`, `"object"` or a budget's name.
        budget: Arc<str>,
        /// The configured weight.
        weight: NonZeroU32,
        /// That limit's burst.
        burst: NonZeroU32,
    },
    /// Two limits of the layer have the same name, so refusals could not say which.
    #[error("two limits are named `{budget}`")]
    DuplicateName {
        /// The repeated name.
        budget: Arc<str>,
    },
}
