//! Read-your-writes for the objects the engine writes.
//!
//! A controller reconciles the object its watch cache holds. Right after the engine wrote
//! one (its finalizer, its status), the cache may not have seen that write yet: a child's
//! event can start the next reconcile first. Acting on that older copy would compute the
//! same write again and send it against the old `resourceVersion`, which the server refuses
//! with a conflict — a request wasted, a retry, and for the first write of an object a
//! second finalizer patch. So the engine remembers the `resourceVersion` the server
//! answered its last write of each object with, and a reconcile of an older copy does
//! nothing but wait for the cache (the watch event of that very write starts the next
//! reconcile). This is the idea of Kubernetes KEP-5647; `resourceVersion`s compare as
//! numbers, as etcd's revisions and the embedded server's do (KEP-5504). An object whose
//! version is not a number is never held back.
//!
//! An entry lives from a write until the cache shows it (the next reconcile of the object
//! forgets it then) or the object is gone, so the map holds the objects whose latest write
//! is in flight through the watch, not every object.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use kube::Resource;

/// How long a reconcile of a copy older than the engine's own write waits before looking
/// again, should the watch event of that write not start one sooner.
pub(super) const CACHE_BEHIND_RETRY: Duration = Duration::from_secs(1);

/// The `resourceVersion` of the engine's latest write of each object, by UID.
#[derive(Debug, Default)]
pub(super) struct OwnWrites(Mutex<HashMap<String, u64>>);

impl OwnWrites {
    /// Notes the object as the server answered a write of it.
    pub(super) fn wrote<K: Resource>(&self, answered: &K) {
        let meta = answered.meta();
        if let (Some(uid), Some(version)) = (meta.uid.as_ref(), version(answered)) {
            let mut written = self.lock();
            let entry = written.entry(uid.clone()).or_insert(version);
            *entry = (*entry).max(version);
        }
    }

    /// Whether `obj` is older than the engine's latest write of it (the cache has not
    /// caught up); once it is not, the write is forgotten.
    pub(super) fn behind<K: Resource>(&self, obj: &K) -> bool {
        let (Some(uid), Some(seen)) = (obj.meta().uid.as_ref(), version(obj)) else {
            return false;
        };
        let mut written = self.lock();
        match written.get(uid) {
            Some(&wrote) if seen < wrote => true,
            Some(_) => {
                written.remove(uid);
                false
            }
            None => false,
        }
    }

    /// Forgets the object (it is gone: its finalizer was removed).
    pub(super) fn forget<K: Resource>(&self, obj: &K) {
        if let Some(uid) = obj.meta().uid.as_ref() {
            self.lock().remove(uid);
        }
    }

    /// How many objects have a write the cache has not shown yet.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The object's `resourceVersion` as a number, if it is one.
fn version<K: Resource>(obj: &K) -> Option<u64> {
    obj.meta().resource_version.as_deref()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    use super::*;

    fn at(uid: &str, version: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                uid: Some(uid.to_owned()),
                resource_version: Some(version.to_owned()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        }
    }

    #[test]
    fn a_copy_older_than_the_last_write_is_behind_until_the_cache_shows_the_write() {
        let writes = OwnWrites::default();
        assert!(!writes.behind(&at("a", "3")), "nothing written yet");
        writes.wrote(&at("a", "5"));
        writes.wrote(&at("a", "7"));
        assert!(writes.behind(&at("a", "3")));
        assert!(writes.behind(&at("a", "5")), "the later write counts");
        assert!(!writes.behind(&at("b", "1")), "another object");
        assert!(!writes.behind(&at("a", "7")), "the cache caught up");
        assert_eq!(writes.len(), 0, "and the write is forgotten");
        assert!(!writes.behind(&at("a", "5")));
    }

    #[test]
    fn versions_that_are_not_numbers_never_hold_an_object_back() {
        let writes = OwnWrites::default();
        writes.wrote(&at("a", "7"));
        assert!(!writes.behind(&at("a", "opaque")));
        writes.wrote(&at("b", "opaque"));
        assert_eq!(writes.len(), 1, "only the numbered write is kept");
    }

    #[test]
    fn a_gone_object_is_forgotten() {
        let writes = OwnWrites::default();
        writes.wrote(&at("a", "7"));
        writes.forget(&at("a", "7"));
        assert_eq!(writes.len(), 0);
        assert!(!writes.behind(&at("a", "3")));
    }
}
