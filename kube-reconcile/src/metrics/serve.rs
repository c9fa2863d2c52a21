//! [`serve`]: the registry as `OpenMetrics` text on `GET /metrics`.

use std::{convert::Infallible, fmt, io, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::{encoding::text::encode, registry::Registry};
use tokio::{net::TcpListener, task::JoinHandle, task::JoinSet};

/// The content type of the `OpenMetrics` text exposition format.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A running `/metrics` endpoint, from [`serve`]. Stops when dropped.
#[must_use = "the server stops when this handle is dropped"]
pub struct MetricsServer {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// The address it listens on (with the actual port when bound to port 0).
    pub const fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops listening and closes every open connection.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

/// Serves `registry` on `addr`: `GET /metrics` answers the `OpenMetrics` text format
/// (`application/openmetrics-text; version=1.0.0; charset=utf-8`), which Prometheus
/// scrapes natively.
///
/// Binds now, so a taken port is reported here, then serves HTTP/1 on a task of the
/// current tokio runtime until the returned [`MetricsServer`] is dropped. Any other path
/// gets `404 Not Found`, any other method on `/metrics` `405 Method Not Allowed`. There
/// is no TLS or authentication: bind it to an address only the scraper reaches, or put
/// it behind a proxy (such as kube-rbac-proxy).
///
/// # Errors
///
/// The address could not be bound.
///
/// # Panics
///
/// Called outside a tokio runtime.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use kube_reconcile::metrics::{Metrics, serve};
/// use prometheus_client::registry::Registry;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let metrics = Metrics::default();
/// let mut registry = Registry::default();
/// metrics.register(&mut registry);
/// let server = serve("127.0.0.1:0".parse().expect("an address"), Arc::new(registry)).await?;
/// println!("scrape http://{}/metrics", server.local_addr());
/// # Ok(()) }
/// ```
pub async fn serve(addr: SocketAddr, registry: Arc<Registry>) -> io::Result<MetricsServer> {
    let listener = TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    let task = tokio::spawn(accept(listener, registry));
    Ok(MetricsServer { local_addr, task })
}

/// Accepts connections until aborted; aborting also ends the connections.
async fn accept(listener: TcpListener, registry: Arc<Registry>) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(%error, "accepting a metrics connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let registry = Arc::clone(&registry);
        connections.spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let response = answer(&req, &registry);
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(error) = http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "metrics connection ended with an error");
            }
        });
    }
}

/// The response to one request.
fn answer<B>(req: &Request<B>, registry: &Registry) -> Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found; metrics are at /metrics\n",
        );
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let mut text = String::new();
    if encode(&mut text, registry).is_err() {
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding the metrics failed\n",
        );
    }
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(OPENMETRICS),
    );
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use tower_layer::Layer as _;

    use super::*;

    async fn body(response: Response<Full<Bytes>>) -> String {
        let bytes = response
            .into_body()
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes)
            .unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn request(method: Method, path: &str) -> Request<()> {
        Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .expect("a valid request")
    }

    #[tokio::test]
    async fn metrics_answer_in_the_openmetrics_text_format() {
        let metrics = super::super::Metrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let _ = metrics.layer("widgets").layer(());
        let response = answer(&request(Method::GET, "/metrics"), &registry);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], OPENMETRICS);
        let text = body(response).await;
        assert!(text.contains(
            "controller_runtime_reconcile_total{controller=\"widgets\",result=\"success\"} 0\n"
        ));
        assert!(text.ends_with("# EOF\n"));
    }

    #[tokio::test]
    async fn other_paths_are_not_found_and_other_methods_not_allowed() {
        let registry = Registry::default();
        let response = answer(&request(Method::GET, "/"), &registry);
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let response = answer(&request(Method::POST, "/metrics"), &registry);
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::ALLOW], "GET, HEAD");
        assert!(body(response).await.contains("GET"));
    }
}
