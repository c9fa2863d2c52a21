//! Fault switches and the rate limit, and how the client classifies what they cause.

use std::{num::NonZeroU32, time::Duration};

use kube_reconcile::{Classify, ErrorClass, middleware::rate_limit::Quota};

use super::{
    dbaas::{DbaasError, DbaasFaults, InstanceHealth},
    eventually, fast, raw, spec, start,
};

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
    // Every call to the instance API is logged with its arrival, refused ones too; the
    // health check is not.
    let arrivals = server.instance_call_times();
    assert_eq!(arrivals.len(), 4);
    assert_eq!(server.instance_call_counter()(), 4);
    assert!(arrivals.is_sorted());
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
async fn a_flaky_health_endpoint_fails_that_share_of_checks_and_spares_the_api() {
    let (server, client) = start(fast().seed(11)).await;
    server.faults().flaky_health(1.0);
    assert!(!client.service_health().await.expect("healthz answers 503"));
    client
        .find_by_key("k")
        .await
        .expect("the instance API still works");

    server.faults().flaky_health(0.25);
    let mut failed = 0;
    for _ in 0..200 {
        if !client.service_health().await.expect("healthz answers") {
            failed += 1;
        }
    }
    assert!(
        (25..=75).contains(&failed),
        "{failed} of 200 checks failed at rate 0.25"
    );

    server.faults().clear();
    for _ in 0..20 {
        assert!(client.service_health().await.expect("healthz answers"));
    }
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

#[tokio::test]
async fn the_rate_limit_headers_slow_an_adaptive_budget_before_any_429() {
    use kube_reconcile::{external::Dependency, middleware::rate_limit::RateBudget};
    // Twenty calls a minute, so the count left does not refill during the test.
    let twenty_a_minute = Quota::per_minute(NonZeroU32::new(20).expect("not zero"));
    let (server, client) = start(fast().rate_limit(twenty_a_minute)).await;
    let response = raw(
        &server,
        "GET /v1/instances HTTP/1.1\r\nhost: dbaas\r\nconnection: close\r\n\r\n",
    )
    .await
    .to_ascii_lowercase();
    assert!(
        response.contains("\r\nratelimit-policy: \"instances\";q=20\r\n")
            && response.contains("\r\nratelimit: \"instances\";r=19;t=3\r\n"),
        "{response}"
    );
    // Eight more straight to the DBaaS leave eleven of twenty.
    for i in 0..8 {
        client
            .find_by_key(&format!("k{i}"))
            .await
            .expect("within the limit");
    }
    let budget = RateBudget::adaptive(
        "dbaas",
        Quota::per_second(NonZeroU32::new(500).expect("not zero")),
    );
    let dbaas = Dependency::builder(client).budget(budget.clone()).build();
    let start = budget.rate();
    // Ten left, half: nothing to act on.
    dbaas
        .call(|c| c.find_by_key("a"))
        .await
        .expect("within the limit");
    assert!(
        (budget.rate() - start).abs() < 1e-9,
        "{} of {start}",
        budget.rate()
    );
    // Nine left, under half, and refilled only in 33 s: the budget halves its rate with
    // no call refused.
    dbaas
        .call(|c| c.find_by_key("b"))
        .await
        .expect("within the limit");
    assert!(
        (budget.rate() - start / 2.0).abs() < 1e-9,
        "{} of {start}",
        budget.rate()
    );
    assert_eq!(server.stats().throttled, 0);
}
