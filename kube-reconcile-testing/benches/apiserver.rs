//! Throughput of the embedded API server against a real kube-apiserver + etcd (the envtest
//! tier), the same request mix on both in one run: GET, merge PATCH, and a mix of GET,
//! merge PATCH and a LIST of ten objects. Plus event delivery to 10 watchers on the
//! embedded server. Printed as requests per second and as the embedded/real ratio.
//!
//! The real half needs `kube-apiserver` and `etcd` (`tools/envtest/build.sh`, or
//! `KUBEBUILDER_ASSETS`); without them it is skipped with the reason printed.

use std::{hint::black_box, time::Duration};

use criterion::{Criterion, Throughput};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    api::{ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams},
};
use kube_reconcile_testing::{ApiServer, ControlPlane};
use serde_json::json;
use support::mean_ns;

// The ratio table and criterion readings the library's benches use too.
#[path = "../../kube-reconcile/benches/middleware/support.rs"]
mod support;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Ten ConfigMaps, one of them `bench`, in `cms`'s namespace.
async fn seed(cms: &Api<ConfigMap>) {
    for i in 0..10 {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(if i == 0 {
            "bench".into()
        } else {
            format!("other-{i}")
        });
        cm.metadata.labels = Some([("bench".to_string(), "yes".to_string())].into());
        cm.data = Some([("counter".to_string(), "0".to_string())].into());
        cms.create(&PostParams::default(), &cm)
            .await
            .expect("create");
    }
}

fn seeded(rt: &tokio::runtime::Runtime) -> (ApiServer, Api<ConfigMap>) {
    let _entered = rt.enter();
    let server = ApiServer::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    rt.block_on(seed(&cms));
    (server, cms)
}

/// A real control plane with the same seed, or why there is none.
fn seeded_real(rt: &tokio::runtime::Runtime) -> Result<(ControlPlane, Api<ConfigMap>), String> {
    let _entered = rt.enter();
    rt.block_on(async {
        let cluster = ControlPlane::start().await.map_err(|e| e.to_string())?;
        let cms: Api<ConfigMap> = Api::default_namespaced(cluster.client());
        seed(&cms).await;
        Ok((cluster, cms))
    })
}

/// The request mix, measured under `group/<tier>_<request>`.
fn mix(c: &mut Criterion, rt: &tokio::runtime::Runtime, tier: &str, cms: &Api<ConfigMap>) {
    let mut group = c.benchmark_group("apiserver");
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("{tier}_get"), |b| {
        b.to_async(rt)
            .iter(|| async { black_box(cms.get("bench").await.expect("get")) });
    });
    group.bench_function(format!("{tier}_merge_patch"), |b| {
        b.to_async(rt).iter(|| {
            let value = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let patch = json!({ "data": { "counter": value.to_string() } });
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
    // One GET, one merge PATCH and one LIST of ten per iteration: three requests.
    group.throughput(Throughput::Elements(3));
    group.bench_function(format!("{tier}_mix"), |b| {
        b.to_async(rt).iter(|| {
            let value = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let patch = json!({ "data": { "counter": value.to_string() } });
            let cms = cms.clone();
            async move {
                black_box(cms.get("bench").await.expect("get"));
                black_box(
                    cms.patch("bench", &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .expect("patch"),
                );
                black_box(
                    cms.list(&ListParams::default().labels("bench=yes"))
                        .await
                        .expect("list"),
                )
            }
        });
    });
    group.finish();
}

fn requests(c: &mut Criterion) -> Option<String> {
    let rt = runtime();
    let (_server, cms) = seeded(&rt);
    mix(c, &rt, "embedded", &cms);
    match seeded_real(&rt) {
        Ok((cluster, cms)) => {
            println!(
                "real tier: kube-apiserver {} at {}",
                cluster.version(),
                cluster.url()
            );
            mix(c, &rt, "real", &cms);
            drop(cms);
            let _entered = rt.enter();
            drop(cluster);
            None
        }
        Err(why) => Some(why),
    }
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
                // Watch from the newest version, so only the patches below arrive.
                let rv = cms
                    .list(&ListParams::default().limit(1))
                    .await
                    .expect("list")
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
    let skipped = requests(&mut c);
    fan_out(&mut c);
    c.final_summary();
    println!("\n== API server throughput, embedded vs real kube-apiserver (this run) ==");
    println!(
        "{:<28} {:>14} {:>14} {:>9}",
        "requests", "embedded/s", "real/s", "ratio"
    );
    for (id, what, per_iter) in [
        ("get", "GET", 1.0),
        ("merge_patch", "merge PATCH", 1.0),
        ("mix", "GET + PATCH + LIST(10)", 3.0),
    ] {
        let rate =
            |tier: &str| mean_ns(&format!("apiserver/{tier}_{id}")).map(|ns| per_iter * 1e9 / ns);
        match (rate("embedded"), rate("real")) {
            (Some(e), Some(r)) => println!("{what:<28} {e:>14.0} {r:>14.0} {:>8.1}x", e / r),
            (Some(e), None) => println!("{what:<28} {e:>14.0} {:>14} {:>9}", "-", "-"),
            _ => {}
        }
    }
    if let Some(why) = skipped {
        println!("real tier SKIPPED: {why}");
    }
    if let Some(ns) = mean_ns("apiserver/event_to_10_watchers") {
        println!(
            "{:<28} {:>14.0} (embedded)",
            "watch events, 10 watchers",
            10.0 * 1e9 / ns
        );
    }
}
