//! The writing strategies: server-side apply, create-or-patch, create-only.

use std::future::Future;

use kube::{
    Resource,
    api::{Patch, PatchParams, PostParams},
    core::DynamicObject,
};
use serde::Serialize;
use serde_json::{Value, json};

use super::{
    Children,
    cache::Cached,
    child::{Location, Target},
    error::EnsureError,
    outcome::Ensured,
    owned::{owned_diff, owned_fields},
    subset::subset_diff,
};

/// The result of one attempt: done, or a conflict worth one re-read and retry.
pub(crate) enum Step<T> {
    Done(T),
    Retry(kube::Error),
}

pub(crate) fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// Runs `once`, and once more after a conflict; a second conflict is [`EnsureError::Conflict`].
pub(crate) async fn retry_once<T, F, Fut>(
    kind: &str,
    shown: &str,
    mut once: F,
) -> Result<T, EnsureError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Step<T>, EnsureError>>,
{
    if let Step::Done(done) = once().await? {
        return Ok(done);
    }
    tracing::debug!(kind, object = %shown, "ensure: conflict, re-reading and retrying once");
    match once().await? {
        Step::Done(done) => Ok(done),
        Step::Retry(source) => Err(EnsureError::Conflict {
            kind: kind.to_string(),
            name: shown.to_string(),
            source: Box::new(source),
        }),
    }
}

pub(crate) fn api_error(
    action: &'static str,
    kind: &str,
    shown: &str,
) -> impl FnOnce(kube::Error) -> EnsureError + use<> {
    let (kind, name) = (kind.to_string(), shown.to_string());
    move |source| EnsureError::Api {
        action,
        kind,
        name,
        source: Box::new(source),
    }
}

pub(crate) fn to_json(obj: &DynamicObject, kind: &str, shown: &str) -> Result<Value, EnsureError> {
    serde_json::to_value(obj)
        .map_err(|e| api_error("serializing", kind, shown)(kube::Error::SerdeError(e)))
}

impl Children {
    /// Reads the live object as JSON, if it exists: from the watch cache of its kind
    /// when there is one that has seen our last write to it, else from the server. The
    /// first read of a kind starts its cache, when the operator caches children, and
    /// waits for its first list.
    pub(crate) async fn read(
        &self,
        location: &Location,
        name: &str,
    ) -> Result<Option<Value>, EnsureError> {
        let shown = location.display(name);
        let namespace = location.namespace.as_deref();
        if let Some(cache) = &self.cache {
            cache.until_synced(&location.resource).await;
            if let Cached::Hit(found) = cache.get(&location.resource, namespace, name) {
                return Ok(found);
            }
        }
        match location.api.get_opt(name).await {
            Ok(found) => {
                self.saw(location, name, found.as_ref());
                found
                    .map(|obj| to_json(&obj, &location.kind, &shown))
                    .transpose()
            }
            Err(e) => Err(api_error("getting", &location.kind, &shown)(e)),
        }
    }

    /// Tells the cache what the server answered for this child (`None`: no child).
    pub(crate) fn saw(&self, location: &Location, name: &str, object: Option<&DynamicObject>) {
        if let Some(cache) = &self.cache {
            cache.saw(
                &location.resource,
                location.namespace.as_deref(),
                name,
                object,
            );
        }
    }

    /// Tells the cache it may be behind for this child: a write conflicted, or a
    /// delete went through (the object may linger with finalizers).
    pub(crate) fn stale(&self, location: &Location, name: &str) {
        if let Some(cache) = &self.cache {
            cache.stale(&location.resource, location.namespace.as_deref(), name);
        }
    }

    /// Server-side applies `desired` with our field manager, unless the apply would
    /// change nothing.
    ///
    /// The apply is skipped when every field of `desired` already has its value in the
    /// live object and is owned by our field manager, and we own no field that `desired`
    /// no longer sets (read from `metadata.managedFields`). Otherwise one apply is sent,
    /// forced unless [`EnsureConfig::force`](super::EnsureConfig::force) is off.
    ///
    /// # Errors
    ///
    /// [`EnsureError::NotOwned`] when an object of that name exists and is not ours;
    /// [`EnsureError::MissingField`] when `desired` has no name (or no namespace can be
    /// found for it); [`EnsureError::Conflict`] after a conflict, a re-read and a second
    /// conflict (with `force` off, a field another manager owns is such a conflict);
    /// [`EnsureError::Api`] for other API errors.
    pub async fn apply<K>(&self, desired: &K) -> Result<Ensured, EnsureError>
    where
        K: Resource + Serialize,
        K::DynamicType: Default,
        K::Scope: 'static,
    {
        self.apply_with(desired, &K::DynamicType::default()).await
    }

