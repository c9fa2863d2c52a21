use std::{
    collections::VecDeque,
    num::NonZeroUsize,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use k8s_openapi::{api::core::v1::ConfigMap, apimachinery::pkg::apis::meta::v1::Time};
use kube::{api::ObjectMeta, runtime::controller::Action};

use super::*;
use crate::{ReconcilerExt, clock::ManualClock};

mod handle;
mod props;
mod pruning;

/// What the scripted reconciler does on one call.
#[derive(Clone, Copy, Debug)]
enum Step {
    Succeed,
    Defer,
    Fail(ErrorClass),
}

/// A reconciler that plays queued steps (then succeeds) and counts its calls.
#[derive(Clone, Default)]
struct Scripted {
    calls: Arc<AtomicUsize>,
    steps: Arc<Mutex<VecDeque<Step>>>,
}

impl Scripted {
    fn then(&self, step: Step) -> &Self {
        self.steps.lock().unwrap().push_back(step);
        self
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Reconciler<ConfigMap, ()> for Scripted {
    type Error = ErrorClass;

    async fn reconcile(&self, obj: Arc<ConfigMap>, ctx: Arc<()>) -> Result<Action, ErrorClass> {
        self.call(obj, ctx).await.into_result()
    }

    async fn call(&self, _: Arc<ConfigMap>, _: Arc<()>) -> Outcome<ErrorClass> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let step = self
            .steps
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Step::Succeed);
        match step {
            Step::Succeed => Outcome::Done(Action::await_change()),
            Step::Defer => Outcome::Deferred(Deferral {
                retry_after: Duration::from_secs(7),
                reason: DeferReason::RateLimited {
                    budget: "global".into(),
                },
            }),
            Step::Fail(class) => Outcome::Failed(class),
        }
    }
}

fn object(uid: &str, generation: Option<i64>) -> Arc<ConfigMap> {
    Arc::new(ConfigMap {
        metadata: ObjectMeta {
            namespace: Some("ns".into()),
            name: Some(format!("cm-{uid}")),
            uid: Some(uid.into()),
            generation,
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    })
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A client-go schedule (5 ms doubling, no jitter) on a manual clock.
fn manual(config: BackoffConfig) -> (Backoff<Scripted>, Scripted, ManualClock) {
    let time = ManualClock::new();
    let inner = Scripted::default();
    let layer = BackoffLayer::new(config.clock(time.clock())).unwrap();
    (inner.clone().with(layer), inner, time)
}

async fn run(r: &Backoff<Scripted>, obj: &Arc<ConfigMap>) -> Outcome<ErrorClass> {
    r.call(Arc::clone(obj), Arc::new(())).await
}

#[tokio::test(start_paused = true)]
async fn the_gate_defers_a_watch_triggered_reconcile_for_the_remaining_time() {
    let inner = Scripted::default();
    inner.then(Step::Fail(ErrorClass::Transient));
    let r = inner.clone().with(BackoffLayer::client_go());
    let cm = object("u1", Some(1));
    assert!(run(&r, &cm).await.is_failed());

    tokio::time::advance(ms(3)).await;
    let outcome = run(&r, &cm).await;
    let Outcome::Deferred(deferral) = outcome else {
        panic!("expected a deferral, got {outcome:?}")
    };
    assert_eq!(
        deferral,
        Deferral {
            retry_after: ms(2),
            reason: DeferReason::BackingOff
        }
    );
    assert_eq!(
        inner.calls(),
        1,
        "the inner reconciler must not run while backing off"
    );

    tokio::time::advance(ms(2)).await;
    assert!(matches!(run(&r, &cm).await, Outcome::Done(_)));
    assert_eq!(inner.calls(), 2);
    assert!(r.handle().is_empty());
}

#[tokio::test]
async fn a_generation_change_bypasses_the_gate_and_starts_fresh() {
    let (r, inner, time) = manual(BackoffConfig::client_go());
    for _ in 0..4 {
        inner.then(Step::Fail(ErrorClass::Transient));
        assert!(run(&r, &object("u1", Some(1))).await.is_failed());
        time.advance(r.handle().remaining("u1").unwrap());
    }
    assert_eq!(r.handle().attempts("u1"), 4);
    inner.then(Step::Fail(ErrorClass::Transient));
    assert!(run(&r, &object("u1", Some(1))).await.is_failed());
    assert!(matches!(
        run(&r, &object("u1", Some(1))).await,
        Outcome::Deferred(_)
    ));

    inner.then(Step::Fail(ErrorClass::Transient));
    assert!(
        run(&r, &object("u1", Some(2))).await.is_failed(),
        "a new spec runs at once"
    );
    assert_eq!(inner.calls(), 6);
    assert_eq!(r.handle().attempts("u1"), 1);
    assert_eq!(r.handle().remaining("u1"), Some(ms(5)));
}

#[tokio::test]
async fn throttled_waits_for_retry_after_and_escalates() {
    let (r, inner, time) = manual(BackoffConfig::client_go().cap(Duration::from_secs(10)));
    let cm = object("u1", None);
    let throttled = |secs| ErrorClass::Throttled {
        retry_after: Some(Duration::from_secs(secs)),
    };
    inner.then(Step::Fail(throttled(2)));
    let Outcome::Failed(err) = run(&r, &cm).await else {
        panic!("expected a failure")
    };
    assert_eq!(
        r.error_action(&cm, &err),
        Action::requeue(Duration::from_secs(2))
    );
    assert_eq!(r.handle().attempts("u1"), 1);

    time.advance(Duration::from_secs(2));
    inner.then(Step::Fail(throttled(60)));
    let Outcome::Failed(err) = run(&r, &cm).await else {
        panic!("expected a failure")
    };
    assert_eq!(
        r.error_action(&cm, &err),
        Action::requeue(Duration::from_secs(10)),
        "capped"
    );
    assert_eq!(r.handle().attempts("u1"), 2);
}

#[tokio::test]
async fn a_conflict_requeues_quickly_without_escalating() {
    let config = BackoffConfig::client_go().conflict_delay(ms(100));
    let (r, inner, time) = manual(config);
    let cm = object("u1", Some(3));
    for _ in 0..3 {
        inner.then(Step::Fail(ErrorClass::Transient));
        run(&r, &cm).await;
        time.advance(r.handle().remaining("u1").unwrap());
    }
    inner.then(Step::Fail(ErrorClass::Conflict));
    let Outcome::Failed(err) = run(&r, &cm).await else {
        panic!("expected a failure")
    };
    assert_eq!(r.error_action(&cm, &err), Action::requeue(ms(100)));
    assert_eq!(r.handle().attempts("u1"), 3);

    time.advance(ms(100));
    inner.then(Step::Fail(ErrorClass::Transient));
    run(&r, &cm).await;
    assert_eq!(r.handle().attempts("u1"), 4);
    assert_eq!(
        r.handle().remaining("u1"),
        Some(ms(40)),
        "the fourth failure waits 5 ms * 2^3"
    );
}

#[tokio::test]
async fn a_terminal_error_resets_and_awaits_a_change() {
    let (r, inner, time) = manual(BackoffConfig::client_go());
    let cm = object("u1", Some(1));
    inner.then(Step::Fail(ErrorClass::Transient));
    run(&r, &cm).await;
    time.advance(ms(5));
    inner.then(Step::Fail(ErrorClass::Terminal));
    let Outcome::Failed(err) = run(&r, &cm).await else {
        panic!("expected a failure")
    };
    assert_eq!(r.error_action(&cm, &err), Action::await_change());
    assert!(r.handle().is_empty());
    assert_eq!(r.handle().attempts("u1"), 0);
}

#[tokio::test]
async fn an_inner_deferral_leaves_the_state_unchanged() {
    let (r, inner, time) = manual(BackoffConfig::client_go());
    let cm = object("u1", Some(1));
    inner.then(Step::Fail(ErrorClass::Transient));
    run(&r, &cm).await;
    time.advance(ms(5));
    let before = r.handle().peek("u1");
    inner.then(Step::Defer);
    assert!(matches!(
        run(&r, &cm).await,
        Outcome::Deferred(Deferral {
            reason: DeferReason::RateLimited { .. },
            ..
        })
    ));
    assert_eq!(r.handle().peek("u1"), before);
    assert_eq!(r.handle().attempts("u1"), 1);
}
