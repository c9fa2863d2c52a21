//! The exactly-once protocol of [`Dependency::ensure`] and [`Dependency::delete`].

use std::{future::Future, num::NonZeroU32};

use kube::Resource;

use super::{
    client::ExactlyOnce,
    error::ExternalError,
    gate::Admission,
    handle::Dependency,
    key::IdempotencyKey,
    outcome::{Deletion, Provisioned},
};

/// The calls of an `ensure` or a `delete` that the budget pays for at once: an observe,
/// then a create or a delete.
const UNIT: NonZeroU32 = NonZeroU32::new(2).expect("two is not zero");

impl<C: ExactlyOnce> Dependency<C> {
    /// The idempotency key of `obj`'s resource: `<prefix>-<uid>`.
    ///
    /// # Errors
    ///
    /// [`ExternalError::MissingUid`] or [`ExternalError::InvalidPrefix`].
    pub(crate) fn key<K: Resource>(
        &self,
        obj: &K,
    ) -> Result<IdempotencyKey, ExternalError<C::Error>> {
        Ok(IdempotencyKey::derive(self.client().key_prefix(), obj)?)
    }

    /// Makes sure `obj`'s resource exists: found by its idempotency key and adopted, or
    /// created from `spec`. Never created twice, whatever crashes in between.
    ///
    /// The key is `<prefix>-<uid>` ([`ExactlyOnce::key_prefix`], the object's UID). Works
    /// for any kind `K`, typed or [`DynamicObject`](kube::api::DynamicObject). Nothing is
    /// written to the object: record what the handler needs (the external id) in the status
    /// its transition carries, which goes out in the engine's one write.
    ///
    /// # The protocol
    ///
    /// ```text
    ///  ensure(obj):   key = <prefix>-<uid>
    ///    1. observe(key) ── found ──▶ Found
    ///         │ none
    ///    2. create(key, spec) ── error ──▶ observe(key) ── found ──▶ Found
    ///         │ ok                                        └ none ──▶ the error
    ///    3. Created
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
    ///   run adopts: a create whose response was lost left a resource that `observe(key)`
    ///   finds. Nothing stored on the object is needed to decide, so a stuck
    ///   "create pending" state, as in crossplane-runtime#340, cannot arise.
    /// - **Deletes are idempotent:** a resource that is not there counts as deleted, and
    ///   a delete that fails because it is already gone reads as [`Deletion::Gone`].
    /// - An existing resource costs one `observe`.
    /// - **Per-call accounting.** Each call (observe, create, delete) is admitted by the
    ///   breaker and recorded on it by itself; the budget is asked once per `ensure` or
    ///   `delete`, for the two calls it makes, so a unit of work that got its turn is not
    ///   cut in half by another object taking the second cell.
    ///
    /// # Caveats
    ///
    /// - The guarantees hold only if [`ExactlyOnce`] keeps its contract: `observe(key)`
    ///   finds what `create(key, ..)` made, read-your-writes, or `create` deduplicates on
    ///   the key. An eventually consistent search index without deduplication can yield a
    ///   duplicate after a lost response.
    /// - Two writers reconciling one object at once (two operator replicas without leader
    ///   election) can both see "none" and both create, unless the system refuses a second
    ///   create with the same key (a unique name does): then the loser's create fails and
    ///   it adopts the winner's resource.
    /// - The key is stable for the object's lifetime. A spec change does not make a new
    ///   resource: update the existing one (with the resource `ensure` returns).
    ///
    /// # Errors
    ///
    /// [`ExternalError::MissingUid`] if `obj` was never stored, [`ExternalError::InvalidPrefix`]
    /// for a bad [`key_prefix`](ExactlyOnce::key_prefix), [`ExternalError::Unavailable`] if
    /// the dependency held a call back, [`ExternalError::Call`] if a call failed. Every error
    /// is safe to retry: the next call resumes from whatever step was reached.
    ///
    pub async fn ensure<K: Resource + Sync>(
        &self,
        obj: &K,
        spec: &C::Spec,
    ) -> Result<Provisioned<C::Resource>, ExternalError<C::Error>> {
        let client = self.client();
        let key = self.key(obj)?;
        if let Some(found) = self.send(Some(UNIT), client.observe(&key)).await? {
            return Ok(Provisioned::Found(found));
        }
        tracing::debug!(key = %key, "creating external resource");
        match self.send(None, client.create(&key, spec)).await {
            Ok(created) => {
                tracing::info!(key = %key, id = client.id(&created).map(tracing::field::display), "created external resource");
                Ok(Provisioned::Created(created))
            }
            Err(ExternalError::Call(error)) => {
                // The create may have happened (a lost response, a lost race with
                // another writer, a duplicate key refused): look before failing.
                match self.send(Some(NonZeroU32::MIN), client.observe(&key)).await {
                    Ok(Some(found)) => {
                        tracing::debug!(key = %key, error = %error, "create failed but the resource exists; adopting it");
                        Ok(Provisioned::Found(found))
                    }
                    _ => Err(ExternalError::Call(error)),
                }
            }
            Err(other) => Err(other),
        }
    }

    /// Makes sure `obj`'s resource is gone: a resource that is not there counts as
    /// deleted. The calls are admitted and recorded as for [`ensure`](Self::ensure).
    ///
    /// # Errors
    ///
    /// As for [`ensure`](Self::ensure); a failed call whose resource turns out to be
    /// gone is [`Deletion::Gone`], not an error. Safe to retry.
    pub async fn delete<K: Resource + Sync>(
        &self,
        obj: &K,
    ) -> Result<Deletion<C::Resource>, ExternalError<C::Error>> {
        let client = self.client();
        let key = self.key(obj)?;
        let Some(found) = self.send(Some(UNIT), client.observe(&key)).await? else {
            return Ok(Deletion::Gone);
        };
        match self.send(None, client.delete(&key, &found)).await {
            Ok(()) => {
                tracing::info!(key = %key, id = client.id(&found).map(tracing::field::display), "deleted external resource");
                Ok(Deletion::Requested(found))
            }
            Err(ExternalError::Call(error)) => {
                match self.send(Some(NonZeroU32::MIN), client.observe(&key)).await {
                    Ok(None) => Ok(Deletion::Gone),
                    _ => Err(ExternalError::Call(error)),
                }
            }
            Err(other) => Err(other),
        }
    }

    /// One call: the first call of a unit of work takes the budget cells of the whole
    /// unit (`cells`), later ones (`cells` is `None`) only a breaker permit, and each
    /// call is recorded on the breaker by itself.
    async fn send<T, F>(
        &self,
        cells: Option<NonZeroU32>,
        call: F,
    ) -> Result<T, ExternalError<C::Error>>
    where
        F: Future<Output = Result<T, C::Error>>,
    {
        let admission = match cells {
            Some(cells) => self.gate.admit_n(cells).await,
            None => self.gate.admit_prepaid(),
        };
        match admission {
            Admission::Ready(pass) => pass.call(call).await.map_err(ExternalError::Call),
            Admission::Unavailable(unavailable) => {
                Err(ExternalError::Unavailable(Box::new(unavailable)))
            }
        }
    }
}
