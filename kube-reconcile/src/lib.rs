//! Reconciliation patterns for Kubernetes operators built on [kube-rs](https://kube.rs).
//!
//! Write a phased operator as one enum, one table and one handler per phase
//! ([`phase`]); keep child objects in shape with zero needless writes ([`ensure`]); wrap
//! any kube-runtime reconciler in per-object backoff, rate limits, circuit breakers and
//! timeouts without sleeping in a reconcile ([`middleware`]). Test it all on an
//! in-process Kubernetes API server with the companion crate
//! [`kube-reconcile-testing`](https://docs.rs/kube-reconcile-testing), which serves any
//! kube-rs controller and needs nothing of this one.
//!
//! | Module | What it gives you |
//! |---|---|
//! | [`phase`] | `PhaseMachine` and its engine: validated transitions, status and conditions, retries, deadlines, cleanup through a finalizer. |
//! | [`ensure`] | `Ensure`: idempotent child objects (server-side apply, subset patch, create-only, absent, prune). |
//! | [`conditions`] | Status conditions with `meta.SetStatusCondition` semantics. |
//! | [`leader`] | Leader election on a Lease, and a layer that reconciles only while leading. |
//! | [`shard`] | Several replicas share the objects: Lease membership, a consistent-hash ring, owners as labels. |
//! | [`middleware`] | `Backoff`, `RateLimit`, `CircuitBreaker`, `Timeout` around any reconciler or async call. |
//! | [`error`] | Error classes (`Transient`, `Throttled`, `Conflict`, `Terminal`) that drive retries. |
//! | [`metrics`] | Prometheus metrics under controller-runtime's names, plus phases, breakers and deferrals; a `/metrics` endpoint (feature `metrics`). |
//!
//! # Quick example
//!
//! ```no_run
//! use std::{num::NonZeroU32, sync::Arc, time::Duration};
//! use futures::StreamExt;
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use kube::{Api, Client, runtime::{Controller, controller::Action, watcher}};
//! use kube_reconcile::{ControllerExt, ReconcilerExt};
//! use kube_reconcile::middleware::{
//!     backoff::BackoffLayer, circuit_breaker::CircuitBreakerLayer,
//!     rate_limit::{Quota, RateLimitLayer}, timeout::TimeoutLayer,
//! };
//!
//! struct Ctx { client: Client }
//!
//! async fn reconcile(cm: Arc<ConfigMap>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
//!     // ... make the world match cm ...
//!     Ok(Action::requeue(Duration::from_secs(3600)))
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::try_default().await?;
//! let reconciler = reconcile
//!     .with(TimeoutLayer::new(Duration::from_secs(30)))
//!     .with(CircuitBreakerLayer::new("dbaas"))
//!     .with(RateLimitLayer::per_object(Quota::per_second(NonZeroU32::new(5).expect("non-zero"))))
//!     .with(BackoffLayer::operator());
//! Controller::new(Api::<ConfigMap>::all(client.clone()), watcher::Config::default())
//!     .run_reconciler(reconciler, Arc::new(Ctx { client }))
//!     .for_each(|_| async {})
//!     .await;
//! # Ok(()) }
//! ```
//!
//! A phased operator gets the same stack around its [`PhaseEngine`](phase::PhaseEngine) from
//! one builder, [`phase::Operator`] (timeout, backoff, the `Deferred` status, and optionally a
//! rate limit, a dependency's breaker, leader election and metrics); the README's "A phase
//! operator, start to finish" and the `database_operator` example use it.
//!
//! # Composition
//!
//! Layers are listed inside out with [`ReconcilerExt::with`]; a call passes through
//! them outside in:
//!
//! ```text
//!  ┌ Backoff ─────────── per object: not before the next attempt; exponent, jitter, cap
//!  │ ┌ RateLimit ─────── GCRA: global, per object, per named budget
//!  │ │ ┌ CircuitBreaker ─ per dependency, shared by every object
//!  │ │ │ ┌ Timeout ────── deadline per call
//!  │ │ │ │   reconcile
//! ```
//!
//! A layer that holds a call back returns a deferral, which a controller sees as
//! `Ok(Action::requeue(wait))`; errors are classified ([`ErrorClass`]) and reach the
//! controller's `error_policy` through [`Reconciler::error_action`].
//!
//! # Feature flags
//!
//! | Feature | Default | What it adds |
//! |---|---|---|
//! | `metrics` | no | [`metrics`]: Prometheus metrics (controller-runtime's reconcile metrics, phase transitions and time in phase, breaker state, deferrals, backoff) on `prometheus-client`, and a `/metrics` HTTP endpoint (pulls in hyper). |
//!
//! The crate does not pick a Kubernetes version for `k8s-openapi`; enable one
//! (`k8s-openapi/latest` or `v1_xx`) in your binary, as with kube itself.
//!
//! # Minimum supported Rust version
//!
//! 1.89, the same as kube 5.

#![cfg_attr(docsrs, feature(doc_cfg))]

/// The README's code blocks, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

#[doc(hidden)]
pub mod clock;
pub mod conditions;
pub mod ensure;
pub mod error;
pub mod external;
pub(crate) mod keyed;
pub mod leader;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
pub mod middleware;
pub mod phase;
mod reconciler;
mod rng;
mod scope;
pub mod shard;
pub mod testing;
mod wall_clock;

#[doc(inline)]
pub use crate::ensure::{Children, Ensure, EnsureConfig, EnsureError, Ensured};
#[doc(inline)]
pub use crate::error::{Classify, ConfigError, ErrorClass, HandlerError, Terminal, terminal};
#[doc(inline)]
pub use crate::external::{Dependency, ExactlyOnce, ExternalDependency};
#[doc(inline)]
pub use crate::leader::{LeaderHandle, LeaseConfig};
#[doc(inline)]
pub use crate::reconciler::{
    ControllerExt, DeferReason, Deferral, Either, ObjectKey, Outcome, Reconciler, ReconcilerExt,
};
