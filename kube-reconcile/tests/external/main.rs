//! External dependencies on the embedded API server: a real controller whose
//! `Database` objects show `DbaasAvailable` as the fake DBaaS goes down and comes back,
//! a breaker that opens and probes at its half-open time, and a crash before and after
//! an external create, for a typed object and a `DynamicObject`.

mod fake_dbaas;

use std::{sync::Arc, time::Duration};

use fake_dbaas::{CrashPoint, DbaasError, FakeDbaas};
use futures::StreamExt;
use k8s_openapi::{
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    jiff::Timestamp,
};
use kube::{
    Api, Client, CustomResource, CustomResourceExt, Resource, ResourceExt,
    api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams},
    runtime::{Controller, controller::Action, watcher},
};
use kube_reconcile::{
    Classify, ControllerExt, ErrorClass,
    conditions::{ConditionStatus, Conditions},
    external::{Deletion, Dependency, ExternalError, Provisioned},
    middleware::circuit_breaker::{BreakerConfig, State},
};
use kube_reconcile_testing::{ApiServer, Verb};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A database provisioned from the fake DBaaS.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "test.kube-reconcile.dev",
    version = "v1",
    kind = "Database",
    namespaced,
    status = "DatabaseStatus"
)]
pub struct DatabaseSpec {
    size: i32,
}

/// What the controller reports about a database.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseStatus {
    #[serde(default)]
    conditions: Conditions,
    instance_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("provisioning the database instance failed")]
    Provision(#[source] ExternalError<DbaasError>),
    #[error("writing the status failed")]
    Status(#[source] kube::Error),
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Error::Provision(e) => e.class(),
            Error::Status(e) => e.class(),
        }
    }
}

struct Ctx {
    client: Client,
    dbaas: Dependency<FakeDbaas>,
}

