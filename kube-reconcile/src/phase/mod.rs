//! [`PhaseMachine`]: typed multi-phase reconciliation with validated transitions,
//! conditions, retries, deadlines and cleanup.
//!
//! A resource that takes several steps to become ready (provision, configure, deploy,
//! verify) is easiest to follow as a state machine: a phase enum, a table of the moves
//! allowed between phases, and one handler per phase. You write those three; the
//! [`PhaseEngine`] does the bookkeeping that hand-written `match phase` code gets
//! subtly wrong, and is a [`Reconciler`](crate::Reconciler), so the middleware wraps
//! it unchanged.
//!
//! Inside a handler, the [`Step`] does the rest of the glue: [`Step::ensure`] writes a
//! child described by an [`Ensure`](crate::ensure::Ensure) implementation with the
//! engine's settings ([`PhaseConfig::children`]) and [`Step::readiness`] asks whether it is
//! ready; a call through an external [`Dependency`](crate::external::Dependency) that is
//! held back needs only `?`. [`Operator`] runs the engine inside the recommended middleware
//! on a kube-runtime `Controller`.
//!
//! # Flow of one reconcile
//!
//! 1. **Deleted?** While the engine's finalizer is on a deleted object, run
//!    [`cleanup`](PhaseMachine::cleanup); when it is [done](Cleanup::done), remove the
//!    finalizer. When it [waits](Cleanup::wait) (or an external dependency held one of
//!    its calls back), come back after the wait with no event and no error. When it
//!    fails, the object gets `Ready=False, reason: CleanupFailed` with the error, and the
//!    error goes to the middleware to be retried with backoff.
//! 2. **Finalizer** added before anything else happens, so no side effect can leak.
//! 3. **Read the phase** from `status.phase`. No phase: enter the initial phase. A name
//!    the machine does not know (a corrupted or hand-edited status): start over from the
//!    initial phase, with reason `UnknownPhase` and a warning event. A known phase with no
//!    `Ready` condition gets the conditions it stands for back first (`ConditionsRestored`);
//!    conditions that could not be written back (no type, no transition time) are repaired.
//! 4. **Failed phase**: wait until `status.retry.nextAttemptTime` (exponential, see
//!    [`PhaseConfig::retry`]), then move to the table's retry phase. A failure that waits
//!    for a change (`Stalled=True`) moves on only when `metadata.generation` moves.
//! 5. **Ready phase and a new spec** (`metadata.generation` past
//!    `status.observedGeneration`, or a corrupt one ahead of it): move to the updating phase.
//! 6. **Deadline**: past the phase's deadline, fail with reason `PhaseTimeout`. Time the
//!    handler spent held back by the operator's own pacing ([`Transition::paced`], for
//!    example a turn at a shared rate budget) does not count: it is kept in memory and
//!    recorded as the phase's `pacedSeconds` whenever the status is written anyway.
//! 7. **Run the phase's handler** and apply its [`Transition`]: stay (requeue, capped at
//!    the deadline), stay paced (no write, off the deadline's clock), move along a declared
//!    edge, fail (with retry, or terminal), or rest.
//!    A handler error keeps the phase: a `Terminal` one fails the object with the error's
//!    reason; any other is recorded as `status.lastError` and returned to the middleware.
//!
//! # What lands in status
//!
//! Through the status subresource, with a merge patch guarded by `resourceVersion`
//! ([`PhaseStatus`]): `phase`; `observedGeneration`; the kstatus conditions `Ready`,
//! `Reconciling` (while moving or retrying) and `Stalled` (when only a change helps), with
//! `meta.SetStatusCondition` semantics ([`conditions`](crate::conditions)); a bounded
//! `phaseHistory` with timestamps; `retry` (attempts and next attempt) while failing; the
//! `lastError`. Every transition also publishes one Kubernetes Event on the object, and
//! is handed to the [`PhaseConfig::on_transition`] callbacks (metrics, logs).
//!
//! The middleware around the engine (backoff, rate limits, breakers) holds objects back
//! without running the engine; wrap the stack in [`DeferralStatusLayer`] and the object
//! carries a `Deferred` condition saying which and until when. The engine keeps that
//! condition through its own writes.
//!
//! # Guarantees
//!
//! - **No undeclared move.** A handler asking for an edge the table does not declare is
//!   refused: the phase stays, `Stalled=True, reason: UndeclaredTransition` says why, and
//!   [`PhaseError::UndeclaredTransition`] (terminal) is returned.
//! - **No needless write.** When a reconcile changes nothing, nothing is written: a ready
//!   object whose handler returns [`Transition::done`] costs zero writes.
//! - **No lost update.** Status and finalizer writes carry the `resourceVersion` read; a
//!   concurrent change makes them fail with a conflict, which the middleware retries
//!   quickly without raising the backoff, on a fresh read.
//! - **Cancellation at any `.await`** leaves a consistent object: every write is one
//!   request, and handlers are rerun from the recorded phase.
//! - **No silent stall.** Every failure leaves a condition and `lastError` saying why.
//!
//! # Caveats
//!
//! - Handlers must be idempotent: after a crash, conflict or retry the same handler runs
//!   again for the same phase.
//! - `observedGeneration` is the generation the current pass through the phases started
//!   from; a spec change in the middle of a pass is seen by the later handlers, and by the
//!   updating phase once the object is ready.
//! - The failed phase has no handler; its retries are the engine's own schedule, kept in
//!   status, so they survive a restart of the operator. Handler errors that are not
//!   terminal are retried by the middleware ([`Backoff`](crate::middleware::backoff)).
//! - The engine owns the status fields of [`PhaseStatus`]; write other status fields with
//!   [`Transition::with_status`], so they go out in the same request.
//!
//! # Examples
//!
//! A `Cache` resource that warms up before it is ready, run by hand on the embedded API
//! server (a `Controller` would call [`reconcile`](crate::Reconciler::reconcile) on every
//! change; see [`ControllerExt::run_reconciler`](crate::ControllerExt::run_reconciler)):
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
//! use kube::{Api, CustomResource, CustomResourceExt, api::PostParams};
//! use kube_reconcile::Reconciler;
//! use kube_reconcile::phase::{
//!     HasPhaseStatus, PhaseConfig, PhaseEngine, PhaseMachine, PhaseStatus, Step, Transition, Transitions,
//! };
//! use kube_reconcile_testing::ApiServer;
//! use schemars::JsonSchema;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema)]
//! #[kube(group = "example.com", version = "v1", kind = "Cache", namespaced, status = "CacheStatus")]
//! struct CacheSpec {
//!     size_mb: u32,
//! }
//!
//! #[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
//! struct CacheStatus {
//!     #[serde(flatten)]
//!     machine: PhaseStatus,
//! }
//!
//! impl HasPhaseStatus for Cache {
//!     fn phase_status(&self) -> Option<&PhaseStatus> {
//!         self.status.as_ref().map(|s| &s.machine)
//!     }
//! }
//!
//! kube_reconcile::phases! {
//!     /// Where a cache is in its life.
//!     enum CachePhase { Pending, Warming, Ready, Updating, Failed }
//! }
//!
//! struct CacheMachine {
//!     table: Transitions<CachePhase>,
//! }
//!
//! impl PhaseMachine<Cache, ()> for CacheMachine {
//!     type Phase = CachePhase;
//!     type Error = kube::Error;
//!
//!     fn transitions(&self) -> &Transitions<CachePhase> {
//!         &self.table
//!     }
//!
//!     async fn handle(&self, phase: CachePhase, cache: &Cache, _: &Step<'_, CachePhase, ()>)
//!         -> Result<Transition<CachePhase>, kube::Error>
//!     {
//!         Ok(match phase {
//!             CachePhase::Pending | CachePhase::Updating => Transition::to(CachePhase::Warming),
//!             CachePhase::Warming => Transition::to(CachePhase::Ready)
//!                 .because("Warm", format!("{} MB loaded", cache.spec.size_mb)),
//!             CachePhase::Ready | CachePhase::Failed => Transition::done(),
//!         })
//!     }
//! }
//!
//! use CachePhase::{Failed, Pending, Ready, Updating, Warming};
//! let table = Transitions::builder(Pending)
//!     .path([Pending, Warming, Ready, Updating, Warming])
//!     .edge(Failed, Warming)
//!     .ready(Ready)
//!     .updating(Updating)
//!     .failed(Failed)
//!     .build()?;
//!
//! let server = ApiServer::new();
//! let client = server.client();
//! Api::<CustomResourceDefinition>::all(client.clone())
//!     .create(&PostParams::default(), &Cache::crd())
//!     .await?;
//! let caches: Api<Cache> = Api::default_namespaced(client.clone());
//! caches.create(&PostParams::default(), &Cache::new("hot", CacheSpec { size_mb: 64 })).await?;
//!
//! let engine = PhaseEngine::with_config(CacheMachine { table }, client, PhaseConfig::default())?;
//! for _ in 0..3 {
//!     engine.reconcile(Arc::new(caches.get("hot").await?), Arc::new(())).await?;
//! }
//! let hot = caches.get("hot").await?;
//! let status = hot.phase_status().expect("a status");
//! assert_eq!(status.phase.as_deref(), Some("Ready"));
//! assert!(status.conditions.is_true("Ready"));
//! assert_eq!(status.observed_generation, Some(1));
//! let phases: Vec<&str> = status.phase_history.iter().map(|r| r.phase.as_str()).collect();
//! assert_eq!(phases, ["Pending", "Warming", "Ready"]);
//! assert_eq!(hot.metadata.finalizers, Some(vec!["kube-reconcile.dev/cleanup".to_owned()]));
//!
//! // Ready and nothing changed: another reconcile writes nothing.
//! let before = server.requests();
//! engine.reconcile(Arc::new(hot), Arc::new(())).await?;
//! assert_eq!(server.requests().since(&before).writes(), 0);
//! # Ok(()) }
//! ```
//!
//! The crate's `tests/phase/` and the `database_operator` example run it end to end with a
//! `Controller`, on the embedded API server and on a real kube-apiserver.

