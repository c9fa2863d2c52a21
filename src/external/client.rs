//! [`ExternalClient`]: the calls the idempotent create protocol needs from an external system.

use std::{fmt, future::Future};

use crate::error::Classify;

use super::key::IdempotencyKey;

/// The calls an external system must offer for [`ExternalResource`](super::ExternalResource)
/// to create and delete its resources exactly once.
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
/// # Examples
///
/// An in-memory system whose resource names are the keys:
///
/// ```
/// use std::{collections::BTreeMap, sync::Mutex};
/// use kube_reconcile::{ErrorClass, external::{ExternalClient, IdempotencyKey}};
///
/// #[derive(Default)]
/// struct Buckets(Mutex<BTreeMap<String, String>>); // name → region
///
/// impl ExternalClient for Buckets {
///     type Spec = str; // the region
///     type Resource = (String, String);
///     type Error = ErrorClass;
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
///
///     fn id(&self, bucket: &Self::Resource) -> String {
///         bucket.0.clone()
///     }
/// }
/// ```
pub trait ExternalClient: Send + Sync {
    /// What `create` needs besides the key (the desired state, derived from the object).
    type Spec: Sync + ?Sized;
    /// An external resource as the system describes it.
    type Resource: Send;
    /// The error of a call; its class drives retries and the breaker.
    type Error: Classify + fmt::Debug + fmt::Display + Send + Sync + 'static;

    /// The resource created with `key`, if there is one.
    ///
    /// A resource that is being deleted may be reported as absent (`None`) once it no
    /// longer needs a delete call.
    fn observe(
        &self,
        key: &IdempotencyKey,
    ) -> impl Future<Output = Result<Option<Self::Resource>, Self::Error>> + Send;

    /// Creates a resource that [`observe`](ExternalClient::observe) will find by `key`.
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

    /// The system's own identifier of `resource`, recorded on the object for people and
    /// tools (the protocol itself finds resources by key).
    fn id(&self, resource: &Self::Resource) -> String;
}
