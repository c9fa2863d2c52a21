//! The pieces wired together the way the docs suggest, and what must hold then: a breaker
//! shared by a layer and a dependency closes only after a real success, a cleanup held
//! back by the operator's own budget waits instead of failing, the idempotency journal
//! never makes the engine's write conflict, and a flaky health endpoint holds no one back.

mod buckets;

use std::{
    num::NonZeroU32,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::api::events::v1::Event;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, PostParams},
    runtime::{Controller, controller::Action, watcher},
};
use kube_reconcile::{
    ControllerExt, Reconciler, ReconcilerExt,
    external::{Dependency, ExternalError, Health},
    middleware::{
        backoff::BackoffLayer,
        circuit_breaker::{BreakerConfig, CircuitBreakerLayer, State},
        rate_limit::{Quota, RateBudget},
    },
};

use buckets::{Bucket, Store, StoreError, bucket, engine, phase_of, server_with_crd, until};

struct Deps {
    dependency: Dependency<Store>,
    up: Arc<AtomicBool>,
    successes: Arc<AtomicU32>,
    calls: Arc<AtomicU32>,
}
// A reconcile as the README's stack runs it: the handler calls through the
// dependency and, held back, requeues at the time it was given.
async fn reconcile(_: Arc<Bucket>, deps: Arc<Deps>) -> Result<Action, ExternalError<StoreError>> {
    let call = |_: &Store| async {
        deps.calls.fetch_add(1, Ordering::SeqCst);
        if deps.up.load(Ordering::SeqCst) {
            deps.successes.fetch_add(1, Ordering::SeqCst);
            Ok(())
        } else {
            Err(StoreError)
        }
    };
    match deps.dependency.call(call).await {
        Ok(()) => Ok(Action::await_change()),
        Err(ExternalError::Unavailable(u)) => Ok(Action::requeue(u.retry_after)),
        Err(e) => Err(e),
    }
}

/// (a) A breaker shared by a `CircuitBreakerLayer` and an `ExternalDependency`, the
/// dependency still down when the open time is up: the half-open probe is a real call,
/// and the circuit closes only after a real call succeeded.
#[tokio::test(start_paused = true)]
async fn a_breaker_shared_by_a_layer_and_a_dependency_closes_only_after_a_real_success() {
    let breaker = BreakerConfig::default()
        .min_calls(NonZeroU32::new(2).unwrap())
        .open_duration(Duration::from_secs(10))
        .permitted_probes(NonZeroU32::MIN)
        .spread(Duration::from_millis(100))
        .build("store")
        .unwrap();
    let dependency = Store::default()
        .dependency()
        .breaker(breaker.clone())
        .spread(Duration::ZERO)
        .build();
    let up = Arc::new(AtomicBool::new(false));
    let successes = Arc::new(AtomicU32::new(0));
    let calls = Arc::new(AtomicU32::new(0));
    // Every transition to Closed, with the real successes seen until then.
    let closed_after = Arc::new(Mutex::new(Vec::new()));
    {
        let (successes, closed_after) = (successes.clone(), closed_after.clone());
        breaker.on_transition(move |t| {
            if t.to == State::Closed {
                closed_after
                    .lock()
                    .unwrap()
                    .push(successes.load(Ordering::SeqCst));
            }
        });
    }

    let reconciler = reconcile.with(CircuitBreakerLayer::from(breaker.clone()));
    let deps = Arc::new(Deps {
        dependency,
        up: up.clone(),
        successes: successes.clone(),
        calls: calls.clone(),
    });
    let obj = Arc::new(bucket("b"));

    // Down: two failures open the circuit.
    for _ in 0..2 {
        assert!(
            reconciler
                .reconcile(obj.clone(), deps.clone())
                .await
                .is_err()
        );
    }
    assert_eq!(breaker.state(), State::Open);
    // Still down when the open time is up, for several rounds: each probe is a real
    // call that fails, and the circuit opens again.
    // (The open time may grow with each opening.)
    let open_time_up = || async {
        let left = breaker.snapshot().remaining_open.unwrap_or_default();
        tokio::time::advance(left + Duration::from_millis(200)).await;
    };
    for round in 0..3 {
        open_time_up().await;
        let before = calls.load(Ordering::SeqCst);
        let _ = reconciler.reconcile(obj.clone(), deps.clone()).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            before + 1,
            "round {round}: the probe is a real call"
        );
        assert_ne!(
            breaker.state(),
            State::Closed,
            "round {round}: closed with no real success"
        );
    }
    // Up again: the next probe succeeds and closes the circuit.
    up.store(true, Ordering::SeqCst);
    open_time_up().await;
    reconciler
        .reconcile(obj.clone(), deps.clone())
        .await
        .unwrap();
    assert_eq!(breaker.state(), State::Closed);
    let closed_after = closed_after.lock().unwrap().clone();
    assert!(!closed_after.is_empty());
    assert!(
        closed_after.iter().all(|&successes| successes > 0),
        "the breaker closed before any real call succeeded: {closed_after:?}"
    );
}

