//! A real `kube-apiserver` and `etcd` for tests: the envtest tier.

mod assets;
mod builder;
mod certs;
mod error;
mod process;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use base64::Engine as _;

pub use self::{assets::Assets, builder::ControlPlaneBuilder, error::EnvtestError};
use self::{
    certs::Pki,
    process::{LOG_TAIL_LINES, Process},
};

/// A running `etcd` and `kube-apiserver`, reachable over TLS on 127.0.0.1 as an admin.
///
/// This is the real-apiserver tier of the test substrates, the counterpart of
/// controller-runtime's envtest: no controllers run (so no garbage collection and no
/// namespace finalization), and nothing but the two binaries is needed — find them with
/// [`Assets`], build them with `tools/envtest/build.sh`, or download them with
/// `setup-envtest` and set `KUBEBUILDER_ASSETS`.
///
/// Each control plane gets free ports, a scratch directory, a fresh CA, a serving
/// certificate for `127.0.0.1` and `localhost`, an `admin` client certificate in
/// `system:masters` (RBAC is on; that group bypasses it) and a service-account signing
/// key. Dropping it stops both processes and removes the directory, also while a test
/// unwinds from a panic. The processes also die when the test process exits without
/// dropping it (a `static`, `std::process::exit`, a kill): they run under a supervisor
/// that watches a pipe from the test process.
///
/// # Examples
///
/// ```no_run
/// use k8s_openapi::api::core::v1::Namespace;
/// use kube::Api;
/// use kube_reconcile_testing::ControlPlane;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cluster = ControlPlane::start().await?;
/// let namespaces: Api<Namespace> = Api::all(cluster.client());
/// assert!(namespaces.get("default").await.is_ok());
/// cluster.write_kubeconfig("/tmp/envtest.kubeconfig")?; // for kubectl while debugging
/// # Ok(()) }
/// ```
///
/// # Caveats
///
/// - Start-up takes a few seconds; share one control plane between the tests of a test
///   binary where you can, with a namespace per test.
/// - The start timeout is measured on the wall clock, and the client's HTTP timeouts run
///   on tokio time: do not use it under `tokio::time::pause()`.
#[derive(Debug)]
pub struct ControlPlane {
    apiserver: Option<Process>,
    etcd: Option<Process>,
    etcd_url: String,
    url: String,
    kubeconfig: String,
    config: kube::Config,
    version: String,
    dir: TempDir,
}

impl ControlPlane {
    /// Starts a control plane with default settings.
    ///
    /// # Errors
    ///
    /// As [`ControlPlaneBuilder::start`].
    pub async fn start() -> Result<Self, EnvtestError> {
        ControlPlaneBuilder::default().start().await
    }

    /// Settings for a control plane.
    pub fn builder() -> ControlPlaneBuilder {
        ControlPlaneBuilder::default()
    }

    /// A new `kube::Client` authenticated as `admin` (`system:masters`), default namespace
    /// `default`.
    ///
    /// Each call builds a new client, so one control plane can serve tests that each run
    /// their own tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, as `kube::Client::try_from` does.
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config.clone()).expect(
            "the config built a client when the control plane started, so it builds one again",
        )
    }

    /// The client configuration behind [`client`](Self::client).
    pub fn config(&self) -> kube::Config {
        self.config.clone()
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's `gitVersion`, e.g. `v1.37.2`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// A kubeconfig (YAML, credentials inline) for `admin`, namespace `default`.
    pub fn kubeconfig(&self) -> &str {
        &self.kubeconfig
    }

    /// Writes [`kubeconfig`](Self::kubeconfig) to `path`.
    ///
    /// # Errors
    ///
    /// The file could not be written.
    pub fn write_kubeconfig(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        std::fs::write(path, &self.kubeconfig)
    }

    /// The scratch directory: certificates, etcd's data, and the `etcd.log` and
    /// `kube-apiserver.log` files. Removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `http://127.0.0.1:<port>`: etcd's client URL (no TLS, no auth).
    pub fn etcd_url(&self) -> &str {
        &self.etcd_url
    }

    /// Compacts etcd's history past every change made so far, as kube-apiserver does every
    /// five minutes; returns the revision compacted to. Watches, lists and continue tokens
    /// from older resource versions then get 410 Expired — where the watch cache does not
    /// still answer them from memory (start with `--watch-cache=false` to rule that out).
    /// For testing how a controller recovers from expired versions.
    ///
    /// # Errors
    ///
    /// etcd did not answer, or answered with an error.
    pub async fn compact(&self) -> Result<u64, EnvtestError> {
        let client = etcd_client(&self.etcd_url)?;
        // Compaction keeps the revision it is given; write a marker first so that every
        // change made before this call is compacted away.
        let marker =
            base64::engine::general_purpose::STANDARD.encode("/kube-reconcile/compaction-marker");
        let put = format!(r#"{{"key":"{marker}","value":""}}"#);
        let range = etcd_call(&client, "/v3/kv/put", &put).await?;
        let revision = range
            .pointer("/header/revision")
            .and_then(|r| {
                r.as_str()
                    .and_then(|s| s.parse().ok())
                    .or_else(|| r.as_u64())
            })
            .ok_or_else(|| EnvtestError::Etcd(format!("no header.revision in {range}")))?;
        let body = format!(r#"{{"revision":"{revision}","physical":true}}"#);
        etcd_call(&client, "/v3/kv/compaction", &body).await?;
        Ok(revision)
    }

    /// The last `lines` lines of `kube-apiserver`'s output.
    pub fn apiserver_log_tail(&self, lines: usize) -> String {
        self.apiserver
            .as_ref()
            .map(|p| p.log_tail(lines))
            .unwrap_or_default()
    }

    /// Stops both processes and removes the scratch directory; the same as dropping it.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // The API server first, so it does not log etcd errors on the way down.
        if let Some(mut apiserver) = self.apiserver.take() {
            apiserver.stop();
        }
        if let Some(mut etcd) = self.etcd.take() {
            etcd.stop();
        }
    }
}

fn etcd_client(url: &str) -> Result<kube::Client, EnvtestError> {
    let uri: http::Uri = url
        .parse()
        .expect("an http URL of 127.0.0.1 with a numeric port is a valid URI");
    kube::Client::try_from(kube::Config::new(uri)).map_err(EnvtestError::Client)
}

/// POSTs `body` to etcd's JSON gateway.
async fn etcd_call(
    client: &kube::Client,
    path: &str,
    body: &str,
) -> Result<serde_json::Value, EnvtestError> {
    let request = http::Request::post(path)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body.as_bytes().to_vec())
        .map_err(|e| EnvtestError::Etcd(format!("building {path}: {e}")))?;
    let text = client
        .request_text(request)
        .await
        .map_err(|e| EnvtestError::Etcd(format!("{path}: {e}")))?;
    serde_json::from_str(&text).map_err(|e| EnvtestError::Etcd(format!("{path}: {e}: {text}")))
}

