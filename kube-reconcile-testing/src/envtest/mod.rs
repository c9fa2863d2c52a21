//! A real `kube-apiserver` and `etcd` for tests: the envtest tier.

mod assets;
mod certs;
mod error;
mod process;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use base64::Engine as _;

pub use self::{assets::Assets, error::EnvtestError};
use self::{
    certs::Pki,
    process::{LOG_TAIL_LINES, Process},
};

/// How a [`ControlPlane`] is started.
///
/// # Default
///
/// Binaries from [`Assets::default`]; a start timeout of 60 s, or
/// `KUBEBUILDER_CONTROLPLANE_START_TIMEOUT` (controller-runtime's variable, e.g. `90s`)
/// when set; no extra flags.
#[derive(Clone, Debug)]
pub struct ControlPlaneBuilder {
    assets: Assets,
    start_timeout: Duration,
    apiserver_args: Vec<String>,
    etcd_args: Vec<String>,
}

impl Default for ControlPlaneBuilder {
    fn default() -> Self {
        let start_timeout = std::env::var("KUBEBUILDER_CONTROLPLANE_START_TIMEOUT")
            .ok()
            .and_then(|v| parse_go_duration(&v))
            .unwrap_or(Duration::from_secs(60));
        ControlPlaneBuilder {
            assets: Assets::default(),
            start_timeout,
            apiserver_args: Vec::new(),
            etcd_args: Vec::new(),
        }
    }
}

impl ControlPlaneBuilder {
    /// Where to find the binaries.
    #[must_use]
    pub fn assets(mut self, assets: Assets) -> Self {
        self.assets = assets;
        self
    }

    /// How long `etcd` and `kube-apiserver` may take to become ready, together.
    #[must_use]
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// An extra `kube-apiserver` flag such as `--feature-gates=…`. Flags given here come
    /// after the harness's own, so a repeated flag overrides the harness's value.
    #[must_use]
    pub fn apiserver_arg(mut self, flag: impl Into<String>) -> Self {
        self.apiserver_args.push(flag.into());
        self
    }

    /// An extra `etcd` flag, after the harness's own.
    #[must_use]
    pub fn etcd_arg(mut self, flag: impl Into<String>) -> Self {
        self.etcd_args.push(flag.into());
        self
    }

    /// Starts `etcd` and `kube-apiserver` and waits until the API answers.
    ///
    /// # Errors
    ///
    /// A binary is missing ([`EnvtestError::BinaryNotFound`]), exits during start-up
    /// ([`EnvtestError::Exited`], with the end of its log) or is not ready within the
    /// start timeout ([`EnvtestError::Timeout`]). A port taken between choosing it and
    /// binding it is retried with fresh ports.
    pub async fn start(self) -> Result<ControlPlane, EnvtestError> {
        let etcd = self.assets.find("etcd")?;
        let apiserver = self.assets.find("kube-apiserver")?;
        let deadline = Instant::now() + self.start_timeout;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.start_once(&etcd, &apiserver, deadline).await {
                Err(EnvtestError::Exited { log_tail, .. })
                    if attempt < 3 && log_tail.contains("address already in use") => {}
                other => return other,
            }
        }
    }

    async fn start_once(
        &self,
        etcd_bin: &Path,
        apiserver_bin: &Path,
        deadline: Instant,
    ) -> Result<ControlPlane, EnvtestError> {
        let dir = TempDir::new()?;
        let pki = Pki::generate()?;
        let pki_dir = dir.path().join("pki");
        create_private_dir(&pki_dir)?;
        let files = pki.write(&pki_dir)?;
        let ports = process::free_ports(3)?;
        let (etcd_port, peer_port, api_port) = (ports[0], ports[1], ports[2]);

        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let mut etcd_args = vec![
            format!("--data-dir={}", dir.path().join("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=default={peer_url}"),
            "--unsafe-no-fsync=true".into(),
            "--log-level=warn".into(),
        ];
        etcd_args.extend(self.etcd_args.iter().cloned());
        // The etcd supervisor owns the scratch directory: it is stopped last.
        let mut etcd = Process::spawn(
            "etcd",
            etcd_bin,
            &etcd_args,
            dir.path().join("etcd.log"),
            Some(dir.path()),
        )?;
        wait_for_etcd(&mut etcd, &etcd_url, deadline, self.start_timeout).await?;

        let url = format!("https://127.0.0.1:{api_port}");
        let mut apiserver_args = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={api_port}"),
            format!(
                "--cert-dir={}",
                dir.path().join("apiserver-certs").display()
            ),
            format!("--tls-cert-file={}", files.serving_cert.display()),
            format!("--tls-private-key-file={}", files.serving_key.display()),
            format!("--client-ca-file={}", files.ca_cert.display()),
            "--authorization-mode=RBAC".into(),
            format!("--service-account-issuer={url}/"),
            format!(
                "--service-account-key-file={}",
                files.service_account_public_key.display()
            ),
            format!(
                "--service-account-signing-key-file={}",
                files.service_account_key.display()
            ),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--disable-admission-plugins=ServiceAccount".into(),
            "--allow-privileged=true".into(),
            "--endpoint-reconciler-type=none".into(),
        ];
        apiserver_args.extend(self.apiserver_args.iter().cloned());
        let mut apiserver = Process::spawn(
            "kube-apiserver",
            apiserver_bin,
            &apiserver_args,
            dir.path().join("kube-apiserver.log"),
            None,
        )?;

        let kubeconfig = kubeconfig_yaml(&url, &pki);
        let config = config_from_kubeconfig(&kubeconfig).await?;
        let client = kube::Client::try_from(config.clone()).map_err(EnvtestError::Client)?;
        let version = wait_for_apiserver(
            &mut apiserver,
            &mut etcd,
            &client,
            deadline,
            self.start_timeout,
        )
        .await?;
        Ok(ControlPlane {
            apiserver: Some(apiserver),
            etcd: Some(etcd),
            etcd_url,
            url,
            kubeconfig,
            config,
            version,
            dir,
        })
    }
}

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
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_like_controller_runtime_reads_them() {
        assert_eq!(parse_go_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(
            parse_go_duration("1500ms"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_go_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_go_duration("90"), None);
        assert_eq!(parse_go_duration("soon"), None);
        assert_eq!(parse_go_duration(""), None);
    }

    #[test]
    fn the_kubeconfig_carries_the_ca_and_admin_credentials_inline() {
        let pki = Pki::generate().expect("pki");
        let yaml = kubeconfig_yaml("https://127.0.0.1:6443", &pki);
        let parsed = kube::config::Kubeconfig::from_yaml(&yaml).expect("valid kubeconfig");
        let cluster = parsed.clusters[0].cluster.as_ref().expect("cluster");
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
        assert!(cluster.certificate_authority_data.is_some());
        let user = parsed.auth_infos[0].auth_info.as_ref().expect("user");
        assert!(user.client_certificate_data.is_some());
        assert!(user.client_key_data.is_some());
    }

    #[test]
    fn a_missing_binary_names_where_it_looked() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let err = runtime
            .block_on(
                ControlPlane::builder()
                    .assets(Assets::dir("/nonexistent-envtest"))
                    .start(),
            )
            .expect_err("no binaries there");
        let message = err.to_string();
        assert!(message.starts_with("etcd not found"), "{message}");
        assert!(message.contains("/nonexistent-envtest/etcd"), "{message}");
    }
}
