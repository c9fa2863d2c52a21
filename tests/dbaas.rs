//! The example's simulated DBaaS and its client, over real sockets on 127.0.0.1.
//!
//! Real time with short delays: the server is a real socket server, so these tests do not
//! pause tokio time. Waits poll with a deadline and never assert on elapsed wall time.

#[allow(
    dead_code,
    reason = "the example uses parts of the module these tests do not"
)]
#[path = "../examples/database_operator/dbaas/mod.rs"]
mod dbaas;

use std::{num::NonZeroU32, time::Duration};

use dbaas::{
    DbaasClient, DbaasError, DbaasFaults, DbaasServer, DbaasServerBuilder, DbaasStats, Deletion,
    Endpoint, Instance, InstanceHealth, InstanceSpec, InstanceState, RunningDbaas,
};
use kube_reconcile::{Classify, ErrorClass, middleware::rate_limit::Quota};
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
    let client = DbaasClient::new(&server.url()).expect("the server's url is valid");
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

/// One raw HTTP/1.1 exchange; returns the whole response as text.
async fn raw(server: &RunningDbaas, request: &str) -> String {
    let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
}

#[tokio::test]
async fn the_same_idempotency_key_creates_one_instance() {
    let (server, client) = start(fast()).await;

    let creates = (0..8).map(|_| {
        let client = client.clone();
        tokio::spawn(async move { client.create("default/orders-uid-1", &spec("orders")).await })
    });
    let mut ids = Vec::new();
    for create in creates {
        ids.push(create.await.expect("task").expect("create").id);
    }
    ids.dedup();
    assert_eq!(
        ids.len(),
        1,
        "every replay returns the same instance: {ids:?}"
    );

    let found = client
        .find_by_key("default/orders-uid-1")
        .await
        .expect("find");
    assert_eq!(found.map(|i| i.id), Some(ids[0].clone()));
    assert_eq!(
        client.find_by_key("default/other").await.expect("find"),
        None
    );

    let stats: DbaasStats = server.stats();
    assert_eq!(stats.instances_created, 1);
    assert_eq!(stats.live_instances, 1);
    assert_eq!(stats.calls_to(Endpoint::Create), 8);
    assert_eq!(server.instances().len(), 1);
}

