//! [`Journal`]: where the key and the external id are recorded on the object.

use std::{convert::Infallible, fmt, future::Future};

use kube::{
    Client, Resource,
    api::{Patch, PatchParams},
};
use serde_json::json;

use crate::error::Classify;

use super::key::IdempotencyKey;

/// The annotation domain of [`AnnotationJournal`].
pub const ANNOTATION_DOMAIN: &str = "external.kube-reconcile.dev";

/// Records, on the Kubernetes object, which external resource belongs to it.
///
/// [`ExternalResource`](super::ExternalResource) records the key before it creates and
/// the external id after. Both are for people and tools (`kubectl get -o yaml` shows
/// which external resource an object owns) and to spare writes; correctness never
/// depends on them: the key is derived from the UID, and the external system is
/// searched by it. A record that is lost, stale or never written costs at most one
/// more write on the next reconcile.
pub trait Journal<K>: Send + Sync {
    /// The error of a write.
    type Error: Classify + fmt::Debug + fmt::Display + Send + Sync + 'static;

    /// Whether `obj` already records `key`.
    fn has_key(&self, obj: &K, key: &IdempotencyKey) -> bool;

    /// The external id `obj` records for `key`, if any.
    fn recorded_id(&self, obj: &K, key: &IdempotencyKey) -> Option<String>;

    /// Records that a resource with `key` is about to be created for `obj`.
    fn record_key(
        &self,
        obj: &K,
        key: &IdempotencyKey,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Records that the resource with `key` exists and has the external `id` (and the
    /// key too, if it was not recorded).
    fn record_id(
        &self,
        obj: &K,
        key: &IdempotencyKey,
        id: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// Records the key and the external id as annotations on the object, with a JSON merge
/// patch: `external.kube-reconcile.dev/<prefix>-key` and `.../<prefix>-id`.
///
/// Works for any kind, typed or [`DynamicObject`](kube::api::DynamicObject), namespaced
/// or cluster-scoped: the request goes to the object's own namespace. Writes touch
/// metadata only, so they do not bump `metadata.generation`.
///
/// # Examples
///
/// ```
/// use k8s_openapi::api::core::v1::ConfigMap;
/// use kube::api::{ApiResource, DynamicObject};
/// use kube_reconcile::external::AnnotationJournal;
///
/// # fn typed(client: kube::Client) {
/// let typed = AnnotationJournal::<ConfigMap>::new(client.clone());
/// let ar = ApiResource::erase::<ConfigMap>(&());
/// let dynamic = AnnotationJournal::<DynamicObject>::with_dyntype(client, ar);
/// # }
/// assert_eq!(AnnotationJournal::<ConfigMap>::key_annotation("db"), "external.kube-reconcile.dev/db-key");
/// assert_eq!(AnnotationJournal::<ConfigMap>::id_annotation("db"), "external.kube-reconcile.dev/db-id");
/// ```
pub struct AnnotationJournal<K: Resource> {
    client: Client,
    dyntype: K::DynamicType,
}

impl<K: Resource> AnnotationJournal<K>
where
    K::DynamicType: Default,
{
    /// A journal writing through `client`.
    pub fn new(client: Client) -> Self {
        Self::with_dyntype(client, K::DynamicType::default())
    }
}

impl<K: Resource> AnnotationJournal<K> {
    /// A journal for a kind only known at runtime.
    pub const fn with_dyntype(client: Client, dyntype: K::DynamicType) -> Self {
        AnnotationJournal { client, dyntype }
    }

    /// The annotation that records the key of the external resource `prefix`.
    pub fn key_annotation(prefix: &str) -> String {
        format!("{ANNOTATION_DOMAIN}/{prefix}-key")
    }

    /// The annotation that records the external id of the external resource `prefix`.
    pub fn id_annotation(prefix: &str) -> String {
        format!("{ANNOTATION_DOMAIN}/{prefix}-id")
    }

    fn annotation<'a>(obj: &'a K, name: &str) -> Option<&'a str> {
        obj.meta()
            .annotations
            .as_ref()
            .and_then(|a| a.get(name))
            .map(String::as_str)
    }

    /// Merge-patches `annotations`, guarded by the object's `resourceVersion` (or that
    /// of this reconcile's own last write to it), and notes the new one for the phase
    /// engine, whose next write it then guards: the journal never makes the engine's
    /// write conflict, and never writes over a change it has not seen.
    async fn patch(&self, obj: &K, annotations: serde_json::Value) -> Result<(), kube::Error> {
        let meta = obj.meta();
        let url = K::url_path(&self.dyntype, meta.namespace.as_deref());
        let guard = crate::scope::resource_version().or_else(|| meta.resource_version.clone());
        let patch = json!({ "metadata": { "annotations": annotations, "resourceVersion": guard } });
        let request = kube::core::Request::new(url)
            .patch(
                meta.name.as_deref().unwrap_or_default(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .map_err(kube::Error::BuildRequest)?;
        let written: kube::core::PartialObjectMeta<K> = self.client.request(request).await?;
        crate::scope::wrote(written.metadata.resource_version);
        Ok(())
    }
}

impl<K> Journal<K> for AnnotationJournal<K>
where
    K: Resource + Sync,
    K::DynamicType: Send + Sync,
{
    type Error = kube::Error;

    fn has_key(&self, obj: &K, key: &IdempotencyKey) -> bool {
        Self::annotation(obj, &Self::key_annotation(key.prefix())) == Some(key.as_str())
    }

    fn recorded_id(&self, obj: &K, key: &IdempotencyKey) -> Option<String> {
        if !self.has_key(obj, key) {
            // An id recorded under another key (a copied manifest, an old UID) is not ours.
            return None;
        }
        Self::annotation(obj, &Self::id_annotation(key.prefix())).map(str::to_owned)
    }

    async fn record_key(&self, obj: &K, key: &IdempotencyKey) -> Result<(), kube::Error> {
        let annotations = json!({ Self::key_annotation(key.prefix()): key.as_str() });
        self.patch(obj, annotations).await
    }

    async fn record_id(&self, obj: &K, key: &IdempotencyKey, id: &str) -> Result<(), kube::Error> {
        let annotations = json!({
            Self::key_annotation(key.prefix()): key.as_str(),
            Self::id_annotation(key.prefix()): id,
        });
        self.patch(obj, annotations).await
    }
}

impl<K: Resource> Clone for AnnotationJournal<K>
where
    K::DynamicType: Clone,
{
    fn clone(&self) -> Self {
        AnnotationJournal {
            client: self.client.clone(),
            dyntype: self.dyntype.clone(),
        }
    }
}

impl<K: Resource> fmt::Debug for AnnotationJournal<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnnotationJournal").finish_non_exhaustive()
    }
}

/// Records nothing: the protocol still creates exactly once, because the key is
/// derived, not stored. An existing resource then always reads as
/// [`Adopted`](super::Ensured::Adopted), never [`Existing`](super::Ensured::Existing).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoJournal;

impl<K: Sync> Journal<K> for NoJournal {
    type Error = Infallible;

    fn has_key(&self, _: &K, _: &IdempotencyKey) -> bool {
        false
    }

    fn recorded_id(&self, _: &K, _: &IdempotencyKey) -> Option<String> {
        None
    }

    async fn record_key(&self, _: &K, _: &IdempotencyKey) -> Result<(), Infallible> {
        Ok(())
    }

    async fn record_id(&self, _: &K, _: &IdempotencyKey, _: &str) -> Result<(), Infallible> {
        Ok(())
    }
}
