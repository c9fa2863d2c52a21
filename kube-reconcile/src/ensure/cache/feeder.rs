//! [`Feeder`]: a kind's watch events into its cache, each child compacted and packed.

use std::{
    collections::HashMap,
    sync::{Arc, PoisonError, atomic::Ordering},
};

use kube::{api::DynamicObject, core::ApiResource, runtime::watcher};

use super::{
    Name, Objects,
    packed::{Entry, Primer},
};

/// Keeps `objects` up to date from a watch's events; `manager`'s managed fields are the
/// only ones kept.
pub(super) struct Feeder {
    objects: Arc<Objects>,
    manager: String,
    /// The kind is `Secret`: its primer leaves out the data. Known from the watch, not
    /// from each object, because the objects of a list carry no kind.
    secrets: bool,
    /// The objects of a list in progress (a first list, or a relist after the watch
    /// expired), swapped in whole when it ends.
    listing: Option<HashMap<Name, Entry>>,
}

impl Feeder {
    /// A feeder of `objects`, the children of `resource` whose managed fields by
    /// `manager` are kept.
    pub(super) fn new(objects: Arc<Objects>, manager: &str, resource: &ApiResource) -> Self {
        Feeder {
            objects,
            manager: manager.to_owned(),
            secrets: resource.group.is_empty() && resource.kind == "Secret",
            listing: None,
        }
    }

    pub(super) fn on(&mut self, event: watcher::Event<DynamicObject>) {
        match event {
            watcher::Event::Init => self.listing = Some(HashMap::new()),
            watcher::Event::InitApply(obj) => {
                let (key, entry) = compact(&self.objects, &self.manager, self.secrets, obj);
                if let Some(listing) = &mut self.listing {
                    listing.insert(key, entry);
                }
            }
            watcher::Event::InitDone => {
                if let Some(listing) = self.listing.take() {
                    *self
                        .objects
                        .map
                        .write()
                        .unwrap_or_else(PoisonError::into_inner) = listing;
                }
                self.objects.synced.store(true, Ordering::Release);
                self.objects.settled.notify_waiters();
            }
            watcher::Event::Apply(obj) => {
                let (key, entry) = compact(&self.objects, &self.manager, self.secrets, obj);
                self.objects
                    .map
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(key, entry);
            }
            watcher::Event::Delete(obj) => {
                let key = (
                    obj.metadata.namespace,
                    obj.metadata.name.unwrap_or_default(),
                );
                self.objects
                    .map
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&key);
            }
        }
    }
}

/// `obj` as the cache keeps it: compact JSON with only `manager`'s managed fields,
/// deflated after the kind's primer (which the first child cached becomes; without its
/// data if the kind is `secrets`).
fn compact(
    objects: &Objects,
    manager: &str,
    secrets: bool,
    mut obj: DynamicObject,
) -> (Name, Entry) {
    {
        let meta = &mut obj.metadata;
        if let Some(fields) = &mut meta.managed_fields {
            fields.retain(|f| f.manager.as_deref() == Some(manager));
        }
        if let Some(annotations) = &mut meta.annotations {
            annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
    }
    let json = serde_json::to_vec(&obj).unwrap_or_default();
    if objects.primer.get().is_none()
        && let Some(primer) = Primer::from_child(&json, secrets)
    {
        let _ = objects.primer.set(primer);
    }
    let entry = Entry::pack(version(&obj), &json, objects.primer.get());
    let key = (
        obj.metadata.namespace,
        obj.metadata.name.unwrap_or_default(),
    );
    (key, entry)
}

/// The object's `resourceVersion` as a number (etcd's revision), if it is one.
pub(super) fn version(obj: &DynamicObject) -> Option<u64> {
    obj.metadata.resource_version.as_deref()?.parse().ok()
}
