//! The example operator end to end on the embedded API server, with the simulated DBaaS
//! and the workload simulator: the default run, chaos, restarts, deletion, bad input, and
//! the manifests kept in step with the Rust types.

#[path = "database_operator/replicas.rs"]
mod replicas;
mod world;

use database_operator as example;
use kube_reconcile_test_support::both_tiers;
use world::{scrape, series, world};

use std::time::Duration;

use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{ConfigMap, Secret, Service},
};
use kube::{
    Api, CustomResourceExt, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use kube_reconcile::phase::HasPhaseStatus;
use kube_reconcile_test_support::{recorder::Recorder, tier::Tier};
use serde_json::json;

use example::{
    cli::Options,
    crd::{Database, DatabaseSpec, Engine},
};

fn options() -> Options {
    Options {
        timeout_secs: 60,
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_run_walks_every_edge_and_ends_ready() {
    assert!(example::run(options()).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_api_faults_and_dbaas_outages_everything_still_converges() {
    let chaos = Options {
        chaos: true,
        timeout_secs: 90,
        ..Options::default()
    };
    assert!(example::run(chaos).await.unwrap());
}

both_tiers! {
    async fn a_crash_mid_flow_and_restarts_keep_passwords_and_make_no_second_instance(cx: Tier) {
        let world = world(&cx).await;
        let first = world.operator();
        for name in ["alpha", "beta", "gamma"] {
            world.create(name, "16", 1).await;
        }
        // Crash while the instances are being provisioned.
        world
            .until("provisioning", |list| {
                list.iter().any(|d| d.phase() == Some("Provisioning"))
            })
            .await;
        first.controller.abort();
        let second = world.operator();
        world.all_ready(3).await;
        second.controller.abort();
        let passwords = world.passwords().await;
        assert_eq!(passwords.len(), 3, "{passwords:?}");
        assert!(passwords.values().all(|p| p.len() == 32));

        // Another restart and a spec change: nothing regenerated, nothing duplicated.
        let third = world.operator();
        world
            .api
            .patch(
                "beta",
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": { "replicas": 3 } })),
            )
            .await
            .unwrap();
        world
            .until("beta updated", |list| {
                list.iter().any(|d| {
                    d.name_any() == "beta"
                        && d.phase() == Some("Ready")
                        && d.phase_status().and_then(|s| s.observed_generation) == Some(2)
                })
            })
            .await;
        third.controller.abort();
        assert_eq!(world.passwords().await, passwords);
        let instances = world.dbaas.instances();
        assert_eq!(instances.len(), 3, "{instances:?}");
        assert_eq!(world.dbaas.stats().instances_created, 3);
    }
}

both_tiers! {
    async fn deleting_a_database_deprovisions_it_and_removes_every_child(cx: Tier) {
        let world = world(&cx).await;
        let operator = world.operator();
        world.create("orders", "16", 3).await;
        world.all_ready(1).await;
        assert_eq!(world.dbaas.instances().len(), 1);
        let labels = ListParams::default().labels("app.kubernetes.io/instance=orders");
        let configmaps: Api<ConfigMap> = Api::namespaced(world.client.clone(), &world.namespace);
        let services: Api<Service> = Api::namespaced(world.client.clone(), &world.namespace);
        let statefulsets: Api<StatefulSet> = Api::namespaced(world.client.clone(), &world.namespace);
        let secrets: Api<Secret> = Api::namespaced(world.client.clone(), &world.namespace);
        let uid = world.api.get("orders").await.unwrap().uid();
        let owned_by_orders = |owners: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference]| {
            owners.iter().any(|o| Some(&o.uid) == uid.as_ref() && o.controller == Some(true))
        };
        for children in [
            configmaps.list(&labels).await.unwrap().items.iter().map(|o| o.owner_references().to_vec()).collect::<Vec<_>>(),
            services.list(&labels).await.unwrap().items.iter().map(|o| o.owner_references().to_vec()).collect(),
            statefulsets.list(&labels).await.unwrap().items.iter().map(|o| o.owner_references().to_vec()).collect(),
            secrets.list(&labels).await.unwrap().items.iter().map(|o| o.owner_references().to_vec()).collect(),
        ] {
            assert_eq!(children.len(), 1);
            assert!(owned_by_orders(&children[0]), "{children:?}");
        }

        world
            .api
            .delete("orders", &DeleteParams::default())
            .await
            .unwrap();
        world.until("orders gone", <[Database]>::is_empty).await;
        operator.controller.abort();
        for _ in 0..100 {
            if world.dbaas.instances().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            world.dbaas.instances().is_empty(),
            "{:?}",
            world.dbaas.instances()
        );
        // The children go by garbage collection, which a bare kube-apiserver does not run;
        // there the controller owner references checked above are what a cluster needs.
        if cx.collects_garbage() {
            assert!(configmaps.list(&labels).await.unwrap().items.is_empty());
            assert!(services.list(&labels).await.unwrap().items.is_empty());
            assert!(statefulsets.list(&labels).await.unwrap().items.is_empty());
            assert!(secrets.list(&labels).await.unwrap().items.is_empty());
        }
    }
}

/// The `Stalled` condition of a Database that has one.
fn stalled_condition(db: &Database) -> kube_reconcile::conditions::Condition {
    db.phase_status()
        .and_then(|s| s.conditions.find("Stalled"))
        .cloned()
        .expect("a Stalled condition")
}

both_tiers! {
    async fn bad_input_gets_a_422_or_invalid_spec_and_a_fix_moves_it_on(cx: Tier) {
        let world = world(&cx).await;
        let operator = world.operator();
        // What the schema can say: the API server refuses it, naming the field.
        let zero = Database::new(
            "zero",
            DatabaseSpec {
                engine: Engine::Postgres,
                version: "16".to_owned(),
                replicas: 0,
                storage: "1Gi".to_owned(),
                retain_on_delete: false,
            },
        );
        let Err(kube::Error::Api(status)) = world.api.create(&PostParams::default(), &zero).await
        else {
            panic!("replicas 0 must be refused");
        };
        assert_eq!(status.code, 422);
        assert!(
            status.message.contains("spec.replicas"),
            "{}",
            status.message
        );

        // What it cannot: Failed, reason InvalidSpec, a message saying what to change.
        world.create("legacy", "9.6", 1).await;
        let list = world
            .until("legacy failed", |list| {
                list.iter().any(|d| d.phase() == Some("Failed"))
            })
            .await;
        let stalled = stalled_condition(&list[0]);
        assert_eq!(stalled.reason, "InvalidSpec");
        assert!(
            stalled.message.contains("spec.version \"9.6\""),
            "{}",
            stalled.message
        );
        assert!(stalled.message.contains("16"), "{}", stalled.message);
        assert!(
            world.dbaas.instances().is_empty(),
            "nothing provisioned for an invalid spec"
        );

        world
            .api
            .patch(
                "legacy",
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": { "version": "16" } })),
            )
            .await
            .unwrap();
        world.all_ready(1).await;

        // A name the children cannot carry (the API server takes it: it is a valid
        // Database name): Failed with InvalidSpec before any child is written.
        let long = format!("db-{}", "x".repeat(60));
        world.create(&long, "16", 1).await;
        let list = world
            .until("the long name failed", |list| {
                list.iter()
                    .any(|d| d.name_any() == long && d.phase() == Some("Failed"))
            })
            .await;
        let stalled = stalled_condition(list.iter().find(|d| d.name_any() == long).unwrap());
        assert_eq!(stalled.reason, "InvalidSpec");
        assert!(stalled.message.contains("at most 52 characters"), "{}", stalled.message);
        let secrets: Api<Secret> = Api::namespaced(world.client.clone(), &world.namespace);
        assert!(
            secrets
                .get_opt(&format!("{long}-credentials"))
                .await
                .unwrap()
                .is_none(),
            "no child written for a name the children cannot carry"
        );
        assert_eq!(world.dbaas.instances().len(), 1, "only legacy's instance");
        operator.controller.abort();
    }
}

#[test]
fn the_crd_manifest_is_the_generated_one() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/database_operator/manifests/crd.yaml"
    );
    let generated = format!(
        "# Generated from the Rust type by `Database::crd()`; tests/database_operator.rs keeps it in step.\n# Regenerate: KUBE_RECONCILE_BLESS=1 cargo test --all-features --test database_operator manifest\n{}",
        serde_saphyr::to_string(&Database::crd()).unwrap()
    );
    if std::env::var_os("KUBE_RECONCILE_BLESS").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "{path} differs from Database::crd(); regenerate it with KUBE_RECONCILE_BLESS=1 cargo test --all-features --test database_operator manifest"
    );
}

both_tiers! {
    async fn a_ready_database_costs_no_writes_when_its_children_are_ensured_again(cx: Tier) {
        let world = world(&cx).await;
        let operator = world.operator();
        world.create("orders", "16", 3).await;
        let list = world.all_ready(1).await;
        operator.controller.abort();
        let db = &list[0];
        let recorder = Recorder::new(&world.client);
        let ensure = kube_reconcile::ensure::Children::with_config(
            recorder.client(),
            db,
            kube_reconcile::ensure::EnsureConfig::default().field_manager("database-operator"),
        )
        .unwrap();
        for _ in 0..3 {
            use kube_reconcile::ensure::Ensured::Unchanged;
            assert_eq!(ensure.ensure(db, &example::children::Settings).await.unwrap(), Unchanged);
            assert_eq!(ensure.ensure(db, &example::children::Endpoint).await.unwrap(), Unchanged);
            assert_eq!(ensure.ensure(db, &example::children::Pods).await.unwrap(), Unchanged);
        }
        assert_eq!(recorder.calls().writes(), 0);
    }
}

/// Metrics registered in a registry of their own.
fn metrics() -> (
    kube_reconcile::metrics::Metrics,
    prometheus_client::registry::Registry,
) {
    let metrics = kube_reconcile::metrics::Metrics::default();
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    (metrics, registry)
}
