//! Deletion, finalizers, garbage collection and namespace termination.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{
    error::ApiError,
    meta::{finalizers, meta_mut, meta_str, now_rfc3339, owner_uids},
    resources::ResourceType,
    store::{ObjKey, State, WriteOptions},
};

const FOREGROUND: &str = "foregroundDeletion";

/// How dependents are treated when their owner is deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Propagation {
    #[default]
    Background,
    Foreground,
    Orphan,
}

/// `DeleteOptions` the server honours.
#[derive(Clone, Debug, Default)]
pub(crate) struct DeleteOptions {
    pub(crate) propagation: Propagation,
    pub(crate) uid: Option<String>,
    pub(crate) resource_version: Option<String>,
    pub(crate) dry_run: bool,
}

impl DeleteOptions {
    pub(crate) fn from_body(body: &Value, dry_run: bool, policy_param: Option<&str>) -> Self {
        let policy = body
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .or(policy_param);
        let orphan = body.get("orphanDependents").and_then(Value::as_bool) == Some(true);
        DeleteOptions {
            propagation: match policy {
                Some("Foreground") => Propagation::Foreground,
                Some("Orphan") => Propagation::Orphan,
                _ if orphan => Propagation::Orphan,
                _ => Propagation::Background,
            },
            uid: body
                .pointer("/preconditions/uid")
                .and_then(Value::as_str)
                .map(str::to_string),
            resource_version: body
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string),
            dry_run: dry_run
                || body
                    .get("dryRun")
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty()),
        }
    }
}

/// What a DELETE did.
#[derive(Debug)]
pub(crate) enum Deleted {
    /// Finalizers remain: the object now has a `deletionTimestamp`.
    Pending(Arc<Value>),
    /// The object is gone.
    Gone(Arc<Value>),
}

fn ns_of(key: &ObjKey) -> Option<&str> {
    (!key.0.is_empty()).then_some(key.0.as_str())
}

impl State {
    pub(crate) fn delete(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        let obj = self.get(rt, ns, name)?;
        let uid = meta_str(&obj, "uid").unwrap_or_default().to_string();
        if let Some(want) = &opts.uid
            && *want != uid
        {
            // kube-apiserver names the kind here, not the resource.
            return Err(ApiError::conflict(
                &rt.group,
                &rt.kind,
                name,
                &format!(
                    "the UID in the precondition ({want}) does not match the UID in record ({uid}). The object might have been deleted and then recreated"
                ),
            ));
        }
        if let Some(want) = &opts.resource_version {
            let have = meta_str(&obj, "resourceVersion").unwrap_or_default();
            if want != have {
                return Err(ApiError::conflict(
                    &rt.group,
                    &rt.kind,
                    name,
                    &format!(
                        "the ResourceVersion in the precondition ({want}) does not match the ResourceVersion in record ({have}). The object might have been modified"
                    ),
                ));
            }
        }
        let key = (ns.unwrap_or_default().to_string(), name.to_string());
        let mut fins = finalizers(&obj);
        let is_namespace = rt.group.is_empty() && rt.plural == "namespaces";
        let has_dependents = !self.dependents_of(&uid).is_empty();
        if opts.propagation == Propagation::Foreground
            && has_dependents
            && !fins.iter().any(|f| f == FOREGROUND)
        {
            fins.push(FOREGROUND.to_string());
        }
        let waits = !fins.is_empty() || is_namespace;
        if opts.dry_run {
            return Ok(if waits {
                Deleted::Pending(obj)
            } else {
                Deleted::Gone(obj)
            });
        }
        if opts.propagation == Propagation::Orphan {
            self.orphan_dependents(&uid);
        }
        if !waits {
            return Ok(Deleted::Gone(self.remove(rt, &key, None)));
        }
        let already = obj.pointer("/metadata/deletionTimestamp").is_some();
        let mut new = (*obj).clone();
        {
            let meta = meta_mut(&mut new);
            if !already {
                meta.insert("deletionTimestamp".into(), json!(now_rfc3339()));
                meta.insert("deletionGracePeriodSeconds".into(), json!(0));
                if rt.generation {
                    let g = meta.get("generation").and_then(Value::as_i64).unwrap_or(0);
                    meta.insert("generation".into(), json!(g + 1));
                }
            }
            if !fins.is_empty() {
                meta.insert("finalizers".into(), json!(fins));
            }
        }
        if is_namespace {
            new["status"] = json!({ "phase": "Terminating" });
        }
        let new = if already && new == *obj {
            obj
        } else {
            self.commit(rt, key.clone(), Some(obj), new)
        };
        if opts.propagation == Propagation::Foreground {
            self.delete_dependents(&uid);
            self.finish_foreground(&uid);
        }
        if is_namespace {
            self.empty_namespace(name);
            self.finish_namespace(name);
        }
        Ok(match self.object_at(&rt.storage, &key) {
            Some(still) => Deleted::Pending(still),
            None => Deleted::Gone(new),
        })
    }

