//! The errors of this module: a bad configuration, and a call that backoff held back or saw fail.

use std::time::Duration;

use crate::error::{Classify, ErrorClass};

/// A [`BackoffConfig`](super::BackoffConfig) value that cannot work.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum BackoffConfigError {
    /// The base delay is zero, so the delay would never grow.
    #[error("backoff base delay must be above zero")]
    ZeroBase,
    /// The base delay is longer than the cap.
    #[error("backoff base delay {base:?} is longer than the cap {cap:?}")]
    BaseAboveCap {
        /// The base delay.
        base: Duration,
        /// The cap.
        cap: Duration,
    },
    /// The factor is below 1, infinite or NaN.
    #[error("backoff factor must be finite and at least 1, got {factor}")]
    InvalidFactor {
        /// The factor given.
        factor: f64,
    },
    /// The conflict delay is longer than the cap.
    #[error("backoff conflict delay {conflict_delay:?} is longer than the cap {cap:?}")]
    ConflictDelayAboveCap {
        /// The conflict delay.
        conflict_delay: Duration,
        /// The cap.
        cap: Duration,
    },
    /// The idle TTL is zero, so state could be dropped before its retry ran.
    #[error("backoff idle ttl must be above zero")]
    ZeroIdleTtl,
}

/// The error of a backed-off call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackoffError<E> {
    /// The key is backing off; the call was not made.
    #[error("backing off, next attempt in {retry_after:?}")]
    BackingOff {
        /// When the next attempt is due.
        retry_after: Duration,
    },
    /// The call was made and failed.
    #[error("call failed")]
    Failed {
        /// The call's own error.
        #[source]
        source: E,
        /// When the next attempt is due; `None` if the error was terminal (do not retry).
        retry_after: Option<Duration>,
    },
}

impl<E> BackoffError<E> {
    /// When the next attempt is due; `None` after a terminal error.
    #[cfg(test)]
    pub(crate) const fn retry_after(&self) -> Option<Duration> {
        match self {
            BackoffError::BackingOff { retry_after } => Some(*retry_after),
            BackoffError::Failed { retry_after, .. } => *retry_after,
        }
    }
}

/// A held-back call is [`Throttled`](ErrorClass::Throttled) until its next attempt; a
/// failed call keeps its own class.
impl<E: Classify> Classify for BackoffError<E> {
    fn class(&self) -> ErrorClass {
        match self {
            BackoffError::BackingOff { retry_after } => ErrorClass::Throttled {
                retry_after: Some(*retry_after),
            },
            BackoffError::Failed { source, .. } => source.class(),
        }
    }

    fn is_timeout(&self) -> bool {
        match self {
            BackoffError::BackingOff { .. } => false,
            BackoffError::Failed { source, .. } => source.is_timeout(),
        }
    }
}
