//! Sharding: three replicas against one, when each replica's reconcile concurrency is
//! the bottleneck.
//!
//! N ConfigMaps on the embedded API server; every reconcile waits 40 ms (a slow call per
//! object) and each controller runs at most 4 at once. The peer is one unsharded replica;
//! ours is a ring of three members. The time is from the first object created to every
//! object reconciled once. Memory is what each replica holds: the objects in its
//! controller's cache, and (in a run of its own, on a server already holding the objects,
//! all assigned) the heap its controller grows by.
//!
//! `cargo bench -p kube-reconcile --bench shard` (N = 1,200); with `-- --test` (what CI
//! runs) N = 120 and no target is judged.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, Client, ResourceExt,
    api::PostParams,
    runtime::{Controller, controller::Action, reflector::Store, watcher},
};
use kube_reconcile::{
    ControllerExt, ReconcilerExt,
    leader::LeaseConfig,
    shard::{ShardConfig, ShardHandle},
};
use kube_reconcile_testing::ApiServer;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static ALLOC: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

const WORK: Duration = Duration::from_millis(40);
const CONCURRENCY: u16 = 4;

/// Objects reconciled at least once.
type Seen = Arc<Mutex<HashSet<String>>>;

async fn reconcile(cm: Arc<ConfigMap>, seen: Arc<Seen>) -> Result<Action, kube::Error> {
    tokio::time::sleep(WORK).await;
    seen.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(cm.name_any());
    Ok(Action::await_change())
}

fn controller_config() -> kube::runtime::controller::Config {
    kube::runtime::controller::Config::default().concurrency(CONCURRENCY)
}

/// Starts one replica: unsharded (`shard` `None`) or a member of the ring. Returns the
/// controller's cache, to count what the replica holds, and its task.
fn replica(
    client: &Client,
    shard: Option<&ShardHandle>,
    seen: &Seen,
) -> (Store<ConfigMap>, tokio::task::JoinHandle<()>) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let objects = match shard {
        Some(shard) => shard.watcher_config(watcher::Config::default()),
        None => watcher::Config::default(),
    };
    let controller = Controller::new(api, objects).with_config(controller_config());
    let store = controller.store();
    let ctx = Arc::new(Arc::clone(seen));
    let task = match shard {
        Some(shard) => tokio::spawn(
            controller
                .run_reconciler(reconcile.with(shard.layer(client.clone())), ctx)
                .for_each(|_| async {}),
        ),
        None => tokio::spawn(
            controller
                .run_reconciler(reconcile, ctx)
                .for_each(|_| async {}),
        ),
    };
    (store, task)
}

/// Heap in use now, in bytes, net of everything freed.
fn heap_grown_since(region: &Region<'_, std::alloc::System>) -> isize {
    let stats = region.change();
    isize::try_from(stats.bytes_allocated).unwrap_or(isize::MAX)
        - isize::try_from(stats.bytes_deallocated).unwrap_or(isize::MAX)
}

async fn create(client: &Client, n: usize) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    // About the size of a typical custom resource with its status and managed fields.
    let payload = "x".repeat(2048);
    for i in 0..n {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(format!("cm-{i:05}"));
        cm.data = Some([("payload".to_owned(), payload.clone())].into());
        api.create(&PostParams::default(), &cm)
            .await
            .expect("create");
    }
}

/// What one run measured.
struct Run {
    took: Duration,
    /// Objects in each replica's controller cache at the end.
    held: Vec<usize>,
}

/// One timed run: `members` replicas (0: one unsharded replica), started before the
/// objects are created.
async fn run(n: usize, members: usize) -> Run {
    run_with(n, members, false).await.0
}

/// The heap the controllers of `members` replicas grow by (0: one unsharded replica),
/// started on a server that already holds `n` objects, every one assigned to a member,
/// until they reconciled every one and settled: their caches and watches. The ring's
/// own cost (its Leases, and the assigner's watch of every object's metadata, paid by one
/// member) comes before and is not counted.
async fn memory(n: usize, members: usize) -> isize {
    run_with(n, members, true).await.1
}

