//! Deferrals: what a refused reconcile returns, pruning, cancellation, pass-through.

use std::num::NonZeroUsize;

use super::*;

#[tokio::test]
async fn a_refusal_defers_without_calling_the_inner_reconciler_and_jitters_the_wait() {
    let manual = ManualClock::new();
    let make = |seed| {
        let layer = RateLimitLayer::builder()
            .global(Quota::per_second(nz(2)).burst(nz(1)))
            .clock(manual.clock())
            .seed(seed)
            .build()
            .unwrap();
        Counting::default().with(layer)
    };
    let (r, twin) = (make(7), make(7));
    done(&r, &cm("a")).await;
    done(&twin, &cm("a")).await;
    let deferred = deferral(&r, &cm("b")).await;
    assert_eq!(deferred.reason, rate_limited("global"));
    // Exact wait 500 ms, plus up to the limit's refill time (500 ms, under the 1 s cap).
    assert!((Duration::from_millis(500)..=Duration::from_secs(1)).contains(&deferred.retry_after));
    assert_eq!(r.get_ref().runs(), 1, "the deferred reconcile did not run");
    assert_eq!(
        deferral(&twin, &cm("b")).await,
        deferred,
        "the same seed gives the same jitter"
    );
    let action = r
        .reconcile(cm("c"), Arc::new(()))
        .await
        .expect("a deferral is not an error");
    assert_ne!(action, Action::await_change(), "a deferral requeues");
}

#[tokio::test]
async fn objects_refused_by_a_budget_get_turns_one_emission_interval_apart() {
    let manual = ManualClock::new();
    let dbaas = budget("dbaas", Quota::per_second(nz(2)).burst(nz(1)), &manual);
    let layer = RateLimitLayer::builder()
        .budget(dbaas.clone())
        .clock(manual.clock())
        .build()
        .unwrap();
    let r = Counting::default().with(layer);
    done(&r, &cm("a")).await;
    let mut waits = Vec::new();
    for uid in ["b", "c", "d", "e"] {
        let deferred = deferral(&r, &cm(uid)).await;
        assert_eq!(deferred.reason, rate_limited("dbaas"));
        waits.push(deferred.retry_after.as_millis());
    }
    // The cell is back in 500 ms; then one every 500 ms, each for the next in line,
    // instead of all four at once (and three refused again).
    assert_eq!(waits, [500, 1000, 1500, 2000]);
    // The gate of an external Dependency on the same budget queues behind them.
    assert_eq!(
        dbaas.turn(nz(1), Duration::from_millis(500)),
        Duration::from_millis(2500)
    );
    // Each comes back at its turn and finds its cell.
    for (uid, wait) in ["b", "c", "d", "e"].into_iter().zip([500, 500, 500, 500]) {
        manual.advance(Duration::from_millis(wait));
        done(&r, &cm(uid)).await;
    }
    assert_eq!(r.get_ref().runs(), 5);
}

#[tokio::test]
async fn a_deferral_reports_the_limit_with_the_longest_wait() {
    let manual = ManualClock::new();
    let every = |secs| Quota::with_period(Duration::from_secs(secs)).unwrap();
    let layer = exact(&manual)
        .per_object(every(10))
        .global(every(60).burst(nz(2)))
        .build()
        .unwrap();
    let r = Counting::default().with(layer);
    done(&r, &cm("a")).await;
    done(&r, &cm("b")).await;
    let deferred = deferral(&r, &cm("a")).await;
    assert_eq!(deferred.reason, rate_limited("global"));
    assert_eq!(deferred.retry_after, Duration::from_secs(60));
}

#[tokio::test]
async fn idle_objects_are_pruned_to_zero_tracked_keys() {
    let manual = ManualClock::new();
    let layer = exact(&manual)
        .per_object(Quota::per_second(nz(5)))
        .build()
        .unwrap();
    let r = Counting::default().with(layer.clone());
    for uid in ["a", "b", "c"] {
        done(&r, &cm(uid)).await;
    }
    let handle = layer.handle();
    assert_eq!(handle.keys_tracked(), 3);
    manual.advance(Duration::from_secs(1));
    done(&r, &cm("d")).await;
    assert_eq!(handle.keys_tracked(), 1, "a new object swept the idle ones");
    manual.advance(Duration::from_secs(1));
    assert_eq!(handle.sweep(), 0);
    assert_eq!(handle.keys_tracked(), 0);
}

#[tokio::test]
async fn new_objects_beyond_max_keys_wait_until_tracked_ones_are_full_again() {
    let manual = ManualClock::new();
    let one = NonZeroUsize::new(1).unwrap();
    let r = Counting::default().with(
        exact(&manual)
            .per_object(per_minute(1))
            .max_keys(one)
            .build()
            .unwrap(),
    );
    done(&r, &cm("a")).await;
    let deferred = deferral(&r, &cm("b")).await;
    assert_eq!(
        (deferred.reason, deferred.retry_after),
        (rate_limited("object"), Duration::from_secs(60))
    );
    manual.advance(Duration::from_secs(60));
    done(&r, &cm("b")).await;
}

#[test]
fn a_future_dropped_before_it_is_polled_reserves_nothing() {
    let manual = ManualClock::new();
    let layer = exact(&manual)
        .per_object(per_minute(1))
        .global(per_minute(1))
        .build()
        .unwrap();
    let r = Counting::default().with(layer.clone());
    drop(r.call(cm("a"), Arc::new(())));
    let handle = layer.handle();
    assert!(handle.capacity("global").unwrap().is_full());
    assert_eq!(handle.keys_tracked(), 0);
}

#[tokio::test]
async fn inner_outcomes_and_error_actions_pass_through() {
    let manual = ManualClock::new();
    let inner_budget = budget("inner", per_minute(1), &manual);
    inner_budget.check().expect("drain the inner budget");
    let failing = Counting {
        fail: true,
        ..Counting::default()
    };
    let r = failing
        .with(RateLimitLayer::budget(inner_budget))
        .with(exact(&manual).global(per_minute(10)).build().unwrap());
    assert_eq!(deferral(&r, &cm("a")).await.reason, rate_limited("inner"));

    let r = Counting {
        fail: true,
        ..Counting::default()
    }
    .with(RateLimitLayer::global(per_minute(10)));
    let obj = cm("a");
    let err = r
        .reconcile(Arc::clone(&obj), Arc::new(()))
        .await
        .expect_err("the inner reconcile fails");
    assert_eq!(
        r.error_action(&obj, &err),
        Action::requeue(Duration::from_secs(1))
    );
}
