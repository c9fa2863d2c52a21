//! Operator processes against a cluster: the example binary run as a child process, the
//! tier's server served to it, a DBaaS it shares with others, and the marker that no
//! Database is handled by two replicas at once.

#![allow(dead_code, reason = "each test binary uses a different part")]

use std::{
    collections::BTreeMap,
    io::BufRead as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use database_operator::dbaas::DbaasClient;
use futures::StreamExt as _;
use kube::{
    ResourceExt as _,
    runtime::{WatchStreamExt as _, watcher},
};
use kube_reconcile::phase::HasPhaseStatus as _;
use kube_reconcile_test_support::tier::Tier;
use kube_reconcile_testing::HttpServer;

use crate::world::{SHARD, World};

/// The example's binary: integration tests live in `target/<profile>/deps`, and `cargo
/// test` builds the examples into `target/<profile>/examples` first.
pub(crate) fn binary() -> PathBuf {
    if let Some(binary) = std::env::var_os("KUBE_RECONCILE_EXAMPLE_BINARY") {
        return PathBuf::from(binary);
    }
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
pub(crate) struct Process(Child);

impl Process {
    pub(crate) fn spawn(command: &mut Command) -> Self {
        Process(command.env("RUST_LOG", "warn").spawn().unwrap())
    }

    /// SIGKILL: the process gets no chance to hand anything over.
    pub(crate) fn kill(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }

    /// Sends SIGTERM and waits (at most 40 s) for a clean exit.
    pub(crate) async fn terminate(mut self) {
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
pub(crate) struct Scratch(PathBuf);

impl Scratch {
    pub(crate) fn new(test: &str, cx: &Tier) -> Self {
        let dir =
            std::env::temp_dir().join(format!("kr-{test}-{}-{}", std::process::id(), cx.name()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub(crate) fn path(&self) -> &Path {
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
pub(crate) async fn kubeconfig(cx: &Tier, dir: &Path) -> (PathBuf, Option<HttpServer>) {
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
pub(crate) struct Cluster {
    pub(crate) kubeconfig: PathBuf,
    pub(crate) namespace: String,
    pub(crate) dbaas_url: String,
    pub(crate) token_file: PathBuf,
}

impl Cluster {
    /// `database_operator --cluster --operator-only` with `extra` flags, as host `host`
    /// (which names its leader-election identity).
    pub(crate) fn operator(&self, host: &str, extra: &[&str]) -> Process {
        Process::spawn(self.command(host, extra).stdout(Stdio::null()))
    }

    /// [`operator`](Self::operator) serving its metrics, and where it serves them.
    pub(crate) async fn operator_with_metrics(
        &self,
        host: &str,
        extra: &[&str],
    ) -> (Process, SocketAddr) {
        let mut process = Process::spawn(
            self.command(host, extra)
                .args(["--metrics-addr", "127.0.0.1:0"])
                .stdout(Stdio::piped()),
        );
        let url = printed_url(&mut process, "metrics at").await;
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches("/metrics")
            .parse()
            .unwrap();
        (process, addr)
    }

    fn command(&self, host: &str, extra: &[&str]) -> Command {
        let mut command = Command::new(binary());
        command
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
            .env("HOSTNAME", host);
        command
    }

    /// A client of the standalone DBaaS, with its token.
    pub(crate) fn dbaas(&self) -> DbaasClient {
        let token = std::fs::read_to_string(&self.token_file).unwrap();
        DbaasClient::new(&self.dbaas_url, token.trim()).unwrap()
    }
}

/// `database_operator --dbaas-only`, writing its token to `token_file`, and the URL it
/// printed.
pub(crate) async fn standalone_dbaas(token_file: &Path) -> (Process, String) {
    let mut process = Process::spawn(
        Command::new(binary())
            .arg("--dbaas-only")
            .arg("--dbaas-token-file")
            .arg(token_file)
            .stdout(Stdio::piped()),
    );
    let url = printed_url(&mut process, "DBaaS at").await;
    (process, url)
}

/// The first `http://` URL `process` prints on a line that says `what`. Its output is
/// read to the end, so it never blocks on a full pipe.
pub(crate) async fn printed_url(process: &mut Process, what: &'static str) -> String {
    let stdout = process.0.stdout.take().unwrap();
    let (found, url) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut found = Some(found);
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(url) = line
                .split_whitespace()
                .find(|word| word.starts_with("http://"))
                .filter(|_| line.contains(what))
                && let Some(found) = found.take()
            {
                let _ = found.send(url.to_owned());
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(60), url)
        .await
        .unwrap_or_else(|_| panic!("{what:?} printed within 60 s"))
        .unwrap_or_else(|_| panic!("{what:?} printed before the process exited"))
}

/// The replica (its host name) a shard label names: `shard-a-x7k2p` → `shard-a`.
pub(crate) fn host_of(identity: &str) -> &str {
    identity.rsplit_once('-').map_or(identity, |(host, _)| host)
}

/// Every owner each Database had, in order, as the test's own watch saw its shard label;
/// and which Databases are Ready now.
pub(crate) struct Owners {
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Seen {
    owners: BTreeMap<String, Vec<String>>,
    ready: std::collections::BTreeSet<String>,
}

impl Owners {
    pub(crate) fn watch(world: &World) -> Self {
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let record = Arc::clone(&seen);
        let events = watcher(world.api.clone(), watcher::Config::default())
            .default_backoff()
            .applied_objects();
        let task = tokio::spawn(async move {
            let mut events = std::pin::pin!(events);
            while let Some(event) = events.next().await {
                let Ok(db) = event else { continue };
                let mut seen = record.lock().unwrap_or_else(PoisonError::into_inner);
                if db.phase() == Some("Ready")
                    && db.phase_status().and_then(|s| s.observed_generation)
                        == db.metadata.generation
                {
                    seen.ready.insert(db.name_any());
                } else {
                    seen.ready.remove(&db.name_any());
                }
                let Some(owner) = db.labels().get(SHARD).map(|id| host_of(id).to_owned()) else {
                    continue;
                };
                let owners = seen.owners.entry(db.name_any()).or_default();
                if owners.last() != Some(&owner) {
                    owners.push(owner);
                }
            }
        });
        Owners { seen, task }
    }

    /// The marker that no Database was handled by two replicas at once: the DBaaS
    /// records, per instance, the replicas whose calls on it succeeded, one entry per run
    /// of calls by one replica. Those runs must follow the Database's owners in order:
    /// a replica still calling after its Database moved on (or two taking turns) would
    /// add a run its owners do not have.
    pub(crate) async fn never_handled_twice(&self, dbaas: &DbaasClient) {
        let callers = dbaas.callers().await.unwrap();
        let seen = self
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .owners
            .clone();
        assert!(!callers.is_empty(), "the DBaaS saw no calls");
        let mut moved = 0;
        for (name, runs) in &callers {
            let owners = seen.get(name).cloned().unwrap_or_default();
            moved += owners.len().saturating_sub(1);
            // `database-operator/0.1.0 (shard-a)` → `shard-a`.
            let hosts: Vec<&str> = runs
                .iter()
                .map(|agent| {
                    agent
                        .rsplit_once('(')
                        .map_or("", |(_, h)| h.trim_end_matches(')'))
                })
                .collect();
            let mut rest = owners.iter();
            for host in &hosts {
                assert!(
                    rest.any(|owner| owner == host),
                    "{name} was handled by {hosts:?} in that order, but owned by {owners:?}"
                );
            }
        }
        eprintln!(
            "{} instances, each handled by its owners in turn; {moved} moves seen",
            callers.len()
        );
    }
}

impl Owners {
    /// How many Databases are Ready, as the watch last saw them.
    pub(crate) fn ready(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .ready
            .len()
    }
}

impl Drop for Owners {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Writes `text` to a new file only this user can read.
pub(crate) fn write_private(path: &Path, text: &str) {
    use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .unwrap();
}
