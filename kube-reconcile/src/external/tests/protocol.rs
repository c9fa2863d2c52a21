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

impl ExternalDependency for Fake {
    type Error = FakeError;

    fn name(&self) -> &'static str {
        "db"
    }
}

impl ExactlyOnce for Fake {
    type Spec = ();
    type Resource = (String, String);

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

    fn id(&self, (id, _): &(String, String)) -> Option<String> {
        Some(id.clone())
    }
}

/// The object a reconcile reads.
fn object() -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("db".into());
    cm.metadata.namespace = Some("default".into());
    cm.metadata.uid = Some("0e5c".into());
    cm
}

/// A runtime for the handle's clock and health timeout; the tests poll by hand.
static RUNTIME: std::sync::LazyLock<tokio::runtime::Runtime> = std::sync::LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime builds")
});

/// Polls `fut` at most `polls` times, then drops it: a crash after that many steps.
fn crash_after<F: Future>(fut: F, polls: usize) -> Option<F::Output> {
    let _runtime = RUNTIME.enter();
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

fn setup() -> Dependency<Fake> {
    let _runtime = RUNTIME.enter();
    Dependency::new(Fake::default())
}

const KEY: &str = "db-0e5c";

#[test]
fn a_crash_at_any_step_of_a_create_never_leaves_two_resources_or_none() {
    let mut crash_points = 0;
    for polls in 0.. {
        let db = setup();
        let crashed = crash_after(db.ensure(&object(), &()), polls);
        if let Some(done) = crashed {
            assert!(done.unwrap().is_created(), "an uninterrupted run creates");
            break;
        }
        crash_points += 1;
        assert!(db.client().count(KEY) <= 1);
        let created_before = db.client().count(KEY) == 1;

        // The next reconcile resumes.
        let provisioned = run(db.ensure(&object(), &())).unwrap();
        assert_eq!(db.client().count(KEY), 1, "crash after {polls} polls");
        assert_eq!(db.client().most_per_key.load(SeqCst), 1);
        assert_eq!(
            provisioned.is_created(),
            !created_before,
            "crash after {polls} polls: {provisioned:?}"
        );

        // And the one after that finds it.
        let id = db.client().ids().pop().unwrap();
        assert_eq!(
            run(db.ensure(&object(), &())).unwrap(),
            Provisioned::Found((id, KEY.into()))
        );
        assert_eq!(db.client().creates.load(SeqCst), 1);
    }
    // observe, create (2 steps).
    assert!(
        crash_points >= 3,
        "only {crash_points} crash points explored"
    );
}

#[test]
fn a_lost_create_response_is_adopted_in_the_same_call() {
    let db = setup();
    db.client().lose_create_response.store(true, SeqCst);
    let provisioned = run(db.ensure(&object(), &())).unwrap();
    assert!(matches!(provisioned, Provisioned::Found(_)));
    assert_eq!(db.client().count(KEY), 1);
}

#[test]
fn a_failed_create_that_made_nothing_returns_its_error() {
    let db = setup();
    db.client().refuse_create.store(true, SeqCst);
    let err = run(db.ensure(&object(), &())).unwrap_err();
    assert!(matches!(
        &err,
        ExternalError::Call(FakeError("create refused", _))
    ));
    assert_eq!(crate::Classify::class(&err), ErrorClass::Transient);
    assert_eq!(db.client().count(KEY), 0);
}

#[test]
fn a_second_ensure_finds_what_the_first_created() {
    let db = setup();
    assert!(run(db.ensure(&object(), &())).unwrap().is_created());
    assert!(matches!(
        run(db.ensure(&object(), &())).unwrap(),
        Provisioned::Found(_)
    ));
    assert_eq!(db.client().count(KEY), 1);
}

#[test]
fn a_dynamic_object_gets_the_same_key_as_its_typed_twin() {
    let db = setup();
    let typed = object();
    let mut dynamic = DynamicObject::new("db", &ApiResource::erase::<ConfigMap>(&()));
    dynamic.metadata.uid = typed.metadata.uid.clone();
    assert_eq!(db.key(&dynamic).unwrap(), db.key(&typed).unwrap());
    assert!(run(db.ensure(&dynamic, &())).unwrap().is_created());
    assert!(!run(db.ensure(&typed, &())).unwrap().is_created());
    assert_eq!(db.client().count(KEY), 1);
}

#[test]
fn an_object_without_uid_is_a_terminal_error_and_calls_nothing() {
    let db = setup();
    let err = run(db.ensure(&ConfigMap::default(), &())).unwrap_err();
    assert!(matches!(err, ExternalError::MissingUid { .. }));
    assert_eq!(crate::Classify::class(&err), ErrorClass::Terminal);
    assert_eq!(db.client().observes.load(SeqCst), 0);
}

#[test]
fn delete_counts_gone_as_done() {
    let db = setup();
    assert_eq!(run(db.delete(&object())).unwrap(), Deletion::Gone);
    run(db.ensure(&object(), &())).unwrap();
    assert!(matches!(
        run(db.delete(&object())).unwrap(),
        Deletion::Requested(_)
    ));
    assert_eq!(run(db.delete(&object())).unwrap(), Deletion::Gone);
    assert_eq!(db.client().count(KEY), 0);
}

#[test]
fn a_failed_delete_of_a_resource_that_is_still_there_is_an_error() {
    let db = setup();
    run(db.ensure(&object(), &())).unwrap();
    db.client().refuse_delete.store(true, SeqCst);
    let err = run(db.delete(&object())).unwrap_err();
    assert!(matches!(
        err,
        ExternalError::Call(FakeError("delete refused", _))
    ));
    assert_eq!(db.client().count(KEY), 1);
}

#[test]
fn a_crash_at_any_step_of_a_delete_still_ends_gone() {
    for polls in 0.. {
        let db = setup();
        run(db.ensure(&object(), &())).unwrap();
        if let Some(done) = crash_after(db.delete(&object()), polls) {
            assert!(matches!(done.unwrap(), Deletion::Requested(_)));
            break;
        }
        let again = run(db.delete(&object())).unwrap();
        assert_eq!(db.client().count(KEY), 0, "crash after {polls} polls");
        // Gone, or (if the crash came before the delete reached the system) deleted now.
        if let Deletion::Requested(_) = again {
            assert_eq!(run(db.delete(&object())).unwrap(), Deletion::Gone);
        }
    }
}

proptest! {
    #[test]
    fn crashes_in_any_order_end_with_exactly_one_resource(
        crashes in proptest::collection::vec(0usize..12, 0..6),
        lose_response in any::<bool>(),
    ) {
        let db = setup();
        db.client().lose_create_response.store(lose_response, SeqCst);
        for polls in crashes {
            let _ = crash_after(db.ensure(&object(), &()), polls);
            prop_assert!(db.client().count(KEY) <= 1);
        }
        let provisioned = run(db.ensure(&object(), &())).unwrap();
        prop_assert_eq!(db.client().count(KEY), 1);
        prop_assert_eq!(db.client().most_per_key.load(SeqCst), 1);
        prop_assert_eq!(db.client().creates.load(SeqCst), 1);
        let id = db.client().ids().pop().unwrap();
        prop_assert_eq!(&provisioned.resource().0, &id);
    }
}
