//! The create and delete protocol under crashes at every await point.

use std::{
    collections::BTreeMap,
    future::Future,
    pin::pin,
    sync::{Mutex, atomic::AtomicUsize},
    task::{Context, Poll, Waker},
};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ApiResource, DynamicObject};
use proptest::prelude::*;

use super::*;

/// Returns `Pending` once, so every step of a fake call is a point where a crash
/// (dropping the future) can happen.
async fn step() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await;
}

#[derive(Debug, thiserror::Error)]
#[error("fake system: {0}")]
struct FakeError(&'static str, ErrorClass);

impl crate::Classify for FakeError {
    fn class(&self) -> ErrorClass {
        self.1
    }
}

/// An external system that does not deduplicate creates: only the protocol can keep
/// it to one resource per key.
#[derive(Debug, Default)]
struct Fake {
    /// id → key.
    resources: Mutex<BTreeMap<String, String>>,
    next_id: AtomicU32,
    most_per_key: AtomicUsize,
    creates: AtomicU32,
    observes: AtomicU32,
    /// Create commits, then answers with an error (a lost response).
    lose_create_response: AtomicBool,
    /// Create fails before committing.
    refuse_create: AtomicBool,
    /// Delete fails before doing anything.
    refuse_delete: AtomicBool,
}

impl Fake {
    fn count(&self, key: &str) -> usize {
        self.resources
            .lock()
            .unwrap()
            .values()
            .filter(|k| *k == key)
            .count()
    }

    fn ids(&self) -> Vec<String> {
        self.resources.lock().unwrap().keys().cloned().collect()
    }
}

impl ExternalClient for Fake {
    type Spec = ();
    type Resource = (String, String);
    type Error = FakeError;

    async fn observe(&self, key: &IdempotencyKey) -> Result<Option<(String, String)>, FakeError> {
        self.observes.fetch_add(1, SeqCst);
        step().await;
        let resources = self.resources.lock().unwrap();
        Ok(resources
            .iter()
            .find(|(_, k)| *k == key.as_str())
            .map(|(id, k)| (id.clone(), k.clone())))
    }

    async fn create(&self, key: &IdempotencyKey, (): &()) -> Result<(String, String), FakeError> {
        step().await; // request sent
        if self.refuse_create.load(SeqCst) {
            return Err(FakeError("create refused", ErrorClass::Transient));
        }
        self.creates.fetch_add(1, SeqCst);
        let id = format!("inst-{}", self.next_id.fetch_add(1, SeqCst));
        {
            let mut resources = self.resources.lock().unwrap();
            resources.insert(id.clone(), key.to_string());
            let n = resources.values().filter(|k| *k == key.as_str()).count();
            self.most_per_key.fetch_max(n, SeqCst);
        }
        step().await; // committed, response on its way
        if self.lose_create_response.load(SeqCst) {
            return Err(FakeError("connection reset", ErrorClass::Transient));
        }
        Ok((id, key.to_string()))
    }

    async fn delete(
        &self,
        _: &IdempotencyKey,
        (id, _): &(String, String),
    ) -> Result<(), FakeError> {
        step().await;
        if self.refuse_delete.load(SeqCst) {
            return Err(FakeError("delete refused", ErrorClass::Transient));
        }
        let removed = self.resources.lock().unwrap().remove(id);
        step().await;
        match removed {
            Some(_) => Ok(()),
            None => Err(FakeError("not found", ErrorClass::Terminal)),
        }
    }

    fn id(&self, (id, _): &(String, String)) -> String {
        id.clone()
    }
}

/// The object's annotations as stored on the "API server"; a write can be lost.
#[derive(Clone, Debug, Default)]
struct Store {
    annotations: Arc<Mutex<BTreeMap<String, String>>>,
    writes: Arc<AtomicU32>,
    lose_writes: Arc<AtomicBool>,
}

impl Store {
    /// The object as a reconcile would read it now.
    fn read(&self) -> ConfigMap {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some("db".into());
        cm.metadata.namespace = Some("default".into());
        cm.metadata.uid = Some("0e5c".into());
        cm.metadata.annotations = Some(self.annotations.lock().unwrap().clone());
        cm
    }

    async fn write(&self, pairs: &[(String, &str)]) {
        step().await; // request sent
        if !self.lose_writes.load(SeqCst) {
            let mut annotations = self.annotations.lock().unwrap();
            for (k, v) in pairs {
                annotations.insert(k.clone(), (*v).to_owned());
            }
        }
        self.writes.fetch_add(1, SeqCst);
        step().await; // written, response on its way
    }

    fn get(&self, name: &str) -> Option<String> {
        self.annotations.lock().unwrap().get(name).cloned()
    }
}

fn key_name(prefix: &str) -> String {
    format!("{ANNOTATION_DOMAIN}/{prefix}-key")
}

fn id_name(prefix: &str) -> String {
    format!("{ANNOTATION_DOMAIN}/{prefix}-id")
}

/// Records in [`Store`], under the same annotations as [`AnnotationJournal`].
impl Journal<ConfigMap> for Store {
    type Error = std::convert::Infallible;

    fn has_key(&self, obj: &ConfigMap, key: &IdempotencyKey) -> bool {
        obj.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(&key_name(key.prefix())))
            == Some(&key.to_string())
    }

    fn recorded_id(&self, obj: &ConfigMap, key: &IdempotencyKey) -> Option<String> {
        self.has_key(obj, key)
            .then(|| {
                obj.metadata
                    .annotations
                    .as_ref()?
                    .get(&id_name(key.prefix()))
                    .cloned()
            })
            .flatten()
    }

    async fn record_key(&self, _: &ConfigMap, key: &IdempotencyKey) -> Result<(), Self::Error> {
        self.write(&[(key_name(key.prefix()), key.as_str())]).await;
        Ok(())
    }

    async fn record_id(
        &self,
        _: &ConfigMap,
        key: &IdempotencyKey,
        id: &str,
    ) -> Result<(), Self::Error> {
        self.write(&[
            (key_name(key.prefix()), key.as_str()),
            (id_name(key.prefix()), id),
        ])
        .await;
        Ok(())
    }
}

