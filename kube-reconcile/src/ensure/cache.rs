//! Cache-first reads of children: watch caches of the child kinds, and read-your-writes.
//!
//! A [`ChildCache`] holds one watch cache per registered child kind (a reflector over the
//! children our field manager labels). `Children` reads a child from it instead of
//! sending a GET, unless the cache may be older than what this process last did to that
//! child: after each write it remembers the `resourceVersion` the server answered with,
//! and until the cache holds that version (or a newer one) the child is read by GET
//! instead. That is the idea of Kubernetes KEP-5647 (read your own writes from a cache),
//! kept per child and forgotten as soon as the cache has caught up, so it costs memory
//! only for writes the cache has not seen yet.
//!
//! The cache keeps each child as compact JSON text, without what no reader needs (the
//! managed-fields entries of other field managers, `kubectl`'s last-applied
//! annotation): a few KiB per child instead of a tree of `serde_json::Value`s.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError, RwLock,
        atomic::{AtomicBool, Ordering},
    },
};

use futures_util::{Stream, StreamExt};
use kube::{
    Api, Client,
    api::DynamicObject,
    core::{ApiResource, GroupVersionKind},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::Value;

/// What this process knows a child's next read must see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Need {
    /// A version at least this one (written by us).
    AtLeast(u64),
    /// No object (we deleted it).
    Gone,
    /// Whatever the server has now (a write conflicted: the cache may be behind).
    Fresh,
}

type Key = (GroupVersionKind, Option<String>, String);

/// The watch caches of child kinds, shared by every reconcile of an operator.
#[derive(Clone, Default)]
pub(crate) struct ChildCache {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    kinds: RwLock<Vec<Kind>>,
    needs: Mutex<HashMap<Key, Need>>,
}

struct Kind {
    gvk: GroupVersionKind,
    objects: Arc<Objects>,
}

/// The children of one kind, by namespace and name.
#[derive(Default)]
struct Objects {
    map: RwLock<HashMap<(Option<String>, String), Entry>>,
    /// Whether the first list is in.
    synced: AtomicBool,
}

/// One cached child.
struct Entry {
    version: Option<u64>,
    json: Box<str>,
}

/// Keeps `objects` up to date from a watch's events; `manager`'s managed fields are the
/// only ones kept.
struct Feeder {
    objects: Arc<Objects>,
    manager: String,
    /// The objects of a list in progress (a first list, or a relist after the watch
    /// expired), swapped in whole when it ends.
    listing: Option<HashMap<(Option<String>, String), Entry>>,
}