/// (b) Deleting 100 objects while every call to the store goes through a tight budget,
/// with a breaker layer around the engine: the cleanups wait for their turns instead of
/// failing, so there is no `CleanupFailed` event and the breaker never trips.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_under_a_tight_budget_waits_for_turns_without_failures_or_trips() {
    const N: usize = 100;
    let (_server, client) = server_with_crd().await;
    let breaker = BreakerConfig::default()
        .min_calls(NonZeroU32::new(4).unwrap())
        .build("store")
        .unwrap();
    let trips = Arc::new(AtomicU32::new(0));
    {
        let trips = trips.clone();
        breaker.on_transition(move |_| {
            trips.fetch_add(1, Ordering::SeqCst);
        });
    }
    let budget = RateBudget::new(
        "store",
        Quota::per_second(NonZeroU32::new(100).unwrap()).burst(NonZeroU32::new(5).unwrap()),
    );
    let store = Store::default();
    let dependency = store
        .dependency()
        .breaker(breaker.clone())
        .budget(budget)
        .build();
    let (engine, ctx) = engine(&client, dependency);
    let reconciler = engine
        .with(CircuitBreakerLayer::from(breaker.clone()))
        .with(BackoffLayer::operator());
    let api: Api<Bucket> = Api::namespaced(client.clone(), "default");
    let controller = tokio::spawn(
        Controller::new(api.clone(), watcher::Config::default())
            .run_reconciler(reconciler, ctx)
            .for_each(|_| async {}),
    );
    for i in 0..N {
        api.create(&PostParams::default(), &bucket(&format!("b{i}")))
            .await
            .unwrap();
    }
    until(&api, "every bucket Ready", |list| {
        list.len() == N && list.iter().all(|b| phase_of(b) == Some("Ready"))
    })
    .await;
    assert_eq!(store.buckets.lock().unwrap().len(), N);

    let started = tokio::time::Instant::now();
    api.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .unwrap();
    until(&api, "every bucket deleted", <[Bucket]>::is_empty).await;
    let took = started.elapsed();
    controller.abort();

    assert!(
        store.buckets.lock().unwrap().is_empty(),
        "every bucket deprovisioned"
    );
    let events = Api::<Event>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    // About one Event per transition: Created, Pending -> Provisioning, Provisioning ->
    // Ready and CleanedUp for each bucket; repeats are one Event with a series count.
    assert!(
        events.len() <= 4 * N,
        "{} Events for {N} buckets: {:?}",
        events.len(),
        events.iter().map(|e| e.reason.clone()).collect::<Vec<_>>()
    );
    let failed: Vec<_> = events
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("CleanupFailed"))
        .collect();
    assert!(
        failed.is_empty(),
        "{} CleanupFailed events: {:?}",
        failed.len(),
        failed.first().map(|e| &e.note)
    );
    assert_eq!(trips.load(Ordering::SeqCst), 0, "the breaker changed state");
    println!(
        "composition: {N} buckets deleted in {:.2} s with {} store calls in all, budget 100 calls/s",
        took.as_secs_f64(),
        store.calls.load(Ordering::SeqCst)
    );
}