    /// [`apply`](Self::apply) for a kind that needs runtime type information
    /// ([`DynamicObject`] and its `ApiResource`).
    ///
    /// # Errors
    ///
    /// As for [`apply`](Self::apply).
    pub async fn apply_with<K>(
        &self,
        desired: &K,
        dt: &K::DynamicType,
    ) -> Result<Ensured, EnsureError>
    where
        K: Resource + Serialize,
        K::Scope: 'static,
    {
        let target = self.target(desired, dt)?;
        let shown = target.display();
        retry_once(&target.location.kind, &shown, || self.apply_once(&target)).await
    }

    async fn apply_once(&self, t: &Target) -> Result<Step<Ensured>, EnsureError> {
        let kind = &t.location.kind;
        let shown = t.display();
        let manager = self.config.get_field_manager();
        let fields = match self.read(&t.location, &t.name).await? {
            None => None,
            Some(live) => {
                self.check_owner(&live, kind, &shown, true)?;
                let fields = owned_diff(&t.compare, &live, owned_fields(&live, manager));
                if fields.is_empty() {
                    tracing::trace!(kind = %kind, object = %shown, "ensure: unchanged");
                    return Ok(Step::Done(Ensured::Unchanged));
                }
                Some(fields)
            }
        };
        let mut params = PatchParams::apply(manager);
        if self.config.force_on() {
            params = params.force();
        }
        match t
            .location
            .api
            .patch(&t.name, &params, &Patch::Apply(&t.body))
            .await
        {
            Ok(written) => {
                self.saw(&t.location, &t.name, Some(&written));
                let outcome = fields.map_or(Ensured::Created, |fields| Ensured::Updated { fields });
                tracing::debug!(kind = %kind, object = %shown, %outcome, "ensure: applied");
                Ok(Step::Done(outcome))
            }
            Err(e) if status_code(&e) == Some(409) => {
                self.stale(&t.location, &t.name);
                Ok(Step::Retry(e))
            }
            Err(e) => Err(api_error("applying", kind, &shown)(e)),
        }
    }

    /// Creates `desired`, or patches the fields of the live object that differ from it.
    ///
    /// Only fields `desired` sets are compared, semantically (see the [module
    /// docs](super)), so fields the server defaulted never cause an update. When
    /// something differs, one JSON merge patch carrying the `resourceVersion` it was
    /// computed from is sent with our field manager.
    ///
    /// # Errors
    ///
    /// As for [`apply`](Self::apply): `NotOwned`, `MissingField`, `Conflict` (the object
    /// changed between the read and the patch twice in a row) and `Api`.
    pub async fn patch<K>(&self, desired: &K) -> Result<Ensured, EnsureError>
    where
        K: Resource + Serialize,
        K::DynamicType: Default,
        K::Scope: 'static,
    {
        self.patch_with(desired, &K::DynamicType::default()).await
    }

    /// [`patch`](Self::patch) for a kind that needs runtime type information.
    ///
    /// # Errors
    ///
    /// As for [`patch`](Self::patch).
    pub async fn patch_with<K>(
        &self,
        desired: &K,
        dt: &K::DynamicType,
    ) -> Result<Ensured, EnsureError>
    where
        K: Resource + Serialize,
        K::Scope: 'static,
    {
        let target = self.target(desired, dt)?;
        let shown = target.display();
        retry_once(&target.location.kind, &shown, || self.patch_once(&target)).await
    }

    async fn patch_once(&self, t: &Target) -> Result<Step<Ensured>, EnsureError> {
        let kind = &t.location.kind;
        let shown = t.display();
        let Some(live) = self.read(&t.location, &t.name).await? else {
            return self.create(t).await;
        };
        self.check_owner(&live, kind, &shown, true)?;
        let diff = subset_diff(&t.compare, &live);
        let Some(mut patch) = diff.patch else {
            tracing::trace!(kind = %kind, object = %shown, "ensure: unchanged");
            return Ok(Step::Done(Ensured::Unchanged));
        };
        if let (Some(rv), Some(obj)) = (
            live.pointer("/metadata/resourceVersion").cloned(),
            patch.as_object_mut(),
        ) && let Some(meta) = obj
            .entry("metadata")
            .or_insert_with(|| json!({}))
            .as_object_mut()
        {
            meta.insert("resourceVersion".into(), rv);
        }
        self.merge_patch(t, &patch, diff.fields, "patching").await
    }