impl Feeder {
    fn on(&mut self, event: watcher::Event<DynamicObject>) {
        match event {
            watcher::Event::Init => self.listing = Some(HashMap::new()),
            watcher::Event::InitApply(obj) => {
                let (key, entry) = compact(&self.manager, obj);
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
            }
            watcher::Event::Apply(obj) => {
                let (key, entry) = compact(&self.manager, obj);
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

/// `obj` as the cache keeps it: compact JSON, with only `manager`'s managed fields.
fn compact(manager: &str, mut obj: DynamicObject) -> ((Option<String>, String), Entry) {
    {
        let meta = &mut obj.metadata;
        if let Some(fields) = &mut meta.managed_fields {
            fields.retain(|f| f.manager.as_deref() == Some(manager));
        }
        if let Some(annotations) = &mut meta.annotations {
            annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
    }
    let version = version(&obj);
    let json = serde_json::to_string(&obj)
        .unwrap_or_default()
        .into_boxed_str();
    let key = (
        obj.metadata.namespace,
        obj.metadata.name.unwrap_or_default(),
    );
    (key, Entry { version, json })
}

/// What a cached read found.
pub(crate) enum Cached {
    /// The cache answers: the child as JSON, or `None` for no such child.
    Hit(Option<Value>),
    /// Ask the server: the kind is not cached (yet), or the cache is behind our writes.
    Miss,
}

impl ChildCache {
    /// Starts caching children of `resource` labelled with `selector`, in every
    /// namespace, keeping only `manager`'s managed fields; the returned stream keeps the
    /// cache up to date while it is polled.
    pub(crate) fn watch(
        &self,
        client: Client,
        resource: &ApiResource,
        selector: &str,
        manager: &str,
    ) -> impl Stream<Item = ()> + Send + 'static {
        let objects = Arc::new(Objects::default());
        self.inner
            .kinds
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Kind {
                gvk: gvk_of(resource),
                objects: objects.clone(),
            });
        let mut feeder = Feeder {
            objects,
            manager: manager.to_owned(),
            listing: None,
        };
        let api: Api<DynamicObject> = Api::all_with(client, resource);
        let config = watcher::Config::default().labels(selector);
        let kind = resource.kind.clone();
        // Backed off: a watch the server refuses (no RBAC for the kind, say) is retried
        // slowly, and until the cache is synced every read goes to the server.
        watcher::watcher(api, config)
            .default_backoff()
            .map(move |event| match event {
                Ok(event) => feeder.on(event),
                Err(error) => {
                    tracing::warn!(%kind, %error, "watching children for the cache failed; reading them from the server");
                }
            })
    }

    /// Reads a child from the cache, if the cache can answer for it.
    pub(crate) fn get(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
    ) -> Cached {
        let gvk = gvk_of(resource);
        let kinds = self
            .inner
            .kinds
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(kind) = kinds
            .iter()
            .find(|k| k.gvk == gvk && k.objects.synced.load(Ordering::Acquire))
        else {
            return Cached::Miss;
        };
        let map = kind
            .objects
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let key = (gvk, namespace.map(str::to_owned), name.to_owned());
        let cached = map.get(&(key.1.clone(), key.2.clone()));
        let mut needs = self
            .inner
            .needs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(&need) = needs.get(&key) {
            let caught_up = match (need, cached) {
                (Need::AtLeast(written), Some(entry)) => {
                    entry.version.is_some_and(|v| v >= written)
                }
                (Need::Gone, None) => true,
                _ => false,
            };
            if !caught_up {
                return Cached::Miss;
            }
            needs.remove(&key);
        }
        match cached {
            None => Cached::Hit(None),
            Some(entry) => serde_json::from_str(&entry.json)
                .map_or(Cached::Miss, |json| Cached::Hit(Some(json))),
        }
    }

    /// Notes what the server answered a write (or a read that had to bypass the cache):
    /// the child at this version, or no child.
    pub(crate) fn saw(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
        object: Option<&DynamicObject>,
    ) {
        let need = match object {
            None => Need::Gone,
            Some(obj) => match version(obj) {
                Some(v) => Need::AtLeast(v),
                // A version that is not a number cannot be compared: read it from the
                // server until the cache has seen a change.
                None => Need::Fresh,
            },
        };
        self.note(resource, namespace, name, need);
    }

    /// Notes that the cache may be behind for this child (a write conflicted).
    pub(crate) fn stale(&self, resource: &ApiResource, namespace: Option<&str>, name: &str) {
        self.note(resource, namespace, name, Need::Fresh);
    }

    fn note(&self, resource: &ApiResource, namespace: Option<&str>, name: &str, need: Need) {
        let gvk = gvk_of(resource);
        let kinds = self
            .inner
            .kinds
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if !kinds.iter().any(|k| k.gvk == gvk) {
            return;
        }
        let key = (gvk, namespace.map(str::to_owned), name.to_owned());
        self.inner
            .needs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, need);
    }

    /// How many children wait for the cache to catch up with our writes.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.inner
            .needs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl std::fmt::Debug for ChildCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kinds = self
            .inner
            .kinds
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        f.debug_list()
            .entries(kinds.iter().map(|k| &k.gvk.kind))
            .finish()
    }
}

fn gvk_of(resource: &ApiResource) -> GroupVersionKind {
    GroupVersionKind::gvk(&resource.group, &resource.version, &resource.kind)
}

/// The object's `resourceVersion` as a number (etcd's revision), if it is one.
fn version(obj: &DynamicObject) -> Option<u64> {
    obj.metadata.resource_version.as_deref()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_maps() -> ApiResource {
        ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&())
    }

    fn map(name: &str, version: &str) -> DynamicObject {
        let mut obj = DynamicObject::new(name, &config_maps()).within("ns");
        obj.metadata.resource_version = Some(version.to_owned());
        obj
    }

    /// A cache of config maps fed by hand, synced.
    fn cache() -> (ChildCache, Feeder) {
        let objects = Arc::new(Objects::default());
        let cache = ChildCache::default();
        cache.inner.kinds.write().unwrap().push(Kind {
            gvk: gvk_of(&config_maps()),
            objects: objects.clone(),
        });
        let mut feeder = Feeder {
            objects,
            manager: "ours".to_owned(),
            listing: None,
        };
        feeder.on(watcher::Event::Init);
        feeder.on(watcher::Event::InitDone);
        (cache, feeder)
    }

