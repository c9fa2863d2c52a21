//! [`ExternalResource`]: create an external resource exactly once, delete it idempotently.

use std::{fmt, future::Future, num::NonZeroU32, sync::Arc};

use kube::Resource;

use super::{
    client::ExternalClient,
    dependency::ExternalDependency,
    error::{ExternalError, KeyError},
    gate::Admission,
    journal::Journal,
    key::{IdempotencyKey, validate_prefix},
    outcome::{Deletion, Ensured},
};

/// The calls of an `ensure` or a `delete` that the budget pays for at once: an observe,
/// then a create or a delete.
const UNIT: NonZeroU32 = NonZeroU32::new(2).expect("two is not zero");

/// One kind of external resource per object, created with an idempotency key derived
/// from the object's UID: found and adopted after any crash, never created twice.
///
/// `prefix` names which external resource of the object this is (`"db"`, `"bucket"`);
/// the key is `<prefix>-<uid>`. Works for any kind `K`, typed or
/// [`DynamicObject`](kube::api::DynamicObject).
///
/// # The protocol
///
/// ```text
///  ensure(obj):   key = <prefix>-<uid>
///    1. observe(key) ── found ──▶ record id (unless recorded) ──▶ Existing | Adopted
///         │ none
///    2. record key (unless recorded)
///    3. create(key, spec) ── error ──▶ observe(key) ── found ──▶ record id ──▶ Adopted
///         │ ok                                        └ none ──▶ the error
///    4. record id ──▶ Created
///
///  delete(obj):
///    1. observe(key) ── none ──▶ Gone
///    2. delete(key, resource) ── ok ──▶ Requested
///         └ error ──▶ observe(key) ── none ──▶ Gone;  found ──▶ the error
/// ```
///
/// # Guarantees
///
/// - **At most one resource per key.** A crash (or a cancelled future) between any two
///   steps leaves either nothing, or one resource findable by the key, which the next
///   run adopts: before the key is recorded nothing exists; a create whose response
///   was lost left a resource that `observe(key)` finds; a missing id record is
///   rewritten. Nothing stored on the object is needed to decide, so a stuck
///   "create pending" state, as in crossplane-runtime#340, cannot arise.
/// - **Deletes are idempotent:** a resource that is not there counts as deleted, and
///   a delete that fails because it is already gone reads as [`Deletion::Gone`].
/// - Writes to the object happen only when something changes: an existing, recorded
///   resource costs one `observe` and no write.
///
/// # Caveats
///
/// - The guarantees hold only if [`ExternalClient`] keeps its contract: `observe(key)`
///   finds what `create(key, ..)` made, read-your-writes, or `create` deduplicates on
///   the key. An eventually consistent search index without deduplication can yield a
///   duplicate after a lost response.
/// - Two writers reconciling one object at once (two operator replicas without leader
///   election) can both see "none" and both create, unless the system refuses a second
///   create with the same key (a unique name does): then the loser's create fails and
///   it adopts the winner's resource.
/// - The key is stable for the object's lifetime. A spec change does not make a new
///   resource: update the existing one (with the resource `ensure` returns).
/// - Recording is a courtesy (see [`Journal`]); the recorded id is what people see,
///   the key is what the protocol trusts.
///
/// # Examples
///
/// ```
/// # use std::{collections::BTreeMap, sync::Mutex};
/// # use kube_reconcile::{ErrorClass, external::{ExternalClient, IdempotencyKey}};
/// # #[derive(Default)]
/// # struct Buckets(Mutex<BTreeMap<String, String>>);
/// # impl ExternalClient for Buckets {
/// #     type Spec = str;
/// #     type Resource = (String, String);
/// #     type Error = ErrorClass;
/// #     async fn observe(&self, key: &IdempotencyKey) -> Result<Option<Self::Resource>, ErrorClass> {
/// #         Ok(self.0.lock().unwrap().get(key.as_str()).map(|r| (key.to_string(), r.clone())))
/// #     }
/// #     async fn create(&self, key: &IdempotencyKey, region: &str) -> Result<Self::Resource, ErrorClass> {
/// #         let mut b = self.0.lock().unwrap();
/// #         let r = b.entry(key.to_string()).or_insert_with(|| region.to_owned());
/// #         Ok((key.to_string(), r.clone()))
/// #     }
/// #     async fn delete(&self, key: &IdempotencyKey, _: &Self::Resource) -> Result<(), ErrorClass> {
/// #         self.0.lock().unwrap().remove(key.as_str());
/// #         Ok(())
/// #     }
/// #     fn id(&self, bucket: &Self::Resource) -> String { bucket.0.clone() }
/// # }
/// use k8s_openapi::api::core::v1::ConfigMap;
/// use kube_reconcile::external::{Deletion, Ensured, ExternalResource, NoJournal};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let buckets = ExternalResource::new("bucket", Buckets::default(), NoJournal)?;
/// let mut cm = ConfigMap::default();
/// cm.metadata.uid = Some("u-1".into());
///
/// assert!(buckets.ensure(&cm, "eu-west-1").await.unwrap().is_created());
/// // Again (a requeue, a restart, another replica): found, not created twice.
/// let again = buckets.ensure(&cm, "eu-west-1").await.unwrap();
/// assert_eq!(again, Ensured::Adopted(("bucket-u-1".into(), "eu-west-1".into())));
/// assert_eq!(buckets.client().0.lock().unwrap().len(), 1);
///
/// assert!(matches!(buckets.delete(&cm).await.unwrap(), Deletion::Requested(_)));
/// assert_eq!(buckets.delete(&cm).await.unwrap(), Deletion::Gone); // gone counts as done
/// # Ok(()) }
/// ```
pub struct ExternalResource<C, J> {
    prefix: Arc<str>,
    client: C,
    journal: J,
    gate: Option<ExternalDependency>,
}

