//! The object store: every object of every kind, the global resource version, and the
//! history that watches resume from.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    sync::Arc,
};

use serde_json::Value;
use tokio::sync::broadcast;

use super::{
    error::ApiError,
    meta::{meta_str, owner_uids},
    resources::{ResourceType, built_ins},
};

mod writes;

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
    /// Signs and reviews service-account tokens.
    pub(crate) tokens: super::tokens::Tokens,
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
            tokens: super::tokens::Tokens::default(),
        };
        for rt in built_ins() {
            state.register(rt);
        }
        super::bootstrap::populate(&mut state);
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