    /// Where a read goes: `"server"`, or the cache's answer (`"absent"` or the version).
    fn read(cache: &ChildCache, name: &str) -> String {
        match cache.get(&config_maps(), Some("ns"), name) {
            Cached::Hit(Some(json)) => json
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            Cached::Hit(None) => "absent".to_owned(),
            Cached::Miss => "server".to_owned(),
        }
    }

    #[test]
    fn a_kind_not_cached_is_read_from_the_server() {
        let cache = ChildCache::default();
        assert_eq!(read(&cache, "a"), "server");
        cache.saw(&config_maps(), Some("ns"), "a", Some(&map("a", "5")));
        assert_eq!(
            cache.pending(),
            0,
            "nothing to remember for a kind not cached"
        );
    }

    #[test]
    fn the_cache_answers_until_we_write_and_again_once_it_has_our_write() {
        let (cache, mut feed) = cache();
        feed.on(watcher::Event::Apply(map("a", "4")));
        assert_eq!(read(&cache, "a"), "4");
        assert_eq!(
            read(&cache, "b"),
            "absent",
            "the cache knows what is not there"
        );

        // We wrote version 5: the cached 4 is older, so the server is asked.
        cache.saw(&config_maps(), Some("ns"), "a", Some(&map("a", "5")));
        assert_eq!(read(&cache, "a"), "server");
        feed.on(watcher::Event::Apply(map("a", "5")));
        assert_eq!(read(&cache, "a"), "5");
        assert_eq!(cache.pending(), 0, "forgotten once the cache caught up");

        // A newer version than ours (someone else wrote after us) is fine too.
        cache.saw(&config_maps(), Some("ns"), "a", Some(&map("a", "6")));
        feed.on(watcher::Event::Apply(map("a", "9")));
        assert_eq!(read(&cache, "a"), "9");
    }

    #[test]
    fn a_create_the_cache_has_not_seen_is_not_read_as_missing() {
        let (cache, mut feed) = cache();
        cache.saw(&config_maps(), Some("ns"), "new", Some(&map("new", "7")));
        assert_eq!(
            read(&cache, "new"),
            "server",
            "absent from the cache, but we created it"
        );
        feed.on(watcher::Event::Apply(map("new", "7")));
        assert_eq!(read(&cache, "new"), "7");
    }

    #[test]
    fn deletes_and_conflicts_go_to_the_server_until_the_cache_agrees() {
        let (cache, mut feed) = cache();
        feed.on(watcher::Event::Apply(map("a", "4")));
        cache.saw(&config_maps(), Some("ns"), "a", None);
        assert_eq!(
            read(&cache, "a"),
            "server",
            "deleted, and the cache still has it"
        );
        feed.on(watcher::Event::Delete(map("a", "5")));
        assert_eq!(read(&cache, "a"), "absent");

        feed.on(watcher::Event::Apply(map("b", "8")));
        cache.stale(&config_maps(), Some("ns"), "b");
        assert_eq!(read(&cache, "b"), "server", "a conflict: ask the server");
        cache.saw(&config_maps(), Some("ns"), "b", Some(&map("b", "8")));
        assert_eq!(read(&cache, "b"), "8");
    }

    #[test]
    fn a_version_that_is_not_a_number_is_read_from_the_server() {
        let (cache, mut feed) = cache();
        feed.on(watcher::Event::Apply(map("a", "x1")));
        cache.saw(&config_maps(), Some("ns"), "a", Some(&map("a", "x1")));
        assert_eq!(read(&cache, "a"), "server");
    }

    #[test]
    fn a_relist_replaces_the_cache_at_its_end_and_only_our_fields_are_kept() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
        let (cache, mut feed) = cache();
        feed.on(watcher::Event::Apply(map("gone", "3")));
        let mut owned = map("kept", "4");
        owned.metadata.managed_fields = Some(
            ["ours", "kube-controller-manager"]
                .map(|m| ManagedFieldsEntry {
                    manager: Some(m.to_owned()),
                    ..ManagedFieldsEntry::default()
                })
                .into(),
        );
        feed.on(watcher::Event::Init);
        feed.on(watcher::Event::InitApply(owned));
        assert_eq!(
            read(&cache, "gone"),
            "3",
            "the old state serves until the list ends"
        );
        feed.on(watcher::Event::InitDone);
        assert_eq!(read(&cache, "gone"), "absent");
        let Cached::Hit(Some(kept)) = cache.get(&config_maps(), Some("ns"), "kept") else {
            panic!("kept is cached")
        };
        let managers: Vec<_> = kept["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["manager"].as_str().unwrap())
            .collect();
        assert_eq!(managers, ["ours"]);
    }
}
