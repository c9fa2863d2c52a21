//! The traits a user's client implements: [`ExternalDependency`] and [`ExactlyOnce`].

use std::{fmt, future::Future};

use crate::error::Classify;

use super::{health::Health, key::IdempotencyKey};

/// An external system that reconciles call (a DBaaS, an object store, a DNS provider),
/// implemented by the user's own client type: a third-party SDK client needs no newtype
/// when it is the one the trait is implemented for.
///
/// The library wraps the client in a [`Dependency`](super::Dependency) handle that owns
/// everything around the calls: the circuit breaker, the shared rate budget, a health
/// cache with failure and success thresholds like a Kubernetes probe, the availability
/// condition `<Name>Available`, and per-call accounting. Handlers call the system only
/// through the handle.
///
/// A client whose answers carry rate-limit headers (`RateLimit`, `X-RateLimit-Remaining`,
/// ...) passes them on with one line where it reads an answer,
/// `if let Some(hint) = RateLimitHint::from_headers(&headers) { hint.report() }`, and an
/// [adaptive budget](crate::middleware::rate_limit::RateBudget::adaptive) slows down
/// before the system refuses anything ([`RateLimitHint`](super::RateLimitHint)).
///
/// # Examples
///
/// ```
/// use kube_reconcile::{ErrorClass, external::{Dependency, ExternalDependency, Health}};
///
/// /// The user's client (here a stand-in for an SDK client).
/// struct Dbaas {
///     up: bool,
/// }
///
/// impl ExternalDependency for Dbaas {
///     type Error = ErrorClass;
///     fn name(&self) -> &str {
///         "dbaas"
///     }
///     async fn health(&self) -> Health {
///         if self.up { Health::Available } else { Health::unavailable("503 from /health") }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let dbaas = Dependency::builder(Dbaas { up: true }).build();
/// // Its availability condition on each object is `DbaasAvailable`.
/// let answer = dbaas.call(|c| async move { Ok::<_, ErrorClass>(c.up) }).await;
/// assert!(answer.unwrap());
/// # }
/// ```
pub trait ExternalDependency: Send + Sync + 'static {
    /// The error of a call; its [class](Classify::class) drives retries and the breaker
    /// (a `Transient` or `Throttled` failure counts against the dependency, a `Terminal`
    /// or `Conflict` one does not).
    type Error: Classify + fmt::Debug + fmt::Display + Send + Sync + 'static;

    /// The dependency's name (`"dbaas"`): the breaker's and the budget's label, and the
    /// availability condition's type (`DbaasAvailable`, see
    /// [`DependencyBuilder::condition_type`](super::DependencyBuilder::condition_type)).
    fn name(&self) -> &str;

    /// Whether the system can take calls now (its health endpoint, a status page).
    ///
    /// Called at most once per health interval for all callers together, and never while
    /// an earlier check is still running. The default says available: only the breaker
    /// and the budget then hold calls back.
    fn health(&self) -> impl Future<Output = Health> + Send {
        async { Health::Available }
    }
}