mod change;
mod cleanup;
mod config;
mod deferral;
mod deferral_status;
mod engine;
mod error;
mod failure;
mod finalize;
mod flow;
mod machine;
mod messages;
mod next_status;
mod noted;
mod operator;
mod own_writes;
mod pacing;
mod recorder;
mod running;
mod status;
mod table;
mod transition;
mod write;

pub use self::change::PhaseChange;
pub use self::cleanup::Cleanup;
pub use self::config::PhaseConfig;
pub(crate) use self::config::PhaseConfigError;
pub use self::deferral_status::DeferralStatusLayer;
pub use self::engine::PhaseEngine;
pub use self::error::PhaseError;
pub use self::machine::{PhaseMachine, Step};
pub use self::operator::{Operator, OperatorBuilder};
pub use self::running::{Running, Tracked};
pub use self::status::{ErrorRecord, HasPhaseStatus, PhaseRecord, PhaseStatus, RetryStatus};
pub(crate) use self::table::TableError;
pub use self::table::{Transitions, TransitionsBuilder};
pub use self::transition::Transition;

use std::{fmt, hash::Hash};

/// A phase of a [`PhaseMachine`]: a small `Copy` enum with a stable name per variant.
///
/// Declare one with [`phases!`](crate::phases), which also implements this trait.
pub trait Phase: Copy + Eq + Hash + fmt::Debug + Send + Sync + 'static {
    /// The name stored in `status.phase`.
    fn name(self) -> &'static str;

    /// The phase stored as `name`, if there is one.
    fn from_name(name: &str) -> Option<Self>;

    /// Every phase, in declaration order.
    fn all() -> &'static [Self];
}

