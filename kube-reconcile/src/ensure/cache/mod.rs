//! Cache-first reads of children: watch caches of the child kinds, and read-your-writes.
//!
//! A [`ChildCache`] holds one watch cache per child kind (a reflector over the children our
//! field manager labels), started when the operator starts or when a reconcile first reads
//! a child of that kind. `Children` reads a child from it instead of
//! sending a GET, unless the cache may be older than what this process last did to that
//! child: after each write it remembers the `resourceVersion` the server answered with,
//! and until the cache holds that version (or a newer one) the child is read by GET
//! instead. That is the idea of Kubernetes KEP-5647 (read your own writes from a cache),
//! kept per child and forgotten as soon as the cache has caught up, so it costs memory
//! only for writes the cache has not seen yet.
//!
//! The cache keeps each child as compact JSON, without what no reader needs (the
//! managed-fields entries of other field managers, `kubectl`'s last-applied annotation),
//! deflated after a primer of its kind ([`packed`]): the example's four children of a
//! `Database` take about 0.9 KiB together this way, 2.9 KiB each deflated on its own, and
//! several KiB as trees of `serde_json::Value`s. A read inflates and parses the one child
//! it needs.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, OnceLock, PoisonError, RwLock,
        atomic::{AtomicBool, Ordering},
    },
};

