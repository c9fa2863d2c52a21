//! [`ListQueue`]: the objects a list brings in go to the controller a window at a time,
//! behind the events of objects already under way.
//!
//! kube-runtime's scheduler keeps what is due while every reconcile slot is busy in a
//! hash set, and takes from it in no particular order. When the operator starts over N
//! objects, the first list makes all N due at once, and every later event (an object's
//! own status write, which moves it to its next phase) joins them: each next step of an
//! object waits for a random share of N first reconciles, seconds at N = 10,000.
//! controller-runtime's priority queue (default since v0.23) gives the items of the
//! initial list a low priority for this reason. Here they
//! wait in this queue instead, as bytes (their reference; the store has the object), and
//! go to the controller as the reconciles of the ones released before them finish, at
//! most `window` outstanding; every event after the list goes to the controller at once.
//! A relist (after a watch expired) is paced the same way, as a resync should be.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    hash::Hash,
    sync::{Arc, Mutex, PoisonError},
};

use futures_util::{Stream, StreamExt as _};
use kube::{
    Resource,
    runtime::{
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use tokio::{sync::mpsc, time::Instant};

/// A released object whose reconcile has not been seen to finish after this long frees
/// its place anyway (a reconcile is cut by the operator's timeout well before).
const RELEASE_EXPIRY: std::time::Duration = std::time::Duration::from_secs(120);

/// The listed objects waiting for their first reconcile, shared by the trigger stream
/// and the loop that sees reconciles finish.
pub(super) struct ListQueue<K: Resource + 'static>
where
    K::DynamicType: Eq + Hash,
{
    state: Mutex<State<K>>,
    store: Store<K>,
    window: usize,
    released: mpsc::UnboundedSender<K>,
}

struct State<K: Resource + 'static>
where
    K::DynamicType: Eq + Hash,
{
    /// Listed objects in the order the list brought them, not yet released.
    waiting: VecDeque<ObjectRef<K>>,
    /// Which of `waiting` still need releasing (an event since has triggered the others).
    pending: HashSet<ObjectRef<K>>,
    /// Released, their reconcile not yet seen to finish, and when they were released.
    outstanding: HashMap<ObjectRef<K>, Instant>,
    /// A list is in progress: the reflector's store has its objects only once it ends.
    listing: bool,
}

impl<K> ListQueue<K>
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default,
{
    /// The queue of the objects `store` holds, releasing at most `window` at a time, and
    /// the stream of released objects to merge into the controller's triggers.
    pub(super) fn new(store: Store<K>, window: usize) -> (Arc<Self>, impl Stream<Item = K>) {
        let (released, receiver) = mpsc::unbounded_channel();
        let queue = Arc::new(ListQueue {
            state: Mutex::new(State {
                waiting: VecDeque::new(),
                pending: HashSet::new(),
                outstanding: HashMap::new(),
                listing: false,
            }),
            store,
            window: window.max(1),
            released,
        });
        let released = futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|obj| (obj, receiver))
        });
        (queue, released)
    }

    /// The controller's triggers from a reflector's `events`: listed objects through this
    /// queue, every other applied object at once.
    pub(super) fn triggers(
        self: &Arc<Self>,
        events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
        released: impl Stream<Item = K> + Send + 'static,
    ) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static {
        let queue = Arc::clone(self);
        let events = events.filter_map(move |event| {
            std::future::ready(match event {
                Ok(event) => queue.on(event).map(Ok),
                Err(error) => Some(Err(error)),
            })
        });
        futures_util::stream::select(events, released.map(Ok))
    }

    /// What goes to the controller for `event`, if anything now.
    fn on(&self, event: watcher::Event<K>) -> Option<K> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            watcher::Event::InitApply(obj) => {
                let key = ObjectRef::from_obj(&obj);
                state.expire(Instant::now());
                if state.waiting.is_empty() && state.outstanding.len() < self.window {
                    state.outstanding.insert(key, Instant::now());
                    Some(obj)
                } else {
                    // In the list's order; the store has it once the list ends.
                    if state.pending.insert(key.clone()) {
                        state.waiting.push_back(key);
                    }
                    None
                }
            }
            watcher::Event::Apply(obj) => {
                // Triggered now: it no longer needs its place in the queue.
                state.pending.remove(&ObjectRef::from_obj(&obj));
                Some(obj)
            }
            watcher::Event::Delete(obj) => {
                let key = ObjectRef::from_obj(&obj);
                state.pending.remove(&key);
                if state.outstanding.remove(&key).is_some() {
                    self.release(&mut state);
                }
                None
            }
            watcher::Event::Init => {
                state.listing = true;
                None
            }
            watcher::Event::InitDone => {
                state.listing = false;
                // Listed once and gone by the end of a relist: nothing to release.
                let store = &self.store;
                let State {
                    waiting, pending, ..
                } = &mut *state;
                waiting.retain(|key| pending.contains(key) && store.get(key).is_some());
                pending.retain(|key| store.get(key).is_some());
                self.release(&mut state);
                None
            }
        }
    }

    /// A reconcile of the object `name` in `namespace` finished: if it was released from
    /// the queue, the next one goes.
    pub(super) fn finished(&self, namespace: Option<&str>, name: &str) {
        let mut object = ObjectRef::<K>::new(name);
        if let Some(namespace) = namespace {
            object = object.within(namespace);
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let freed = state.outstanding.remove(&object).is_some();
        if freed || state.expire(Instant::now()) {
            self.release(&mut state);
        }
    }

    /// Releases waiting objects while fewer than `window` are outstanding.
    fn release(&self, state: &mut State<K>) {
        while state.outstanding.len() < self.window {
            let Some(key) = state.waiting.pop_front() else {
                // The list is through: give its memory back.
                state.waiting.shrink_to_fit();
                state.pending.shrink_to_fit();
                return;
            };
            if !state.pending.remove(&key) {
                continue;
            }
            let Some(obj) = self.store.get(&key) else {
                if state.listing {
                    // Listed but not in the store until the list ends.
                    state.pending.insert(key.clone());
                    state.waiting.push_front(key);
                    return;
                }
                // Deleted since it was listed.
                continue;
            };
            if self.released.send(K::clone(&obj)).is_err() {
                // The controller is gone.
                return;
            }
            state.outstanding.insert(key, Instant::now());
        }
    }

    /// How many listed objects wait for their first reconcile.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pending
            .len()
    }
}

