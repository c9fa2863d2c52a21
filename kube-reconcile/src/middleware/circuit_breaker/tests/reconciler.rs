//! The reconciler wrapper: deferrals while open, and what it records.

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::controller::Action;

use super::*;
use crate::{
    DeferReason, Deferral, Outcome, Reconciler, ReconcilerExt,
    middleware::timeout::{TimeoutError, TimeoutLayer},
};

/// A reconciler that counts its calls and answers with a fixed outcome.
struct Scripted {
    calls: AtomicU32,
    answer: fn() -> Outcome<ErrorClass>,
}

impl Scripted {
    fn new(answer: fn() -> Outcome<ErrorClass>) -> Self {
        Scripted {
            calls: AtomicU32::new(0),
            answer,
        }
    }
}

impl Reconciler<ConfigMap, ()> for Scripted {
    type Error = ErrorClass;

    async fn reconcile(&self, obj: Arc<ConfigMap>, ctx: Arc<()>) -> Result<Action, ErrorClass> {
        self.call(obj, ctx).await.into_result()
    }

    async fn call(&self, _: Arc<ConfigMap>, _: Arc<()>) -> Outcome<ErrorClass> {
        self.calls.fetch_add(1, SeqCst);
        (self.answer)()
    }

    fn error_action(&self, _: &ConfigMap, _: &ErrorClass) -> Action {
        Action::requeue(Duration::from_secs(42))
    }
}

fn args() -> (Arc<ConfigMap>, Arc<()>) {
    (Arc::new(ConfigMap::default()), Arc::new(()))
}

fn failing() -> Outcome<ErrorClass> {
    Outcome::Failed(ErrorClass::Transient)
}