/// The calls an [`ExternalDependency`] must offer for the library to create and delete its
/// resources exactly once ([`Dependency::ensure`](super::Dependency::ensure),
/// [`Dependency::delete`](super::Dependency::delete)).
///
/// The protocol relies on one property, which the implementation must provide:
///
/// **A resource created with a key can be found by that key.** `observe(key)` returns
/// the resource that `create(key, ..)` made, even when `create`'s response was lost.
/// Ways to get there:
///
/// - use the key as the resource's **name** (`create` with name = key, `observe` = get
///   by name) when the system lets you choose names and names are unique;
/// - store the key in a **tag / label / metadata** field and search by it;
/// - pass the key as the system's **idempotency token** (Stripe's `Idempotency-Key`,
///   AWS `ClientToken`), so a second `create` with the same key returns the first
///   resource instead of making another, and search by tag as well.
///
/// `observe` should be read-your-writes consistent for a key (a get by name usually
/// is; a search index often is not). If it is only eventually consistent, the system
/// must also deduplicate `create` on the key, or a reconcile that runs right after a
/// lost response can create a second resource. A map from the key to whatever the
/// system accepts (a hash, a shortened name) is fine as long as it is deterministic.
///
/// A separate trait (not methods of [`ExternalDependency`]) because a dependency that
/// creates nothing per object (a billing API, a notification service) has no resource
/// type to name.
///
/// # Examples
///
/// An in-memory object store whose bucket names are the keys:
///
/// ```
/// use std::{collections::BTreeMap, sync::Mutex};
/// use kube_reconcile::{ErrorClass, external::{ExactlyOnce, ExternalDependency, IdempotencyKey}};
///
/// #[derive(Default)]
/// struct Buckets(Mutex<BTreeMap<String, String>>); // name → region
///
/// impl ExternalDependency for Buckets {
///     type Error = ErrorClass;
///     fn name(&self) -> &str {
///         "buckets"
///     }
/// }
///
/// impl ExactlyOnce for Buckets {
///     type Spec = str; // the region
///     type Resource = (String, String);
///
///     async fn observe(&self, key: &IdempotencyKey) -> Result<Option<Self::Resource>, ErrorClass> {
///         let buckets = self.0.lock().unwrap();
///         Ok(buckets.get(key.as_str()).map(|region| (key.to_string(), region.clone())))
///     }
///
///     async fn create(&self, key: &IdempotencyKey, region: &str) -> Result<Self::Resource, ErrorClass> {
///         let mut buckets = self.0.lock().unwrap();
///         let region = buckets.entry(key.to_string()).or_insert_with(|| region.to_owned());
///         Ok((key.to_string(), region.clone()))
///     }
///
///     async fn delete(&self, key: &IdempotencyKey, _: &Self::Resource) -> Result<(), ErrorClass> {
///         self.0.lock().unwrap().remove(key.as_str());
///         Ok(())
///     }
/// }
/// ```
pub trait ExactlyOnce: ExternalDependency {
    /// What `create` needs besides the key (the desired state, derived from the object).
    type Spec: Sync + ?Sized;
    /// An external resource as the system describes it.
    type Resource: Send;

    /// The prefix of the idempotency keys (`<prefix>-<uid>`). Default: the
    /// dependency's [name](ExternalDependency::name). It must be a lowercase DNS label
    /// of at most 26 characters; otherwise `ensure` and `delete` fail with
    /// [`ExternalError::InvalidPrefix`](super::ExternalError::InvalidPrefix).
    fn key_prefix(&self) -> &str {
        self.name()
    }

    /// The resource created with `key`, if there is one.
    ///
    /// A resource that is being deleted may be reported as absent (`None`) once it no
    /// longer needs a delete call.
    fn observe(
        &self,
        key: &IdempotencyKey,
    ) -> impl Future<Output = Result<Option<Self::Resource>, Self::Error>> + Send;

    /// Creates a resource that [`observe`](ExactlyOnce::observe) will find by `key`.
    ///
    /// If the system reports that a resource with this key already exists, returning
    /// that resource (or an error) is both fine: after an error the protocol observes
    /// again and adopts what it finds.
    fn create(
        &self,
        key: &IdempotencyKey,
        spec: &Self::Spec,
    ) -> impl Future<Output = Result<Self::Resource, Self::Error>> + Send;

    /// Deletes `resource`, which was observed with `key`.
    ///
    /// "Not found" may be returned as `Ok(())` or as an error: after an error the
    /// protocol observes again, and a resource that is gone counts as deleted.
    fn delete(
        &self,
        key: &IdempotencyKey,
        resource: &Self::Resource,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The system's own identifier of `resource`, for the logs of its create and delete
    /// (default: none; the idempotency key identifies the resource as well).
    fn id(&self, resource: &Self::Resource) -> Option<String> {
        let _ = resource;
        None
    }
}
