//! Sharding: three replicas against one, when each replica's reconcile concurrency is
//! the bottleneck.
//!
//! N ConfigMaps on the embedded API server; every reconcile waits 40 ms (a slow call per
//! object) and each controller runs at most 4 at once. The peer is one unsharded replica;
//! ours is a ring of three members. The time is from the first object created to every
//! object reconciled once; memory is the objects each replica's controller holds.
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
    shard::{ShardConfig, ShardHandle},
};
use kube_reconcile_testing::ApiServer;

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
/// controller's cache, to count what the replica holds.
fn replica(client: &Client, shard: Option<&ShardHandle>, seen: &Seen) -> Store<ConfigMap> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let objects = match shard {
        Some(shard) => shard.watcher_config(watcher::Config::default()),
        None => watcher::Config::default(),
    };
    let controller = Controller::new(api, objects).with_config(controller_config());
    let store = controller.store();
    let ctx = Arc::new(Arc::clone(seen));
    match shard {
        Some(shard) => {
            tokio::spawn(
                controller
                    .run_reconciler(reconcile.with(shard.layer(client.clone())), ctx)
                    .for_each(|_| async {}),
            );
        }
        None => {
            tokio::spawn(
                controller
                    .run_reconciler(reconcile, ctx)
                    .for_each(|_| async {}),
            );
        }
    }
    store
}

/// One run: `members` replicas (0: one unsharded replica). Returns the time to converge
/// and the objects each replica's cache holds at the end.
async fn run(n: usize, members: usize) -> (Duration, Vec<usize>) {
    let server = ApiServer::new();
    let client = server.client();
    let seen = Seen::default();
    let mut stores = Vec::new();
    let mut shards = Vec::new();
    if members == 0 {
        stores.push(replica(&client, None, &seen));
    } else {
        for i in 0..members {
            let config = ShardConfig::new("default", "bench")
                .identity(format!("replica-{i}"))
                .objects_namespace("default");
            let shard = ShardHandle::join::<ConfigMap>(client.clone(), config)
                .await
                .expect("joins");
            shard.joined().await;
            stores.push(replica(&client, Some(&shard), &seen));
            shards.push(shard);
        }
        // Let the assigner see every member before the objects arrive.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let start = Instant::now();
    for i in 0..n {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(format!("cm-{i:05}"));
        api.create(&PostParams::default(), &cm)
            .await
            .expect("create");
    }
    while seen.lock().unwrap_or_else(PoisonError::into_inner).len() < n {
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "never converged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = start.elapsed();
    let held = stores.iter().map(Store::len).collect();
    (took, held)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--test");
    let n = if quick { 120 } else { 1200 };
    let (one, one_held) = run(n, 0).await;
    let (three, three_held) = run(n, 3).await;
    let speedup = one.as_secs_f64() / three.as_secs_f64();
    println!(
        "== sharding: N = {n}, {} ms per reconcile, {CONCURRENCY} at once per replica ==",
        WORK.as_millis()
    );
    println!(
        "{:<44} {:>10.2} s",
        "one replica (peer): all reconciled",
        one.as_secs_f64()
    );
    println!(
        "{:<44} {:>10.2} s",
        "three sharded replicas: all reconciled",
        three.as_secs_f64()
    );
    println!("{:<44} {:>10.2}x", "speed-up (peer / ours)", speedup);
    println!(
        "{:<44} {:>12}",
        "objects cached by the one replica",
        format!("{one_held:?}")
    );
    println!(
        "{:<44} {:>12}",
        "objects cached by each of three replicas",
        format!("{three_held:?}")
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
    let largest = three_held.iter().copied().max().unwrap_or(0);
    let share = f64::from(u32::try_from(largest).unwrap_or(u32::MAX))
        / f64::from(u32::try_from(n).unwrap_or(u32::MAX));
    println!(
        "{} each replica caches about its share (largest {largest} of {n}, {:.0} %; one replica: {} %)",
        verdict(share <= 0.45),
        share * 100.0,
        100
    );
}