/// Polls `fut` at most `polls` times, then drops it: a crash after that many steps.
fn crash_after<F: Future>(fut: F, polls: usize) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..polls {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return Some(out);
        }
    }
    None
}

/// Runs `fut` to completion (every fake step wakes itself at once).
fn run<F: Future>(fut: F) -> F::Output {
    crash_after(fut, usize::MAX).expect("a future polled forever completes")
}

fn setup() -> (ExternalResource<Fake, Store>, Store) {
    let store = Store::default();
    let resource = ExternalResource::new("db", Fake::default(), store.clone()).unwrap();
    (resource, store)
}

const KEY: &str = "db-0e5c";

#[test]
fn a_crash_at_any_step_of_a_create_never_leaves_two_resources_or_none() {
    let mut crash_points = 0;
    for polls in 0.. {
        let (db, store) = setup();
        let crashed = crash_after(db.ensure(&store.read(), &()), polls);
        if let Some(done) = crashed {
            assert!(done.unwrap().is_created(), "an uninterrupted run creates");
            break;
        }
        crash_points += 1;
        assert!(db.client().count(KEY) <= 1);
        let created_before = db.client().count(KEY) == 1;

        // The next reconcile reads the object again and resumes.
        let ensured = run(db.ensure(&store.read(), &())).unwrap();
        assert_eq!(db.client().count(KEY), 1, "crash after {polls} polls");
        assert_eq!(db.client().most_per_key.load(SeqCst), 1);
        assert_eq!(
            ensured.is_created(),
            !created_before,
            "crash after {polls} polls: {ensured:?}"
        );
        let id = db.client().ids().pop().unwrap();
        assert_eq!(store.get(&id_name("db")), Some(id.clone()));
        assert_eq!(store.get(&key_name("db")).as_deref(), Some(KEY));

        // And once recorded, the one after that finds it with no write at all.
        let writes = store.writes.load(SeqCst);
        assert_eq!(
            run(db.ensure(&store.read(), &())).unwrap(),
            Ensured::Existing((id, KEY.into()))
        );
        assert_eq!(store.writes.load(SeqCst), writes);
    }
    // observe, record key (2 steps), create (2 steps), record id (2 steps).
    assert!(
        crash_points >= 7,
        "only {crash_points} crash points explored"
    );
}

#[test]
fn the_key_is_recorded_before_the_create_reaches_the_system() {
    // Crash at the first point where the system has committed the create.
    for polls in 1.. {
        let (db, store) = setup();
        assert!(crash_after(db.ensure(&store.read(), &()), polls).is_none());
        if db.client().creates.load(SeqCst) == 1 {
            assert_eq!(store.get(&key_name("db")).as_deref(), Some(KEY));
            break;
        }
        assert_eq!(store.get(&id_name("db")), None);
    }
}

#[test]
fn a_lost_create_response_is_adopted_in_the_same_call() {
    let (db, store) = setup();
    db.client().lose_create_response.store(true, SeqCst);
    let ensured = run(db.ensure(&store.read(), &())).unwrap();
    assert!(matches!(ensured, Ensured::Adopted(_)));
    assert_eq!(db.client().count(KEY), 1);
    assert_eq!(store.get(&id_name("db")), Some("inst-0".into()));
}

#[test]
fn a_failed_create_that_made_nothing_returns_its_error() {
    let (db, store) = setup();
    db.client().refuse_create.store(true, SeqCst);
    let err = run(db.ensure(&store.read(), &())).unwrap_err();
    assert!(matches!(
        &err,
        ExternalError::Client(FakeError("create refused", _))
    ));
    assert_eq!(crate::Classify::class(&err), ErrorClass::Transient);
    assert_eq!(db.client().count(KEY), 0);
    assert_eq!(
        store.get(&key_name("db")).as_deref(),
        Some(KEY),
        "the key was recorded first"
    );
}

