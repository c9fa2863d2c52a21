//! [`LeaderError`]: what leader election refuses or fails at.

use std::time::Duration;

/// Why a [`LeaseConfig`](super::LeaseConfig) was refused, or a release did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeaderError {
    /// A name the lease needs is empty.
    #[error("lease {field} must not be empty")]
    Empty {
        /// `namespace`, `name` or `identity`.
        field: &'static str,
    },
    /// The renew deadline leaves no margin before other candidates may take over.
    #[error(
        "renew deadline {renew_deadline:?} must be shorter than the lease duration {lease_duration:?}"
    )]
    RenewDeadlineNotBelowLeaseDuration {
        /// The configured renew deadline.
        renew_deadline: Duration,
        /// The configured lease duration.
        lease_duration: Duration,
    },
    /// The retry period leaves no room for a second renewal attempt before the deadline.
    #[error(
        "retry period {retry_period:?} must be shorter than the renew deadline {renew_deadline:?}"
    )]
    RetryPeriodNotBelowRenewDeadline {
        /// The configured retry period.
        retry_period: Duration,
        /// The configured renew deadline.
        renew_deadline: Duration,
    },
    /// A zero retry period would poll the API server in a busy loop.
    #[error("retry period must not be zero")]
    ZeroRetryPeriod,
    /// The lease duration does not fit `spec.leaseDurationSeconds` (an `i32` of seconds).
    #[error("lease duration {lease_duration:?} does not fit a Lease's leaseDurationSeconds")]
    LeaseDurationTooLong {
        /// The configured lease duration.
        lease_duration: Duration,
    },
    /// A name that must be a lowercase DNS label (a shard ring or identity) is not one.
    #[error("{field} {value:?} {reason}")]
    InvalidName {
        /// `ring` or `identity`.
        field: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A request for the Lease failed.
    #[error("lease request failed")]
    Api(#[source] kube::Error),
    /// Reconciles admitted under the lease were still running when the release had to
    /// give up waiting; the lease was left to expire instead of being cleared.
    #[error("{in_flight} reconciles still running after {waited:?}; lease left to expire")]
    StillReconciling {
        /// Reconciles still running.
        in_flight: usize,
        /// How long the release waited for them.
        waited: Duration,
    },
}
