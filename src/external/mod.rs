//! External systems: gate calls on their health, breaker and rate budget, and create
//! their resources exactly once.
//!
//! An operator that provisions something outside Kubernetes (a database from a DBaaS,
//! a bucket, a DNS record) has two problems a plain reconcile loop does not solve:
//!
//! 1. **The system may be down.** Failing the reconcile makes every object back off and
//!    log errors, and tells the user nothing. An [`ExternalDependency`] gate answers
//!    before the call: [`Admission::Ready`] with a [`Pass`], or [`Admission::Unavailable`]
//!    with the reason, the time of the next attempt, the condition to show and the
//!    requeue to return. Nothing sleeps and nothing counts as a failure.
//! 2. **A create can be lost half-way.** The process can die after the request went out
//!    and before the new resource's id was written anywhere. [`ExternalResource`]
//!    creates with an [`IdempotencyKey`] derived from the object's UID and looks the
//!    key up first, so the next reconcile adopts what was created instead of making a
//!    second one.
//!
//! # The gate and its condition
//!
//! [`ExternalDependency::admit`] checks, in order, the dependency's
//! [`Breaker`](crate::middleware::circuit_breaker::Breaker) (shared by every object), its
//! health check (cached, one check at a time for all callers) and its
//! [`RateBudget`](crate::middleware::rate_limit::RateBudget). Each dependency reports
//! one condition, of type `<Name>Available` (`dbaas` → `DbaasAvailable`; choose another
//! with [`DependencyBuilder::condition_type`]):
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
//! [`ExternalDependency::set_available`] after a call that succeeded, not on admission:
//! a half-open probe that fails must not flap it.
//!
//! An [`Unavailable`] carries the wait: [`Unavailable::action`] is
//! `Action::requeue(retry_after)`, and [`Unavailable::apply`] sets its condition. The
//! wait is the breaker's half-open time (plus its spread), the time of the next health
//! check, or the budget's exact wait, with a random spread so objects do not return
//! together; with a budget, each held-back caller gets a turn in the budget's queue
//! instead (one emission interval after the caller held back before it), so thousands
//! of waiting objects come back at the rate the budget can serve. Wall-clock times are computed from the dependency's monotonic clock (which
//! follows paused tokio time) and a wall-clock anchor taken at build, so a wall-clock
//! step never moves a deadline and tests are deterministic.
//!
//! # Idempotent creates
//!
//! The robust scheme is not an annotation saying "a create is pending" (a write that can
//! be lost, leaving the object stuck, as crossplane-runtime#340 shows) but a key the
//! external system can be searched by, or deduplicates on, and that can always be
//! derived again: `<prefix>-<uid>`. [`ExternalResource::ensure`] observes by key,
//! adopts what it finds, and only creates when nothing is there; it records the key on
//! the object before the create and the external id after ([`Journal`];
//! [`AnnotationJournal`] by default). The records are for people and tools: since the
//! key is derived, the protocol is correct even if every record is lost. See
//! [`ExternalResource`] for the protocol diagram, guarantees and caveats, and
//! [`ExternalClient`] for what the external system must offer.
//!
//! # Examples
//!
//! A reconcile step that gates a create on the dependency and keeps the condition:
//!
//! ```
//! use std::{collections::BTreeMap, sync::{Arc, Mutex, atomic::{AtomicBool, Ordering}}, time::Duration};
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use kube::runtime::controller::Action;
//! use kube_reconcile::{ErrorClass, conditions::Conditions};
//! use kube_reconcile::external::{
//!     Admission, ExternalClient, ExternalDependency, ExternalResource, Health, IdempotencyKey, NoJournal,
//! };
//!
//! /// A DBaaS whose instances are named by key.
//! #[derive(Default)]
//! struct Dbaas(Mutex<BTreeMap<String, u32>>);
//!
//! impl ExternalClient for Dbaas {
//!     type Spec = u32; // size in GiB
//!     type Resource = (String, u32);
//!     type Error = ErrorClass;
//!     async fn observe(&self, key: &IdempotencyKey) -> Result<Option<(String, u32)>, ErrorClass> {
//!         Ok(self.0.lock().unwrap().get(key.as_str()).map(|size| (key.to_string(), *size)))
//!     }
//!     async fn create(&self, key: &IdempotencyKey, size: &u32) -> Result<(String, u32), ErrorClass> {
//!         self.0.lock().unwrap().insert(key.to_string(), *size);
//!         Ok((key.to_string(), *size))
//!     }
//!     async fn delete(&self, key: &IdempotencyKey, _: &(String, u32)) -> Result<(), ErrorClass> {
//!         self.0.lock().unwrap().remove(key.as_str());
//!         Ok(())
//!     }
//!     fn id(&self, instance: &(String, u32)) -> String { instance.0.clone() }
//! }
//!
//! async fn provision(
//!     db: &ConfigMap,
//!     conditions: &mut Conditions,
//!     dbaas: &ExternalDependency,
//!     instances: &ExternalResource<Dbaas, NoJournal>,
//! ) -> Result<Action, ErrorClass> {
//!     let pass = match dbaas.admit().await {
//!         Admission::Ready(pass) => pass,
//!         Admission::Unavailable(unavailable) => {
//!             unavailable.apply(conditions); // DbaasAvailable=False, ExternalSystemUnavailable
//!             return Ok(unavailable.action()); // requeue at the next attempt
//!         }
//!     };
//!     pass.call(instances.ensure(db, &10)).await.map_err(|e| e.into_client().unwrap_or(ErrorClass::Terminal))?;
//!     dbaas.set_available(conditions); // DbaasAvailable=True
//!     Ok(Action::requeue(Duration::from_secs(300)))
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let up = Arc::new(AtomicBool::new(false));
//! let probe = Arc::clone(&up);
//! let dbaas = ExternalDependency::builder("dbaas")
//!     .health(move || {
//!         let up = probe.load(Ordering::SeqCst);
//!         async move { if up { Health::Available } else { Health::unavailable("503 from /health") } }
//!     })
//!     .health_interval(Duration::from_secs(10))
//!     .spread(Duration::ZERO)
//!     .build();
//! let instances = ExternalResource::new("db", Dbaas::default(), NoJournal)?;
//! let mut db = ConfigMap::default();
//! db.metadata.uid = Some("0a1b".into());
//! let mut conditions = Conditions::default();
//!
//! // Down: nothing is created, the condition says why, and the reconcile requeues.
//! let action = provision(&db, &mut conditions, &dbaas, &instances).await.unwrap();
//! assert_eq!(action, Action::requeue(Duration::from_secs(10)));
//! let condition = conditions.find("DbaasAvailable").unwrap();
//! assert_eq!(condition.reason, "ExternalSystemUnavailable");
//! assert!(condition.message.starts_with("dbaas is unavailable since "));
//! assert!(condition.message.ends_with(": 503 from /health"));
//! assert!(instances.client().0.lock().unwrap().is_empty());
//!
//! // Up again, after the health interval: created once, condition cleared.
//! up.store(true, Ordering::SeqCst);
//! tokio::time::advance(Duration::from_secs(10)).await;
//! provision(&db, &mut conditions, &dbaas, &instances).await.unwrap();
//! provision(&db, &mut conditions, &dbaas, &instances).await.unwrap();
//! assert!(conditions.is_true("DbaasAvailable"));
//! assert_eq!(instances.client().0.lock().unwrap().len(), 1);
//! # Ok(()) }
//! ```

mod builder;
mod client;
mod dependency;
mod error;
mod gate;
mod health;
mod journal;
mod key;
mod outcome;
mod resource;
mod unavailable;

pub use self::{
    builder::DependencyBuilder,
    client::ExternalClient,
    dependency::ExternalDependency,
    error::{ExternalError, GateError, KeyError},
    gate::{Admission, Pass},
    health::Health,
    journal::{ANNOTATION_DOMAIN, AnnotationJournal, Journal, NoJournal},
    key::IdempotencyKey,
    outcome::{Deletion, Ensured},
    resource::ExternalResource,
    unavailable::{Unavailable, UnavailableReason},
};

#[cfg(test)]
mod tests;
