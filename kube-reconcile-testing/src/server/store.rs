//! The object store: every object of every kind, the global resource version, and the
//! history that watches resume from.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    sync::Arc,
};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::{
    error::ApiError,
    meta::{finalizers, meta_mut, meta_str, now_rfc3339, owner_uids, spec_changed},
    resources::{ResourceType, built_ins},
};

/// `(namespace, name)`; the namespace is empty for cluster-scoped objects.
pub(crate) type ObjKey = (String, String);

/// A watch event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One change, as kept in the history and sent to watchers.
#[derive(Debug)]
pub(crate) struct Record {
    pub(crate) rv: u64,
    pub(crate) storage: Arc<str>,
    pub(crate) event: EventType,
    pub(crate) object: Arc<Value>,
    /// The object before the change (for selector transitions on watches).
    pub(crate) old: Option<Arc<Value>>,
}

/// Options every write takes.
#[derive(Clone, Debug, Default)]
pub(crate) struct WriteOptions {
    pub(crate) dry_run: bool,
}

/// Everything the server holds. Guarded by one mutex; never held across an `.await`.
pub(crate) struct State {
    pub(crate) rv: u64,
    types: HashMap<(String, String, String), Arc<ResourceType>>,
    pub(crate) objects: HashMap<Arc<str>, BTreeMap<ObjKey, Arc<Value>>>,
    /// owner UID → dependents.
    dependents: HashMap<String, BTreeSet<(Arc<str>, ObjKey)>>,
    /// object UID → where it lives.
    uids: HashMap<String, (Arc<str>, ObjKey)>,
    log: VecDeque<Arc<Record>>,
    log_capacity: usize,
    /// Watches that start before this version get 410 Expired.
    pub(crate) oldest_rv: u64,
    pub(crate) tx: broadcast::Sender<Arc<Record>>,
}

impl State {
    pub(crate) fn new(log_capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(16 * 1024);
        let mut state = State {
            rv: 0,
            types: HashMap::new(),
            objects: HashMap::new(),
            dependents: HashMap::new(),
            uids: HashMap::new(),
            log: VecDeque::new(),
            log_capacity: log_capacity.max(1),
            oldest_rv: 0,
            tx,
        };
        for rt in built_ins() {
            state.register(rt);
        }
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let obj = json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": { "name": ns, "labels": { "kubernetes.io/metadata.name": ns } },
                "spec": { "finalizers": ["kubernetes"] },
                "status": { "phase": "Active" },
            });
            let rt = state
                .lookup("", "v1", "namespaces")
                .expect("invariant: namespaces are built in");
            state
                .create(&rt, None, obj, &WriteOptions::default())
                .expect("invariant: built-in namespaces are valid");
        }
        state.oldest_rv = state.rv;
        state
    }

    pub(crate) fn register(&mut self, rt: ResourceType) {
        self.objects.entry(Arc::clone(&rt.storage)).or_default();
        self.types.insert(
            (rt.group.clone(), rt.version.clone(), rt.plural.clone()),
            Arc::new(rt),
        );
    }

    pub(crate) fn unregister_group_plural(&mut self, group: &str, plural: &str) {
        self.types
            .retain(|(g, _, p), _| !(g == group && p == plural));
    }

    /// The resource type served at `group/version/plural` (also by singular or short name).
    pub(crate) fn lookup(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<Arc<ResourceType>> {
        if let Some(rt) =
            self.types
                .get(&(group.to_string(), version.to_string(), plural.to_string()))
        {
            return Some(Arc::clone(rt));
        }
        None
    }

    pub(crate) fn types(&self) -> impl Iterator<Item = &Arc<ResourceType>> {
        self.types.values()
    }

    fn bucket(&self, rt: &ResourceType) -> Option<&BTreeMap<ObjKey, Arc<Value>>> {
        self.objects.get(&rt.storage)
    }

    pub(crate) fn get(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Arc<Value>, ApiError> {
        let key = (ns.unwrap_or_default().to_string(), name.to_string());
        self.bucket(rt)
            .and_then(|b| b.get(&key))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))
    }

    /// Objects of a kind, in one namespace or all, in key order, starting after `after`.
    pub(crate) fn scan<'a>(
        &'a self,
        rt: &ResourceType,
        ns: Option<&'a str>,
        after: Option<&'a ObjKey>,
    ) -> impl Iterator<Item = &'a Arc<Value>> + 'a {
        self.objects
            .get(&rt.storage)
            .into_iter()
            .flat_map(move |b| super::snapshot::scan(b, ns, after))
    }

    pub(crate) fn namespace_state(&self, ns: &str) -> Option<&Arc<Value>> {
        self.objects
            .get("namespaces")
            .and_then(|b| b.get(&(String::new(), ns.to_string())))
    }

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
            meta.insert("uid".into(), json!(super::meta::new_uid()));
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
                    &[super::error::FieldError::new(
                        "metadata.finalizers",
                        super::error::FieldErrorKind::Forbidden,
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

    /// Drops all history; returns the version it was compacted to.
    pub(crate) fn compact(&mut self) -> u64 {
        self.log.clear();
        self.oldest_rv = self.rv;
        self.rv
    }

    /// History after `rv` for one storage, or `None` if it has been compacted away.
    pub(crate) fn history_after(&self, storage: &str, rv: u64) -> Option<Vec<Arc<Record>>> {
        if rv < self.oldest_rv {
            return None;
        }
        let start = self.log.partition_point(|r| r.rv <= rv);
        Some(
            self.log
                .range(start..)
                .filter(|r| &*r.storage == storage)
                .cloned()
                .collect(),
        )
    }

    fn index(&mut self, rt: &ResourceType, key: &ObjKey, obj: &Value) {
        if let Some(uid) = meta_str(obj, "uid") {
            self.uids
                .insert(uid.to_string(), (Arc::clone(&rt.storage), key.clone()));
        }
        for owner in owner_uids(obj) {
            self.dependents
                .entry(owner)
                .or_default()
                .insert((Arc::clone(&rt.storage), key.clone()));
        }
    }

    fn unindex(&mut self, rt: &ResourceType, key: &ObjKey, obj: &Value) {
        if let Some(uid) = meta_str(obj, "uid") {
            self.uids.remove(uid);
        }
        for owner in owner_uids(obj) {
            if let Some(set) = self.dependents.get_mut(&owner) {
                set.remove(&(Arc::clone(&rt.storage), key.clone()));
                if set.is_empty() {
                    self.dependents.remove(&owner);
                }
            }
        }
    }

    pub(crate) fn uid_location(&self, uid: &str) -> Option<(Arc<str>, ObjKey)> {
        self.uids.get(uid).cloned()
    }

    pub(crate) fn uid_exists(&self, uid: &str) -> bool {
        self.uids.contains_key(uid)
    }

    pub(crate) fn dependents_of(&self, uid: &str) -> Vec<(Arc<str>, ObjKey)> {
        self.dependents
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Any served type for a storage (to re-enter write paths for dependents).
    pub(crate) fn type_for_storage(&self, storage: &str) -> Option<Arc<ResourceType>> {
        self.types
            .values()
            .find(|t| &*t.storage == storage && !t.view)
            .cloned()
    }

    pub(crate) fn object_at(&self, storage: &str, key: &ObjKey) -> Option<Arc<Value>> {
        self.objects.get(storage).and_then(|b| b.get(key)).cloned()
    }
}

/// The object without `metadata.resourceVersion`, for no-op detection.
fn without_rv(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    v
}
