//! The layer: reserve and commit and shared budgets here; deferrals and configuration in
//! the submodules.

mod adaptive;
mod config;
mod deferral;

use std::{
    num::NonZeroU32,
    sync::atomic::{AtomicU32, AtomicUsize, Ordering},
    time::Duration,
};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;

use super::*;
use crate::{ErrorClass, ReconcilerExt, clock::ManualClock};

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("test values are not zero")
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(nz(n))
}

fn cm(uid: &str) -> Arc<ConfigMap> {
    Arc::new(ConfigMap {
        metadata: ObjectMeta {
            namespace: Some("ns".into()),
            name: Some(format!("cm-{uid}")),
            uid: Some(uid.into()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    })
}

fn budget(name: &str, quota: Quota, manual: &ManualClock) -> RateBudget {
    RateBudget::from_limiter(name, RateLimiter::new(quota).clock(manual.clock()))
}

/// A builder on `manual`'s clock, without jitter.
fn exact(manual: &ManualClock) -> RateLimitBuilder {
    RateLimitLayer::builder()
        .clock(manual.clock())
        .jitter(Duration::ZERO)
}

/// A reconciler that counts its runs and fails with `Conflict` when told to.
#[derive(Clone, Default)]
struct Counting {
    runs: Arc<AtomicUsize>,
    fail: bool,
}

impl Counting {
    fn runs(&self) -> usize {
        self.runs.load(Ordering::Relaxed)
    }
}

impl Reconciler<ConfigMap, ()> for Counting {
    type Error = ErrorClass;

    async fn reconcile(&self, _: Arc<ConfigMap>, _: Arc<()>) -> Result<Action, ErrorClass> {
        self.runs.fetch_add(1, Ordering::Relaxed);
        if self.fail {
            Err(ErrorClass::Conflict)
        } else {
            Ok(Action::await_change())
        }
    }
}

async fn deferral<R: Reconciler<ConfigMap, ()>>(r: &R, obj: &Arc<ConfigMap>) -> Deferral {
    match r.call(Arc::clone(obj), Arc::new(())).await {
        Outcome::Deferred(deferral) => deferral,
        Outcome::Done(_) => panic!("expected a deferral, the reconcile ran"),
        Outcome::Failed(_) => panic!("expected a deferral, the reconcile failed"),
    }
}

async fn done<R: Reconciler<ConfigMap, ()>>(r: &R, obj: &Arc<ConfigMap>) {
    let outcome = r.call(Arc::clone(obj), Arc::new(())).await;
    assert!(
        matches!(outcome, Outcome::Done(_)),
        "expected the reconcile to run"
    );
}

fn rate_limited(budget: &str) -> DeferReason {
    DeferReason::RateLimited {
        budget: budget.into(),
    }
}
#[tokio::test]
async fn a_denied_per_object_check_leaves_the_global_budget_untouched() {
    let manual = ManualClock::new();
    let layer = exact(&manual)
        .per_object(per_minute(1))
        .global(per_minute(10))
        .build()
        .unwrap();
    let inner = Counting::default();
    let r = inner.clone().with(layer.clone());
    let hot = cm("hot");
    done(&r, &hot).await;
    for _ in 0..5 {
        let deferred = deferral(&r, &hot).await;
        assert_eq!(deferred.reason, rate_limited("object"));
        assert_eq!(deferred.retry_after, Duration::from_secs(60));
    }
    assert_eq!(inner.runs(), 1);
    assert_eq!(layer.handle().capacity("global").unwrap().remaining(), 9);
}

#[tokio::test]
async fn a_global_refusal_returns_what_the_object_and_budget_limits_reserved() {
    let manual = ManualClock::new();
    let dbaas = budget("dbaas", per_minute(5), &manual);
    let layer = exact(&manual)
        .per_object(per_minute(2))
        .budget(dbaas.clone())
        .global(per_minute(1))
        .build()
        .unwrap();
    let r = Counting::default().with(layer.clone());
    done(&r, &cm("a")).await;
    let b = cm("b");
    let deferred = deferral(&r, &b).await;
    assert_eq!(deferred.reason, rate_limited("global"));
    assert_eq!(deferred.retry_after, Duration::from_secs(60));
    let handle = layer.handle();
    assert!(
        handle.object_capacity(&*b).unwrap().is_full(),
        "b's own cells came back"
    );
    assert_eq!(
        dbaas.capacity().remaining(),
        4,
        "only a's call drew from the budget"
    );
}

#[test]
fn concurrent_refusals_never_burn_cells_of_the_other_limits() {
    let manual = ManualClock::new();
    let dbaas = budget("dbaas", per_minute(1_000), &manual);
    let layer = exact(&manual)
        .per_object(per_minute(1))
        .budget(dbaas.clone())
        .global(per_minute(7))
        .build()
        .unwrap();
    let objects: Vec<_> = (0..40).map(|i| cm(&format!("u{i}"))).collect();
    let admitted = AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for obj in objects.iter().chain(&objects) {
                    if layer.shared.admit(&**obj).is_ok() {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let admitted = admitted.into_inner();
    assert_eq!(
        admitted, 7,
        "the global limit admits its burst, no more, no less"
    );
    assert_eq!(dbaas.capacity().remaining(), 1_000 - admitted);
    let handle = layer.handle();
    let objects_charged = objects
        .iter()
        .filter(|o| !handle.object_capacity(&***o).unwrap().is_full())
        .count();
    assert_eq!(objects_charged, 7, "refused objects got their cell back");
}

#[tokio::test]
async fn a_named_budget_is_shared_by_two_layers_and_direct_callers() {
    let manual = ManualClock::new();
    let dbaas = budget("dbaas", per_minute(3), &manual);
    let databases = Counting::default().with(RateLimitLayer::budget(dbaas.clone()));
    let backups = Counting::default().with(
        exact(&manual)
            .budget(dbaas.clone())
            .per_object(per_minute(5))
            .build()
            .unwrap(),
    );
    done(&databases, &cm("db")).await;
    done(&backups, &cm("backup")).await;
    dbaas
        .check()
        .expect("the third cell, taken by an API client");
    assert_eq!(
        deferral(&databases, &cm("db")).await.reason,
        rate_limited("dbaas")
    );
    assert_eq!(
        deferral(&backups, &cm("other")).await.reason,
        rate_limited("dbaas")
    );
    manual.advance(Duration::from_secs(20));
    done(&backups, &cm("other")).await;
}

#[tokio::test]
async fn weighted_calls_take_their_weight_from_every_limit() {
    let manual = ManualClock::new();
    let layer = exact(&manual)
        .per_object(per_minute(4))
        .global(per_minute(10))
        .weight(nz(3))
        .build()
        .unwrap();
    let r = Counting::default().with(layer.clone());
    let obj = cm("a");
    done(&r, &obj).await;
    let handle = layer.handle();
    assert_eq!(handle.capacity("global").unwrap().remaining(), 7);
    assert_eq!(handle.object_capacity(&*obj).unwrap().remaining(), 1);
    assert_eq!(deferral(&r, &obj).await.reason, rate_limited("object"));
}
