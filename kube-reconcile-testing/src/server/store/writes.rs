//! Writes to the store: create, update, commit, remove, each recorded in the history that
//! watches and lists at an older version read.

use std::{collections::BTreeSet, sync::Arc};

use serde_json::{Value, json};

use super::{
    super::{
        error::ApiError,
        meta::{finalizers, meta_mut, meta_str, now_rfc3339, spec_changed},
        resources::ResourceType,
    },
    EventType, ObjKey, Record, State, WriteOptions, without_rv,
};

impl State {
    /// Creates an object. `obj` is already in storage form and admitted.
    pub(crate) fn create(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> Result<Arc<Value>, ApiError> {
        let name = meta_str(&obj, "name").unwrap_or_default().to_string();
        let key = (ns.unwrap_or_default().to_string(), name.clone());
        if self.bucket(rt).is_some_and(|b| b.contains_key(&key)) {
            return Err(ApiError::already_exists(&rt.group, &rt.plural, &name));
        }
        {
            let meta = meta_mut(&mut obj);
            meta.insert("uid".into(), json!(super::super::meta::new_uid()));
            meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
            meta.remove("deletionTimestamp");
            meta.remove("deletionGracePeriodSeconds");
            if rt.generation {
                meta.insert("generation".into(), json!(1));
            } else {
                meta.remove("generation");
            }
        }
        if opts.dry_run {
            return Ok(Arc::new(obj));
        }
        Ok(self.commit(rt, key, None, obj))
    }

    /// Replaces an object (PUT, or the result of a patch). `status_only` writes only `.status`.
    #[allow(
        clippy::too_many_lines,
        reason = "the update rules in the order the real server applies them"
    )]
    pub(crate) fn update(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        mut new: Value,
        status_only: bool,
        opts: &WriteOptions,
    ) -> Result<Arc<Value>, ApiError> {
        let old = self.get(rt, ns, name)?;
        if let Some(rv) = meta_str(&new, "resourceVersion").filter(|rv| !rv.is_empty())
            && Some(rv) != meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::stale(&rt.group, &rt.plural, name));
        }
        if let Some(uid) = meta_str(&new, "uid").filter(|u| !u.is_empty())
            && Some(uid) != meta_str(&old, "uid")
        {
            return Err(ApiError::conflict(
                &rt.group,
                &rt.plural,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&old, "uid").unwrap_or_default()
                ),
            ));
        }
        if rt.status_subresource {
            if status_only {
                // A status write changes only .status.
                let status = new.get("status").cloned();
                new = (*old).clone();
                match status {
                    Some(s) => new["status"] = s,
                    None => {
                        if let Some(o) = new.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
            } else {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Some(o) = new.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
            }
        }
        // Server-owned metadata comes from the stored object.
        let deleting = old.pointer("/metadata/deletionTimestamp").is_some();
        {
            let old_meta = old
                .get("metadata")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let meta = meta_mut(&mut new);
            for field in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "namespace",
                "name",
            ] {
                match old_meta.get(field) {
                    Some(v) => meta.insert(field.into(), v.clone()),
                    None => meta.remove(field),
                };
            }
            meta.insert(
                "resourceVersion".into(),
                old_meta
                    .get("resourceVersion")
                    .cloned()
                    .unwrap_or(Value::Null),
            );
        }
        if deleting {
            let before: BTreeSet<String> = finalizers(&old).into_iter().collect();
            if finalizers(&new).iter().any(|f| !before.contains(f)) {
                return Err(ApiError::invalid(
                    &rt.kind,
                    &rt.group,
                    name,
                    &[super::super::error::FieldError::new(
                        "metadata.finalizers",
                        super::super::error::FieldErrorKind::Forbidden,
                        "no new finalizers can be added if the object is being deleted",
                    )],
                ));
            }
        }
        if rt.generation && spec_changed(&old, &new, rt.status_subresource) {
            let generation = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            meta_mut(&mut new).insert("generation".into(), json!(generation + 1));
        }
        if without_rv(&new) == without_rv(&old) {
            return Ok(old);
        }
        if opts.dry_run {
            return Ok(Arc::new(new));
        }
        let key = (ns.unwrap_or_default().to_string(), name.to_string());
        if deleting && finalizers(&new).is_empty() {
            return Ok(self.remove(rt, &key, Some(new)));
        }
        Ok(self.commit(rt, key, Some(old), new))
    }

    /// Stores `new` with the next resource version and tells the watchers.
    pub(crate) fn commit(
        &mut self,
        rt: &ResourceType,
        key: ObjKey,
        old: Option<Arc<Value>>,
        mut new: Value,
    ) -> Arc<Value> {
        self.rv += 1;
        meta_mut(&mut new).insert("resourceVersion".into(), json!(self.rv.to_string()));
        let new = Arc::new(new);
        if let Some(old) = &old {
            self.unindex(rt, &key, old);
        }
        self.index(rt, &key, &new);
        self.objects
            .entry(Arc::clone(&rt.storage))
            .or_default()
            .insert(key, Arc::clone(&new));
        let event = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(rt, event, Arc::clone(&new), old);
        self.after_write(rt, &new);
        new
    }

    /// Removes an object for good (no finalizers left), then collects its dependents.
    pub(crate) fn remove(
        &mut self,
        rt: &ResourceType,
        key: &ObjKey,
        last: Option<Value>,
    ) -> Arc<Value> {
        let Some(old) = self
            .objects
            .get_mut(&rt.storage)
            .and_then(|b| b.remove(key))
        else {
            return Arc::new(last.unwrap_or(Value::Null));
        };
        self.unindex(rt, key, &old);
        self.rv += 1;
        let mut gone = last.unwrap_or_else(|| (*old).clone());
        meta_mut(&mut gone).insert("resourceVersion".into(), json!(self.rv.to_string()));
        let gone = Arc::new(gone);
        self.record(rt, EventType::Deleted, Arc::clone(&gone), Some(old));
        self.after_remove(rt, &gone);
        gone
    }

    fn record(
        &mut self,
        rt: &ResourceType,
        event: EventType,
        object: Arc<Value>,
        old: Option<Arc<Value>>,
    ) {
        let record = Arc::new(Record {
            rv: self.rv,
            storage: Arc::clone(&rt.storage),
            event,
            object,
            old,
        });
        if self.log.len() == self.log_capacity
            && let Some(dropped) = self.log.pop_front()
        {
            self.oldest_rv = dropped.rv;
        }
        self.log.push_back(Arc::clone(&record));
        let _ = self.tx.send(record);
    }
}
