//! The example's simulated DBaaS and its client, over real sockets on 127.0.0.1.
//!
//! Real time with short delays: the server is a real socket server, so these tests do not
//! pause tokio time. Waits poll with a deadline and never assert on elapsed wall time.

use database_operator::dbaas;
mod faults;
mod lifecycle;

use std::{num::NonZeroU32, time::Duration};

use dbaas::{DbaasClient, DbaasServer, DbaasServerBuilder, InstanceSpec, RunningDbaas};
use kube_reconcile::middleware::rate_limit::Quota;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

fn spec(name: &str) -> InstanceSpec {
    InstanceSpec {
        name: name.into(),
        engine: "postgres".into(),
        version: "16".into(),
        storage_gi: 10,
        replicas: 1,
    }
}

/// Fast transitions and a budget no test reaches unless it means to.
fn fast() -> DbaasServerBuilder {
    DbaasServer::builder()
        .provision_delay(Duration::from_millis(40))
        .update_delay(Duration::from_millis(30))
        .delete_delay(Duration::from_millis(30))
        .jitter(Duration::from_millis(20))
        .rate_limit(Quota::per_second(
            NonZeroU32::new(10_000).expect("not zero"),
        ))
}

async fn start(builder: DbaasServerBuilder) -> (RunningDbaas, DbaasClient) {
    let server = builder.start().await.expect("the dbaas starts");
    let client = server.client();
    (server, client)
}

/// Polls `check` every 10 ms until it holds; fails after five seconds.
async fn eventually<F: AsyncFnMut() -> bool>(what: &str, mut check: F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One raw HTTP/1.1 exchange with the server's token; returns the whole response as text.
async fn raw(server: &RunningDbaas, request: &str) -> String {
    let (line, rest) = request.split_once("\r\n").expect("a request line");
    let token = server.token();
    raw_as_is(
        server,
        &format!("{line}\r\nauthorization: Bearer {token}\r\n{rest}"),
    )
    .await
}

/// One raw HTTP/1.1 exchange, sent as it is; returns the whole response as text.
async fn raw_as_is(server: &RunningDbaas, request: &str) -> String {
    let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
}
