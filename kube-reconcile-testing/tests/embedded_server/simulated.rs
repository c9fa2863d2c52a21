//! Injected faults and the workload simulator.

use super::*;

#[tokio::test]
async fn injected_faults_fire_deterministically_and_are_counted() {
    let server = ApiServer::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    server.faults().inject(
        Fault::error(500)
            .verb(Verb::Create)
            .resource("configmaps")
            .nth(&[2]),
    );
    server.faults().inject(
        Fault::error(429)
            .retry_after(3)
            .verb(Verb::Get)
            .resource("configmaps")
            .times(1),
    );
    cms.create(&PostParams::default(), &cm("one"))
        .await
        .unwrap();
    assert_eq!(
        api_code(
            &cms.create(&PostParams::default(), &cm("two"))
                .await
                .unwrap_err()
        ),
        500
    );
    cms.create(&PostParams::default(), &cm("two"))
        .await
        .unwrap();
    match cms.get("one").await.unwrap_err() {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 429);
            assert_eq!(s.details.map(|d| d.retry_after_seconds), Some(3));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.faults().fired(), 2);
    assert_eq!(server.requests().get(Verb::Create, "configmaps"), 3);
}

#[tokio::test(start_paused = true)]
async fn the_simulator_marks_workloads_ready_after_a_delay_unless_held() {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use kube_reconcile_testing::WorkloadSimulator;
    let server = ApiServer::new();
    let simulator = WorkloadSimulator::new(server.client())
        .ready_after(Duration::from_secs(3))
        .start();
    simulator.keep_unready("default", "held");
    let sts: Api<StatefulSet> = Api::default_namespaced(server.client());
    let manifest = |name: &str| -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": name}},
                "serviceName": name,
                "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "db", "image": "postgres:16"}]}}
            }
        }))
        .unwrap()
    };
    let started = tokio::time::Instant::now();
    let created = sts
        .create(&PostParams::default(), &manifest("db"))
        .await
        .unwrap();
    assert_eq!(
        created.spec.pod_management_policy.as_deref(),
        Some("OrderedReady"),
        "server defaults applied"
    );
    sts.create(&PostParams::default(), &manifest("held"))
        .await
        .unwrap();
    let ready = await_condition(sts.clone(), "db", |s: Option<&StatefulSet>| {
        s.and_then(|s| s.status.as_ref())
            .and_then(|st| st.ready_replicas)
            == Some(2)
    });
    tokio::time::timeout(Duration::from_secs(30), ready)
        .await
        .unwrap()
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(3));
    tokio::time::sleep(Duration::from_secs(10)).await;
    let held = sts.get("held").await.unwrap();
    assert_eq!(held.status.and_then(|s| s.ready_replicas), Some(0));
    simulator.make_ready("default", "held");
    sts.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"poke": "1"}}})),
    )
    .await
    .unwrap();
    let released = await_condition(sts.clone(), "held", |s: Option<&StatefulSet>| {
        s.and_then(|s| s.status.as_ref())
            .and_then(|st| st.ready_replicas)
            == Some(2)
    });
    tokio::time::timeout(Duration::from_secs(30), released)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_simulator_retries_a_status_write_that_failed() {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use kube_reconcile_testing::{Fault, Verb, WorkloadSimulator};
    let server = ApiServer::new();
    let _simulator = WorkloadSimulator::new(server.client())
        .ready_after(Duration::from_secs(1))
        .start();
    // The first two status writes fail, as a flaky API server would answer them.
    server.faults().inject(
        Fault::error(500)
            .verb(Verb::Patch)
            .resource("statefulsets.apps/status")
            .times(2),
    );
    let sts: Api<StatefulSet> = Api::default_namespaced(server.client());
    let manifest: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "spec": {
            "selector": {"matchLabels": {"app": "db"}},
            "serviceName": "db",
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "postgres:16"}]}}
        }
    }))
    .unwrap();
    sts.create(&PostParams::default(), &manifest).await.unwrap();
    let ready = await_condition(sts.clone(), "db", |s: Option<&StatefulSet>| {
        s.and_then(|s| s.status.as_ref())
            .and_then(|st| st.ready_replicas)
            == Some(1)
    });
    tokio::time::timeout(Duration::from_secs(30), ready)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(server.faults().fired(), 2);
}