impl<K: Resource + 'static> State<K>
where
    K::DynamicType: Eq + Hash,
{
    /// Forgets releases older than [`RELEASE_EXPIRY`]; whether any was.
    fn expire(&mut self, now: Instant) -> bool {
        let before = self.outstanding.len();
        self.outstanding
            .retain(|_, released| now.duration_since(*released) < RELEASE_EXPIRY);
        self.outstanding.len() < before
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::{
        api::ObjectMeta,
        runtime::reflector::{self, store::Writer},
    };

    use super::*;

    fn map(name: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some("ns".to_owned()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        }
    }

    fn name(obj: &ConfigMap) -> String {
        obj.metadata.name.clone().unwrap_or_default()
    }

    /// A queue of window 2 and the reflector's store it reads, fed as the reflector feeds
    /// them: the store first, then the queue.
    struct Fed {
        queue: Arc<ListQueue<ConfigMap>>,
        writer: Writer<ConfigMap>,
    }

    impl Fed {
        /// What went to the controller at once for `event`.
        fn feed(&mut self, event: watcher::Event<ConfigMap>) -> Option<String> {
            self.writer.apply_watcher_event(&event);
            self.queue.on(event).map(|obj| name(&obj))
        }

        /// A whole list of `names`: what went to the controller at once.
        fn list(&mut self, names: &[&str]) -> Vec<String> {
            let mut at_once: Vec<String> = self.feed(watcher::Event::Init).into_iter().collect();
            for n in names {
                at_once.extend(self.feed(watcher::Event::InitApply(map(n))));
            }
            at_once.extend(self.feed(watcher::Event::InitDone));
            at_once
        }
    }

    fn fed() -> (Fed, impl Stream<Item = ConfigMap> + Unpin) {
        let (store, writer) = reflector::store();
        let (queue, released) = ListQueue::new(store, 2);
        (Fed { queue, writer }, Box::pin(released))
    }

    async fn next(released: &mut (impl Stream<Item = ConfigMap> + Unpin)) -> String {
        name(&released.next().await.expect("released"))
    }

    #[tokio::test]
    async fn a_list_goes_a_window_at_a_time_as_reconciles_finish() {
        let (mut fed, mut released) = fed();
        assert_eq!(fed.list(&["a", "b", "c", "d", "e"]), ["a", "b"]);
        assert_eq!(fed.queue.waiting(), 3);
        fed.queue.finished(Some("ns"), "a");
        assert_eq!(next(&mut released).await, "c");
        // A reconcile of an object the queue did not release frees nothing.
        fed.queue.finished(Some("ns"), "z");
        assert_eq!(fed.queue.waiting(), 2);
        fed.queue.finished(Some("ns"), "b");
        assert_eq!(next(&mut released).await, "d");
        assert_eq!(fed.queue.waiting(), 1);
    }

    #[tokio::test]
    async fn a_reconcile_finished_before_the_list_ends_releases_the_next_at_its_end() {
        let (mut fed, mut released) = fed();
        fed.feed(watcher::Event::Init);
        for n in ["a", "b", "c"] {
            fed.feed(watcher::Event::InitApply(map(n)));
        }
        // "c" is not in the store yet: it goes when the list is in.
        fed.queue.finished(Some("ns"), "a");
        assert_eq!(fed.queue.waiting(), 1);
        fed.feed(watcher::Event::InitDone);
        assert_eq!(next(&mut released).await, "c");
    }

    #[tokio::test]
    async fn later_events_go_at_once_and_take_the_object_out_of_the_queue() {
        let (mut fed, mut released) = fed();
        fed.list(&["a", "b", "c", "d"]);
        // "c" changed (its own status write, say): triggered now, ahead of the list.
        assert_eq!(
            fed.feed(watcher::Event::Apply(map("c"))).as_deref(),
            Some("c")
        );
        assert_eq!(fed.queue.waiting(), 1);
        fed.queue.finished(Some("ns"), "a");
        assert_eq!(next(&mut released).await, "d");
    }

    #[tokio::test]
    async fn a_deleted_object_frees_its_place_and_is_never_released() {
        let (mut fed, mut released) = fed();
        fed.list(&["a", "b", "c", "d"]);
        assert!(fed.feed(watcher::Event::Delete(map("c"))).is_none());
        // "a" was released and is deleted before its reconcile: "d" takes its place.
        assert!(fed.feed(watcher::Event::Delete(map("a"))).is_none());
        assert_eq!(next(&mut released).await, "d");
        assert_eq!(fed.queue.waiting(), 0);
    }

    #[tokio::test]
    async fn a_relist_drops_what_is_gone_and_paces_the_rest() {
        let (mut fed, mut released) = fed();
        fed.list(&["a", "b", "c", "d"]);
        // The watch expired; "c" and "d" were deleted meanwhile, "e" created.
        assert!(fed.list(&["a", "b", "e"]).is_empty());
        assert_eq!(fed.queue.waiting(), 3);
        fed.queue.finished(Some("ns"), "a");
        fed.queue.finished(Some("ns"), "b");
        assert_eq!(next(&mut released).await, "a");
        assert_eq!(next(&mut released).await, "b");
    }

    #[tokio::test(start_paused = true)]
    async fn a_release_whose_reconcile_is_never_seen_expires() {
        let (mut fed, mut released) = fed();
        fed.list(&["a", "b", "c"]);
        tokio::time::advance(RELEASE_EXPIRY).await;
        // Any finished reconcile looks at the clock.
        fed.queue.finished(Some("ns"), "z");
        assert_eq!(next(&mut released).await, "c");
    }
}
