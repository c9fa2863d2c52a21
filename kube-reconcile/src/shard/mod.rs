//! Sharding: several replicas of an operator share the objects of one kind, each
//! reconciling its own, coordinated by nothing but Leases and labels.
//!
//! Leader election ([`leader`](crate::leader)) leaves every replica but one idle. A
//! ring of shards puts them all to work: each replica ([`ShardHandle::join`]) holds a
//! Lease of its own as its membership; the replica elected on the ring's Lease assigns
//! every object to a live member on a consistent-hash ring and writes the choice on the
//! object as the label `shard.kube-reconcile.dev/<ring>=<member>`; each replica's
//! controller watches only the objects labelled for it ([`ShardHandle::watcher_config`])
//! and reconciles them through [`ShardHandle::layer`]. `kubectl get <kind> -L
//! shard.kube-reconcile.dev/<ring>` shows who owns what. The design follows
//! timebertt/kubernetes-controller-sharding, with the assigner inside the replicas.
//!
//! # Handover
//!
//! - **A member joins.** The ring gives it about `1/n` of the objects. Each of them is
//!   owned by a live member, so the assigner first labels it `drain.kube-reconcile.dev/<ring>`;
//!   the owner, in a reconcile of that object (so none other of it runs), removes both
//!   labels; then the assigner labels it for the newcomer. No object is reconciled by two
//!   members at once.
//! - **A member leaves.** [`ShardHandle::release`] waits for its reconciles in flight and
//!   clears its Lease; the assigner moves its objects at once.
//! - **A member dies or is cut off.** Its reconciles stop at its renew deadline (the
//!   [leader layer](crate::leader::LeaderHandle::layer) guarantees); the assigner moves its objects once
//!   its Lease went unchanged for the lease duration, by the assigner's clock.
//! - **The assigner dies.** Another member takes the ring's Lease and carries on from
//!   the labels; nothing is held in memory that the labels do not say.
//!
//! # Examples
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use futures::StreamExt;
//! # use k8s_openapi::api::core::v1::ConfigMap;
//! # use kube::{Api, Client, runtime::{Controller, controller::Action, watcher}};
//! # use kube_reconcile::{ControllerExt, ReconcilerExt};
//! use kube_reconcile::{leader::LeaseConfig, shard::{ShardConfig, ShardHandle}};
//! # async fn reconcile(_: Arc<ConfigMap>, _: Arc<()>) -> Result<Action, kube::Error> { Ok(Action::await_change()) }
//! # async fn run(client: Client) -> Result<(), Box<dyn std::error::Error>> {
//! let shard = ShardHandle::join::<ConfigMap>(
//!     client.clone(),
//!     ShardConfig::new(LeaseConfig::new("operators", "configmaps").identity(std::env::var("POD_NAME")?)),
//! )
//! .await?;
//! Controller::new(Api::<ConfigMap>::all(client.clone()), shard.watcher_config(watcher::Config::default()))
//!     .run_reconciler(reconcile.with(shard.layer(client)), Arc::new(()))
//!     .for_each(|_| async {})
//!     .await;
//! shard.release().await?; // the others take this replica's objects at once
//! # Ok(()) }
//! ```
//!
//! A phase operator shards with one line, [`OperatorBuilder::shard`](crate::phase::OperatorBuilder::shard).
//!
//! # Caveats
//!
//! - The assigner watches the metadata of every object of the kind; the members only
//!   their own objects.
//! - Each replica needs `get`, `list`, `watch` and `patch` on the kind, and `create`,
//!   `get`, `update` and `list`/`watch` on Leases in the ring's namespace.
//! - An object is unowned for a moment while it moves: events in that window are seen by
//!   the new owner when it lists it.
//! - Deleting a live member's Lease makes its objects move at once, up to one retry
//!   period before the member notices and stops (as deleting a leader's Lease does).
//! - With [`OperatorBuilder::shard`](crate::phase::OperatorBuilder::shard), children
//!   carry their owner's shard label too, and the operator's caches of its children
//!   watch only this member's: each replica caches its own shard. A child the cache lacks is read from
//!   the server (it may be one whose owner just moved here), and the new owner relabels
//!   it when it ensures it (one write per child, create-only children included). A child
//!   that is ensured only in an early phase (a generated password written once) keeps the
//!   label of the member that wrote it when its owner moves later, and stays in that
//!   member's cache until the owner is deleted.

mod assigner;
mod config;
mod handle;
mod labels;
mod layer;
mod ring;

#[cfg(feature = "metrics")]
pub(crate) use self::handle::ShardEvent;

#[doc(inline)]
pub use self::{config::ShardConfig, handle::ShardHandle};