#[test]
fn lost_records_do_not_matter() {
    let (db, store) = setup();
    store.lose_writes.store(true, SeqCst);
    assert!(run(db.ensure(&store.read(), &())).unwrap().is_created());
    for _ in 0..3 {
        assert!(matches!(
            run(db.ensure(&store.read(), &())).unwrap(),
            Ensured::Adopted(_)
        ));
    }
    assert_eq!(db.client().count(KEY), 1);
}

#[test]
fn no_journal_still_creates_once() {
    let db = ExternalResource::new("db", Fake::default(), NoJournal).unwrap();
    let obj = Store::default().read();
    assert!(run(db.ensure(&obj, &())).unwrap().is_created());
    assert!(matches!(
        run(db.ensure(&obj, &())).unwrap(),
        Ensured::Adopted(_)
    ));
    assert_eq!(db.client().count(KEY), 1);
}

#[test]
fn a_dynamic_object_gets_the_same_key_as_its_typed_twin() {
    let db = ExternalResource::new("db", Fake::default(), NoJournal).unwrap();
    let typed = Store::default().read();
    let mut dynamic = DynamicObject::new("db", &ApiResource::erase::<ConfigMap>(&()));
    dynamic.metadata.uid = typed.metadata.uid.clone();
    assert_eq!(db.key(&dynamic).unwrap(), db.key(&typed).unwrap());
    assert!(run(db.ensure(&dynamic, &())).unwrap().is_created());
    assert!(!run(db.ensure(&typed, &())).unwrap().is_created());
    assert_eq!(db.client().count(KEY), 1);
}

#[test]
fn an_object_without_uid_is_a_terminal_error_and_calls_nothing() {
    let (db, _) = setup();
    let err = run(db.ensure(&ConfigMap::default(), &())).unwrap_err();
    assert!(matches!(
        err,
        ExternalError::Key(KeyError::MissingUid { .. })
    ));
    assert_eq!(crate::Classify::class(&err), ErrorClass::Terminal);
    assert_eq!(db.client().observes.load(SeqCst), 0);
}

#[test]
fn delete_counts_gone_as_done() {
    let (db, store) = setup();
    assert_eq!(run(db.delete(&store.read())).unwrap(), Deletion::Gone);
    run(db.ensure(&store.read(), &())).unwrap();
    assert!(matches!(
        run(db.delete(&store.read())).unwrap(),
        Deletion::Requested(_)
    ));
    assert_eq!(run(db.delete(&store.read())).unwrap(), Deletion::Gone);
    assert_eq!(db.client().count(KEY), 0);
}

#[test]
fn a_failed_delete_of_a_resource_that_is_still_there_is_an_error() {
    let (db, store) = setup();
    run(db.ensure(&store.read(), &())).unwrap();
    db.client().refuse_delete.store(true, SeqCst);
    let err = run(db.delete(&store.read())).unwrap_err();
    assert!(matches!(
        err,
        ExternalError::Client(FakeError("delete refused", _))
    ));
    assert_eq!(db.client().count(KEY), 1);
}

#[test]
fn a_crash_at_any_step_of_a_delete_still_ends_gone() {
    for polls in 0.. {
        let (db, store) = setup();
        run(db.ensure(&store.read(), &())).unwrap();
        if let Some(done) = crash_after(db.delete(&store.read()), polls) {
            assert!(matches!(done.unwrap(), Deletion::Requested(_)));
            break;
        }
        let again = run(db.delete(&store.read())).unwrap();
        assert_eq!(db.client().count(KEY), 0, "crash after {polls} polls");
        // Gone, or (if the crash came before the delete reached the system) deleted now.
        if let Deletion::Requested(_) = again {
            assert_eq!(run(db.delete(&store.read())).unwrap(), Deletion::Gone);
        }
    }
}

proptest! {
    #[test]
    fn crashes_and_lost_records_in_any_order_end_with_exactly_one_resource(
        crashes in proptest::collection::vec(0usize..12, 0..6),
        lose_writes in any::<bool>(),
        lose_response in any::<bool>(),
    ) {
        let (db, store) = setup();
        store.lose_writes.store(lose_writes, SeqCst);
        db.client().lose_create_response.store(lose_response, SeqCst);
        for polls in crashes {
            let _ = crash_after(db.ensure(&store.read(), &()), polls);
            prop_assert!(db.client().count(KEY) <= 1);
        }
        let ensured = run(db.ensure(&store.read(), &())).unwrap();
        prop_assert_eq!(db.client().count(KEY), 1);
        prop_assert_eq!(db.client().most_per_key.load(SeqCst), 1);
        prop_assert_eq!(db.client().creates.load(SeqCst), 1);
        let id = db.client().ids().pop().unwrap();
        prop_assert_eq!(&ensured.resource().0, &id);
        if !lose_writes {
            prop_assert_eq!(store.get(&id_name("db")), Some(id));
        }
    }
}
