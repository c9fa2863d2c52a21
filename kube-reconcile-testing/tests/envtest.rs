//! The real-apiserver harness itself: start, credentials, kubeconfig, and that nothing
//! outlives it.

use std::{path::Path, process::Command, time::Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::{Api, api::PostParams};
use kube_reconcile_test_support::tier::{self, RealTier};
use kube_reconcile_testing::ControlPlane;

/// Processes whose command line mentions `dir` (the scratch directory is in their flags).
fn processes_using(dir: &Path) -> Vec<String> {
    let out = Command::new("pgrep")
        .arg("-af")
        .arg(dir.as_os_str())
        .output()
        .expect("run pgrep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_serves_an_admin_and_leaves_nothing_behind() {
    if !tier::real_tier_available("a_control_plane_serves_an_admin_and_leaves_nothing_behind") {
        return;
    }
    let started = Instant::now();
    let cluster = ControlPlane::start().await.expect("start");
    eprintln!(
        "control plane {} ready in {:?}",
        cluster.version(),
        started.elapsed()
    );
    let dir = cluster.dir().to_path_buf();
    assert_eq!(
        Some(cluster.version().to_string()),
        kube_reconcile_test_support::binaries::pinned_version(),
        "the server reports the pinned version (ldflags)"
    );
    let binaries = processes_using(&dir)
        .into_iter()
        .filter(|p| !p.contains("/bin/sh -c"))
        .count();
    assert_eq!(
        binaries,
        2,
        "etcd and kube-apiserver: {:?}",
        processes_using(&dir)
    );

    let namespaces: Api<Namespace> = Api::all(cluster.client());
    assert!(namespaces.get("default").await.is_ok());
    let cms: Api<ConfigMap> = Api::default_namespaced(cluster.client());
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("hello".into());
    let created = cms
        .create(&PostParams::default(), &cm)
        .await
        .expect("create as admin");
    assert!(created.metadata.uid.is_some());

    // The kubeconfig carries the same credentials.
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::from_yaml(cluster.kubeconfig()).expect("parse"),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .expect("config");
    let via_kubeconfig: Api<ConfigMap> =
        Api::default_namespaced(kube::Client::try_from(config).expect("client"));
    assert!(via_kubeconfig.get("hello").await.is_ok());

    drop(cluster);
    assert!(
        processes_using(&dir).is_empty(),
        "{:?}",
        processes_using(&dir)
    );
    assert!(!dir.exists(), "scratch directory removed");
}

#[test]
fn a_panicking_test_stops_its_control_plane() {
    if !tier::real_tier_available("a_panicking_test_stops_its_control_plane") {
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async move {
            let cluster = ControlPlane::start().await.expect("start");
            tx.send(cluster.dir().to_path_buf()).expect("send");
            panic!("the test failed while the control plane ran");
        })
    })
    .join();
    assert!(result.is_err());
    let dir = rx.recv().expect("dir");
    assert!(
        processes_using(&dir).is_empty(),
        "{:?}",
        processes_using(&dir)
    );
    assert!(!dir.exists());
}

/// Run as a child process by the test below: starts a control plane, prints its
/// directory, and exits without dropping it.
#[test]
fn child_exits_without_dropping() {
    if std::env::var_os("KUBE_RECONCILE_ENVTEST_CHILD").is_none() {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let cluster = runtime.block_on(ControlPlane::start()).expect("start");
    println!("DIR={}", cluster.dir().display());
    std::mem::forget(cluster);
    std::process::exit(0);
}

#[test]
fn a_control_plane_dies_with_a_test_process_that_never_dropped_it() {
    if !tier::real_tier_available("a_control_plane_dies_with_a_test_process_that_never_dropped_it")
    {
        return;
    }
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "child_exits_without_dropping", "--nocapture"])
        .env("KUBE_RECONCILE_ENVTEST_CHILD", "1")
        .output()
        .expect("run child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = stdout
        .lines()
        .find_map(|l| l.strip_prefix("DIR="))
        .unwrap_or_else(|| {
            panic!(
                "child printed no DIR: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let dir = Path::new(dir);
    // The supervisors notice the closed pipe at once; give them a moment to reap.
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while (!processes_using(dir).is_empty() || dir.exists()) && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        processes_using(dir).is_empty(),
        "{:?}",
        processes_using(dir)
    );
    assert!(
        !dir.exists(),
        "scratch directory removed by the etcd supervisor"
    );
}

#[tokio::test]
async fn a_shared_real_tier_gives_each_test_its_own_namespace() {
    let Some(real) =
        RealTier::shared_or_skip("a_shared_real_tier_gives_each_test_its_own_namespace").await
    else {
        return;
    };
    let a = real.namespace("shared").await;
    let b = real.namespace("shared").await;
    assert_ne!(a, b);
    let namespaces: Api<Namespace> = Api::all(real.client());
    assert!(namespaces.get(&a).await.is_ok());
}