/// Gate on the DBaaS, create the instance exactly once, and keep the condition.
async fn reconcile(db: Arc<Database>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let before = db.status.clone().unwrap_or_default();
    let mut status = before.clone();
    let outcome = match ctx.dbaas.ensure(&*db, &db.spec.size).await {
        Err(ExternalError::Unavailable(unavailable)) => {
            unavailable.apply(&mut status.conditions);
            Ok(Action::requeue(unavailable.retry_after))
        }
        Ok(provisioned) => {
            status.instance_id = Some(provisioned.into_resource().id);
            ctx.dbaas.set_available(&mut status.conditions);
            Ok(Action::requeue(Duration::from_secs(300)))
        }
        Err(e) => Err(Error::Provision(e)),
    };
    if status != before {
        let api: Api<Database> = Api::namespaced(ctx.client.clone(), &db.namespace().unwrap());
        api.patch_status(
            &db.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .map_err(Error::Status)?;
    }
    outcome
}

async fn install(server: &ApiServer) -> Api<Database> {
    let crds: Api<CustomResourceDefinition> = Api::all(server.client());
    crds.create(&PostParams::default(), &Database::crd())
        .await
        .unwrap();
    Api::default_namespaced(server.client())
}

async fn create(api: &Api<Database>, name: &str) -> Database {
    let db = Database::new(name, DatabaseSpec { size: 3 });
    api.create(&PostParams::default(), &db).await.unwrap()
}

fn condition(db: &Database) -> Option<kube_reconcile::conditions::Condition> {
    db.status
        .as_ref()?
        .conditions
        .find("DbaasAvailable")
        .cloned()
}

/// Polls (in paused time) until `ok` holds for the object.
async fn wait_for(
    api: &Api<Database>,
    name: &str,
    what: &str,
    ok: impl Fn(&Database) -> bool,
) -> Database {
    for _ in 0..2_000 {
        let db = api.get(name).await.unwrap();
        if ok(&db) {
            return db;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "timed out waiting for {what}: {:?}",
        api.get(name).await.unwrap().status
    );
}

fn run_controller(api: &Api<Database>, ctx: Arc<Ctx>) {
    let controller =
        Controller::new(api.clone(), watcher::Config::default()).run_reconciler(reconcile, ctx);
    tokio::spawn(controller.for_each(|_| async {}));
}

#[tokio::test(start_paused = true)]
async fn the_gate_sets_and_clears_the_condition_on_a_real_object() {
    let server = ApiServer::new();
    let api = install(&server).await;
    let fake = FakeDbaas::default();
    fake.set_healthy(false);
    let dbaas = Dependency::builder(fake.clone())
        .health_interval(Duration::from_secs(10))
        .spread(Duration::from_secs(1))
        .build();
    // Wall-clock times are those at build plus the paused time elapsed since.
    let start = Timestamp::now();
    let ctx = Arc::new(Ctx {
        client: server.client(),
        dbaas,
    });
    let created = create(&api, "orders").await;
    run_controller(&api, Arc::clone(&ctx));

    // Down: the condition says so and since when; nothing is called.
    let db = wait_for(&api, "orders", "ExternalSystemUnavailable", |db| {
        condition(db).is_some_and(|c| c.reason == "ExternalSystemUnavailable")
    })
    .await;
    let down = condition(&db).unwrap();
    assert_eq!(down.status, ConditionStatus::False);
    let since = down.last_transition_time.as_ref().unwrap().0;
    assert!(
        since >= start - Duration::from_secs(1) && since <= Timestamp::now(),
        "{since}"
    );
    let text = format!("{since:.0}");
    assert_eq!(
        down.message,
        format!("dbaas is unavailable since {text}: GET /health answered 503")
    );
    assert_eq!(fake.calls(), 0);
    assert!(db.status.unwrap().instance_id.is_none());

    // The status write wakes the controller, which finds nothing to change: no loop.
    let writes = server
        .requests()
        .get(Verb::Patch, "databases.test.kube-reconcile.dev/status");
    assert_eq!(writes, 1);
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(
        server
            .requests()
            .get(Verb::Patch, "databases.test.kube-reconcile.dev/status"),
        writes
    );
    assert_eq!(fake.health_checks(), 1, "one check per interval");

    // Up again: at the next attempt the instance is created and the condition cleared.
    fake.set_healthy(true);
    let db = wait_for(&api, "orders", "Available", |db| {
        condition(db).is_some_and(|c| c.status == ConditionStatus::True)
    })
    .await;
    let up = condition(&db).unwrap();
    assert_eq!(
        (up.reason.as_str(), up.message.as_str()),
        ("Available", "dbaas is available")
    );
    let transition = up.last_transition_time.as_ref().unwrap().0;
    assert!(
        transition >= since + Duration::from_secs(10)
            && transition <= since + Duration::from_secs(13),
        "{transition} against {since}"
    );
    let instances = fake.instances();
    assert_eq!(instances.len(), 1);
    let key = format!("db-{}", created.uid().unwrap());
    assert_eq!(instances[0].key, key);
    assert_eq!(
        db.status.as_ref().unwrap().instance_id.as_deref(),
        Some(instances[0].id.as_str())
    );
    assert!(
        db.annotations().is_empty(),
        "the protocol writes nothing to the object"
    );

    // Requeues later find the instance and create nothing more.
    tokio::time::sleep(Duration::from_secs(900)).await;
    assert_eq!(fake.creates(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_after_failures_and_the_controller_probes_at_the_half_open_time() {
    let server = ApiServer::new();
    let api = install(&server).await;
    let fake = FakeDbaas::default();
    fake.set_failing(true);
    let breaker = BreakerConfig::default()
        .consecutive_failures(3)
        .open_duration(Duration::from_secs(30))
        .open_duration_jitter(0.0)
        .permitted_probes(std::num::NonZeroU32::new(1).unwrap())
        .spread(Duration::from_secs(1))
        .build("dbaas")
        .unwrap();
    let before = Timestamp::now();
    let dbaas = Dependency::builder(fake.clone())
        .breaker(breaker.clone())
        .build();
    let after = Timestamp::now();
    let ctx = Arc::new(Ctx {
        client: server.client(),
        dbaas,
    });
    create(&api, "orders").await;
    let t0 = tokio::time::Instant::now();
    run_controller(&api, Arc::clone(&ctx));

    // Three failed reconciles (5 s apart, the default error requeue) open the breaker.
    let db = wait_for(&api, "orders", "CircuitOpen", |db| {
        condition(db).is_some_and(|c| c.reason == "CircuitOpen")
    })
    .await;
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(fake.calls(), 3);
    let opened_after = breaker.snapshot().remaining_open.unwrap();
    let open_message = condition(&db).unwrap().message;
    // The wall-clock anchor is taken at build: the half-open time lies between the
    // two readings around it plus the paused time elapsed, rounded up to a second.
    let at: Timestamp = open_message
        .strip_prefix("circuit breaker for dbaas is open; next attempt at ")
        .unwrap_or_else(|| panic!("{open_message}"))
        .parse()
        .unwrap();
    let elapsed = t0.elapsed() + opened_after;
    assert!(
        at >= before + elapsed && at <= after + elapsed + Duration::from_secs(1),
        "{open_message}"
    );

    // While open, nothing is called, even though the DBaaS is back.
    fake.set_failing(false);
    tokio::time::sleep(opened_after.saturating_sub(Duration::from_millis(100))).await;
    assert_eq!(fake.calls(), 3, "no call while the breaker is open");

    // At the half-open time one probe goes out, succeeds, and clears the condition.
    let db = wait_for(&api, "orders", "Available", |db| {
        condition(db).is_some_and(|c| c.status == ConditionStatus::True)
    })
    .await;
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(fake.instances().len(), 1);
    assert!(db.status.unwrap().instance_id.is_some());
    let probed_at = t0.elapsed();
    assert!(
        probed_at >= Duration::from_secs(40) && probed_at <= Duration::from_secs(42),
        "probe after {probed_at:?}"
    );
}

/// Runs `ensure` until it completes or reaches the armed crash point; `None` on a crash.
async fn ensure_or_crash<K: Resource + Sync>(
    dbaas: &Dependency<FakeDbaas>,
    fake: &FakeDbaas,
    obj: &K,
) -> Option<Provisioned<fake_dbaas::Instance>> {
    tokio::select! {
        provisioned = dbaas.ensure(obj, &3) => Some(provisioned.unwrap()),
        () = fake.crashes.crashed() => None,
    }
}

#[tokio::test]
async fn a_crash_before_or_after_a_create_never_leaves_two_instances_or_none() {
    let server = ApiServer::new();
    let typed = install(&server).await;
    let ar = ApiResource::erase::<Database>(&());
    let dynamic: Api<DynamicObject> = Api::namespaced_with(server.client(), "default", &ar);
    let fake = FakeDbaas::default();
    let dbaas = Dependency::builder(fake.clone()).build();

    for kind in ["typed", "dynamic"] {
        for point in CrashPoint::ALL {
            let name = format!("{kind}-{point:?}").to_lowercase();
            let uid = create(&typed, &name).await.uid().unwrap();
            let key = format!("db-{uid}");
            fake.crashes.arm(point);

            // The reconcile dies at `point`.
            let crashed = match kind {
                "typed" => ensure_or_crash(&dbaas, &fake, &typed.get(&name).await.unwrap()).await,
                _ => ensure_or_crash(&dbaas, &fake, &dynamic.get(&name).await.unwrap()).await,
            };
            assert!(
                crashed.is_none() && !fake.crashes.is_armed(),
                "{name}: the crash point was reached"
            );
            assert!(fake.instances_for(&key).len() <= 1, "{name}");

            // The next reconcile finishes the job.
            let resumed = match kind {
                "typed" => ensure_or_crash(&dbaas, &fake, &typed.get(&name).await.unwrap()).await,
                _ => ensure_or_crash(&dbaas, &fake, &dynamic.get(&name).await.unwrap()).await,
            }
            .unwrap();
            let instances = fake.instances_for(&key);
            assert_eq!(instances.len(), 1, "{name}: exactly one instance");
            let expected = match point {
                CrashPoint::BeforeCreate => Provisioned::Created(instances[0].clone()),
                CrashPoint::AfterCreateSent => Provisioned::Found(instances[0].clone()),
            };
            assert_eq!(resumed, expected, "{name}");

            // From now on: found, nothing created, and never a write to the object.
            let again = ensure_or_crash(&dbaas, &fake, &typed.get(&name).await.unwrap())
                .await
                .unwrap();
            assert!(matches!(again, Provisioned::Found(_)), "{name}");
            assert_eq!(
                server
                    .requests()
                    .get(Verb::Patch, "databases.test.kube-reconcile.dev"),
                0
            );
        }
    }
    assert_eq!(fake.most_per_key(), 1);
    assert_eq!(fake.creates(), 4);
}

#[tokio::test]
async fn external_deletes_count_gone_as_done() {
    let server = ApiServer::new();
    let api = install(&server).await;
    let fake = FakeDbaas::default();
    let instances = Dependency::builder(fake.clone()).build();
    let db = create(&api, "orders").await;

    assert_eq!(
        instances.delete(&db).await.unwrap(),
        Deletion::Gone,
        "never created"
    );
    instances.ensure(&db, &3).await.unwrap();
    assert!(matches!(
        instances.delete(&db).await.unwrap(),
        Deletion::Requested(_)
    ));
    assert_eq!(
        instances.delete(&db).await.unwrap(),
        Deletion::Gone,
        "deleted already"
    );
    assert!(fake.instances().is_empty());

    // A failing DBaaS: the error comes back and the instance stays.
    instances.ensure(&db, &3).await.unwrap();
    fake.set_failing(true);
    let err = instances.delete(&db).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transient);
    assert_eq!(fake.instances().len(), 1);
}