#[tokio::test(start_paused = true)]
async fn open_breaker_defers_without_calling_the_inner_reconciler() {
    let breaker = BreakerConfig::default()
        .open_duration_jitter(0.0)
        .build("dbaas")
        .unwrap();
    let r = Scripted::new(failing).with(CircuitBreakerLayer::from(breaker.clone()));
    let (obj, ctx) = args();
    while breaker.state() == State::Closed {
        assert!(r.call(obj.clone(), ctx.clone()).await.is_failed());
    }
    let ran = r.get_ref().calls.load(SeqCst);
    assert_eq!(ran, 10, "10 consecutive failures by default");
    tokio::time::advance(Duration::from_secs(10)).await;
    let outcome = r.call(obj.clone(), ctx.clone()).await;
    let Outcome::Deferred(Deferral {
        retry_after,
        reason,
    }) = outcome
    else {
        panic!("expected a deferral, got {outcome:?}")
    };
    assert_eq!(
        reason,
        DeferReason::CircuitOpen {
            dependency: "dbaas".into()
        }
    );
    let left = Duration::from_secs(20);
    assert!(
        retry_after >= left && retry_after <= left + Duration::from_secs(5),
        "{retry_after:?}"
    );
    assert_eq!(
        r.get_ref().calls.load(SeqCst),
        ran,
        "the inner reconciler did not run"
    );
    // A controller sees a requeue, not an error.
    assert!(r.reconcile(obj, ctx).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn deferrals_spread_callers_apart() {
    let r = Scripted::new(failing).with(CircuitBreakerLayer::new("dbaas"));
    r.breaker().force_open();
    let (obj, ctx) = args();
    let mut waits = Vec::new();
    for _ in 0..50 {
        let Outcome::Deferred(d) = r.call(obj.clone(), ctx.clone()).await else {
            panic!("not deferred")
        };
        waits.push(d.retry_after);
    }
    let (lo, hi) = (Duration::from_secs(30), Duration::from_secs(35));
    assert!(waits.iter().all(|w| *w >= lo && *w <= hi), "{waits:?}");
    waits.sort();
    waits.dedup();
    assert!(
        waits.len() > 40,
        "only {} distinct retry times",
        waits.len()
    );
    assert!(
        waits[waits.len() - 1].saturating_sub(waits[0]) > Duration::from_secs(3),
        "spread over most of 5 s"
    );
}

#[tokio::test(start_paused = true)]
async fn inner_deferrals_are_neither_success_nor_failure() {
    fn deferred() -> Outcome<ErrorClass> {
        Outcome::Deferred(Deferral {
            retry_after: Duration::from_secs(1),
            reason: DeferReason::BackingOff,
        })
    }
    let breaker = BreakerConfig::default()
        .permitted_probes(nz(1))
        .consecutive_failures(1)
        .build("dbaas")
        .unwrap();
    let r = CircuitBreaker::new(Scripted::new(deferred), breaker.clone());
    let (obj, ctx) = args();
    r.call(obj.clone(), ctx.clone()).await;
    assert_eq!(breaker.snapshot().calls, 0);
    breaker
        .try_acquire()
        .unwrap()
        .failure(ErrorClass::Transient);
    tokio::time::advance(Duration::from_secs(30)).await;
    for _ in 0..3 {
        let outcome = r.call(obj.clone(), ctx.clone()).await;
        assert!(matches!(
            outcome,
            Outcome::Deferred(Deferral {
                reason: DeferReason::BackingOff,
                ..
            })
        ));
    }
    assert_eq!(
        r.get_ref().calls.load(SeqCst),
        4,
        "each deferral gave its probe slot back"
    );
    assert_eq!(breaker.state(), State::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn successes_close_and_failures_count_through_the_wrapper() {
    let breaker = BreakerConfig::default()
        .consecutive_failures(2)
        .permitted_probes(nz(1))
        .build("dbaas")
        .unwrap();
    let failing_r = CircuitBreaker::new(Scripted::new(failing), breaker.clone());
    let ok_r = CircuitBreaker::new(
        Scripted::new(|| Outcome::Done(Action::await_change())),
        breaker.clone(),
    );
    let (obj, ctx) = args();
    failing_r.call(obj.clone(), ctx.clone()).await;
    ok_r.call(obj.clone(), ctx.clone()).await;
    assert_eq!(
        (breaker.snapshot().calls, breaker.snapshot().failures),
        (2, 1)
    );
    failing_r.call(obj.clone(), ctx.clone()).await;
    failing_r.call(obj.clone(), ctx.clone()).await;
    assert_eq!(breaker.state(), State::Open);
    tokio::time::advance(Duration::from_secs(30)).await;
    assert!(matches!(ok_r.call(obj, ctx).await, Outcome::Done(_)));
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_timeout_inside_the_breaker_is_a_slow_failure() {
    async fn hangs(_: Arc<ConfigMap>, _: Arc<()>) -> Result<Action, ErrorClass> {
        std::future::pending().await
    }
    let r = hangs
        .with(TimeoutLayer::new(Duration::from_secs(5)))
        .with(CircuitBreakerLayer::new("dbaas"));
    let (obj, ctx) = args();
    let outcome = r.call(obj, ctx).await;
    assert!(matches!(
        outcome,
        Outcome::Failed(TimeoutError::Elapsed { .. })
    ));
    let snapshot = r.breaker().snapshot();
    assert_eq!((snapshot.failures, snapshot.slow_calls), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn terminal_errors_pass_through_uncounted_and_error_action_is_the_inner_one() {
    let r = Scripted::new(|| Outcome::Failed(ErrorClass::Terminal))
        .with(CircuitBreakerLayer::new("dbaas"));
    let (obj, ctx) = args();
    for _ in 0..30 {
        assert!(r.call(obj.clone(), ctx.clone()).await.is_failed());
    }
    assert_eq!(r.breaker().state(), State::Closed);
    assert_eq!(r.breaker().snapshot().calls, 0);
    assert_eq!(
        r.error_action(&obj, &ErrorClass::Terminal),
        Action::requeue(Duration::from_secs(42))
    );
}

#[tokio::test(start_paused = true)]
async fn a_dropped_reconcile_records_nothing() {
    use futures::FutureExt;
    async fn hangs(_: Arc<ConfigMap>, _: Arc<()>) -> Result<Action, ErrorClass> {
        std::future::pending().await
    }
    let r = hangs.with(CircuitBreakerLayer::new("dbaas"));
    let (obj, ctx) = args();
    assert!(r.call(obj, ctx).now_or_never().is_none());
    assert_eq!(r.breaker().snapshot().calls, 0);
}
