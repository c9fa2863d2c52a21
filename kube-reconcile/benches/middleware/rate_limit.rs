//! `RateLimit`: the admit path of our GCRA against governor's, same quota, same keys.
//!
//! The quota is generous (10⁹ per second) so every check is admitted: the bench measures
//! the path a healthy controller takes on every reconcile. Each comparison runs three
//! ways: both sides on their default clock (both read the CPU's time-stamp counter
//! through quanta here: ours does outside `current_thread` runtimes, see
//! `kube_reconcile::clock`), governor on `std::time::Instant` (its `MonotonicClock`,
//! for context: what tokio's clock costs), and on fake clocks (the limiter alone,
//! without the cost of reading time). The limiters run outside a runtime; the
//! `*_multi_thread_runtime` variants run ours with a multi-thread runtime entered, as
//! in an operator, and the clock group reads our clock in each kind of runtime.
//!
//! Every check is measured as `check(..).is_ok()`: returning the whole refusal through
//! the harness made governor's figure swing by 5 ns with inlining decisions (a
//! store-forwarding stall on its 48-byte error), which is the harness, not the limiter.

use std::{hint::black_box, num::NonZeroU32, sync::Arc, time::Duration};

use criterion::Criterion;
use futures::FutureExt;
use governor::clock::{Clock as _, FakeRelativeClock, MonotonicClock, QuantaClock};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{api::ObjectMeta, runtime::controller::Action};
use kube_reconcile::{
    ErrorClass, ObjectKey, Outcome, Reconciler, ReconcilerExt,
    clock::Clock,
    middleware::rate_limit::{KeyedLimiter, Quota, RateLimitLayer, RateLimiter},
    testing::ManualClock,
};

use crate::support::{Report, allocations, live_bytes};

/// Keys cycled through by the hot-path benches.
const HOT_KEYS: usize = 1_000;
/// Keys inserted to measure memory per key and pruning.
const MANY_KEYS: usize = 100_000;
const GENEROUS: NonZeroU32 = NonZeroU32::new(1_000_000_000).expect("not zero");

/// Keys shaped like object UIDs, the keys a per-object limit sees.
fn uids(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{i:08x}-7d1e-4c3a-9f00-{:012x}", i * 7919))
        .collect()
}

fn ours_quota() -> Quota {
    Quota::per_second(GENEROUS)
}

fn governor_quota() -> governor::Quota {
    governor::Quota::per_second(GENEROUS)
}

pub(crate) fn benches(c: &mut Criterion, report: &mut Report) {
    clocks(c, report);
    keyed(c, report);
    direct(c, report);
    layer(c, report);
    memory(report);
}

fn clocks(c: &mut Criterion, report: &mut Report) {
    let multi_thread = runtime(tokio::runtime::Builder::new_multi_thread().worker_threads(1));
    let current_thread = runtime(&mut tokio::runtime::Builder::new_current_thread());
    let ours = Clock::tokio();
    let quanta = QuantaClock::default();
    let mut group = c.benchmark_group("rate_limit_clock");
    group.bench_function("ours", |b| b.iter(|| black_box(ours.now())));
    group.bench_function("governor", |b| b.iter(|| black_box(quanta.now())));
    group.bench_function("tokio_instant", |b| {
        b.iter(|| black_box(tokio::time::Instant::now()));
    });
    for (id, rt) in [
        ("ours_multi_thread_runtime", &multi_thread),
        ("ours_current_thread_runtime", &current_thread),
    ] {
        let _entered = rt.enter();
        group.bench_function(id, |b| b.iter(|| black_box(ours.now())));
    }
    group.finish();
    report.ratio(
        "clock read outside a runtime (vs quanta)",
        "rate_limit_clock/ours",
        "rate_limit_clock/governor",
        "none: context (the clock follows tokio::time::pause)",
    );
    report.ratio(
        "clock read in a multi-thread runtime (vs quanta)",
        "rate_limit_clock/ours_multi_thread_runtime",
        "rate_limit_clock/governor",
        "none: context",
    );
    report.ratio(
        "clock read in a current_thread runtime (tokio)",
        "rate_limit_clock/ours_current_thread_runtime",
        "rate_limit_clock/tokio_instant",
        "none: context (tokio's clock, pausable)",
    );
}

/// Our clock read in a paused runtime. Run last: once any runtime is paused, every
/// later tokio clock read in a `current_thread` runtime of the process takes tokio's
/// locked path, which would skew the other groups.
pub(crate) fn paused_clock(c: &mut Criterion, report: &mut Report) {
    let paused = runtime(tokio::runtime::Builder::new_current_thread().start_paused(true));
    let _entered = paused.enter();
    let ours = Clock::tokio();
    let mut group = c.benchmark_group("rate_limit_clock");
    group.bench_function("ours_paused_runtime", |b| b.iter(|| black_box(ours.now())));
    group.bench_function("tokio_instant_paused_runtime", |b| {
        b.iter(|| black_box(tokio::time::Instant::now()));
    });
    group.finish();
    report.ratio(
        "clock read in a paused runtime (tokio)",
        "rate_limit_clock/ours_paused_runtime",
        "rate_limit_clock/tokio_instant_paused_runtime",
        "none: context",
    );
}