    /// Sends `patch`, a JSON merge patch that carries the `resourceVersion` read, as our
    /// field manager: the child is then `Updated { fields }`; after a conflict (409) or a
    /// delete (404) since the read, it is read again.
    async fn merge_patch(
        &self,
        t: &Target,
        patch: &Value,
        fields: Vec<String>,
        action: &'static str,
    ) -> Result<Step<Ensured>, EnsureError> {
        let params = PatchParams {
            field_manager: Some(self.config.get_field_manager().to_string()),
            ..PatchParams::default()
        };
        match t
            .location
            .api
            .patch(&t.name, &params, &Patch::Merge(patch))
            .await
        {
            Ok(written) => {
                self.saw(&t.location, &t.name, Some(&written));
                let outcome = Ensured::Updated { fields };
                tracing::debug!(kind = %t.location.kind, object = %t.display(), %outcome, action, "ensure: written");
                Ok(Step::Done(outcome))
            }
            Err(e) if matches!(status_code(&e), Some(409 | 404)) => {
                self.stale(&t.location, &t.name);
                Ok(Step::Retry(e))
            }
            Err(e) => Err(api_error(action, &t.location.kind, &t.display())(e)),
        }
    }

    /// Creates `desired` if no object of that name exists; an existing object (of ours)
    /// is left exactly as it is.
    ///
    /// For values that must be generated once and then kept: a generated password, a
    /// random suffix, a certificate. The desired object may differ on every call (a new
    /// random password each time): only the first one is ever written.
    ///
    /// # Errors
    ///
    /// [`EnsureError::NotOwned`] when the existing object is not ours (so a password
    /// someone else made is never treated as ours); `MissingField`, `Conflict` and `Api`
    /// as for [`apply`](Self::apply).
    pub async fn create_only<K>(&self, desired: &K) -> Result<Ensured, EnsureError>
    where
        K: Resource + Serialize,
        K::DynamicType: Default,
        K::Scope: 'static,
    {
        self.create_only_with(desired, &K::DynamicType::default())
            .await
    }

    /// [`create_only`](Self::create_only) for a kind that needs runtime type information.
    ///
    /// # Errors
    ///
    /// As for [`create_only`](Self::create_only).
    pub async fn create_only_with<K>(
        &self,
        desired: &K,
        dt: &K::DynamicType,
    ) -> Result<Ensured, EnsureError>
    where
        K: Resource + Serialize,
        K::Scope: 'static,
    {
        let target = self.target(desired, dt)?;
        let shown = target.display();
        retry_once(&target.location.kind, &shown, || async {
            match self.read(&target.location, &target.name).await? {
                Some(live) => {
                    self.check_owner(&live, &target.location.kind, &shown, true)?;
                    self.follow_owner_label(&target, &live).await
                }
                None => self.create(&target).await,
            }
        })
        .await
    }

    /// A create-only child is never updated, except for the owner's label it carries
    /// ([`EnsureConfig::owner_label`](super::EnsureConfig)): when the owner moved to
    /// another shard, the child follows it (one merge patch of that label), so the new
    /// owner's child cache holds it.
    async fn follow_owner_label(
        &self,
        t: &Target,
        live: &Value,
    ) -> Result<Step<Ensured>, EnsureError> {
        let Some((key, value)) = &self.owner.label else {
            return Ok(Step::Done(Ensured::Unchanged));
        };
        let current = live
            .pointer("/metadata/labels")
            .and_then(|labels| labels.get(key.as_str()))
            .and_then(Value::as_str);
        if current == Some(value.as_str()) || !self.config.labels_on() {
            return Ok(Step::Done(Ensured::Unchanged));
        }
        let patch = json!({
            "metadata": {
                "resourceVersion": live.pointer("/metadata/resourceVersion"),
                "labels": { key.as_str(): value },
            },
        });
        let fields = vec![format!("metadata.labels[{key:?}]")];
        self.merge_patch(t, &patch, fields, "labelling").await
    }

    async fn create(&self, t: &Target) -> Result<Step<Ensured>, EnsureError> {
        let kind = &t.location.kind;
        let shown = t.display();
        let obj: DynamicObject = serde_json::from_value(t.body.clone())
            .map_err(|e| api_error("serializing", kind, &shown)(kube::Error::SerdeError(e)))?;
        let params = PostParams {
            dry_run: false,
            field_manager: Some(self.config.get_field_manager().to_string()),
        };
        match t.location.api.create(&params, &obj).await {
            Ok(written) => {
                self.saw(&t.location, &t.name, Some(&written));
                tracing::debug!(kind = %kind, object = %shown, "ensure: created");
                Ok(Step::Done(Ensured::Created))
            }
            // Created by someone else since we looked: read it and decide again.
            Err(e) if status_code(&e) == Some(409) => {
                self.stale(&t.location, &t.name);
                Ok(Step::Retry(e))
            }
            Err(e) => Err(api_error("creating", kind, &shown)(e)),
        }
    }
}
