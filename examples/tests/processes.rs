//! The example as the processes it runs as in production, on either tier: operator
//! replicas (`--cluster --operator-only`, with `--leader-elect` or `--shard`) and a standalone DBaaS
//! (`--dbaas-only`), each a process of its own. Every process a test starts is killed
//! when the test ends, passing or failing, and its scratch directory removed.

#![cfg(unix)]

mod world;

use std::{
    collections::BTreeMap,
    io::BufRead as _,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use database_operator::dbaas::{DbaasClient, DbaasError};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube_reconcile_test_support::{both_tiers, tier::Tier};
use kube_reconcile_testing::HttpServer;
use world::world;

/// The example's binary: integration tests live in `target/<profile>/deps`, and `cargo
/// test` builds the examples into `target/<profile>/examples` first.
fn binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let binary = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("examples")
        .join("database_operator");
    assert!(
        binary.exists(),
        "no example binary at {} (`cargo test` builds it; alone: cargo build --example database_operator)",
        binary.display()
    );
    binary
}

/// A child process of the test: killed when dropped, so a failing test leaves none behind.
struct Process(Child);

impl Process {
    fn spawn(command: &mut Command) -> Self {
        Process(command.env("RUST_LOG", "warn").spawn().unwrap())
    }

    /// SIGKILL: the process gets no chance to hand anything over.
    fn kill(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }

    /// Sends SIGTERM and waits (at most 40 s) for a clean exit.
    async fn terminate(mut self) {
        let pid = self.0.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        for _ in 0..400 {
            if let Some(status) = self.0.try_wait().unwrap() {
                assert!(status.success(), "the process exited with {status}");
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the process did not stop within 40 s of SIGTERM");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A directory of the test's own, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str, cx: &Tier) -> Self {
        let dir =
            std::env::temp_dir().join(format!("kr-{test}-{}-{}", std::process::id(), cx.name()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A kubeconfig for the tier's server in `dir`: the embedded server is served over TLS for
/// the other processes (the listener lives as long as the returned value); the real one is
/// reached as it is.
async fn kubeconfig(cx: &Tier, dir: &Path) -> (PathBuf, Option<HttpServer>) {
    let path = dir.join("kubeconfig");
    if let Some(server) = cx.embedded_server() {
        let http = server.serve().await.unwrap();
        http.write_kubeconfig(&path).unwrap();
        (path, Some(http))
    } else {
        cx.control_plane().unwrap().write_kubeconfig(&path).unwrap();
        (path, None)
    }
}

/// Where the operator processes find the API server and the DBaaS.
struct Cluster {
    kubeconfig: PathBuf,
    namespace: String,
    dbaas_url: String,
    token_file: PathBuf,
}

impl Cluster {
    /// `database_operator --cluster --operator-only` with `extra` flags, as host `host`
    /// (which names its leader-election identity).
    fn operator(&self, host: &str, extra: &[&str]) -> Process {
        Process::spawn(
            Command::new(binary())
                .args([
                    "--cluster",
                    "--operator-only",
                    "--namespace",
                    &self.namespace,
                ])
                .args(["--dbaas-url", &self.dbaas_url, "--dbaas-token-file"])
                .arg(&self.token_file)
                .args(extra)
                .env("KUBECONFIG", &self.kubeconfig)
                .env("HOSTNAME", host)
                .stdout(Stdio::null()),
        )
    }

    /// A client of the standalone DBaaS, with its token.
    fn dbaas(&self) -> DbaasClient {
        let token = std::fs::read_to_string(&self.token_file).unwrap();
        DbaasClient::new(&self.dbaas_url, token.trim()).unwrap()
    }
}

/// `database_operator --dbaas-only`, writing its token to `token_file`, and the URL it
/// printed.
async fn standalone_dbaas(token_file: &Path) -> (Process, String) {
    let mut process = Process::spawn(
        Command::new(binary())
            .arg("--dbaas-only")
            .arg("--dbaas-token-file")
            .arg(token_file)
            .stdout(Stdio::piped()),
    );
    let stdout = process.0.stdout.take().unwrap();
    let (found, url) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut found = Some(found);
        // Read to the end, so the process never blocks on a full pipe.
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(url) = line
                .split_whitespace()
                .find(|word| word.starts_with("http://"))
                .filter(|_| line.contains("DBaaS at"))
                && let Some(found) = found.take()
            {
                let _ = found.send(url.to_owned());
            }
        }
    });
    let url = tokio::time::timeout(Duration::from_secs(60), url)
        .await
        .expect("the DBaaS printed its URL within 60 s")
        .expect("the DBaaS printed its URL before exiting");
    (process, url)
}

both_tiers! {
    async fn the_operator_process_stopped_with_sigterm_mid_convergence_finishes_after_a_restart(
        cx: Tier
    ) {
        let world = world(&cx).await;
        let scratch = Scratch::new("sigterm", &cx);
        let (kubeconfig, _served) = kubeconfig(&cx, scratch.path()).await;
        let token_file = scratch.path().join("dbaas.token");
        let (dbaas, dbaas_url) = standalone_dbaas(&token_file).await;
        let cluster = Cluster {
            kubeconfig,
            namespace: world.namespace.clone(),
            dbaas_url,
            token_file,
        };
        let start = || cluster.operator("operator", &[]);
        let names: Vec<String> = (0..6).map(|i| format!("proc-{i}")).collect();
        for name in &names {
            world.create(name, "16", 1).await;
        }

        // Mid-convergence: some Databases have moved, not all are Ready.
        let first = start();
        world
            .until("a Database moved past Provisioning", |list| {
                list.iter().any(|d| {
                    matches!(d.phase(), Some("Configuring" | "Deploying" | "Verifying" | "Ready"))
                })
            })
            .await;
        first.terminate().await;
        let before = world.passwords().await;

        let second = start();
        world.all_ready(names.len()).await;
        second.terminate().await;

        // One instance each at the DBaaS, and no password regenerated by the restart.
        let instances = cluster.dbaas().list().await.unwrap();
        assert_eq!(instances.len(), names.len(), "{instances:?}");
        let after = world.passwords().await;
        for (secret, password) in &before {
            assert_eq!(after.get(secret), Some(password), "{secret} changed");
        }
        assert_eq!(after.len(), names.len());
        dbaas.terminate().await;
    }
}

both_tiers! {
    async fn replicas_with_leader_election_share_one_cluster_and_a_standalone_dbaas(cx: Tier) {
        let world = world(&cx).await;
        let scratch = Scratch::new("replicas", &cx);
        let (kubeconfig, _served) = kubeconfig(&cx, scratch.path()).await;
        let token_file = scratch.path().join("dbaas.token");
        let (dbaas, dbaas_url) = standalone_dbaas(&token_file).await;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the token file is the user's alone");

        // Without its token the DBaaS answers nobody.
        let stranger = DbaasClient::new(&dbaas_url, "not-the-token").unwrap();
        let refused = stranger.service_health().await.unwrap_err();
        assert!(
            matches!(refused, DbaasError::Rejected { status: 401, .. }),
            "{refused:?}"
        );

        let cluster = Cluster {
            kubeconfig,
            namespace: world.namespace.clone(),
            dbaas_url,
            token_file: token_file.clone(),
        };
        let mut replicas: BTreeMap<&str, Process> = ["replica-a", "replica-b"]
            .into_iter()
            .map(|host| (host, cluster.operator(host, &["--leader-elect"])))
            .collect();
        for name in ["r-0", "r-1", "r-2"] {
            world.create(name, "16", 1).await;
        }
        world.all_ready(3).await;
        // Exactly once across processes: one instance per Database at the DBaaS.
        assert_eq!(cluster.dbaas().list().await.unwrap().len(), 3);

        // The leader dies without handing over (SIGKILL): the other replica takes the
        // Lease once it expires (15 s after the last renewal) and converges new work.
        let leases: Api<Lease> = Api::namespaced(world.client.clone(), &world.namespace);
        let holder = || async {
            let lease = leases.get("database-operator").await.unwrap();
            lease.spec.and_then(|s| s.holder_identity).unwrap_or_default()
        };
        let leader = holder().await;
        let (dead, alive) = if leader.starts_with("replica-a-") {
            ("replica-a", "replica-b")
        } else {
            ("replica-b", "replica-a")
        };
        assert!(leader.starts_with(&format!("{dead}-")), "the Lease is held by {leader:?}");
        replicas.remove(dead).unwrap().kill();
        let killed = Instant::now();
        world.create("r-3", "16", 1).await;
        loop {
            if holder().await.starts_with(&format!("{alive}-")) {
                break;
            }
            assert!(
                killed.elapsed() < Duration::from_secs(15 + 2 + 5),
                "{alive} did not take over within the lease duration, a retry period and 5 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!(
            "{} tier: {alive} took the Lease {:.1?} after {dead} was killed",
            cx.name(),
            killed.elapsed()
        );
        world.all_ready(4).await;
        assert_eq!(cluster.dbaas().list().await.unwrap().len(), 4);
        replicas.remove(alive).unwrap().terminate().await;

        dbaas.terminate().await;
        assert!(!token_file.exists(), "the DBaaS removed its token file on SIGTERM");
    }
}

/// The shard label the example's replicas write on the Databases.
const SHARD: &str = "shard.kube-reconcile.dev/databases";

both_tiers! {
    async fn sharded_replicas_split_the_databases_take_over_a_killed_ones_and_share_with_a_new_one(cx: Tier) {
        let world = world(&cx).await;
        let scratch = Scratch::new("shards", &cx);
        let (kubeconfig, _served) = kubeconfig(&cx, scratch.path()).await;
        let token_file = scratch.path().join("dbaas.token");
        let (dbaas, dbaas_url) = standalone_dbaas(&token_file).await;
        let cluster = Cluster { kubeconfig, namespace: world.namespace.clone(), dbaas_url, token_file };
        let mut replicas: BTreeMap<&str, Process> = ["shard-a", "shard-b", "shard-c"]
            .into_iter()
            .map(|host| (host, cluster.operator(host, &["--shard"])))
            .collect();
        let n = 30;
        for i in 0..n {
            world.create(&format!("s-{i:02}"), "16", 1).await;
        }
        let owner = |d: &database_operator::crd::Database| {
            d.metadata.labels.as_ref().and_then(|l| l.get(SHARD)).cloned().unwrap_or_default()
        };
        let shares = |list: &[database_operator::crd::Database]| {
            let mut shares: BTreeMap<String, usize> = BTreeMap::new();
            for d in list {
                let host = owner(d).rsplit_once('-').map(|(host, _)| host.to_owned()).unwrap_or_default();
                *shares.entry(host).or_default() += 1;
            }
            shares
        };
        let list = world.all_ready(n).await;
        let split = shares(&list);
        eprintln!("{} tier: the Databases by replica: {split:?}", cx.name());
        assert_eq!(split.keys().map(String::as_str).collect::<Vec<_>>(), ["shard-a", "shard-b", "shard-c"], "{split:?}");
        assert_eq!(cluster.dbaas().list().await.unwrap().len(), n, "one instance per Database");

        // One replica dies without handing over: the others take its Databases once its
        // Lease expires (15 s after its last renewal).
        replicas.remove("shard-b").unwrap().kill();
        let killed = Instant::now();
        world.create("s-late", "16", 1).await;
        world
            .until("the killed replica's Databases moved", |list| {
                list.len() == n + 1 && list.iter().all(|d| !owner(d).is_empty() && !owner(d).starts_with("shard-b-"))
            })
            .await;
        eprintln!("{} tier: the Databases moved {:.1?} after shard-b was killed", cx.name(), killed.elapsed());
        assert!(killed.elapsed() < Duration::from_secs(15 + 5 + 2), "moved after {:?}", killed.elapsed());
        let list = world.all_ready(n + 1).await;
        assert_eq!(shares(&list).len(), 2, "{:?}", shares(&list));
        assert_eq!(cluster.dbaas().list().await.unwrap().len(), n + 1, "still one instance per Database");

        // A replica added later gets its share, handed over by the others.
        replicas.insert("shard-d", cluster.operator("shard-d", &["--shard"]));
        let list = world
            .until("the new replica owns some Databases", |list| {
                list.iter().any(|d| owner(d).starts_with("shard-d-"))
                    && list.iter().all(|d| !owner(d).is_empty())
            })
            .await;
        eprintln!("{} tier: after shard-d joined: {:?}", cx.name(), shares(&list));
        world.all_ready(n + 1).await;
        assert_eq!(cluster.dbaas().list().await.unwrap().len(), n + 1, "no instance created twice by a hand-over");
        for (_, replica) in replicas {
            replica.terminate().await;
        }
        dbaas.terminate().await;
    }
}
