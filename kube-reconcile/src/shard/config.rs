//! [`ShardConfig`]: the ring, this member, the Lease timings.

use std::{num::NonZeroU32, time::Duration};

use crate::{
    clock::Clock,
    leader::{LeaderError, LeaseConfig},
};

/// Which ring of replicas to join, as whom, with which Lease timings.
///
/// A ring is a set of replicas that share the objects of one kind: each holds a Lease
/// named `<ring>-<identity>` (labelled `kube-reconcile.dev/shard-ring=<ring>`) as its
/// membership, one of them (elected on the Lease `<ring>`) assigns the objects, and an
/// object's owner is the value of its label `shard.kube-reconcile.dev/<ring>`.
///
/// # Default
///
/// The timings of [`LeaseConfig`] (15 s lease, 10 s renew deadline, 2 s retry period),
/// its unique identity, 1,024 virtual nodes per member, objects in every namespace,
/// [`Clock::tokio`].
///
/// # Examples
///
/// ```
/// use kube_reconcile::{leader::LeaderError, shard::ShardConfig};
///
/// let config = ShardConfig::new("operators", "databases").identity("replica-0-7f9c");
/// assert!(config.validate().is_ok());
/// let bad = ShardConfig::new("operators", "Databases");
/// assert!(matches!(bad.validate(), Err(LeaderError::InvalidName { field: "ring", .. })));
/// ```
#[derive(Clone, Debug)]
pub struct ShardConfig {
    pub(super) lease: LeaseConfig,
    pub(super) virtual_nodes: NonZeroU32,
    pub(super) objects_namespace: Option<String>,
}

impl ShardConfig {
    /// Joins the ring `ring`, whose Leases live in `namespace`.
    pub fn new(namespace: impl Into<String>, ring: impl Into<String>) -> Self {
        let lease = LeaseConfig::new(namespace, ring);
        let identity = label_safe(&lease.identity);
        ShardConfig {
            lease: lease.identity(identity),
            virtual_nodes: NonZeroU32::new(1024).unwrap_or(NonZeroU32::MIN),
            objects_namespace: None,
        }
    }

    /// This member's identity: the value of the shard label on the objects it owns.
    ///
    /// Unique per process, as for [`LeaseConfig::identity`]; a lowercase DNS label.
    #[must_use]
    pub fn identity(mut self, identity: impl Into<String>) -> Self {
        self.lease = self.lease.identity(identity);
        self
    }

    /// How long the others wait after a member's Lease last changed before taking its
    /// objects.
    #[must_use]
    pub fn lease_duration(mut self, d: Duration) -> Self {
        self.lease = self.lease.lease_duration(d);
        self
    }

    /// How long a member keeps reconciling without renewing its Lease.
    #[must_use]
    pub fn renew_deadline(mut self, d: Duration) -> Self {
        self.lease = self.lease.renew_deadline(d);
        self
    }

    /// How often members renew and the assigner looks at the ring.
    #[must_use]
    pub fn retry_period(mut self, d: Duration) -> Self {
        self.lease = self.lease.retry_period(d);
        self
    }

    /// The clock every timing decision reads.
    #[must_use]
    pub fn clock(mut self, clock: Clock) -> Self {
        self.lease = self.lease.clock(clock);
        self
    }

    /// Shard only the objects in `namespace` (the namespace the controller watches),
    /// instead of those in every namespace.
    #[must_use]
    pub fn objects_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.objects_namespace = Some(namespace.into());
        self
    }

    /// Points per member on the hash ring: more spread the objects more evenly.
    #[must_use]
    pub const fn virtual_nodes(mut self, n: NonZeroU32) -> Self {
        self.virtual_nodes = n;
        self
    }

    /// Checks the names and timings.
    ///
    /// # Errors
    ///
    /// [`LeaderError::InvalidName`] when the ring or the identity is not a lowercase
    /// DNS label (they name Leases and label keys and values); whatever
    /// [`LeaseConfig::validate`] refuses.
    pub fn validate(&self) -> Result<(), LeaderError> {
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

/// The default identity (`$HOSTNAME-<random>`) made a lowercase DNS label: lowercased,
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