/// Declares a phase enum and implements [`Phase`](crate::phase::Phase) and `Display`
/// for it; each variant's name is what `status.phase` stores.
///
/// # Examples
///
/// ```
/// use kube_reconcile::phase::Phase;
///
/// kube_reconcile::phases! {
///     /// Where a database is in its life.
///     pub enum DbPhase { Pending, Provisioning, Ready, Failed }
/// }
///
/// assert_eq!(DbPhase::Provisioning.name(), "Provisioning");
/// assert_eq!(DbPhase::from_name("Ready"), Some(DbPhase::Ready));
/// assert_eq!(DbPhase::from_name("ready"), None);
/// assert_eq!(DbPhase::all().len(), 4);
/// assert_eq!(DbPhase::Failed.to_string(), "Failed");
/// ```
#[macro_export]
macro_rules! phases {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $crate::phase::Phase for $name {
            fn name(self) -> &'static str {
                match self {
                    $($name::$variant => stringify!($variant)),+
                }
            }

            fn from_name(name: &str) -> ::core::option::Option<Self> {
                match name {
                    $(stringify!($variant) => ::core::option::Option::Some($name::$variant),)+
                    _ => ::core::option::Option::None,
                }
            }

            fn all() -> &'static [Self] {
                &[$($name::$variant),+]
            }
        }

        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str($crate::phase::Phase::name(*self))
            }
        }
    };
}