fn runtime(builder: &mut tokio::runtime::Builder) -> tokio::runtime::Runtime {
    builder.enable_time().build().expect("a tokio runtime")
}

fn keyed(c: &mut Criterion, report: &mut Report) {
    let keys = uids(HOT_KEYS);
    let ours = KeyedLimiter::<String>::new(ours_quota());
    let ours_manual = {
        let _manual = ManualClock::new().enter();
        KeyedLimiter::<String>::new(ours_quota())
    };
    let governor = governor::RateLimiter::keyed(governor_quota());
    let governor_std = governor::RateLimiter::dashmap_with_clock(governor_quota(), MonotonicClock);
    let governor_fake =
        governor::RateLimiter::dashmap_with_clock(governor_quota(), FakeRelativeClock::default());
    for key in &keys {
        ours.check_key(key.as_str()).expect("admitted");
        ours_manual.check_key(key.as_str()).expect("admitted");
        governor.check_key(key).expect("admitted");
        governor_std.check_key(key).expect("admitted");
        governor_fake.check_key(key).expect("admitted");
    }

    let multi_thread = runtime(tokio::runtime::Builder::new_multi_thread().worker_threads(1));
    let mut group = c.benchmark_group("rate_limit_keyed");
    let mut bench = |id: &str, check: &dyn Fn(&String) -> bool| {
        group.bench_function(id, |b| {
            let mut cycle = keys.iter().cycle();
            b.iter(|| check(black_box(cycle.next().expect("cycle is endless"))));
        });
    };
    bench("ours", &|k| ours.check_key(k.as_str()).is_ok());
    bench("governor", &|k| governor.check_key(k).is_ok());
    {
        let _entered = multi_thread.enter();
        bench("ours_multi_thread_runtime", &|k| {
            ours.check_key(k.as_str()).is_ok()
        });
    }
    bench("governor_std_clock", &|k| governor_std.check_key(k).is_ok());
    bench("ours_manual_clock", &|k| {
        ours_manual.check_key(k.as_str()).is_ok()
    });
    bench("governor_fake_clock", &|k| {
        governor_fake.check_key(k).is_ok()
    });
    group.finish();

    let ((), allocs) = allocations(|| {
        for key in keys.iter().cycle().take(10 * HOT_KEYS) {
            black_box(ours.check_key(key.as_str())).expect("admitted");
        }
    });
    report.ratio(
        "keyed check, existing key (vs governor keyed)",
        "rate_limit_keyed/ours",
        "rate_limit_keyed/governor",
        "≤ 1.00x and ≤ 50 ns",
    );
    report.ratio(
        "keyed check in a multi-thread runtime",
        "rate_limit_keyed/ours_multi_thread_runtime",
        "rate_limit_keyed/governor",
        "≤ 1.00x",
    );
    report.ratio(
        "keyed check vs governor on std Instant",
        "rate_limit_keyed/ours",
        "rate_limit_keyed/governor_std_clock",
        "none: context",
    );
    report.ratio(
        "keyed check, fake clocks (limiter alone)",
        "rate_limit_keyed/ours_manual_clock",
        "rate_limit_keyed/governor_fake_clock",
        "≤ 1.00x",
    );
    report.fact(
        "allocations per keyed check (existing key)",
        format!("{:.3}", per(allocs, 10 * HOT_KEYS)),
        "0",
    );
}

fn direct(c: &mut Criterion, report: &mut Report) {
    let ours = RateLimiter::new(ours_quota());
    let ours_manual = {
        let _manual = ManualClock::new().enter();
        RateLimiter::new(ours_quota())
    };
    let governor = governor::RateLimiter::direct(governor_quota());
    let governor_std = governor::RateLimiter::direct_with_clock(governor_quota(), MonotonicClock);
    let governor_fake =
        governor::RateLimiter::direct_with_clock(governor_quota(), FakeRelativeClock::default());
    let multi_thread = runtime(tokio::runtime::Builder::new_multi_thread().worker_threads(1));
    let mut group = c.benchmark_group("rate_limit_direct");
    group.bench_function("ours", |b| b.iter(|| black_box(ours.check().is_ok())));
    group.bench_function("governor", |b| {
        b.iter(|| black_box(governor.check().is_ok()));
    });
    {
        let _entered = multi_thread.enter();
        group.bench_function("ours_multi_thread_runtime", |b| {
            b.iter(|| black_box(ours.check().is_ok()));
        });
    }
    group.bench_function("governor_std_clock", |b| {
        b.iter(|| black_box(governor_std.check().is_ok()));
    });
    group.bench_function("ours_manual_clock", |b| {
        b.iter(|| black_box(ours_manual.check().is_ok()));
    });
    group.bench_function("governor_fake_clock", |b| {
        b.iter(|| black_box(governor_fake.check().is_ok()));
    });
    group.finish();
    report.ratio(
        "direct (global) check (vs governor direct)",
        "rate_limit_direct/ours",
        "rate_limit_direct/governor",
        "≤ 1.00x",
    );
    report.ratio(
        "direct check in a multi-thread runtime",
        "rate_limit_direct/ours_multi_thread_runtime",
        "rate_limit_direct/governor",
        "≤ 1.00x",
    );
    report.ratio(
        "direct check vs governor on std Instant",
        "rate_limit_direct/ours",
        "rate_limit_direct/governor_std_clock",
        "none: context",
    );
    report.ratio(
        "direct check, fake clocks (limiter alone)",
        "rate_limit_direct/ours_manual_clock",
        "rate_limit_direct/governor_fake_clock",
        "≤ 1.00x",
    );
}

