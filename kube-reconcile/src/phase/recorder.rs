//! The engine's Events, with repeats counted on the first one, in a few bytes per Event.
//!
//! Why not kube's `Recorder`: to count repeats (an `EventSeries`, as client-go's recorder
//! does) it keeps a copy of every Event it published for six minutes, and measured in the
//! convergence bench that was 21 KiB of the operator's 37 KiB per converging Database
//! (six Events each). Counting a repeat needs only which Event it repeats: this recorder
//! keeps, for six minutes after an Event was last seen, a 64-bit hash of what makes it
//! the same Event (the object's UID, the type, the reason) with the Event's name stamp and
//! count, about 40 bytes. A hash collision (about one in 10^10 among 60,000 live entries)
//! would count an Event as a repeat of another object's: its series, not its object, would
//! be wrong.
//!
//! Publishing never fails the reconcile: a refused Event is logged and dropped.

use std::{
    collections::{HashMap, hash_map::Entry},
    hash::{DefaultHasher, Hash, Hasher},
    sync::{Mutex, PoisonError},
    time::Duration,
};

use k8s_openapi::{
    api::events::v1::Event,
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams, PostParams},
    runtime::events::EventType,
};
use serde_json::json;

use super::write::Note;

/// How long after an Event was last seen a repeat still counts on it (kube's and
/// client-go's six minutes).
const REPEAT_WINDOW: Duration = Duration::from_secs(6 * 60);

/// How often the entries past the window are dropped, at most.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Publishes the engine's Events as `controller`.
pub(super) struct Recorder {
    client: Client,
    controller: String,
    seen: Mutex<Seen>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("controller", &self.controller)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Seen {
    /// By the hash of the object's UID, the type and the reason.
    events: HashMap<u64, Published>,
    /// When entries past the window were last dropped.
    swept: Option<Timestamp>,
}

/// An Event published, as much as a repeat needs.
#[derive(Clone, Copy, Debug)]
struct Published {
    /// The random stamp in its name, `<object>.<stamp in hex>`.
    stamp: u64,
    /// How many times it was seen.
    count: i32,
    /// When it was last seen.
    last: Timestamp,
}

impl Recorder {
    pub(super) fn new(client: Client, controller: String) -> Self {
        Recorder {
            client,
            controller,
            seen: Mutex::default(),
        }
    }

    /// Publishes `note` about `obj` at `now`: a new Event, or one more on the count of the
    /// same Event seen in the last six minutes.
    pub(super) async fn publish<K>(&self, obj: &K, note: Note, now: Timestamp)
    where
        K: Resource<DynamicType: Default>,
    {
        let key = key(obj, &note);
        let name = obj.name_any();
        let namespace = obj.namespace().unwrap_or_else(|| "default".to_owned());
        let events: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let seen = self.count(key, now);
        let result = if seen.count == 1 {
            self.create(&events, obj, &note, &namespace, seen.stamp, now)
                .await
        } else {
            let series =
                json!({ "series": { "count": seen.count, "lastObservedTime": MicroTime(now) } });
            let patched = events
                .patch(
                    &event_name(&name, seen.stamp),
                    &PatchParams::default(),
                    &Patch::Merge(&series),
                )
                .await;
            match patched {
                // Gone (its time to live on the server ran out): a new Event, counted from one.
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    let stamp = self.restart(key, now);
                    self.create(&events, obj, &note, &namespace, stamp, now)
                        .await
                }
                other => other.map(drop),
            }
        };
        if let Err(error) = result {
            tracing::warn!(object = %name, reason = %note.reason, %error, "publishing an event failed");
        }
    }

    async fn create<K>(
        &self,
        events: &Api<Event>,
        obj: &K,
        note: &Note,
        namespace: &str,
        stamp: u64,
        now: Timestamp,
    ) -> Result<(), kube::Error>
    where
        K: Resource<DynamicType: Default>,
    {
        let event = Event {
            metadata: ObjectMeta {
                name: Some(event_name(&obj.name_any(), stamp)),
                namespace: Some(namespace.to_owned()),
                ..ObjectMeta::default()
            },
            action: Some("Transition".to_owned()),
            reason: Some(note.reason.clone()),
            note: Some(note.text.clone()),
            type_: Some(
                match note.kind {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_owned(),
            ),
            regarding: Some(obj.object_ref(&K::DynamicType::default())),
            event_time: Some(MicroTime(now)),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.controller.clone()),
            ..Event::default()
        };
        events
            .create(&PostParams::default(), &event)
            .await
            .map(drop)
    }

    /// Counts the Event `key` once more if it was seen in the window, else notes a first
    /// one at `now` (count 1).
    fn count(&self, key: u64, now: Timestamp) -> Published {
        let mut seen = self.lock();
        seen.sweep(now);
        let fresh = Published::first(now);
        match seen.events.entry(key) {
            Entry::Occupied(mut seen) if !past_window(seen.get().last, now) => {
                let published = seen.get_mut();
                published.count = published.count.saturating_add(1);
                published.last = now;
                *published
            }
            Entry::Occupied(mut seen) => {
                seen.insert(fresh);
                fresh
            }
            Entry::Vacant(first) => *first.insert(fresh),
        }
    }

