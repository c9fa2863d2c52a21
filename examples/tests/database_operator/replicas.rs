//! More than one operator, or one observed from outside: metrics over HTTP, two
//! sharded operators, leader election.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_s_metrics_are_served_over_http() {
    let cx = Tier::embedded("metrics").await;
    let world = world(&cx).await;
    let (metrics, registry) = metrics();
    let served = kube_reconcile::metrics::serve(
        "127.0.0.1:0".parse().unwrap(),
        std::sync::Arc::new(registry),
    )
    .await
    .unwrap();
    let operator = world.operator_with(|operator| operator.metrics(Some(metrics), "databases"));
    world.create("orders", "16", 1).await;
    world.all_ready(1).await;
    // The engine counts a transition once its status write has returned; a watch can show
    // the write to the test a moment before that, so the count may lag the status.
    let to_ready = r#"kube_reconcile_phase_transitions_total{controller="databases",from="Verifying",to="Ready"}"#;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = scrape(served.local_addr()).await;
        if series(&text, to_ready).is_some() || tokio::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    operator.controller.abort();
    assert_eq!(series(&text, to_ready), Some(1.0), "{text}");
    let successes = series(
        &text,
        r#"controller_runtime_reconcile_total{controller="databases",result="requeue_after"}"#,
    );
    assert!(successes.is_some_and(|n| n >= 5.0), "{text}");
    assert_eq!(
        series(
            &text,
            r#"kube_reconcile_breaker_state{dependency="dbaas",state="closed"}"#
        ),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sharded_operators_split_the_databases_and_export_their_shares() {
    use kube_reconcile::{
        leader::LeaseConfig,
        shard::{ShardConfig, ShardHandle},
    };
    let cx = Tier::embedded("sharded").await;
    let world = world(&cx).await;
    let mut operators = Vec::new();
    let mut shards = Vec::new();
    let mut registries = Vec::new();
    for member in ["left", "right"] {
        // A registry per member, as each replica process would have.
        let (metrics, registry) = metrics();
        let lease = LeaseConfig::new(world.namespace.clone(), "databases").identity(member);
        let config = ShardConfig::new(lease).objects_namespace(world.namespace.clone());
        let shard = ShardHandle::join::<example::crd::Database>(world.client.clone(), config)
            .await
            .unwrap();
        operators.push(world.operator_with(|operator| {
            operator
                .shard(Some(shard.clone()))
                .metrics(Some(metrics), "databases")
        }));
        shards.push(shard);
        registries.push(registry);
    }
    for i in 0..12 {
        world.create(&format!("sharded-{i}"), "16", 1).await;
    }
    world.all_ready(12).await;
    // (Databases assigned before both members joined move once; their children follow.)
    let list = world.children_follow_their_databases().await;
    let label = "shard.kube-reconcile.dev/databases";
    let mut owned = std::collections::BTreeMap::<String, usize>::new();
    for db in &list {
        *owned
            .entry(
                db.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(label))
                    .cloned()
                    .unwrap_or_default(),
            )
            .or_default() += 1;
    }
    assert_eq!(
        owned.keys().map(String::as_str).collect::<Vec<_>>(),
        ["left", "right"],
        "{owned:?}"
    );
    // Every child carries its owner's shard label, so each member's caches hold its own
    // Databases and children only, and say so (within moments of the last write).
    let caches = world.shard_caches(&list).await;
    for (shard, registry) in shards.iter().zip(&registries) {
        let mut text = String::new();
        for _ in 0..100 {
            text.clear();
            prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
            if caches.check(&text, shard.identity()).is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        caches.check(&text, shard.identity()).unwrap();
        assert_eq!(
            shard.owned(),
            Some(owned[shard.identity()]),
            "{}",
            shard.identity()
        );
    }
    let assigned: f64 = shards
        .iter()
        .zip(&registries)
        .filter_map(|(s, registry)| {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
            series(
                &text,
                &format!(
                    r#"kube_reconcile_shard_assignments_total{{ring="databases",member="{}"}}"#,
                    s.identity()
                ),
            )
        })
        .sum();
    assert!(assigned >= 12.0, "{assigned}");
    for operator in operators {
        operator.controller.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_operators_with_leader_election_hand_over_and_both_converge_the_work() {
    use kube_reconcile::leader::{LeaderHandle, LeaseConfig};
    let cx = Tier::embedded("leader").await;
    let world = world(&cx).await;
    let lease = |id: &str| {
        LeaseConfig::new(world.namespace.clone(), "database-operator")
            .identity(id)
            .lease_duration(Duration::from_secs(2))
            .renew_deadline(Duration::from_secs(1))
            .retry_period(Duration::from_millis(200))
    };
    let first = LeaderHandle::spawn(world.client.clone(), lease("first")).unwrap();
    let second = LeaderHandle::spawn(world.client.clone(), lease("second")).unwrap();
    let start = |leader: &LeaderHandle| {
        world.operator_with(|operator| operator.leader(Some(leader.clone())))
    };
    let (a, b) = (start(&first), start(&second));
    world.create("alpha", "16", 1).await;
    world.all_ready(1).await;
    assert!(first.is_leader() != second.is_leader(), "exactly one leads");
    let (leader, follower) = if first.is_leader() {
        (&first, &second)
    } else {
        (&second, &first)
    };
    // The leader stops and hands over; the other one carries on with new work.
    leader.release().await.unwrap();
    world.create("beta", "16", 1).await;
    world.all_ready(2).await;
    assert!(follower.is_leader());
    a.controller.abort();
    b.controller.abort();
    assert_eq!(world.dbaas.instances().len(), 2);
}
