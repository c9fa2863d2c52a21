//! [`ControlPlaneBuilder`]: which binaries, which flags, how long to wait.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use super::{
    Assets, ControlPlane, EnvtestError, Pki, Process, TempDir, config_from_kubeconfig,
    create_private_dir, kubeconfig_yaml, parse_go_duration, process, wait_for_apiserver,
    wait_for_etcd,
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
            "--service-cluster-ip-range=10.0.0.0/16".into(),
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
