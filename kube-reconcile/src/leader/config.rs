//! [`LeaseConfig`]: which Lease, who we are, and the three timings.

use std::{fmt::Write as _, sync::Arc, time::Duration};

use super::LeaderError;
use crate::clock::Clock;

/// Which Lease to contend for, under which identity, with which timings.
///
/// The timings mean what they mean in client-go's `leaderelection`:
///
/// - `lease_duration`: how long a candidate waits, from the moment it last saw the
///   Lease change, before it takes the Lease over from a holder that stopped renewing.
///   Written to `spec.leaseDurationSeconds` (rounded up to whole seconds), and other
///   candidates use the value in the record, not their own.
/// - `renew_deadline`: how long the leader keeps leading without a successful renewal,
///   counted from when the last successful renewal was sent. Past it the leader steps
///   down, so the gap `lease_duration - renew_deadline` is the margin that absorbs
///   clocks running at different rates and the time an in-flight reconcile takes to
///   notice.
/// - `retry_period`: how often the leader renews and a candidate polls (candidates
///   add up to 20 % jitter).
///
/// # Default
///
/// `lease_duration` 15 s, `renew_deadline` 10 s, `retry_period` 2 s (client-go's and
/// controller-runtime's defaults); identity `$HOSTNAME-<16 random hex digits>` (or
/// `kube-reconcile-<...>` without `HOSTNAME`), unique per process, lowercased with any
/// other character as `-` so it is a DNS label (a shard's label value).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use kube_reconcile::leader::LeaseConfig;
///
/// let config = LeaseConfig::new("operators", "database-operator")
///     .identity("db-operator-7f9c-x2")
///     .lease_duration(Duration::from_secs(30))
///     .renew_deadline(Duration::from_secs(20));
/// # let _ = config;
/// ```
///
/// [`LeaderHandle::spawn`](super::LeaderHandle::spawn) checks the values: the renew
/// deadline below the lease duration, the retry period below the renew deadline and
/// not zero, a non-empty identity; it refuses others with a [`LeaderError`](super::LeaderError)
/// naming the setting.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub(crate) namespace: Arc<str>,
    pub(crate) name: Arc<str>,
    pub(crate) identity: Arc<str>,
    pub(crate) lease_duration: Duration,
    pub(crate) renew_deadline: Duration,
    pub(crate) retry_period: Duration,
    pub(crate) clock: Clock,
}

impl LeaseConfig {
    /// The Lease `namespace/name`, with the default timings and a unique identity.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        LeaseConfig {
            namespace: namespace.into().into(),
            name: name.into().into(),
            identity: default_identity().into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            clock: Clock::default(),
        }
    }

    /// This candidate's identity, written to `spec.holderIdentity` while it leads.
    ///
    /// Must be unique per process: two processes with one identity both believe they
    /// hold the Lease. A pod name alone is not enough for a `StatefulSet`, whose
    /// restarted pod keeps its name while the old process may still be running.
    #[must_use]
    pub fn identity(mut self, identity: impl Into<String>) -> Self {
        self.identity = identity.into().into();
        self
    }

    /// How long candidates wait, after last seeing the Lease change, before taking it.
    #[must_use]
    pub const fn lease_duration(mut self, d: Duration) -> Self {
        self.lease_duration = d;
        self
    }

    /// How long the leader keeps leading without a successful renewal.
    #[must_use]
    pub const fn renew_deadline(mut self, d: Duration) -> Self {
        self.renew_deadline = d;
        self
    }

    /// How often the leader renews and candidates poll.
    #[must_use]
    pub const fn retry_period(mut self, d: Duration) -> Self {
        self.retry_period = d;
        self
    }

    /// The clock every timing decision reads (tests pass a paused tokio clock).
    #[must_use]
    pub(crate) fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Checks the names and timings.
    ///
    /// # Errors
    ///
    /// [`LeaderError::Empty`] for an empty namespace, name or identity;
    /// [`LeaderError::ZeroRetryPeriod`];
    /// [`LeaderError::RetryPeriodNotBelowRenewDeadline`] unless
    /// `retry_period < renew_deadline`;
    /// [`LeaderError::RenewDeadlineNotBelowLeaseDuration`] unless
    /// `renew_deadline < lease_duration`; [`LeaderError::LeaseDurationTooLong`] past
    /// `i32::MAX` seconds.
    pub(crate) fn validate(&self) -> Result<(), LeaderError> {
        for (field, value) in [
            ("namespace", &self.namespace),
            ("name", &self.name),
            ("identity", &self.identity),
        ] {
            if value.is_empty() {
                return Err(LeaderError::Empty { field });
            }
        }
        if self.retry_period.is_zero() {
            return Err(LeaderError::ZeroRetryPeriod);
        }
        if self.retry_period >= self.renew_deadline {
            return Err(LeaderError::RetryPeriodNotBelowRenewDeadline {
                retry_period: self.retry_period,
                renew_deadline: self.renew_deadline,
            });
        }
        if self.renew_deadline >= self.lease_duration {
            return Err(LeaderError::RenewDeadlineNotBelowLeaseDuration {
                renew_deadline: self.renew_deadline,
                lease_duration: self.lease_duration,
            });
        }
        if self.lease_seconds().is_none() {
            return Err(LeaderError::LeaseDurationTooLong {
                lease_duration: self.lease_duration,
            });
        }
        Ok(())
    }

    /// `lease_duration` in whole seconds, rounded up, as the Lease records it.
    pub(super) fn lease_seconds(&self) -> Option<i32> {
        let secs = self
            .lease_duration
            .as_secs()
            .saturating_add(u64::from(self.lease_duration.subsec_nanos() > 0));
        i32::try_from(secs).ok()
    }
}

