//! [`ShardConfig`]: the ring and this member (a [`LeaseConfig`]), and how objects spread.

use std::num::NonZeroU32;

use crate::leader::{LeaderError, LeaseConfig};

/// Which ring of replicas to join, as whom, with which Lease timings.
///
/// A ring is a set of replicas that share the objects of one kind: each holds a Lease
/// named `<ring>-<identity>` (labelled `kube-reconcile.dev/shard-ring=<ring>`) as its
/// membership, one of them (elected on the Lease `<ring>`) assigns the objects, and an
/// object's owner is the value of its label `shard.kube-reconcile.dev/<ring>`.
///
/// # Default
///
/// 1,024 virtual nodes per member, objects in every namespace; the identity and timings
/// are the [`LeaseConfig`]'s.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use kube_reconcile::{leader::LeaseConfig, shard::ShardConfig};
///
/// let lease = LeaseConfig::new("operators", "databases")
///     .identity("replica-0-7f9c")
///     .lease_duration(Duration::from_secs(30))
///     .renew_deadline(Duration::from_secs(20));
/// let config = ShardConfig::new(lease).objects_namespace("shop");
/// # let _ = config;
/// ```
///
/// [`ShardHandle::join`](super::ShardHandle::join) refuses a ring or identity that
/// cannot be a label value (`Databases`, `pod.7`) with
/// [`LeaderError::InvalidName`](crate::leader::LeaderError::InvalidName), before any request.
#[derive(Clone, Debug)]
pub struct ShardConfig {
    pub(super) lease: LeaseConfig,
    pub(super) virtual_nodes: NonZeroU32,
    pub(super) objects_namespace: Option<String>,
}

impl ShardConfig {
    /// Joins the ring named by `lease`: its name is the ring's, its namespace holds the
    /// ring's Leases, its identity is this member's (the value of the shard label on
    /// the objects it owns, so a lowercase DNS label, as the default identity is) and
    /// its timings are every member's.
    pub fn new(lease: LeaseConfig) -> Self {
        ShardConfig {
            lease,
            virtual_nodes: NonZeroU32::new(1024).unwrap_or(NonZeroU32::MIN),
            objects_namespace: None,
        }
    }

    /// Shard only the objects in `namespace` (the namespace the controller watches),
    /// instead of those in every namespace.
    #[must_use]
    pub fn objects_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.objects_namespace = Some(namespace.into());
        self
    }

    /// Checks the names and timings.
    ///
    /// # Errors
    ///
    /// [`LeaderError::InvalidName`] when the ring or the identity is not a lowercase
    /// DNS label (they name Leases and label keys and values); whatever
    /// [`LeaseConfig::validate`] refuses.
    pub(crate) fn validate(&self) -> Result<(), LeaderError> {
        self.lease.validate()?;
        dns_label("ring", self.ring())?;
        dns_label("identity", self.identity_str())?;
        Ok(())
    }

    pub(super) fn ring(&self) -> &str {
        &self.lease.name
    }

    pub(super) fn identity_str(&self) -> &str {
        &self.lease.identity
    }

    pub(super) fn namespace(&self) -> &str {
        &self.lease.namespace
    }

    /// The label naming an object's owner.
    pub(super) fn shard_label(&self) -> String {
        format!("shard.kube-reconcile.dev/{}", self.ring())
    }

    /// The label asking an object's owner to hand it over.
    pub(super) fn drain_label(&self) -> String {
        format!("drain.kube-reconcile.dev/{}", self.ring())
    }

    /// The label on the ring's membership Leases.
    pub(super) const RING_LABEL: &'static str = "kube-reconcile.dev/shard-ring";

    /// This member's Lease.
    pub(super) fn member_lease(&self) -> LeaseConfig {
        let name = format!("{}-{}", self.ring(), self.identity_str());
        LeaseConfig::new(self.namespace(), name)
            .identity(self.identity_str())
            .lease_duration(self.lease.lease_duration)
            .renew_deadline(self.lease.renew_deadline)
            .retry_period(self.lease.retry_period)
            .clock(self.lease.clock.clone())
    }

    /// The election of the member that assigns objects.
    pub(super) fn assigner_lease(&self) -> LeaseConfig {
        self.lease.clone()
    }
}

/// A lowercase RFC 1123 label: what a Lease name part, a label key segment and a label
/// value all accept.
fn dns_label(field: &'static str, value: &str) -> Result<(), LeaderError> {
    let reason = if value.is_empty() || value.len() > 63 {
        Some("must be 1 to 63 characters")
    } else if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Some("may hold only lowercase letters, digits and '-'")
    } else if value.starts_with('-') || value.ends_with('-') {
        Some("must start and end with a letter or digit")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(LeaderError::InvalidName {
            field,
            value: value.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}
