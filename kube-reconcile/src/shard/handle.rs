//! [`ShardHandle`]: joining a ring, and what the rest of the process sees of it.

use std::{
    fmt,
    sync::{
        Arc, Mutex, OnceLock, PoisonError,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client, Resource, api::PostParams, core::ApiResource, runtime::watcher};
use tokio::task::JoinHandle;

use super::{ShardConfig, assigner, layer::ShardLayer};
use crate::leader::{LeaderElector, LeaderError, LeaderHandle};

/// State shared by a member's handle, its layers and its assigner.
pub(crate) struct Shared {
    pub(crate) config: ShardConfig,
    /// This member's own Lease: reconciles are admitted only while it holds it.
    pub(crate) member: LeaderHandle,
    /// The ring's election of the member that assigns objects.
    pub(crate) assigner: LeaderHandle,
    /// Objects this process labelled with an owner while it was the assigner.
    pub(crate) assigned: AtomicU64,
    /// Objects this member handed over after a drain request.
    pub(crate) handed_over: AtomicU64,
    /// Objects in this member's watch, when its controller's cache is known
    /// (`usize::MAX`: not known).
    pub(crate) owned: AtomicUsize,
    /// Called on every change of the counts (metrics).
    observers: Mutex<Vec<Observer>>,
    /// How many objects the member's controller holds, when known.
    size: OnceLock<Box<dyn Fn() -> usize + Send + Sync>>,
}

/// A change to what a member owns or did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ShardEvent {
    /// The member's watch holds this many objects.
    Owned(usize),
    /// The member handed an object over.
    HandedOver,
    /// The assigner (this process) labelled an object with its owner.
    Assigned,
}

type Observer = Box<dyn Fn(&ShardConfig, ShardEvent) + Send + Sync>;

impl Shared {
    /// Refreshes the count of objects the member's controller holds, if known.
    pub(crate) fn recount(&self) {
        if let Some(size) = self.size.get() {
            self.record(ShardEvent::Owned(size()));
        }
    }

    /// Counts `event` and tells the observers.
    pub(crate) fn record(&self, event: ShardEvent) {
        match event {
            ShardEvent::Owned(n) => {
                if self.owned.swap(n, Ordering::Relaxed) == n {
                    return;
                }
            }
            ShardEvent::HandedOver => {
                self.handed_over.fetch_add(1, Ordering::Relaxed);
            }
            ShardEvent::Assigned => {
                self.assigned.fetch_add(1, Ordering::Relaxed);
            }
        }
        let observers = self
            .observers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for observe in observers.iter() {
            observe(&self.config, event);
        }
    }
}

/// The member's tasks (its Lease, the ring's election, the assigner), stopped when the
/// last handle goes: as after a crash, the Leases are left to expire.
struct Tasks {
    assigner: JoinHandle<()>,
    electors: [JoinHandle<()>; 2],
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.assigner.abort();
        for elector in &self.electors {
            elector.abort();
        }
    }
}

/// One member of a ring: its label selector, its layer, and its counters.
///
/// Cheap to clone; clones share state. The member's Lease, the ring's election and the
/// assigner run on tokio tasks until [`release`](Self::release). Dropping the last clone
/// without releasing stops them as a crash would: the Leases are left to expire, and the
/// member's layers stop admitting reconciles at once.
#[derive(Clone)]
pub struct ShardHandle {
    shared: Arc<Shared>,
    tasks: Arc<Tasks>,
}

impl fmt::Debug for ShardHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardHandle")
            .field("ring", &self.shared.config.ring())
            .field("identity", &self.identity())
            .field("member", &self.is_member())
            .finish_non_exhaustive()
    }
}

impl ShardHandle {
    /// Joins the ring of `config` for objects of kind `K`: takes this member's Lease,
    /// contends to be the ring's assigner, and (while elected) assigns every object of
    /// kind `K` (in every namespace, or the one of [`ShardConfig::objects_namespace`]) to
    /// a live member.
    ///
    /// # Errors
    ///
    /// [`LeaderError::InvalidName`] for a ring or identity that cannot be a label
    /// value, another [`LeaderError`] for timings that do not nest; [`LeaderError::Api`] when the
    /// membership Lease can neither be read nor created.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub async fn join<K>(client: Client, config: ShardConfig) -> Result<ShardHandle, LeaderError>
    where
        K: Resource,
        K::DynamicType: Default,
    {
        let resource = ApiResource::erase::<K>(&K::DynamicType::default());
        config.validate()?;
        let member_lease = config.member_lease();
        create_member_lease(&client, &config, &member_lease.name).await?;
        let member = LeaderElector::new(client.clone(), member_lease)?;
        let assigner = LeaderElector::new(client.clone(), config.assigner_lease())?;
        let shared = Arc::new(Shared {
            config,
            member: member.handle(),
            assigner: assigner.handle(),
            assigned: AtomicU64::new(0),
            handed_over: AtomicU64::new(0),
            owned: AtomicUsize::new(usize::MAX),
            observers: Mutex::default(),
            size: OnceLock::new(),
        });
        let electors = [tokio::spawn(member.run()), tokio::spawn(assigner.run())];
        let assigner = tokio::spawn(assigner::run(client, Arc::clone(&shared), resource));
        Ok(ShardHandle {
            shared,
            tasks: Arc::new(Tasks { assigner, electors }),
        })
    }