impl<C, J> ExternalResource<C, J> {
    /// External resources called `prefix`, made through `client`, recorded by `journal`.
    ///
    /// # Errors
    ///
    /// [`KeyError::InvalidPrefix`] unless `prefix` is lowercase letters, digits and
    /// `-`, starts with a letter, ends with a letter or digit, and has at most 26
    /// characters (so every key is a DNS label).
    pub fn new(prefix: &str, client: C, journal: J) -> Result<Self, KeyError> {
        validate_prefix(prefix)?;
        Ok(ExternalResource {
            prefix: prefix.into(),
            client,
            journal,
            gate: None,
        })
    }

    /// Makes every call to the external system (each observe, create and delete) go
    /// through `dependency`: each admitted by its breaker and recorded on it by itself.
    /// The budget is asked once per `ensure` or `delete`, for the two calls it makes
    /// (observe, then create or delete), so a unit of work that got its turn is not cut
    /// in half by another caller taking the second cell.
    ///
    /// A call the dependency holds back fails the `ensure` or `delete` with
    /// [`ExternalError::Unavailable`] before it is made; inside a phase handler or
    /// cleanup the engine turns that into the right transition by itself (see
    /// [`Transition::held`](crate::phase::Transition::held)).
    #[must_use]
    pub fn through(mut self, dependency: ExternalDependency) -> Self {
        self.gate = Some(dependency);
        self
    }

    /// The dependency the calls go through, if any.
    pub const fn dependency(&self) -> Option<&ExternalDependency> {
        self.gate.as_ref()
    }

    /// The prefix of the keys.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The external client.
    pub const fn client(&self) -> &C {
        &self.client
    }

    /// The journal.
    pub const fn journal(&self) -> &J {
        &self.journal
    }

    /// The idempotency key of `obj`'s resource.
    ///
    /// # Errors
    ///
    /// [`KeyError::MissingUid`] if `obj` was never stored by an API server.
    pub fn key<K: Resource>(&self, obj: &K) -> Result<IdempotencyKey, KeyError> {
        IdempotencyKey::for_object(&self.prefix, obj)
    }
}

impl<C: ExternalClient, J> ExternalResource<C, J> {
    /// Makes sure `obj`'s resource exists: finds it by key and adopts it, or creates it
    /// from `spec`; records the key before creating and the id after.
    ///
    /// See the [type documentation](ExternalResource) for the protocol, its guarantees
    /// and caveats.
    ///
    /// # Errors
    ///
    /// [`ExternalError::Key`] if `obj` has no UID, [`ExternalError::Client`] if a call
    /// to the system failed, [`ExternalError::Journal`] if recording failed. Every error
    /// is safe to retry: the next call resumes from whatever step was reached.
    pub async fn ensure<K>(
        &self,
        obj: &K,
        spec: &C::Spec,
    ) -> Result<Ensured<C::Resource>, ExternalError<C::Error, J::Error>>
    where
        K: Resource + Sync,
        J: Journal<K>,
    {
        // The journal's second write is guarded by its first.
        crate::scope::within(self.ensure_once(obj, spec)).await
    }

