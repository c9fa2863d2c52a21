//! External systems: the user's client wrapped in one handle that gates calls on health,
//! a circuit breaker and a rate budget, and creates resources exactly once.
//!
//! An operator that provisions something outside Kubernetes (a database from a DBaaS,
//! a bucket, a DNS record) has two problems a plain reconcile loop does not solve:
//!
//! 1. **The system may be down or may be rate limited.** Failing the reconcile makes
//!    every object back off and log errors, and tells the user nothing. A [`Dependency`]
//!    answers before each call: the call goes out, or it is held back with the reason,
//!    the time of the next attempt and the condition to show. Inside a phase handler,
//!    `?` on the refusal is all the handling it needs.
//! 2. **A create can be lost half-way.** The process can die after the request went out
//!    and before the new resource's id was written anywhere.
//!    [`Dependency::ensure`] creates with an [`IdempotencyKey`] derived from the object's
//!    UID and looks the key up first, so the next reconcile adopts what was created
//!    instead of making a second one.
//!
//! The user implements two traits on their own client: [`ExternalDependency`] (a name,
//! the error type, optionally a health check) and, for resources created per object,
//! [`ExactlyOnce`] (observe, create and delete by idempotency key). The library does the
//! rest.
//!
//! # Examples
//!
//! A DBaaS client, its handle, and a provisioning step (outside a phase engine, to show
//! what the handle returns):
//!
//! ```
//! use std::{collections::BTreeMap, sync::{Arc, Mutex, atomic::{AtomicBool, Ordering}}, time::Duration};
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use kube_reconcile::ErrorClass;
//! use kube_reconcile::external::{
//!     Dependency, ExactlyOnce, ExternalDependency, ExternalError, Health, IdempotencyKey,
//!     Provisioned,
//! };
//!
//! /// The user's DBaaS client: instances named by key, sizes in GiB.
//! #[derive(Clone, Default)]
//! struct Dbaas { up: Arc<AtomicBool>, instances: Arc<Mutex<BTreeMap<String, u32>>> }
//!
//! impl ExternalDependency for Dbaas {
//!     type Error = ErrorClass;
//!     fn name(&self) -> &'static str { "dbaas" }
//!     async fn health(&self) -> Health {
//!         if self.up.load(Ordering::SeqCst) { Health::Available } else { Health::unavailable("503 from /health") }
//!     }
//! }
//!
//! impl ExactlyOnce for Dbaas {
//!     type Spec = u32;
//!     type Resource = (String, u32);
//!     async fn observe(&self, key: &IdempotencyKey) -> Result<Option<(String, u32)>, ErrorClass> {
//!         Ok(self.instances.lock().unwrap().get(key.as_str()).map(|size| (key.to_string(), *size)))
//!     }
//!     async fn create(&self, key: &IdempotencyKey, size: &u32) -> Result<(String, u32), ErrorClass> {
//!         self.instances.lock().unwrap().insert(key.to_string(), *size);
//!         Ok((key.to_string(), *size))
//!     }
//!     async fn delete(&self, key: &IdempotencyKey, _: &(String, u32)) -> Result<(), ErrorClass> {
//!         self.instances.lock().unwrap().remove(key.as_str());
//!         Ok(())
//!     }
//!     fn id(&self, instance: &(String, u32)) -> Option<String> { Some(instance.0.clone()) }
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let client = Dbaas::default();
//! let dbaas = Dependency::builder(client.clone())
//!     .health_interval(Duration::from_secs(10))
//!     .spread(Duration::ZERO)
//!     .build();
//! let mut db = ConfigMap::default();
//! db.metadata.uid = Some("0a1b".into());
//!
//! // Down: nothing is created; the refusal says why and when to come back.
//! let Err(ExternalError::Unavailable(held)) = dbaas.ensure(&db, &10).await else { panic!() };
//! assert_eq!(held.retry_after, Duration::from_secs(10));
//! let condition = held.condition.as_ref().unwrap();
//! assert_eq!((condition.type_.as_str(), condition.reason.as_str()), ("DbaasAvailable", "ExternalSystemUnavailable"));
//! assert!(client.instances.lock().unwrap().is_empty());
//!
//! // Up again, after the health interval: created once, found the next time.
//! client.up.store(true, Ordering::SeqCst);
//! tokio::time::advance(Duration::from_secs(10)).await;
//! assert!(matches!(dbaas.ensure(&db, &10).await.unwrap(), Provisioned::Created(_)));
//! assert!(matches!(dbaas.ensure(&db, &10).await.unwrap(), Provisioned::Found(_)));
//! assert_eq!(client.instances.lock().unwrap().len(), 1);
//! # }
//! ```
//!
//! # The gate and its condition
//!
//! Before each call, a [`Dependency`] checks, in order, its
//! [`Breaker`](crate::middleware::circuit_breaker::Breaker) (shared by every object), its
//! health check (cached, one check at a time for all callers, with failure and success
//! thresholds) and its [`RateBudget`](crate::middleware::rate_limit::RateBudget). Each
//! dependency reports one condition, of type `<Name>Available`. **The casing rule:** the
//! name is split at every character that is not an ASCII letter or digit, each word's
//! first letter is upper-cased (the rest kept as written), the words are joined and
//! `Available` appended; a name that then does not start with a letter gets
//! `ExternalSystem` in front (`dbaas` → `DbaasAvailable`, `billing-api` →
//! `BillingApiAvailable`, `s3.eu_west` → `S3EuWestAvailable`, `DBaaS` →
//! `DBaaSAvailable`). Choose another type with [`DependencyBuilder::condition_type`]:
//!
//! | Situation | `status` | `reason` | `message` |
//! |---|---|---|---|
//! | a call through the gate succeeded | `True` | `Available` | `dbaas is available` |
//! | health check says down, failed or timed out | `False` | `ExternalSystemUnavailable` | `dbaas is unavailable since <first failed check>: <why>` |
//! | breaker open | `False` | `CircuitOpen` | `circuit breaker for dbaas is open; next attempt at <half-open time>` |
//! | breaker forced open, or half-open with its probes in flight | `False` | `CircuitOpen` | `circuit breaker for dbaas is forced open until reset` / `... is half-open and its probe calls are in flight` |
//! | rate budget spent | unchanged | | (our own pacing, not an outage) |
//!
//! Times are RFC 3339, to the second. The message names what is the same for every
//! object: when the *dependency* may be tried again (an open breaker), or when the
//! outage began (a failed health check, so that the message does not move with each
//! check and an object held back again and again is written once). Each object's own
//! requeue ([`Unavailable::retry_after`], [`Unavailable::next_attempt_time`]) adds a
//! random spread. So every object held back by one outage shows the same condition,
//! and the reconcile that the status write itself triggers finds nothing to change
//! instead of writing again (a write loop that a per-object time would cause).
//!
//! A positive-polarity type per dependency is what kstatus-style tools and
//! `kubectl wait --for=condition=DbaasAvailable` understand, and several dependencies
//! never overwrite each other. The condition is set with `meta.SetStatusCondition`
//! semantics ([`Conditions::set`](crate::conditions::Conditions::set)), so its
//! `lastTransitionTime` says when the outage began. It is cleared (set `True`) by
//! the engine after a call that succeeded in the step, not on admission: a half-open
//! probe that fails must not flap it.
//!
//! An [`Unavailable`] carries the wait: a plain reconciler returns
//! `Action::requeue(retry_after)`, and [`Unavailable::apply`] sets its condition. The
//! wait is the breaker's half-open time (plus its spread), the time of the next health
//! check, or the budget's exact wait, with a random spread so objects do not return
//! together; with a budget, each held-back caller gets a turn in the budget's queue
//! instead (one emission interval after the caller held back before it), so thousands
//! of waiting objects come back at the rate the budget can serve. Inside the phase
//! engine the queue is ordered by how far along each object is (see
//! [`RateBudget`](crate::middleware::rate_limit::RateBudget)): objects are finished
//! before new ones are started. Wall-clock times are computed from the dependency's
//! monotonic clock (which follows paused tokio time) and a wall-clock anchor taken at
//! build, so a wall-clock step never moves a deadline and tests are deterministic.
//!
//! # Idempotent creates
//!
//! The robust scheme is not an annotation saying "a create is pending" (a write that can
//! be lost, leaving the object stuck, as crossplane-runtime#340 shows) but a key the
//! external system can be searched by, or deduplicates on, and that can always be
//! derived again: `<prefix>-<uid>`. [`Dependency::ensure`] observes by key, adopts what
//! it finds, and only creates when nothing is there; it writes nothing to the object, so
//! it never competes with the engine's one write per reconcile. See
//! [`Dependency::ensure`] for the protocol diagram, guarantees and caveats, and
//! [`ExactlyOnce`] for what the external system must offer.

mod builder;
mod client;
mod dependency;
mod error;
mod exactly_once;
mod gate;
mod handle;
mod health;
mod hint;
mod key;
mod outcome;
mod unavailable;

pub(crate) use self::dependency::Gate;
pub use self::{
    builder::DependencyBuilder,
    client::{ExactlyOnce, ExternalDependency},
    error::ExternalError,
    handle::Dependency,
    health::Health,
    hint::RateLimitHint,
    key::IdempotencyKey,
    outcome::{Deletion, Provisioned},
    unavailable::{Unavailable, UnavailableReason},
};

#[cfg(test)]
mod tests;