    /// The ring's name.
    #[cfg(feature = "metrics")]
    pub(crate) fn ring(&self) -> &str {
        self.shared.config.ring()
    }

    /// This member's identity: the value of the shard label on the objects it owns.
    pub fn identity(&self) -> &str {
        self.shared.config.identity_str()
    }

    /// `shard.kube-reconcile.dev/<ring>=<identity>`: the objects this member owns.
    pub(crate) fn label_selector(&self) -> String {
        format!("{}={}", self.shared.config.shard_label(), self.identity())
    }

    /// The label naming an object's owner: `shard.kube-reconcile.dev/<ring>`.
    pub(crate) fn label_key(&self) -> String {
        self.shared.config.shard_label()
    }

    /// `config` restricted to the objects this member owns (its label selector added to
    /// any the config has), for the controller's watch.
    pub fn watcher_config(&self, config: watcher::Config) -> watcher::Config {
        let mine = self.label_selector();
        let selector = match &config.label_selector {
            Some(theirs) if !theirs.is_empty() => format!("{theirs},{mine}"),
            _ => mine,
        };
        config.labels(&selector)
    }

    /// The layer that admits reconciles only of this member's objects, only while it
    /// holds its Lease, and hands objects over when the assigner asks.
    pub fn layer(&self, client: Client) -> ShardLayer {
        ShardLayer {
            shared: Arc::clone(&self.shared),
            client,
        }
    }

    /// Whether this member holds its Lease now.
    pub(crate) fn is_member(&self) -> bool {
        self.shared.member.is_leader()
    }

    /// Waits until this member holds its Lease.
    #[doc(hidden)] // For tests and benches.
    pub async fn joined(&self) {
        self.shared.member.leading().await;
    }

    /// Objects this member handed over to another after a drain request (exported as
    /// `kube_reconcile_shard_handovers_total` by the operator's metrics).
    #[doc(hidden)] // For tests; users read the metric.
    pub fn handed_over(&self) -> u64 {
        self.shared.handed_over.load(Ordering::Relaxed)
    }

    /// How many objects this member's controller holds, when it runs through
    /// [`OperatorBuilder::shard`](crate::phase::OperatorBuilder::shard) (`None` for a
    /// controller wired by hand). Exported as `kube_reconcile_shard_objects` by the
    /// operator's metrics.
    #[doc(hidden)] // For tests; users read the metric.
    pub fn owned(&self) -> Option<usize> {
        Some(self.shared.owned.load(Ordering::Relaxed)).filter(|n| *n != usize::MAX)
    }

    /// Counts the member's objects with `size` (the length of its controller's cache),
    /// refreshed at every reconcile; the first call wins.
    pub(crate) fn count_with(&self, size: impl Fn() -> usize + Send + Sync + 'static) {
        let _ = self.shared.size.set(Box::new(size));
    }

    /// Calls `observe` on every change of the counts, after the change.
    #[cfg(feature = "metrics")]
    pub(crate) fn observe(
        &self,
        observe: impl Fn(&ShardConfig, ShardEvent) + Send + Sync + 'static,
    ) {
        self.shared
            .observers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::new(observe));
    }

    /// Leaves the ring: stops assigning, stops admitting reconciles, waits for those in
    /// flight, and clears both Leases, so the assigner moves this member's objects at
    /// once instead of after the lease duration.
    ///
    /// # Errors
    ///
    /// What [`LeaderHandle::release`] returns for either Lease.
    pub async fn release(&self) -> Result<(), LeaderError> {
        self.tasks.assigner.abort();
        let member = self.shared.member.release().await;
        let assigner = self.shared.assigner.release().await;
        member.and(assigner)
    }
}

/// Creates this member's Lease, labelled with the ring and free, so the elector takes
/// it at once; an existing one (a previous process of this identity) is left alone.
async fn create_member_lease(
    client: &Client,
    config: &ShardConfig,
    name: &str,
) -> Result<(), LeaderError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), config.namespace());
    let mut lease = Lease::default();
    lease.metadata.name = Some(name.to_owned());
    lease.metadata.labels =
        Some([(ShardConfig::RING_LABEL.to_owned(), config.ring().to_owned())].into());
    match api.create(&PostParams::default(), &lease).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(LeaderError::Api(e)),
    }
}
