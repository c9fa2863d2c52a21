//! Instances: idempotent creation, provisioning, updates, deletion and refused specs.

use std::time::Duration;

use kube_reconcile::{Classify, ErrorClass};

use super::{
    dbaas::{
        DbaasClient, DbaasError, DbaasStats, Deletion, Endpoint, Instance, InstanceSpec,
        InstanceState,
    },
    eventually, fast, raw, raw_as_is, spec, start,
};

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
async fn a_request_without_the_token_gets_401_and_a_wrong_token_too() {
    let (server, _client) = start(fast()).await;
    let get = "GET /healthz HTTP/1.1\r\nhost: dbaas\r\nconnection: close\r\n";
    let none = raw_as_is(&server, &format!("{get}\r\n")).await;
    assert!(none.starts_with("HTTP/1.1 401"), "{none}");
    let wrong = raw_as_is(&server, &format!("{get}authorization: Bearer nope\r\n\r\n")).await;
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    assert!(
        raw(&server, &format!("{get}\r\n"))
            .await
            .starts_with("HTTP/1.1 200")
    );
    // Two servers never share a token; a client of one is refused by the other.
    let (other, _) = start(fast()).await;
    assert_ne!(server.token(), other.token());
    assert_eq!(server.token().len(), 64);
    let refused = other.client().service_health().await;
    assert!(
        refused.is_ok(),
        "a server's own client is let in: {refused:?}"
    );
    let stranger = DbaasClient::new(&other.url(), server.token()).unwrap();
    let refused = stranger.service_health().await.unwrap_err();
    assert!(
        matches!(refused, DbaasError::Rejected { status: 401, .. }),
        "{refused:?}"
    );
    // The client's Debug never shows the token.
    assert!(!format!("{stranger:?}").contains(server.token()));
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

#[test]
fn a_client_needs_an_http_url() {
    assert!(DbaasClient::new("http://127.0.0.1:8080", "t").is_ok());
    assert!(DbaasClient::new("http://localhost/", "t").is_ok());
    for token in ["", "two words", "new\nline"] {
        let invalid = DbaasClient::new("http://localhost/", token).expect_err(token);
        assert!(
            matches!(invalid, DbaasError::InvalidToken),
            "{token:?}: {invalid:?}"
        );
        assert_eq!(invalid.class(), ErrorClass::Terminal);
    }
    for url in [
        "https://127.0.0.1:8080",
        "127.0.0.1:8080",
        "http://127.0.0.1:8080/v1",
        "not a url",
    ] {
        let invalid = DbaasClient::new(url, "t").expect_err(url);
        assert!(
            matches!(invalid, DbaasError::InvalidUrl(_)),
            "{url}: {invalid:?}"
        );
        assert_eq!(invalid.class(), ErrorClass::Terminal);
    }
}