#[tokio::test]
async fn a_create_without_an_idempotency_key_is_a_bad_request() {
    let (server, _client) = start(fast()).await;
    let body =
        r#"{"name":"orders","engine":"postgres","version":"16","storageGi":10,"replicas":1}"#;
    let response = raw(
        &server,
        &format!(
            "POST /v1/instances HTTP/1.1\r\nhost: dbaas\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    let json: serde_json::Value =
        serde_json::from_str(response.split("\r\n\r\n").nth(1).expect("a body"))
            .expect("a json body");
    assert_eq!(json["code"], "missing_idempotency_key");
    assert_eq!(server.stats().instances_created, 0);
}

#[tokio::test]
async fn an_instance_becomes_ready_and_healthy_after_provisioning() {
    // Long enough that the health check below lands while the instance is still creating.
    let (_server, client) = start(fast().provision_delay(Duration::from_millis(300))).await;
    let created = client
        .create("k-ready", &spec("orders"))
        .await
        .expect("create");
    assert_eq!(created.state, InstanceState::Creating);
    assert_eq!(created.endpoint, None);
    assert_eq!(created.idempotency_key, "k-ready");
    let health = client
        .health(&created.id)
        .await
        .expect("health answers while creating");
    assert!(!health.healthy);
    assert_eq!(health.reason.as_deref(), Some("instance is creating"));

    eventually("the instance is ready", async || {
        client.get(&created.id).await.expect("get").is_ready()
    })
    .await;
    let ready: Instance = client.get(&created.id).await.expect("get");
    let endpoint = ready
        .endpoint
        .clone()
        .expect("a ready instance has an endpoint");
    assert!(
        endpoint.starts_with("orders-") && endpoint.ends_with(":5432"),
        "{endpoint}"
    );
    assert_eq!(ready.spec(), spec("orders"));
    assert!(client.health(&created.id).await.expect("health").healthy);
    assert!(client.service_health().await.expect("healthz"));
}

#[tokio::test]
async fn calls_over_the_rate_limit_get_429_and_the_client_classifies_them_throttled() {
    // Two calls a minute: the third waits 30 s, however slow the machine.
    let two_a_minute = Quota::per_minute(NonZeroU32::new(2).expect("not zero"));
    let (server, client) = start(fast().rate_limit(two_a_minute)).await;
    client
        .find_by_key("a")
        .await
        .expect("first call is within the budget");
    client
        .find_by_key("b")
        .await
        .expect("second call is within the budget");

    let refused = client
        .find_by_key("c")
        .await
        .expect_err("the third call is over the budget");
    assert!(
        matches!(refused, DbaasError::Throttled { .. }),
        "{refused:?}"
    );
    assert_eq!(
        refused.class(),
        ErrorClass::Throttled {
            retry_after: Some(Duration::from_secs(30))
        }
    );

    let response = raw(
        &server,
        "GET /v1/instances HTTP/1.1\r\nhost: dbaas\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 429"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("\r\nretry-after: 30\r\n"),
        "{response}"
    );
    assert!(response.contains(r#""retryAfterSeconds":30"#), "{response}");

    // The health endpoints are outside the budget.
    assert!(
        client
            .service_health()
            .await
            .expect("healthz is not rate limited")
    );
    assert_eq!(server.stats().throttled, 2);
}

#[tokio::test]
async fn an_outage_answers_503_everywhere_and_the_client_calls_it_transient() {
    let (server, client) = start(fast()).await;
    let instance = client
        .create("k-outage", &spec("orders"))
        .await
        .expect("create");

    server.faults().outage(Duration::from_secs(60));
    assert!(server.faults().in_outage());
    assert!(!client.service_health().await.expect("healthz answers 503"));
    let failed = client.get(&instance.id).await.expect_err("the api is down");
    assert!(
        matches!(failed, DbaasError::Unavailable { status: 503, .. }),
        "{failed:?}"
    );
    assert_eq!(failed.class(), ErrorClass::Transient);
    let health = client
        .health(&instance.id)
        .await
        .expect_err("an outage is not an unhealthy instance");
    assert_eq!(health.class(), ErrorClass::Transient);
    assert_eq!(server.stats().outage_calls, 3);
    assert_eq!(server.stats().server_errors, 3);

    server.faults().end_outage();
    assert_eq!(
        client.get(&instance.id).await.expect("the api is back").id,
        instance.id
    );

    // A window also ends by itself.
    server.faults().outage(Duration::from_millis(200));
    assert!(server.faults().in_outage());
    eventually("the outage is over", async || {
        client.service_health().await.expect("healthz")
    })
    .await;
    assert!(!server.faults().in_outage());
}

#[tokio::test]
async fn the_error_rate_fails_that_share_of_calls_with_transient_500s() {
    let (server, client) = start(fast().seed(7)).await;
    server.faults().error_rate(1.0);
    let failed = client.find_by_key("k").await.expect_err("every call fails");
    assert!(
        matches!(failed, DbaasError::Unavailable { status: 500, .. }),
        "{failed:?}"
    );
    assert_eq!(failed.class(), ErrorClass::Transient);
    assert!(
        client
            .service_health()
            .await
            .expect("health endpoints are spared")
    );

    server.faults().error_rate(0.5);
    let mut failures = 0;
    for _ in 0..200 {
        if client.find_by_key("k").await.is_err() {
            failures += 1;
        }
    }
    assert!(
        (60..=140).contains(&failures),
        "{failures} of 200 calls failed at rate 0.5"
    );
    assert_eq!(server.stats().injected_errors, failures + 1);

    server.faults().error_rate(0.0);
    for _ in 0..20 {
        client
            .find_by_key("k")
            .await
            .expect("no call fails at rate 0");
    }
}

#[tokio::test]
async fn deleting_twice_is_fine_and_a_deleted_instance_is_gone() {
    let (server, client) = start(fast().delete_delay(Duration::from_millis(300))).await;
    let instance = client
        .create("k-delete", &spec("orders"))
        .await
        .expect("create");

    assert_eq!(
        client.delete(&instance.id).await.expect("delete"),
        Deletion::InProgress
    );
    assert_eq!(
        client.delete(&instance.id).await.expect("delete again"),
        Deletion::InProgress
    );
    assert_eq!(
        client.get(&instance.id).await.expect("get").state,
        InstanceState::Deleting
    );
    let conflict = client
        .update(&instance.id, &spec("orders"))
        .await
        .expect_err("no update while deleting");
    assert_eq!(conflict.class(), ErrorClass::Conflict);

    eventually("the instance is gone", async || {
        client.get(&instance.id).await.is_err()
    })
    .await;
    let missing = client.get(&instance.id).await.expect_err("gone");
    assert!(missing.is_not_found(), "{missing:?}");
    assert_eq!(missing.class(), ErrorClass::Terminal);
    assert_eq!(
        client.delete(&instance.id).await.expect("delete once gone"),
        Deletion::Gone
    );
    assert_eq!(client.find_by_key("k-delete").await.expect("find"), None);

    let reused = client
        .create("k-delete", &spec("orders"))
        .await
        .expect_err("a used key stays used");
    assert!(
        matches!(&reused, DbaasError::Rejected { status: 422, code, .. } if code == "idempotency_key_consumed")
    );

    let stats = server.stats();
    assert_eq!(
        (
            stats.instances_created,
            stats.instances_deleted,
            stats.live_instances
        ),
        (1, 1, 0)
    );
}

#[tokio::test]
async fn a_health_fault_fails_the_next_checks_of_a_ready_instance() {
    let (server, client) = start(fast().provision_delay(Duration::from_millis(300))).await;
    let faults: &DbaasFaults = server.faults();
    faults.fail_health("orders", 2);
    let instance = client
        .create("k-health", &spec("orders"))
        .await
        .expect("create");
    // Checks while creating fail anyway and use up none of the injected failures.
    assert!(!client.health(&instance.id).await.expect("health").healthy);

    eventually("the instance is ready", async || {
        client.get(&instance.id).await.expect("get").is_ready()
    })
    .await;
    for _ in 0..2 {
        let health: InstanceHealth = client.health(&instance.id).await.expect("health");
        assert!(!health.healthy);
        assert_eq!(
            health.reason.as_deref(),
            Some("health check failed (injected)")
        );
    }
    assert!(client.health(&instance.id).await.expect("health").healthy);
    assert!(client.health(&instance.id).await.expect("health").healthy);
}

#[tokio::test]
async fn an_update_goes_through_updating_back_to_ready() {
    let (_server, client) = start(fast()).await;
    let instance = client
        .create("k-update", &spec("orders"))
        .await
        .expect("create");
    eventually("the instance is ready", async || {
        client.get(&instance.id).await.expect("get").is_ready()
    })
    .await;

    let unchanged = client
        .update(&instance.id, &spec("orders"))
        .await
        .expect("a no-op update");
    assert_eq!(unchanged.state, InstanceState::Ready);

    let bigger = InstanceSpec {
        replicas: 3,
        storage_gi: 20,
        ..spec("orders")
    };
    let updating = client.update(&instance.id, &bigger).await.expect("update");
    assert_eq!(updating.state, InstanceState::Updating);
    assert!(
        updating.endpoint.is_some(),
        "an updating instance keeps serving"
    );
    eventually("the update is done", async || {
        client.get(&instance.id).await.expect("get").is_ready()
    })
    .await;
    assert_eq!(client.get(&instance.id).await.expect("get").spec(), bigger);

    let shrink = client
        .update(&instance.id, &spec("orders"))
        .await
        .expect_err("storage cannot shrink");
    assert!(
        matches!(&shrink, DbaasError::Rejected { code, .. } if code == "storage_shrink"),
        "{shrink:?}"
    );
    assert_eq!(shrink.class(), ErrorClass::Terminal);
}

#[tokio::test]
async fn a_spec_the_service_does_not_offer_is_terminal() {
    let (server, client) = start(fast()).await;
    let oracle = InstanceSpec {
        engine: "oracle".into(),
        ..spec("orders")
    };
    let rejected = client
        .create("k-oracle", &oracle)
        .await
        .expect_err("oracle is not offered");
    assert!(
        matches!(&rejected, DbaasError::Rejected { status: 422, code, .. } if code == "unsupported_engine")
    );
    assert_eq!(rejected.class(), ErrorClass::Terminal);
    assert_eq!(server.stats().instances_created, 0);
    let unknown = client
        .health("db-missing")
        .await
        .expect_err("no such instance");
    assert!(unknown.is_not_found(), "{unknown:?}");
}

#[tokio::test]
async fn a_slow_answer_is_a_transient_timeout() {
    let (server, client) = start(fast()).await;
    server.faults().latency(Duration::from_millis(300));
    let client = client.timeout(Duration::from_millis(50));
    let slow = client
        .find_by_key("k")
        .await
        .expect_err("slower than the timeout");
    assert!(matches!(slow, DbaasError::Timeout(_)), "{slow:?}");
    assert_eq!(slow.class(), ErrorClass::Transient);
    assert!(slow.is_timeout());

    server.faults().clear();
    assert_eq!(client.find_by_key("k").await.expect("fast again"), None);
}

#[tokio::test]
async fn a_stopped_service_refuses_connections_which_are_transient() {
    let (server, client) = start(fast()).await;
    client
        .create("k-stop", &spec("orders"))
        .await
        .expect("create");
    let stats = server.stats();
    assert_eq!(stats.total_calls(), 1);
    assert!(
        stats.to_string().contains("POST /v1/instances: 1"),
        "{stats}"
    );
    server.shutdown().await;

    let refused = client.get("db-any").await.expect_err("nothing listens");
    assert!(matches!(refused, DbaasError::Connect(_)), "{refused:?}");
    assert_eq!(refused.class(), ErrorClass::Transient);
}

#[test]
fn a_client_needs_an_http_url() {
    assert!(DbaasClient::new("http://127.0.0.1:8080").is_ok());
    assert!(DbaasClient::new("http://localhost/").is_ok());
    for url in [
        "https://127.0.0.1:8080",
        "127.0.0.1:8080",
        "http://127.0.0.1:8080/v1",
        "not a url",
    ] {
        let invalid = DbaasClient::new(url).expect_err(url);
        assert!(
            matches!(invalid, DbaasError::InvalidUrl(_)),
            "{url}: {invalid:?}"
        );
        assert_eq!(invalid.class(), ErrorClass::Terminal);
    }
}