async fn wait_for_etcd(
    etcd: &mut Process,
    url: &str,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), EnvtestError> {
    let client = etcd_client(url)?;
    loop {
        if let Some(status) = etcd.exited() {
            return Err(etcd.exited_error(status));
        }
        let request = http::Request::get("/health").body(Vec::new());
        if let Ok(request) = request {
            let answer = tokio::time::timeout(POLL_TIMEOUT, client.request_text(request)).await;
            if let Ok(Ok(text)) = answer
                && text.contains(r#""health":"true""#)
            {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(timeout_error(etcd, timeout, "/health answering true"));
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Waits for `/readyz` and the `default` namespace; returns the server's version.
async fn wait_for_apiserver(
    apiserver: &mut Process,
    etcd: &mut Process,
    client: &kube::Client,
    deadline: Instant,
    timeout: Duration,
) -> Result<String, EnvtestError> {
    let mut waiting_for = "/readyz answering ok";
    loop {
        for process in [&mut *apiserver, &mut *etcd] {
            if let Some(status) = process.exited() {
                return Err(process.exited_error(status));
            }
        }
        if check_ready(client, &mut waiting_for).await {
            let version = client
                .apiserver_version()
                .await
                .map_err(EnvtestError::Client)?;
            return Ok(version.git_version);
        }
        if Instant::now() >= deadline {
            return Err(timeout_error(apiserver, timeout, waiting_for));
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

async fn check_ready(client: &kube::Client, waiting_for: &mut &'static str) -> bool {
    let Ok(readyz) = http::Request::get("/readyz").body(Vec::new()) else {
        return false;
    };
    match tokio::time::timeout(POLL_TIMEOUT, client.request_text(readyz)).await {
        Ok(Ok(text)) if text.trim() == "ok" => {}
        _ => return false,
    }
    *waiting_for = "the default namespace";
    let Ok(default) = http::Request::get("/api/v1/namespaces/default").body(Vec::new()) else {
        return false;
    };
    matches!(
        tokio::time::timeout(POLL_TIMEOUT, client.request_text(default)).await,
        Ok(Ok(_))
    )
}

const POLL_EVERY: Duration = Duration::from_millis(100);
const POLL_TIMEOUT: Duration = Duration::from_secs(5);

fn timeout_error(process: &Process, after: Duration, waiting_for: &str) -> EnvtestError {
    EnvtestError::Timeout {
        name: process.name().to_string(),
        after,
        waiting_for: waiting_for.to_string(),
        log_tail: process.log_tail(LOG_TAIL_LINES),
    }
}

fn kubeconfig_yaml(url: &str, pki: &Pki) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: envtest\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\ncontexts:\n- name: envtest\n  context:\n    cluster: envtest\n    user: {user}\n    namespace: default\ncurrent-context: envtest\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\n",
        ca = b64(&pki.ca_cert),
        user = certs::ADMIN_USER,
        cert = b64(&pki.admin_cert),
        key = b64(&pki.admin_key),
    )
}

async fn config_from_kubeconfig(yaml: &str) -> Result<kube::Config, EnvtestError> {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(yaml).map_err(EnvtestError::Kubeconfig)?;
    kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(EnvtestError::Kubeconfig)
}

/// `90s`, `2m`, `1m30s`, `1500ms`: the subset of Go durations people put in
/// `KUBEBUILDER_CONTROLPLANE_START_TIMEOUT`.
fn parse_go_duration(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let value: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        total += match &rest[..unit_len] {
            "ms" => Duration::from_millis(value),
            "s" => Duration::from_secs(value),
            "m" => Duration::from_secs(value * 60),
            "h" => Duration::from_secs(value * 3600),
            _ => return None,
        };
        rest = &rest[unit_len..];
    }
    Some(total)
}

/// A private scratch directory, removed on drop.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self, EnvtestError> {
        let dir = std::env::temp_dir().join(format!(
            "kube-reconcile-envtest-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        create_private_dir(&dir)?;
        Ok(TempDir(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn create_private_dir(dir: &Path) -> Result<(), EnvtestError> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| EnvtestError::io(format!("creating {}", dir.display()), e))
}

#[cfg(test)]
mod tests;