    /// Called after any write: CRD registration and termination bookkeeping.
    pub(crate) fn after_write(&mut self, rt: &ResourceType, obj: &Arc<Value>) {
        if rt.group == "apiextensions.k8s.io" && rt.plural == "customresourcedefinitions" {
            self.crd_written(obj);
        }
    }

    /// Called after an object is gone: garbage collection and waiting owners.
    pub(crate) fn after_remove(&mut self, rt: &ResourceType, gone: &Arc<Value>) {
        let uid = meta_str(gone, "uid").unwrap_or_default().to_string();
        // Background cascade: dependents with no owner left go too.
        for (storage, key) in self.dependents_of(&uid) {
            let Some(dep) = self.object_at(&storage, &key) else {
                continue;
            };
            if owner_uids(&dep).iter().all(|u| !self.uid_exists(u))
                && let Some(drt) = self.type_for_storage(&storage)
            {
                let _ = self.delete(&drt, ns_of(&key), &key.1, &DeleteOptions::default());
            }
        }
        for owner in owner_uids(gone) {
            self.finish_foreground(&owner);
        }
        if let Some(ns) = meta_str(gone, "namespace").filter(|_| rt.namespaced) {
            let ns = ns.to_string();
            self.finish_namespace(&ns);
        }
        if rt.group == "apiextensions.k8s.io" && rt.plural == "customresourcedefinitions" {
            self.crd_removed(gone);
        } else if !rt.built_in {
            let storage = Arc::clone(&rt.storage);
            self.finish_crd_cleanup(&storage);
        }
    }

    fn delete_dependents(&mut self, uid: &str) {
        for (storage, key) in self.dependents_of(uid) {
            if let Some(drt) = self.type_for_storage(&storage) {
                let _ = self.delete(&drt, ns_of(&key), &key.1, &DeleteOptions::default());
            }
        }
    }

    fn orphan_dependents(&mut self, uid: &str) {
        for (storage, key) in self.dependents_of(uid) {
            let (Some(drt), Some(dep)) = (
                self.type_for_storage(&storage),
                self.object_at(&storage, &key),
            ) else {
                continue;
            };
            let mut new = (*dep).clone();
            if let Some(refs) = new
                .pointer_mut("/metadata/ownerReferences")
                .and_then(Value::as_array_mut)
            {
                refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid));
            }
            let _ = self.update(
                &drt,
                ns_of(&key),
                &key.1,
                new,
                false,
                &WriteOptions::default(),
            );
        }
    }

    /// Removes the foreground finalizer from the owner `uid` once it has no dependents left.
    fn finish_foreground(&mut self, uid: &str) {
        if !self
            .dependents_of(uid)
            .iter()
            .all(|(s, k)| self.object_at(s, k).is_none())
        {
            return;
        }
        let Some((storage, key)) = self.locate(uid) else {
            return;
        };
        let Some(obj) = self.object_at(&storage, &key) else {
            return;
        };
        if !finalizers(&obj).iter().any(|f| f == FOREGROUND) {
            return;
        }
        let Some(rt) = self.type_for_storage(&storage) else {
            return;
        };
        let mut new = (*obj).clone();
        if let Some(f) = new
            .pointer_mut("/metadata/finalizers")
            .and_then(Value::as_array_mut)
        {
            f.retain(|x| x.as_str() != Some(FOREGROUND));
        }
        let _ = self.update(
            &rt,
            ns_of(&key),
            &key.1,
            new,
            false,
            &WriteOptions::default(),
        );
    }

    fn empty_namespace(&mut self, ns: &str) {
        let storages: Vec<Arc<str>> = self.objects.keys().cloned().collect();
        for storage in storages {
            let Some(rt) = self.type_for_storage(&storage) else {
                continue;
            };
            if !rt.namespaced {
                continue;
            }
            let keys: Vec<ObjKey> = self.objects[&storage]
                .keys()
                .filter(|(n, _)| n == ns)
                .cloned()
                .collect();
            for key in keys {
                let _ = self.delete(&rt, Some(ns), &key.1, &DeleteOptions::default());
            }
        }
    }

    /// Removes a terminating namespace once nothing is left in it.
    fn finish_namespace(&mut self, ns: &str) {
        let Some(obj) = self.namespace_state(ns).cloned() else {
            return;
        };
        if obj.pointer("/metadata/deletionTimestamp").is_none() {
            return;
        }
        if self
            .objects
            .values()
            .any(|b| b.keys().any(|(n, _)| n == ns))
        {
            return;
        }
        let Some(rt) = self.lookup("", "v1", "namespaces") else {
            return;
        };
        if finalizers(&obj).is_empty() {
            self.remove(&rt, &(String::new(), ns.to_string()), None);
        }
    }

    pub(crate) fn locate(&self, uid: &str) -> Option<(Arc<str>, ObjKey)> {
        self.uid_location(uid)
    }
}