async fn reconcile(_: Arc<ConfigMap>, _: Arc<()>) -> Result<Action, ErrorClass> {
    Ok(Action::await_change())
}

/// A whole admitted reconcile through a per-object + global layer, against the same two
/// governor checks done by hand in front of the same reconcile. The peer is optimistic:
/// its keys are precomputed `ObjectKey`s (governor looks up by `&K`, so a real caller
/// would build or clone a key per call), and it returns nothing on a refusal.
fn layer(c: &mut Criterion, report: &mut Report) {
    let objects: Vec<Arc<ConfigMap>> = uids(HOT_KEYS)
        .into_iter()
        .map(|uid| {
            Arc::new(ConfigMap {
                metadata: ObjectMeta {
                    namespace: Some("default".into()),
                    name: Some(format!("cm-{uid}")),
                    uid: Some(uid),
                    ..ObjectMeta::default()
                },
                ..ConfigMap::default()
            })
        })
        .collect();
    let keys: Vec<ObjectKey> = objects.iter().map(|o| ObjectKey::of(&**o)).collect();
    let ctx = Arc::new(());
    let ours = reconcile
        .with(RateLimitLayer::per_object(ours_quota()))
        .with(
            RateLimitLayer::builder()
                .global(ours_quota())
                .build()
                .expect("a valid limit"),
        );
    let per_object = governor::RateLimiter::keyed(governor_quota());
    let global = governor::RateLimiter::direct(governor_quota());
    let by_hand = |i: usize| {
        if per_object.check_key(&keys[i]).is_ok() && global.check().is_ok() {
            reconcile(Arc::clone(&objects[i]), Arc::clone(&ctx)).now_or_never()
        } else {
            None
        }
    };
    let run_ours = |i: usize| {
        let outcome = ours
            .call(Arc::clone(&objects[i]), Arc::clone(&ctx))
            .now_or_never();
        matches!(outcome, Some(Outcome::Done(_)))
    };
    for i in 0..HOT_KEYS {
        assert!(run_ours(i), "warm-up admits");
        assert!(by_hand(i).is_some(), "warm-up admits");
    }

    let mut group = c.benchmark_group("rate_limit_layer");
    group.bench_function("ours", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % HOT_KEYS;
            black_box(run_ours(i))
        });
    });
    group.bench_function("governor_by_hand", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % HOT_KEYS;
            black_box(by_hand(i))
        });
    });
    group.finish();

    let ((), allocs) = allocations(|| {
        for i in (0..HOT_KEYS).cycle().take(10 * HOT_KEYS) {
            assert!(run_ours(i));
        }
    });
    report.ratio(
        "layer: admitted reconcile, object + global",
        "rate_limit_layer/ours",
        "rate_limit_layer/governor_by_hand",
        "≤ 1.00x (ours also rolls back on refusal)",
    );
    report.fact(
        "allocations per admitted layer call",
        format!("{:.3}", per(allocs, 10 * HOT_KEYS)),
        "0",
    );
}

/// Bytes per key beside the key, ours and governor's, and keys left after idling.
fn memory(report: &mut Report) {
    let keys = uids(MANY_KEYS);
    let key_bytes: usize = keys.iter().map(|k| size_of::<String>() + k.len()).sum();

    let manual = ManualClock::new();
    let before = live_bytes();
    let ours = {
        let _manual = manual.enter();
        KeyedLimiter::<String>::new(Quota::per_second(NonZeroU32::new(10).expect("not zero")))
    };
    for key in &keys {
        ours.check_key(key.as_str()).expect("room for every key");
    }
    let ours_bytes = live_bytes()
        .saturating_sub(before)
        .saturating_sub(key_bytes);

    let before = live_bytes();
    let governor = governor::RateLimiter::keyed(governor_quota());
    for key in &keys {
        governor.check_key(key).expect("admitted");
    }
    let governor_bytes = live_bytes()
        .saturating_sub(before)
        .saturating_sub(key_bytes);
    drop(governor);

    report.fact(
        "state bytes per key beside the key (100k keys)",
        format!(
            "{:.1} B (governor {:.1} B)",
            per(ours_bytes, MANY_KEYS),
            per(governor_bytes, MANY_KEYS)
        ),
        "≤ 48 B",
    );

    manual.advance(Duration::from_secs(2));
    ours.check_key("a-new-key").expect("admitted");
    report.fact(
        "idle keys still tracked after 2 s and one new key",
        ours.len() - 1,
        "0",
    );
}

#[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
fn per(total: usize, n: usize) -> f64 {
    total as f64 / n as f64
}
