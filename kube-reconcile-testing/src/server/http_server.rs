//! The server on a local port over TLS, behind a random bearer token, with a kubeconfig,
//! so `kubectl` (and only a holder of the kubeconfig) can talk to it.

use std::{io::Write as _, net::SocketAddr, path::Path, sync::Arc};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        ServerConfig,
        pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer},
    },
};

use super::ApiServer;
use crate::tls::LocalCa;

/// An [`ApiServer`] listening on a local port. Stops listening when dropped.
///
/// # Security
///
/// It binds `127.0.0.1` only and speaks TLS with a certificate for `127.0.0.1` and
/// `localhost` signed by a CA made for this listener alone. Every request must carry
/// `Authorization: Bearer <token>`, a 256-bit token drawn from the operating system's
/// CSPRNG when the listener starts (anything else gets `401 Unauthorized`). The token and
/// the CA are in the [`kubeconfig`](Self::kubeconfig) and nowhere else, and are never
/// logged: keep the kubeconfig private ([`write_kubeconfig`](Self::write_kubeconfig)
/// makes it `0600`) and delete it when done.
pub struct HttpServer {
    addr: SocketAddr,
    token: Arc<str>,
    ca_pem: String,
    accept: JoinHandle<()>,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl HttpServer {
    pub(crate) async fn start(server: ApiServer, bind: &str) -> std::io::Result<Self> {
        let token: Arc<str> = random_token()?.into();
        let (acceptor, ca_pem) = tls()?;
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let expected: Arc<str> = format!("Bearer {token}").into();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let server = server.clone();
                let expected = Arc::clone(&expected);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let server = server.clone();
                        let expected = Arc::clone(&expected);
                        async move {
                            let (parts, body) = req.into_parts();
                            if !authorized(&parts.headers, &expected) {
                                return Ok::<_, std::convert::Infallible>(unauthorized());
                            }
                            let bytes = body
                                .collect()
                                .await
                                .map_or_else(|_| Bytes::new(), http_body_util::Collected::to_bytes);
                            Ok(server
                                .inner
                                .handle(&parts.method, &parts.uri, &parts.headers, bytes)
                                .await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(HttpServer {
            addr,
            token,
            ca_pem,
            accept,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// A kubeconfig (YAML) whose current context is this server, namespace `default`,
    /// with the listener's CA and bearer token. It is a credential: do not print or log it.
    pub fn kubeconfig(&self) -> String {
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kube-reconcile\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\ncontexts:\n- name: kube-reconcile\n  context:\n    cluster: kube-reconcile\n    user: kube-reconcile\n    namespace: default\ncurrent-context: kube-reconcile\nusers:\n- name: kube-reconcile\n  user:\n    token: {}\n",
            self.url(),
            self.token
        )
    }

    /// A client configuration for this server, from its [`kubeconfig`](Self::kubeconfig).
    ///
    /// # Errors
    ///
    /// kube's kubeconfig errors (none for the kubeconfig this server writes).
    pub async fn config(&self) -> Result<kube::Config, kube::config::KubeconfigError> {
        let kubeconfig = kube::config::Kubeconfig::from_yaml(&self.kubeconfig())?;
        kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
    }

    /// Writes [`kubeconfig`](Self::kubeconfig) to a new file at `path`, readable and
    /// writable by its owner only (`0600` on Unix). Delete it when the server stops.
    ///
    /// # Errors
    ///
    /// The file could not be written, or already exists (it is never overwritten, so a
    /// file someone else prepared with wider permissions is not reused).
    pub fn write_kubeconfig(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path)?;
        file.write_all(self.kubeconfig().as_bytes())
    }
}

/// A CA made for one listener, a serving certificate it signed for `127.0.0.1` and
/// `localhost`, and the acceptor that serves with it (HTTP/1.1); with the CA in PEM.
fn tls() -> std::io::Result<(TlsAcceptor, String)> {
    let err = |what: &str| {
        let what = what.to_owned();
        move |e: rcgen::Error| std::io::Error::other(format!("{what}: {e}"))
    };
    let ca = LocalCa::new("kube-reconcile-testing-ca").map_err(err("the listener's CA"))?;
    let (serving, key) = ca
        .serving("kube-reconcile-testing", &["127.0.0.1", "localhost"])
        .map_err(err("the serving certificate"))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(
            vec![serving.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .map_err(std::io::Error::other)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((TlsAcceptor::from(Arc::new(config)), ca.pem))
}

/// 32 bytes from the operating system's CSPRNG, base64url-encoded.
fn random_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| std::io::Error::other(format!("no randomness for the access token: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Whether the request carries the expected `Authorization` header (compared in time
/// independent of where they differ).
fn authorized(headers: &http::HeaderMap, expected: &str) -> bool {
    let Some(given) = headers.get(http::header::AUTHORIZATION) else {
        return false;
    };
    let (given, expected) = (given.as_bytes(), expected.as_bytes());
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn unauthorized() -> http::Response<super::Body> {
    super::handler::error_response(&super::ApiError::new(401, "Unauthorized", "Unauthorized"))
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