/// `$HOSTNAME-<16 hex digits>`: unique per process even when pods reuse names, and a
/// lowercase DNS label, so it can also name a shard (a label value).
fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "kube-reconcile".to_owned());
    let mut id = host;
    let _ = write!(id, "-{:016x}", fastrand::u64(..));
    label_safe(&id)
}

/// An identity `<host>-<random>` made a lowercase DNS label: lowercased,
/// other characters replaced by `-`, the host part shortened so the random part stays.
fn label_safe(identity: &str) -> String {
    let mapped: String = identity
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    let (host, random) = mapped.rsplit_once('-').unwrap_or(("", &mapped));
    let room = 63usize.saturating_sub(random.len() + 1);
    let host: String = host.chars().take(room).collect();
    let host = host.trim_matches('-');
    if host.is_empty() {
        random.to_owned()
    } else {
        format!("{host}-{random}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_client_go_and_valid() {
        let config = LeaseConfig::new("ns", "lock");
        assert_eq!(config.lease_duration, Duration::from_secs(15));
        assert_eq!(config.renew_deadline, Duration::from_secs(10));
        assert_eq!(config.retry_period, Duration::from_secs(2));
        assert!(config.validate().is_ok());
    }

    #[test]
    fn default_identities_differ_between_elections() {
        let a = LeaseConfig::new("ns", "lock");
        let b = LeaseConfig::new("ns", "lock");
        assert_ne!(a.identity, b.identity);
    }

    #[test]
    fn an_identity_from_a_host_name_becomes_a_dns_label() {
        assert_eq!(label_safe("Pod.Name_7-0123abcd"), "pod-name-7-0123abcd");
        let long = format!("{}-0123456789abcdef", "h".repeat(80));
        let safe = label_safe(&long);
        assert_eq!(safe.len(), 63);
        assert!(
            safe.ends_with("-0123456789abcdef"),
            "the random part stays: {safe}"
        );
        assert_eq!(label_safe("..-0123abcd"), "0123abcd");
    }

    #[test]
    fn timings_must_nest() {
        let base = LeaseConfig::new("ns", "lock");
        let err = base
            .clone()
            .retry_period(Duration::from_secs(10))
            .validate();
        assert!(matches!(
            err,
            Err(LeaderError::RetryPeriodNotBelowRenewDeadline { .. })
        ));
        let err = base.clone().retry_period(Duration::ZERO).validate();
        assert!(matches!(err, Err(LeaderError::ZeroRetryPeriod)));
        let err = base
            .clone()
            .renew_deadline(Duration::from_secs(20))
            .validate();
        assert!(matches!(
            err,
            Err(LeaderError::RenewDeadlineNotBelowLeaseDuration { .. })
        ));
        let err = base
            .clone()
            .lease_duration(Duration::from_secs(u64::from(u32::MAX)))
            .validate();
        assert!(matches!(err, Err(LeaderError::LeaseDurationTooLong { .. })));
        let err = base.identity("").validate();
        assert!(matches!(err, Err(LeaderError::Empty { field: "identity" })));
    }

    #[test]
    fn fractional_lease_durations_round_up_in_the_record() {
        let config = LeaseConfig::new("ns", "lock").lease_duration(Duration::from_millis(1500));
        assert_eq!(config.lease_seconds(), Some(2));
    }
}