/// (c) An exactly-once create in a handler, then the engine's status write: the protocol
/// writes nothing to the object, so the engine is its only writer and no reconcile
/// conflicts.
#[tokio::test]
async fn an_exactly_once_create_never_makes_the_engines_write_conflict() {
    let (server, client) = server_with_crd().await;
    let store = Store::default();
    let (engine, ctx) = engine(&client, store.dependency().build());
    let api: Api<Bucket> = Api::namespaced(client.clone(), "default");
    for i in 0..5 {
        let name = format!("j{i}");
        api.create(&PostParams::default(), &bucket(&name))
            .await
            .unwrap();
        // Step by step, each reconcile on the object as stored.
        for step in 0..6 {
            let obj = api.get(&name).await.unwrap();
            if phase_of(&obj) == Some("Ready") {
                break;
            }
            let result = engine.reconcile(Arc::new(obj), ctx.clone()).await;
            assert!(result.is_ok(), "{name}, step {step}: {:?}", result.err());
        }
        let obj = api.get(&name).await.unwrap();
        assert_eq!(phase_of(&obj), Some("Ready"));
        let key = format!("bucket-{}", obj.uid().unwrap());
        assert!(store.buckets.lock().unwrap().contains_key(&key));
        assert!(obj.annotations().is_empty(), "nothing but the engine wrote");
    }
    assert_eq!(store.buckets.lock().unwrap().len(), 5);
    // The object and its status were written, never refused.
    assert!(
        server.requests().get(
            kube_reconcile_testing::Verb::Patch,
            "buckets.test.kube-reconcile.dev/status"
        ) >= 5
    );
}

/// The handle around `store`, its health checked once a second.
fn checked_every_second(store: &Store) -> kube_reconcile::external::Dependency<Store> {
    store
        .dependency()
        .health_interval(Duration::from_secs(1))
        .build()
}

/// (d) A health endpoint that fails one answer in ten: never three in a row, so the
/// dependency never counts as down and no call is held back.
#[tokio::test(start_paused = true)]
async fn a_health_check_failing_one_answer_in_ten_holds_nothing_back() {
    let store = Store::with_health(|n| {
        if n % 10 == 9 {
            Health::unavailable("503 from /healthz")
        } else {
            Health::Available
        }
    });
    let dependency = checked_every_second(&store);
    let mut refused = 0;
    for _ in 0..500 {
        if dependency
            .call(|_| async { Ok::<_, StoreError>(()) })
            .await
            .is_err()
        {
            refused += 1;
        }
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    assert!(
        store.health_checks.load(Ordering::SeqCst) >= 490,
        "checked about once a second"
    );
    assert_eq!(refused, 0, "calls held back by single failed answers");

    // Three failed answers in a row are an outage.
    let down = Arc::new(AtomicBool::new(false));
    let probe = down.clone();
    let store = Store::with_health(move |_| {
        if probe.load(Ordering::SeqCst) {
            Health::unavailable("503")
        } else {
            Health::Available
        }
    });
    let dependency = checked_every_second(&store);
    assert!(
        dependency
            .call(|_| async { Ok::<_, StoreError>(()) })
            .await
            .is_ok()
    );
    down.store(true, Ordering::SeqCst);
    let mut held = Vec::new();
    for _ in 0..4 {
        tokio::time::advance(Duration::from_secs(1)).await;
        held.push(
            dependency
                .call(|_| async { Ok::<_, StoreError>(()) })
                .await
                .is_err(),
        );
    }
    assert_eq!(held, [false, false, true, true]);
}
