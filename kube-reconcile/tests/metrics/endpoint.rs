//! The `/metrics` endpoint, scraped over HTTP.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use kube_reconcile::metrics::serve;

use super::*;

#[tokio::test]
async fn the_metrics_endpoint_serves_openmetrics_text_over_http() {
    async fn ok(_: Arc<ConfigMap>, _: Arc<()>) -> Result<Action, ErrorClass> {
        Ok(Action::await_change())
    }
    let metrics = Metrics::default();
    let registry = Arc::new(registry_of(&metrics));
    let reconciler = ok.with(metrics.layer("scraped"));
    for _ in 0..3 {
        reconciler
            .call(Arc::new(ConfigMap::default()), Arc::new(()))
            .await;
    }
    let server = serve("127.0.0.1:0".parse().expect("an address"), registry)
        .await
        .expect("bound");

    let (status, content_type, body) = get(server.local_addr(), "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        content_type.as_deref(),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(body.ends_with("# EOF\n"));
    let m = Scrape::parse(&body);
    assert_eq!(
        m.get(
            "controller_runtime_reconcile_total",
            &[("controller", "scraped"), ("result", "success")]
        ),
        Some(3.0)
    );
    assert_eq!(get(server.local_addr(), "/").await.0, 404);

    let addr = server.local_addr();
    server.shutdown();
    tokio::task::yield_now().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "nothing listens after shutdown"
    );
}

/// One HTTP/1.1 GET: status, content type and body.
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, Option<String>, String) {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let request = http::Request::get(path)
        .header(http::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .expect("a request");
    let response = sender.send_request(request).await.expect("a response");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).expect("utf-8"),
    )
}
