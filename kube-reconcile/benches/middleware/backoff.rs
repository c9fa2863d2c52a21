//! Per-object backoff: the not-before gate next to client-go's per-item failure counter.
//!
//! The peer is what client-go's `ItemExponentialFailureRateLimiter` keeps: a map from item
//! to failure count under one mutex (`NumRequeues` / `When` look an item up there).

use std::{
    collections::HashMap,
    hint::black_box,
    mem::size_of,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use criterion::Criterion;
use futures::executor::block_on;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{api::ObjectMeta, runtime::controller::Action};
use kube_reconcile::{
    ErrorClass, ObjectKey, Reconciler, ReconcilerExt,
    middleware::backoff::{BackoffConfig, BackoffHandle},
    testing::ManualClock,
};

use crate::support::{Report, allocations, live_bytes};

/// Keys in the maps while lookups are measured (a mid-sized operator's failing objects).
const LOOKUP_KEYS: u32 = 10_000;
/// Keys for the memory and idle-TTL figures.
const MEMORY_KEYS: u32 = 100_000;

/// The peer: client-go's per-item failure counter, a `map[item]int` behind a mutex.
struct ClientGoMutexMap {
    failures: Mutex<HashMap<String, u32>>,
}

impl ClientGoMutexMap {
    fn new() -> Self {
        ClientGoMutexMap {
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `NumRequeues(item)`.
    fn num_requeues(&self, item: &str) -> u32 {
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        failures.get(item).copied().unwrap_or(0)
    }

    /// The counting half of `When(item)`.
    fn add_failure(&self, item: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        *failures.entry(item.to_owned()).or_insert(0) += 1;
    }
}

/// A UID shaped like the API server's (36 characters).
fn uid(i: u32) -> String {
    format!("{i:08x}-0000-4000-8000-{i:012x}")
}

fn object(i: u32) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            namespace: Some("databases".into()),
            name: Some(format!("db-{i}")),
            uid: Some(uid(i)),
            generation: Some(1),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    }
}

async fn ok(_: Arc<ConfigMap>, _: Arc<()>) -> Result<Action, ErrorClass> {
    Ok(Action::await_change())
}

/// Records one transient failure for `key`.
fn fail(handle: &BackoffHandle, key: &ObjectKey) {
    if let Ok(attempt) = handle.check(key) {
        handle.record_failure(key, attempt, ErrorClass::Transient);
    }
}

pub(crate) fn benches(c: &mut Criterion, report: &mut Report) {
    // The default clock (tokio's), and a delay that outlasts the run, as in production.
    let config = BackoffConfig::operator().base(Duration::from_secs(300));
    let layer = config.build().expect("a valid config");
    let handle = layer.handle();
    let peer = ClientGoMutexMap::new();
    for i in 0..LOOKUP_KEYS {
        fail(&handle, &ObjectKey::of(&object(i)));
        peer.add_failure(&uid(i));
    }
    let (tracked, untracked) = (uid(LOOKUP_KEYS / 2), uid(LOOKUP_KEYS + 1));
    let reconciler = ok.with(layer);
    let held_back = Arc::new(object(LOOKUP_KEYS / 2));
    let ctx = Arc::new(());

    let mut group = c.benchmark_group("backoff_gate");
    group.bench_function("tracked_ours", |b| {
        b.iter(|| handle.check(black_box(tracked.as_str())).is_err());
    });
    group.bench_function("tracked_client_go_mutex_map", |b| {
        b.iter(|| peer.num_requeues(black_box(&tracked)));
    });
    group.bench_function("untracked_ours", |b| {
        b.iter(|| handle.check(black_box(untracked.as_str())).is_ok());
    });
    group.bench_function("untracked_client_go_mutex_map", |b| {
        b.iter(|| peer.num_requeues(black_box(&untracked)));
    });
    group.bench_function("reconcile_held_back_ours", |b| {
        b.iter(|| block_on(reconciler.call(Arc::clone(&held_back), Arc::clone(&ctx))));
    });
    group.finish();

    report.ratio(
        "backoff gate, tracked key (vs client-go map)",
        "backoff_gate/tracked_ours",
        "backoff_gate/tracked_client_go_mutex_map",
        "<= 2x (ours also reads the clock)",
    );
    report.ratio(
        "backoff gate, untracked key (vs client-go map)",
        "backoff_gate/untracked_ours",
        "backoff_gate/untracked_client_go_mutex_map",
        "<= 1x",
    );

    let per_call = |total: usize, calls: u32| {
        f64::from(u32::try_from(total).unwrap_or(u32::MAX)) / f64::from(calls)
    };
    let calls = 10_000;
    // Warm up once, so one-time thread-local set-up is not counted.
    drop(block_on(
        reconciler.call(Arc::clone(&held_back), Arc::clone(&ctx)),
    ));
    let ((), tracked_allocs) =
        allocations(|| (0..calls).for_each(|_| drop(black_box(handle.check(tracked.as_str())))));
    let ((), untracked_allocs) =
        allocations(|| (0..calls).for_each(|_| drop(black_box(handle.check(untracked.as_str())))));
    let ((), held_allocs) = allocations(|| {
        (0..calls).for_each(|_| {
            drop(black_box(block_on(
                reconciler.call(Arc::clone(&held_back), Arc::clone(&ctx)),
            )));
        });
    });
    report.fact(
        "backoff allocations per gate (tracked/untracked/reconcile)",
        format!(
            "{} / {} / {}",
            per_call(tracked_allocs, calls),
            per_call(untracked_allocs, calls),
            per_call(held_allocs, calls)
        ),
        "0",
    );

    memory(report);
}

/// Bytes per tracked key beside the key, and keys left once idle past the TTL.
fn memory(report: &mut Report) {
    let time = ManualClock::new();
    let config = BackoffConfig::client_go()
        .idle_ttl(Duration::from_secs(60))
        .max_keys(std::num::NonZeroUsize::new(200_000).expect("not zero"));
    let handle = {
        let _manual = time.enter();
        config.build().expect("a valid config").handle()
    };
    let keys: Vec<ObjectKey> = (0..MEMORY_KEYS)
        .map(|i| ObjectKey::of(&object(i)))
        .collect();
    // Each key holds its object's UID, namespace and name.
    let key_heap: usize = (0..MEMORY_KEYS)
        .map(|i| {
            let meta = object(i).metadata;
            [meta.uid, meta.namespace, meta.name]
                .iter()
                .map(|part| part.as_ref().map_or(0, String::len))
                .sum::<usize>()
        })
        .sum();

    let before = live_bytes();
    for key in &keys {
        fail(&handle, key);
    }
    let grown = live_bytes().saturating_sub(before);
    // What the store added, less each key's own copy (its inline size and its strings).
    let beside_key = grown.saturating_sub(key_heap + keys.len() * size_of::<ObjectKey>());
    report.fact(
        "backoff state per tracked key, beside the key",
        format!("{} B", beside_key / keys.len()),
        "<= 48 B",
    );

    // Idle past the TTL: the next new failing key sweeps the others out by itself.
    time.advance(Duration::from_secs(1000 + 60 + 60));
    fail(&handle, &ObjectKey::of(&object(MEMORY_KEYS + 1)));
    report.fact(
        "backoff keys tracked after idle TTL (of 100k)",
        keys.iter().filter(|key| handle.attempts(*key) > 0).count(),
        "0",
    );
}
