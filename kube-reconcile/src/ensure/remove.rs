//! Deleting children: ensure-absent and prune of orphans.

use kube::{
    Api, Resource,
    api::{DeleteParams, ListParams, Preconditions},
};

use super::{
    Children,
    error::EnsureError,
    outcome::Ensured,
    write::{Step, api_error, retry_once, status_code, to_json},
};

/// Objects listed per page while pruning.
const PAGE: u32 = 500;

fn delete_params(uid: Option<String>) -> DeleteParams {
    DeleteParams::background().preconditions(Preconditions {
        uid,
        resource_version: None,
    })
}

impl Children {
    /// Deletes the child `name` of kind `K` if it exists and is ours.
    ///
    /// The child is looked up in the owner's namespace (for a namespaced kind). The delete
    /// carries the uid that was checked, so an object recreated in between is not
    /// deleted by mistake; dependents are deleted in the background.
    ///
    /// Returns [`Ensured::Unchanged`] when there is nothing to delete,
    /// [`Ensured::Deleted`] when a delete was sent or the object is already being deleted
    /// (no second request is sent while finalizers run).
    ///
    /// # Errors
    ///
    /// [`EnsureError::NotOwned`] when the object is not ours (it is never deleted);
    /// `MissingField` for a namespaced kind when the owner is cluster-scoped;
    /// `Conflict` and `Api` as for [`apply`](Self::apply).
    pub async fn absent<K>(&self, name: &str) -> Result<Ensured, EnsureError>
    where
        K: Resource,
        K::DynamicType: Default,
        K::Scope: 'static,
    {
        self.absent_with::<K>(name, &K::DynamicType::default())
            .await
    }

    /// [`absent`](Self::absent) for a kind that needs runtime type information.
    ///
    /// # Errors
    ///
    /// As for [`absent`](Self::absent).
    pub async fn absent_with<K>(
        &self,
        name: &str,
        dt: &K::DynamicType,
    ) -> Result<Ensured, EnsureError>
    where
        K: Resource,
        K::Scope: 'static,
    {
        let location = self.locate::<K>(dt, None, false)?;
        let kind = location.kind.clone();
        let shown = location.display(name);
        retry_once(&kind, &shown, || async {
            let Some(live) = self.read(&location, name).await? else {
                return Ok(Step::Done(Ensured::Unchanged));
            };
            self.check_owner(&live, &kind, &shown, false)?;
            if live
                .pointer("/metadata/deletionTimestamp")
                .is_some_and(|t| !t.is_null())
            {
                return Ok(Step::Done(Ensured::Deleted));
            }
            let uid = live
                .pointer("/metadata/uid")
                .and_then(|u| u.as_str())
                .map(str::to_string);
            match location.api.delete(name, &delete_params(uid)).await {
                Ok(_) => {
                    self.stale(&location, name);
                    tracing::debug!(kind = %kind, object = %shown, "ensure: deleted");
                    Ok(Step::Done(Ensured::Deleted))
                }
                Err(e) if status_code(&e) == Some(404) => Ok(Step::Done(Ensured::Unchanged)),
                Err(e) if status_code(&e) == Some(409) => {
                    self.stale(&location, name);
                    Ok(Step::Retry(e))
                }
                Err(e) => Err(api_error("deleting", &kind, &shown)(e)),
            }
        })
        .await
    }

    /// Deletes this owner's children of kind `K` that carry its standard labels
    /// ([`selector`](Self::selector)) and whose names are not in `keep`.
    ///
    /// Returns the names deleted. Only children that are ours are deleted: an object
    /// with matching labels that another owner controls (or that we never wrote) is
    /// skipped, whatever its labels say. Objects already being deleted are skipped.
    ///
    /// # Errors
    ///
    /// [`EnsureError::Api`] when listing or a delete fails (objects deleted before the
    /// failure stay deleted; calling again converges).
    pub async fn prune<K>(&self, keep: &[impl AsRef<str>]) -> Result<Vec<String>, EnsureError>
    where
        K: Resource,
        K::DynamicType: Default,
        K::Scope: 'static,
    {
        self.prune_with::<K>(&K::DynamicType::default(), &self.selector(), keep)
            .await
    }

    /// [`prune`](Self::prune) with a selector of the caller's, for a kind that needs runtime
    /// type information.
    ///
    /// # Errors
    ///
    /// As for [`prune`](Self::prune).
    pub async fn prune_with<K>(
        &self,
        dt: &K::DynamicType,
        selector: &str,
        keep: &[impl AsRef<str>],
    ) -> Result<Vec<String>, EnsureError>
    where
        K: Resource,
        K::Scope: 'static,
    {
        let location = self.locate::<K>(dt, None, true)?;
        let kind = &location.kind;
        let list_error = || api_error("listing", kind, &location.display(&format!("[{selector}]")));
        let mut deleted = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut params = ListParams::default().labels(selector).limit(PAGE);
            if let Some(t) = &token {
                params = params.continue_token(t);
            }
            let page = location.api.list(&params).await.map_err(list_error())?;
            for obj in &page.items {
                let name = obj.metadata.name.clone().unwrap_or_default();
                if name.is_empty()
                    || keep.iter().any(|k| k.as_ref() == name)
                    || obj.metadata.deletion_timestamp.is_some()
                {
                    continue;
                }
                let namespace = obj.metadata.namespace.clone();
                let shown = match &namespace {
                    Some(ns) => format!("{ns}/{name}"),
                    None => name.clone(),
                };
                let live = to_json(obj, kind, &shown)?;
                if let Err(e) = self.check_owner(&live, kind, &shown, false) {
                    tracing::debug!(kind = %kind, object = %shown, error = %e, "ensure: prune skips an object that is not ours");
                    continue;
                }
                let api = match (&location.namespace, &namespace) {
                    (None, Some(ns)) => {
                        Api::namespaced_with(self.client.clone(), ns, &location.resource)
                    }
                    _ => location.api.clone(),
                };
                match api
                    .delete(&name, &delete_params(obj.metadata.uid.clone()))
                    .await
                {
                    Ok(_) => {
                        tracing::debug!(kind = %kind, object = %shown, "ensure: pruned");
                        deleted.push(name);
                    }
                    // Gone already, or replaced by a new object since the list.
                    Err(e) if matches!(status_code(&e), Some(404 | 409)) => {}
                    Err(e) => return Err(api_error("deleting", kind, &shown)(e)),
                }
            }
            token = page.metadata.continue_.filter(|t| !t.is_empty());
            if token.is_none() {
                break;
            }
        }
        Ok(deleted)
    }
}
