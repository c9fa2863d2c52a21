//! Plain HTTP on 127.0.0.1, with a kubeconfig, so `kubectl` can talk to the server.

use std::{net::SocketAddr, path::Path};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, task::JoinHandle};

use super::ApiServer;

/// An [`ApiServer`] listening on a local port. Stops listening when dropped.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl HttpServer {
    pub(crate) async fn start(server: ApiServer, bind: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let server = server.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let server = server.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let bytes = body
                                .collect()
                                .await
                                .map_or_else(|_| Bytes::new(), http_body_util::Collected::to_bytes);
                            Ok::<_, std::convert::Infallible>(
                                server
                                    .inner
                                    .handle(&parts.method, &parts.uri, &parts.headers, bytes)
                                    .await,
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(HttpServer { addr, accept })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig (YAML) whose current context is this server, namespace `default`.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kube-reconcile\n  cluster:\n    server: {}\ncontexts:\n- name: kube-reconcile\n  context:\n    cluster: kube-reconcile\n    user: kube-reconcile\n    namespace: default\ncurrent-context: kube-reconcile\nusers:\n- name: kube-reconcile\n  user: {{}}\n",
            self.url()
        )
    }

    /// Writes [`kubeconfig`](Self::kubeconfig) to `path`.
    ///
    /// # Errors
    ///
    /// The file could not be written.
    pub fn write_kubeconfig(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig())
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