use futures_util::{Stream, StreamExt, stream::BoxStream};
use kube::{
    Api, Client,
    api::DynamicObject,
    core::{ApiResource, GroupVersionKind},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::Value;

use self::{
    feeder::{Feeder, version},
    packed::{Entry, Primer},
};

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

/// A child by namespace and name.
type Name = (Option<String>, String);

/// A child of a kind.
type Key = (GroupVersionKind, Name);

/// The watch caches of child kinds, shared by every reconcile of an operator.
#[derive(Clone, Default)]
pub(crate) struct ChildCache {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    kinds: RwLock<Vec<Kind>>,
    needs: Mutex<HashMap<Key, Need>>,
    /// The caches hold a part of our children (a shard's): a child they lack may exist.
    partial: AtomicBool,
    /// Starts the cache of a kind the first time one of its children is read.
    starter: Mutex<Option<Starter>>,
}

/// What a cache of a new kind watches, and where its watch goes to be polled.
struct Starter {
    client: Client,
    selector: String,
    manager: String,
    watches: tokio::sync::mpsc::UnboundedSender<BoxStream<'static, ()>>,
}

struct Kind {
    gvk: GroupVersionKind,
    objects: Arc<Objects>,
}

/// The children of one kind, by namespace and name.
#[derive(Default)]
struct Objects {
    map: RwLock<HashMap<Name, Entry>>,
    /// Whether the first list is in.
    synced: AtomicBool,
    /// Whether the watch failed before the first list was in (no RBAC for the kind, say):
    /// reads do not wait for it.
    failed: AtomicBool,
    /// Wakes the reads waiting for the first list (or the failure).
    settled: tokio::sync::Notify,
    /// What every child of the kind is deflated after: the first one cached.
    primer: OnceLock<Primer>,
}

impl Objects {
    fn is_settled(&self) -> bool {
        self.synced.load(Ordering::Acquire) || self.failed.load(Ordering::Acquire)
    }
}

/// How long a read waits for a new kind's first list before it asks the server. A
/// failed watch (no RBAC for the kind, say) settles the wait at once, so this bounds only
/// a list that is slow, and a read that gives up sends a GET the cache would soon have
/// answered: a restarted operator over ten thousand `StatefulSet`s (about 35 MB, 20
/// pages) sent 64 GETs, one per reconcile slot, when this was ten seconds.
const SYNC_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

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
        let mut feeder = Feeder::new(objects.clone(), manager, resource);
        let api: Api<DynamicObject> = Api::all_with(client, resource);
        let config = watcher::Config::default().labels(selector);
        let kind = resource.kind.clone();
        let mut warned = false;
        // Backed off: a watch the server refuses (no RBAC for the kind, say) is retried
        // slowly, and until the cache is synced every read goes to the server.
        watcher::watcher(api, config)
            .default_backoff()
            .map(move |event| match event {
                Ok(event) => feeder.on(event),
                Err(error) if !warned => {
                    warned = true;
                    objects.failed.store(true, Ordering::Release);
                    objects.settled.notify_waiters();
                    tracing::warn!(%kind, %error, "watching children for the cache failed; reading them from the server (the operator needs list and watch on them in every namespace)");
                }
                Err(error) => tracing::debug!(%kind, %error, "watching children for the cache failed again"),
            })
    }

    /// From now on, the first read of a child of a kind not cached yet starts its cache
    /// (as [`watch`](Self::watch) with `selector` and `manager`); the returned receiver
    /// yields each new cache's stream, which keeps it up to date while it is polled.
    pub(crate) fn start_on_first_read(
        &self,
        client: Client,
        selector: String,
        manager: String,
    ) -> tokio::sync::mpsc::UnboundedReceiver<BoxStream<'static, ()>> {
        let (watches, started) = tokio::sync::mpsc::unbounded_channel();
        *self
            .inner
            .starter
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Starter {
            client,
            selector,
            manager,
            watches,
        });
        started
    }

    /// Waits until the cache of `resource`'s kind has its first list (at most
    /// [`SYNC_WAIT`], and not at all if its watch failed), starting it if this is the
    /// first read of the kind and [`start_on_first_read`](Self::start_on_first_read) said
    /// how: controller-runtime's informers start the same way.
    pub(crate) async fn until_synced(&self, resource: &ApiResource) {
        if self.objects_of(resource).is_none() {
            self.start(resource);
        }
        let Some(objects) = self.objects_of(resource) else {
            return;
        };
        let settled = objects.settled.notified();
        let mut settled = std::pin::pin!(settled);
        // Registered before the check, so a list that ends in between still wakes us.
        settled.as_mut().enable();
        if !objects.is_settled() {
            let _ = tokio::time::timeout(SYNC_WAIT, settled).await;
        }
    }

    fn objects_of(&self, resource: &ApiResource) -> Option<Arc<Objects>> {
        let gvk = gvk_of(resource);
        self.inner
            .kinds
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|k| k.gvk == gvk)
            .map(|k| k.objects.clone())
    }

    /// Starts the cache of `resource`'s kind, if there is a starter and no cache yet.
    fn start(&self, resource: &ApiResource) {
        let starter = self
            .inner
            .starter
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(starter) = starter.as_ref() else {
            return;
        };
        let gvk = gvk_of(resource);
        let known = self
            .inner
            .kinds
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|k| k.gvk == gvk);
        if !known {
            tracing::debug!(kind = %resource.kind, "caching children of a kind read for the first time");
            let watch = self.watch(
                starter.client.clone(),
                resource,
                &starter.selector,
                &starter.manager,
            );
            let _ = starter.watches.send(watch.boxed());
        }
    }

    /// Marks the caches as holding only some of our children (a shard's), so a child
    /// missing from them is read from the server.
    pub(crate) fn partial(&self) {
        self.inner.partial.store(true, Ordering::Relaxed);
    }

    /// How many children the caches hold, by kind.
    #[cfg(feature = "metrics")]
    pub(crate) fn sizes(&self) -> Vec<(String, usize)> {
        self.inner
            .kinds
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|k| {
                let held = k
                    .objects
                    .map
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .len();
                (k.gvk.kind.clone(), held)
            })
            .collect()
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
        let child = (namespace.map(str::to_owned), name.to_owned());
        let cached = map.get(&child);
        let key = (gvk, child);
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
            // A burst of writes (every object's children created at once) grows the map;
            // it need not keep that size once the cache has caught up.
            if needs.capacity() > 64 && needs.len() * 4 < needs.capacity() {
                needs.shrink_to_fit();
            }
        } else if cached.is_none() && self.inner.partial.load(Ordering::Relaxed) {
            // Another shard's child, say, whose owner just moved to us: ask the server.
            return Cached::Miss;
        }
        match cached {
            None => Cached::Hit(None),
            Some(entry) => entry
                .unpack(kind.objects.primer.get())
                .and_then(|json| serde_json::from_slice(&json).ok())
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
        let key = (gvk, (namespace.map(str::to_owned), name.to_owned()));
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

mod feeder;
mod packed;
#[cfg(test)]
mod tests;