    /// Starts the Event `key` over at `now`; answers its stamp.
    fn restart(&self, key: u64, now: Timestamp) -> u64 {
        let fresh = Published::first(now);
        self.lock().events.insert(key, fresh);
        fresh.stamp
    }

    /// Events remembered for counting repeats.
    #[cfg(test)]
    pub(super) fn remembered(&self) -> usize {
        self.lock().events.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Published {
    /// A first Event at `now`, with a new random stamp.
    fn first(now: Timestamp) -> Self {
        Published {
            stamp: fastrand::u64(..),
            count: 1,
            last: now,
        }
    }
}

impl Seen {
    /// Drops the entries past the window, at most once a minute.
    fn sweep(&mut self, now: Timestamp) {
        if self.swept.is_some_and(|at| !past(at, SWEEP_EVERY, now)) {
            return;
        }
        self.swept = Some(now);
        self.events
            .retain(|_, published| !past_window(published.last, now));
    }
}

fn past_window(last: Timestamp, now: Timestamp) -> bool {
    past(last, REPEAT_WINDOW, now)
}

/// Whether `now` is at least `window` after `at`.
fn past(at: Timestamp, window: Duration, now: Timestamp) -> bool {
    now.duration_since(at).unsigned_abs() >= window && now >= at
}

/// What makes two Events the same: the object (its UID, else its namespace and name), the
/// type and the reason.
fn key<K: Resource>(obj: &K, note: &Note) -> u64 {
    let mut hasher = DefaultHasher::new();
    let meta = obj.meta();
    match &meta.uid {
        Some(uid) => uid.hash(&mut hasher),
        None => (&meta.namespace, &meta.name).hash(&mut hasher),
    }
    matches!(note.kind, EventType::Warning).hash(&mut hasher);
    note.reason.hash(&mut hasher);
    hasher.finish()
}

fn event_name(object: &str, stamp: u64) -> String {
    format!("{object}.{stamp:016x}")
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube_reconcile_testing::ApiServer;

    use super::*;

    fn object(uid: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some("db".to_owned()),
                namespace: Some("default".to_owned()),
                uid: Some(uid.to_owned()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).expect("a valid time")
    }

    async fn events(server: &ApiServer) -> Vec<Event> {
        let api: Api<Event> = Api::namespaced(server.client(), "default");
        api.list(&kube::api::ListParams::default())
            .await
            .expect("events list")
            .items
    }

    #[tokio::test]
    async fn a_repeat_within_six_minutes_counts_on_the_first_event() {
        let server = ApiServer::new();
        let recorder = Recorder::new(server.client(), "db-operator".to_owned());
        let db = object("a");
        recorder
            .publish(&db, Note::warning("CleanupFailed", "503"), at(0))
            .await;
        recorder
            .publish(&db, Note::warning("CleanupFailed", "503 again"), at(60))
            .await;
        recorder
            .publish(&db, Note::warning("CleanupFailed", "503"), at(120))
            .await;
        recorder
            .publish(&db, Note::normal("Ready", "ready"), at(130))
            .await;
        let events = events(&server).await;
        assert_eq!(events.len(), 2, "{events:?}");
        let failed = events
            .iter()
            .find(|e| e.reason.as_deref() == Some("CleanupFailed"))
            .expect("the warning");
        let series = failed.series.as_ref().expect("a series");
        assert_eq!(series.count, 3);
        assert_eq!(series.last_observed_time.0, at(120));
        assert_eq!(failed.note.as_deref(), Some("503"), "the first note stays");
        assert_eq!(failed.type_.as_deref(), Some("Warning"));
        assert_eq!(failed.reporting_controller.as_deref(), Some("db-operator"));
        assert_eq!(
            failed.regarding.as_ref().and_then(|r| r.uid.as_deref()),
            Some("a")
        );
        assert_eq!(recorder.remembered(), 2);
    }

    #[tokio::test]
    async fn after_six_quiet_minutes_or_for_another_object_an_event_is_new() {
        let server = ApiServer::new();
        let recorder = Recorder::new(server.client(), "db-operator".to_owned());
        recorder
            .publish(&object("a"), Note::normal("Created", "x"), at(0))
            .await;
        recorder
            .publish(&object("b"), Note::normal("Created", "x"), at(5))
            .await;
        recorder
            .publish(&object("a"), Note::normal("Created", "x"), at(361))
            .await;
        let events = events(&server).await;
        assert_eq!(events.len(), 3, "{events:?}");
        assert!(events.iter().all(|e| e.series.is_none()));
        assert_eq!(
            recorder.remembered(),
            2,
            "the first one aged out at the sweep"
        );
    }

    #[tokio::test]
    async fn a_repeat_of_an_event_the_server_dropped_starts_a_new_one() {
        let server = ApiServer::new();
        let recorder = Recorder::new(server.client(), "db-operator".to_owned());
        let db = object("a");
        recorder
            .publish(&db, Note::normal("Requeued", "x"), at(0))
            .await;
        let api: Api<Event> = Api::namespaced(server.client(), "default");
        api.delete_collection(
            &kube::api::DeleteParams::default(),
            &kube::api::ListParams::default(),
        )
        .await
        .expect("events deleted");
        recorder
            .publish(&db, Note::normal("Requeued", "x"), at(10))
            .await;
        let events = events(&server).await;
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(events[0].series.is_none(), "counted from one again");
    }
}
