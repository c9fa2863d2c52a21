//! In-process throughput of the embedded API server: GET, merge PATCH, and event delivery
//! to 10 watchers, printed as requests (or events) per second.
//!
//! The side-by-side against a real kube-apiserver comes with the real-apiserver tier.

use std::{hint::black_box, time::Duration};

use criterion::{Criterion, Throughput};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams, WatchEvent, WatchParams},
};
use kube_reconcile::testing::ApiServer;
use serde_json::json;
use support::mean_ns;

#[path = "middleware/support.rs"]
mod support;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn seeded(rt: &tokio::runtime::Runtime) -> (ApiServer, Api<ConfigMap>) {
    let _entered = rt.enter();
    let server = ApiServer::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    rt.block_on(async {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some("bench".into());
        cm.data = Some([("counter".to_string(), "0".to_string())].into());
        cms.create(&PostParams::default(), &cm)
            .await
            .expect("create");
    });
    (server, cms)
}

fn requests(c: &mut Criterion) {
    let rt = runtime();
    let (_server, cms) = seeded(&rt);
    let mut group = c.benchmark_group("apiserver");
    group.throughput(Throughput::Elements(1));
    group.bench_function("get", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(cms.get("bench").await.expect("get")) });
    });
    let mut n = 0u64;
    group.bench_function("merge_patch", |b| {
        b.to_async(&rt).iter(|| {
            n += 1;
            let patch = json!({ "data": { "counter": n.to_string() } });
            let cms = cms.clone();
            async move {
                black_box(
                    cms.patch("bench", &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .expect("patch"),
                )
            }
        });
    });
    group.finish();
}

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn fan_out(c: &mut Criterion) {
    const WATCHERS: usize = 10;
    let rt = runtime();
    let (_server, cms) = seeded(&rt);
    let mut group = c.benchmark_group("apiserver");
    group.throughput(Throughput::Elements(WATCHERS as u64));
    group.bench_function("event_to_10_watchers", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let cms = cms.clone();
            async move {
                let rv = cms
                    .get("bench")
                    .await
                    .expect("get")
                    .metadata
                    .resource_version
                    .expect("rv");
                let mut streams = Vec::new();
                for _ in 0..WATCHERS {
                    streams.push(
                        cms.watch(&WatchParams::default().timeout(290), &rv)
                            .await
                            .expect("watch")
                            .boxed(),
                    );
                }
                let start = tokio::time::Instant::now();
                for _ in 0..iters {
                    // Every value is new, so no patch is a no-op (which would send no event).
                    let value = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let patch = json!({ "data": { "counter": format!("w{value}") } });
                    cms.patch("bench", &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .expect("patch");
                    for s in &mut streams {
                        loop {
                            match s.next().await {
                                Some(Ok(WatchEvent::Modified(_))) => break,
                                Some(Ok(WatchEvent::Bookmark(_))) => {}
                                other => panic!("unexpected watch event: {other:?}"),
                            }
                        }
                    }
                }
                start.elapsed()
            }
        });
    });
    group.finish();
}

fn main() {
    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(3));
    requests(&mut c);
    fan_out(&mut c);
    c.final_summary();
    println!("\n== embedded API server throughput (this run) ==");
    for (id, what) in [
        ("apiserver/get", "GET"),
        ("apiserver/merge_patch", "merge PATCH"),
        (
            "apiserver/event_to_10_watchers",
            "watch events delivered (10 watchers)",
        ),
    ] {
        if let Some(ns) = mean_ns(id) {
            let per_iter = if id.ends_with("watchers") { 10.0 } else { 1.0 };
            println!("{what:<40} {:>12.0} per second", per_iter * 1e9 / ns);
        }
    }
}