    async fn ensure_once<K>(
        &self,
        obj: &K,
        spec: &C::Spec,
    ) -> Result<Ensured<C::Resource>, ExternalError<C::Error, J::Error>>
    where
        K: Resource + Sync,
        J: Journal<K>,
    {
        let key = self.key(obj).map_err(ExternalError::Key)?;
        if let Some(found) = self.send(Some(UNIT), self.client.observe(&key)).await? {
            return self.adopt(obj, &key, found).await;
        }
        if !self.journal.has_key(obj, &key) {
            self.journal
                .record_key(obj, &key)
                .await
                .map_err(ExternalError::Journal)?;
        }
        tracing::debug!(key = %key, "creating external resource");
        let created = match self.send(None, self.client.create(&key, spec)).await {
            Ok(created) => created,
            Err(ExternalError::Client(error)) => {
                // The create may have happened (a lost response, a lost race with
                // another writer, a duplicate key refused): look before failing.
                return match self
                    .send::<_, _, J::Error>(Some(NonZeroU32::MIN), self.client.observe(&key))
                    .await
                {
                    Ok(Some(found)) => {
                        tracing::debug!(key = %key, error = %error, "create failed but the resource exists; adopting it");
                        self.adopt(obj, &key, found).await
                    }
                    _ => Err(ExternalError::Client(error)),
                };
            }
            Err(other) => return Err(other),
        };
        let id = self.client.id(&created);
        self.journal
            .record_id(obj, &key, &id)
            .await
            .map_err(ExternalError::Journal)?;
        tracing::info!(key = %key, id = %id, "created external resource");
        Ok(Ensured::Created(created))
    }

    /// Makes sure `obj`'s resource is gone: a resource that is not there counts as
    /// deleted.
    ///
    /// # Errors
    ///
    /// [`ExternalError::Key`] if `obj` has no UID, [`ExternalError::Client`] if a call
    /// failed and the resource still exists. Safe to retry.
    pub async fn delete<K>(
        &self,
        obj: &K,
    ) -> Result<Deletion<C::Resource>, ExternalError<C::Error, J::Error>>
    where
        K: Resource + Sync,
        J: Journal<K>,
    {
        let key = self.key(obj).map_err(ExternalError::Key)?;
        let Some(found) = self.send(Some(UNIT), self.client.observe(&key)).await? else {
            return Ok(Deletion::Gone);
        };
        match self.send(None, self.client.delete(&key, &found)).await {
            Ok(()) => {
                tracing::info!(key = %key, id = %self.client.id(&found), "deleted external resource");
                Ok(Deletion::Requested(found))
            }
            Err(ExternalError::Client(error)) => {
                match self
                    .send::<_, _, J::Error>(Some(NonZeroU32::MIN), self.client.observe(&key))
                    .await
                {
                    Ok(None) => Ok(Deletion::Gone),
                    _ => Err(ExternalError::Client(error)),
                }
            }
            Err(other) => Err(other),
        }
    }

    /// One call to the external system, through the dependency if there is one: the
    /// first call of a unit of work takes the budget cells of the whole unit (`cells`),
    /// later ones (`cells` is `None`) only a breaker permit, and each call is recorded
    /// on the breaker by itself.
    async fn send<T, F, JE>(
        &self,
        cells: Option<NonZeroU32>,
        call: F,
    ) -> Result<T, ExternalError<C::Error, JE>>
    where
        F: Future<Output = Result<T, C::Error>>,
    {
        let Some(gate) = &self.gate else {
            return call.await.map_err(ExternalError::Client);
        };
        let admission = match cells {
            Some(cells) => gate.admit_n(cells).await,
            None => gate.admit_prepaid(),
        };
        match admission {
            Admission::Ready(pass) => pass.call(call).await.map_err(ExternalError::Client),
            Admission::Unavailable(unavailable) => {
                Err(ExternalError::Unavailable(Box::new(unavailable)))
            }
        }
    }

    async fn adopt<K>(
        &self,
        obj: &K,
        key: &IdempotencyKey,
        found: C::Resource,
    ) -> Result<Ensured<C::Resource>, ExternalError<C::Error, J::Error>>
    where
        K: Resource + Sync,
        J: Journal<K>,
    {
        let id = self.client.id(&found);
        if self.journal.recorded_id(obj, key).as_deref() == Some(id.as_str()) {
            return Ok(Ensured::Existing(found));
        }
        self.journal
            .record_id(obj, key, &id)
            .await
            .map_err(ExternalError::Journal)?;
        tracing::info!(key = %key, id = %id, "adopted external resource");
        Ok(Ensured::Adopted(found))
    }
}

impl<C, J> fmt::Debug for ExternalResource<C, J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExternalResource")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}
