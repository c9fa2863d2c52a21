//! Reading and writing the election record in a `coordination.k8s.io/v1` Lease.
//!
//! Timestamps in the record come from the writer's wall clock and are for people
//! (`kubectl get lease`); no decision here compares them with the local clock.

use std::time::Duration;

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::{SignedDuration, Timestamp},
};

use crate::clock::Nanos;

/// The holder named in the record; an empty string counts as none (client-go writes
/// `""` on release).
pub(crate) fn holder(lease: &Lease) -> Option<&str> {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        .filter(|h| !h.is_empty())
}

/// The lease duration the holder asked for, or `fallback` if the record has none.
///
/// Candidates honour the holder's duration rather than their own, so a candidate
/// configured with a shorter lease cannot take over early (kubernetes#47671).
pub(crate) fn duration(lease: &Lease, fallback: Duration) -> Duration {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.lease_duration_seconds)
        .and_then(|s| u64::try_from(s).ok())
        .filter(|s| *s > 0)
        .map_or(fallback, Duration::from_secs)
}

/// A renew time that differs from the previous one: the wall clock, or a microsecond
/// past the previous value when the wall clock stands still or went back. Every
/// renewal then changes the record, so candidates see it even when the holder's clock
/// is broken.
fn next_renew_time(previous: Option<&MicroTime>) -> MicroTime {
    let now = Timestamp::now();
    let floor = previous
        .and_then(|p| p.0.checked_add(SignedDuration::from_micros(1)).ok())
        .unwrap_or(Timestamp::MIN);
    MicroTime(now.max(floor))
}

/// A new Lease held by `identity`.
pub(super) fn fresh(namespace: &str, name: &str, identity: &str, seconds: i32) -> Lease {
    let now = MicroTime(Timestamp::now());
    Lease {
        metadata: ObjectMeta {
            namespace: Some(namespace.to_owned()),
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(identity.to_owned()),
            lease_duration_seconds: Some(seconds),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        }),
    }
}

/// Makes `identity` the holder of `lease` (a takeover or a renewal).
pub(super) fn hold(lease: &mut Lease, identity: &str, seconds: i32) {
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    let renew = next_renew_time(spec.renew_time.as_ref());
    if spec.holder_identity.as_deref() != Some(identity) {
        // A new holder: count the transition (from a released lease too, as client-go
        // does) and stamp the acquisition.
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        spec.acquire_time = Some(renew.clone());
        spec.holder_identity = Some(identity.to_owned());
    }
    spec.lease_duration_seconds = Some(seconds);
    spec.renew_time = Some(renew);
}

/// Clears the holder so that candidates take the lease at once.
pub(super) fn clear(lease: &mut Lease) {
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    spec.renew_time = Some(next_renew_time(spec.renew_time.as_ref()));
    spec.holder_identity = None;
}

/// When this candidate last saw the record change, by its own clock.
///
/// Expiry is judged from this moment, never from the record's timestamps, so clock
/// skew between candidates does not matter (client-go's `observedTime`).
#[derive(Debug, Default)]
pub(crate) struct Observation {
    version: Option<String>,
    at: Nanos,
}

impl Observation {
    /// Notes `lease` as read at `now`; the clock restarts only if it changed.
    ///
    /// A change is any new `resourceVersion`: a renewal, a takeover, a release, or an
    /// edit by someone else. Counting every write is the cautious choice: it can only
    /// make a candidate wait longer.
    pub(crate) fn see(&mut self, lease: &Lease, now: Nanos) {
        if self.version.is_none() || self.version != lease.metadata.resource_version {
            self.version.clone_from(&lease.metadata.resource_version);
            self.at = now;
        }
    }

    /// When the holder's lease runs out by the local clock if nothing changes.
    pub(crate) fn expiry(&self, lease: &Lease, fallback: Duration) -> Nanos {
        self.at.saturating_add(duration(lease, fallback))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, version: &str) -> Lease {
        let mut lease = fresh("ns", "lock", "a", 15);
        lease.metadata.resource_version = Some(version.into());
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = holder.map(Into::into);
        }
        lease
    }

    #[test]
    fn an_empty_holder_is_no_holder() {
        assert_eq!(holder(&lease(Some(""), "1")), None);
        assert_eq!(holder(&lease(Some("a"), "1")), Some("a"));
    }

    #[test]
    fn the_holders_duration_wins_over_the_candidates() {
        let record = lease(Some("a"), "1");
        assert_eq!(
            duration(&record, Duration::from_secs(5)),
            Duration::from_secs(15)
        );
        let mut bad = record;
        if let Some(spec) = bad.spec.as_mut() {
            spec.lease_duration_seconds = Some(-3);
        }
        assert_eq!(
            duration(&bad, Duration::from_secs(5)),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn a_takeover_counts_a_transition_and_a_renewal_does_not() {
        let mut record = lease(Some("a"), "1");
        hold(&mut record, "b", 10);
        let spec = record.spec.clone().unwrap_or_default();
        assert_eq!(spec.holder_identity.as_deref(), Some("b"));
        assert_eq!(spec.lease_transitions, Some(1));
        assert_eq!(spec.lease_duration_seconds, Some(10));
        hold(&mut record, "b", 10);
        let renewed = record.spec.unwrap_or_default();
        assert_eq!(renewed.lease_transitions, Some(1));
        assert_eq!(renewed.acquire_time, spec.acquire_time);
        assert!(
            renewed.renew_time > spec.renew_time,
            "renew time moves forward"
        );
    }

    #[test]
    fn renew_time_moves_forward_even_when_the_record_is_in_the_future() {
        let future = MicroTime(Timestamp::now() + SignedDuration::from_hours(24 * 365));
        let next = next_renew_time(Some(&future));
        assert!(next > future);
    }

    #[test]
    fn observation_restarts_only_on_a_new_version() {
        let mut seen = Observation::default();
        seen.see(&lease(Some("a"), "1"), Nanos::from_raw(10));
        seen.see(&lease(Some("a"), "1"), Nanos::from_raw(50));
        assert_eq!(seen.at, Nanos::from_raw(10));
        seen.see(&lease(Some("a"), "2"), Nanos::from_raw(60));
        assert_eq!(seen.at, Nanos::from_raw(60));
        assert_eq!(
            seen.expiry(&lease(Some("a"), "2"), Duration::ZERO),
            Nanos::from_raw(60).saturating_add(Duration::from_secs(15))
        );
    }
}