async fn run_with(n: usize, members: usize, objects_first: bool) -> (Run, isize) {
    let server = ApiServer::new();
    let client = server.client();
    let mut shards = Vec::new();
    for i in 0..members {
        let config =
            ShardConfig::new(LeaseConfig::new("default", "bench").identity(format!("replica-{i}")))
                .objects_namespace("default");
        let shard = ShardHandle::join::<ConfigMap>(client.clone(), config)
            .await
            .expect("joins");
        shard.joined().await;
        shards.push(shard);
    }
    if members > 0 {
        // Let the assigner see every member before the objects arrive.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if objects_first {
        create(&client, n).await;
        if members > 0 {
            assigned(&client, n).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let region = Region::new(ALLOC);
    let seen = Seen::default();
    let replicas: Vec<_> = if members == 0 {
        vec![replica(&client, None, &seen)]
    } else {
        shards
            .iter()
            .map(|shard| replica(&client, Some(shard), &seen))
            .collect()
    };
    let start = Instant::now();
    if !objects_first {
        create(&client, n).await;
    }
    while seen.lock().unwrap_or_else(PoisonError::into_inner).len() < n {
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "never converged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = start.elapsed();
    let held = replicas.iter().map(|(store, _)| store.len()).collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let heap = heap_grown_since(&region);
    for (_, task) in replicas {
        task.abort();
    }
    for shard in shards {
        let _ = shard.release().await;
    }
    drop(server);
    (Run { took, held }, heap)
}

/// Waits until the assigner has labelled all `n` objects with an owner.
async fn assigned(client: &Client, n: usize) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let start = Instant::now();
    loop {
        let list = api
            .list(&kube::api::ListParams::default())
            .await
            .expect("list");
        let labelled = list
            .items
            .iter()
            .filter(|cm| cm.labels().contains_key("shard.kube-reconcile.dev/bench"))
            .count();
        if labelled == n {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(600), "never assigned");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--test");
    let n = if quick { 120 } else { 1200 };
    let one = run(n, 0).await;
    let three = run(n, 3).await;
    let speedup = one.took.as_secs_f64() / three.took.as_secs_f64();
    let kib = |bytes: isize| f64::from(i32::try_from(bytes / 1024).unwrap_or(i32::MAX));
    let one_heap = kib(memory(n, 0).await);
    let per_replica = kib(memory(n, 3).await) / 3.0;
    println!(
        "== sharding: N = {n}, {} ms per reconcile, {CONCURRENCY} at once per replica ==",
        WORK.as_millis()
    );
    println!(
        "{:<44} {:>10.2} s",
        "one replica (peer): all reconciled",
        one.took.as_secs_f64()
    );
    println!(
        "{:<44} {:>10.2} s",
        "three sharded replicas: all reconciled",
        three.took.as_secs_f64()
    );
    println!("{:<44} {:>10.2}x", "speed-up (peer / ours)", speedup);
    println!(
        "{:<44} {:>12}",
        "objects cached by the one replica",
        format!("{:?}", one.held)
    );
    println!(
        "{:<44} {:>12}",
        "objects cached by each of three replicas",
        format!("{:?}", three.held)
    );
    println!(
        "{:<44} {:>10.0} KiB",
        "heap grown by the one replica", one_heap
    );
    println!(
        "{:<44} {:>10.0} KiB ({:.2}x the one)",
        "heap grown per sharded replica (of three)",
        per_replica,
        per_replica / one_heap
    );
    if quick {
        println!("(--test: N too small to judge the targets)");
        return;
    }
    let verdict = |ok: bool| if ok { "PASS" } else { "MISS" };
    println!(
        "{} three replicas converge >= 2.5x faster than one: {speedup:.2}x",
        verdict(speedup >= 2.5)
    );
    let largest = three.held.iter().copied().max().unwrap_or(0);
    let share = f64::from(u32::try_from(largest).unwrap_or(u32::MAX))
        / f64::from(u32::try_from(n).unwrap_or(u32::MAX));
    println!(
        "{} each replica caches about its share (largest {largest} of {n}, {:.0} %; one replica: {} %)",
        verdict(share <= 0.45),
        share * 100.0,
        100
    );
    println!(
        "{} memory per replica falls with its share: {:.0} KiB per sharded replica against {:.0} KiB for one ({:.2}x; at most 0.5x)",
        verdict(per_replica <= 0.5 * one_heap),
        per_replica,
        one_heap,
        per_replica / one_heap
    );
}
