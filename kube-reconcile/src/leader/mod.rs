//! Leader election on a `coordination.k8s.io/v1` Lease, and a layer that reconciles
//! only while leading.
//!
//! Run several replicas of an operator; one leads and reconciles, the others wait and
//! take over when it stops. kube-rs has no leader election of its own (kube#485);
//! this one follows client-go's `tools/leaderelection` protocol, so it interoperates
//! with Go candidates on the same Lease, and adds the bridge to controllers that
//! client-go leaves to the caller.
//!
//! # Examples
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::{sync::Arc, time::Duration};
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use kube::runtime::controller::Action;
//! use kube_reconcile::{Outcome, Reconciler, ReconcilerExt, leader::{LeaderHandle, LeaseConfig}};
//! # use kube_reconcile_testing::ApiServer;
//! # let client = ApiServer::new().client();
//!
//! async fn reconcile(_: Arc<ConfigMap>, _: Arc<()>) -> Result<Action, kube::Error> {
//!     Ok(Action::requeue(Duration::from_secs(300)))
//! }
//!
//! let a = LeaderHandle::spawn(client.clone(), LeaseConfig::new("default", "my-operator"))?;
//! a.leading().await; // the Lease was free: `a` takes it at once
//! let b = LeaderHandle::spawn(client, LeaseConfig::new("default", "my-operator"))?;
//!
//! // Only the leader's reconciler runs; the follower's defers.
//! let (on_a, on_b) = (reconcile.with(a.layer()), reconcile.with(b.layer()));
//! let cm = Arc::new(ConfigMap::default());
//! assert!(matches!(on_a.call(cm.clone(), Arc::new(())).await, Outcome::Done(_)));
//! assert!(matches!(on_b.call(cm.clone(), Arc::new(())).await, Outcome::Deferred(_)));
//!
//! // On shutdown the leader clears the Lease, and `b` takes over within a poll.
//! a.release().await?;
//! let released = tokio::time::Instant::now();
//! b.leading().await;
//! assert!(released.elapsed() <= Duration::from_millis(2400));
//! assert_eq!(b.subscribe().borrow().holder(), Some(b.identity()));
//! # Ok(()) }
//! ```
//!
//! With a controller, wrap the reconciler outermost, so a follower does not touch the
//! state of the layers inside (backoff, rate limits, breakers):
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use futures::StreamExt;
//! # use k8s_openapi::api::core::v1::ConfigMap;
//! # use kube::{Api, Client, runtime::{Controller, controller::Action, watcher}};
//! # use kube_reconcile::{ControllerExt, ReconcilerExt, middleware::backoff::BackoffLayer};
//! use kube_reconcile::leader::{LeaderHandle, LeaseConfig};
//! # async fn reconcile(_: Arc<ConfigMap>, _: Arc<()>) -> Result<Action, kube::Error> { Ok(Action::await_change()) }
//! # async fn run(client: Client) -> Result<(), Box<dyn std::error::Error>> {
//! let identity = std::env::var("POD_NAME")?; // plus something unique per process
//! let leader = LeaderHandle::spawn(
//!     client.clone(),
//!     LeaseConfig::new("operators", "my-operator").identity(identity),
//! )?;
//! let reconciler = reconcile.with(BackoffLayer::operator()).with(leader.layer());
//! Controller::new(Api::<ConfigMap>::all(client), watcher::Config::default())
//!     .shutdown_on_signal()
//!     .run_reconciler(reconciler, Arc::new(()))
//!     .for_each(|_| async {})
//!     .await;
//! leader.release().await?; // the next replica takes over at once
//! # Ok(()) }
//! ```
//!
//! # Protocol
//!
//! The record lives in the Lease's spec: `holderIdentity`, `leaseDurationSeconds`,
//! `acquireTime`, `renewTime`, `leaseTransitions`. Every write is an update with the
//! `resourceVersion` just read, so of two candidates racing for the Lease one gets
//! 409 Conflict and loses.
//!
//! - **Campaign.** Every `retry_period` (plus up to 20 % jitter) a candidate reads the
//!   Lease. It creates a missing Lease, takes a free one (no holder: released) at once,
//!   and takes a held one only after the record has not changed for the holder's
//!   `leaseDurationSeconds`, measured on its own clock from the moment it first saw the
//!   current version. It never compares the record's timestamps with its own clock, so
//!   skew between wall clocks does not matter; a fresh candidate facing the record of
//!   a crashed holder therefore waits one full lease duration.
//! - **Leading.** The leader renews every `retry_period`. Its term lasts until
//!   `renew_deadline` after the last successful renewal was *sent*; if no renewal
//!   succeeds by then, it steps down. It also steps down at once when a renewal finds
//!   another holder or no Lease. `renewTime` strictly increases, so renewals are
//!   visible even from a holder whose clock stands still.
//! - **Release.** [`LeaderHandle::release`] stops admitting reconciles, waits for
//!   admitted ones, and clears `holderIdentity`; the next candidate takes over within
//!   one poll. Dropping the elector (or a crash) leaves the Lease to expire.
//!
//! A candidate takes over from a crashed leader between `lease_duration` and
//! `lease_duration + 1.2 × retry_period` after the leader's last renewal; after a
//! release, within `1.2 × retry_period`.
//!
//! # Guarantees and caveats
//!
//! See [`LeaderHandle::layer`]: reconciles admitted under a term are cut off when it ends, by the
//! reconcile's own timer, a margin of `lease_duration - renew_deadline` before anyone
//! else can take over. There is no fencing, so a process paused past its lease can
//! still act when it resumes.
//!
//! # Tracing
//!
//! Events in the `leader_election` span (fields `lease`, `identity`): `info` on
//! acquiring, taking over an expired lease and releasing; `warn` when a renewal fails,
//! on stepping down, and when a reconcile is cancelled because leadership ended.

mod config;
mod elector;
mod error;
mod handle;
mod layer;
pub(crate) mod record;
mod requests;
mod shared;

pub(crate) use self::layer::{Leader, LeaderLayer};
#[doc(inline)]
pub use self::{
    config::LeaseConfig, elector::LeaderElector, error::LeaderError, handle::LeaderHandle,
};
