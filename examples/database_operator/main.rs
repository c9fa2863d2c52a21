//! DatabaseOperator, preview: the resilience middleware on a real controller, no cluster needed.
//!
//! Starts the embedded API server, installs a `Database` CRD generated from the Rust type,
//! creates three Databases and reconciles them with a controller whose reconciler is
//! wrapped in `Backoff ∘ RateLimit ∘ CircuitBreaker ∘ Timeout`. Provisioning calls a
//! simulated DBaaS that throttles one database and fails another twice, so every retry is
//! visible. The full multi-phase operator (Pending → Provisioning → Configuring →
//! Deploying → Verifying → Ready) replaces this preview when `PhaseMachine` lands.
//!
//! ```sh
//! cargo run --example database_operator
//! ```

use std::{
    collections::BTreeMap,
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, CustomResource, CustomResourceExt, ResourceExt,
    api::{ListParams, Patch, PatchParams, PostParams},
    runtime::{
        Controller,
        controller::Action,
        wait::{await_condition, conditions},
        watcher,
    },
};
use kube_reconcile::{
    Classify, ControllerExt, ErrorClass, ReconcilerExt,
    middleware::{
        backoff::BackoffConfig,
        circuit_breaker::{Breaker, CircuitBreakerLayer},
        rate_limit::{Quota, RateLimitLayer},
        timeout::TimeoutLayer,
    },
    testing::ApiServer,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// A managed database.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "example.kube-reconcile.dev",
    version = "v1alpha1",
    kind = "Database",
    namespaced
)]
#[kube(status = "DatabaseStatus", shortname = "db")]
#[kube(printcolumn = r#"{"name":"Engine","type":"string","jsonPath":".spec.engine"}"#)]
#[kube(printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#)]
pub struct DatabaseSpec {
    /// Database engine.
    pub engine: String,
    /// Number of replicas.
    #[schemars(range(min = 1, max = 9))]
    pub replicas: i32,
}

/// What the operator observed.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct DatabaseStatus {
    /// Human view of progress.
    pub phase: Option<String>,
    /// External instance id at the DBaaS.
    pub instance: Option<String>,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("dbaas answered {0}")]
    Dbaas(ErrorClass),
    #[error("kubernetes api call failed")]
    Kube(#[source] kube::Error),
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Error::Dbaas(class) => *class,
            Error::Kube(e) => e.class(),
        }
    }
}

/// A stand-in for a DBaaS API: throttles `orders` twice, fails `inventory` twice.
#[derive(Default)]
struct Dbaas {
    calls: Mutex<BTreeMap<String, u32>>,
}

impl Dbaas {
    async fn provision(&self, name: &str) -> Result<String, Error> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let n = {
            let mut calls = self.calls.lock().expect("dbaas lock");
            let n = calls.entry(name.to_string()).or_default();
            *n += 1;
            *n
        };
        match (name, n) {
            ("orders", 1..=2) => Err(Error::Dbaas(ErrorClass::Throttled {
                retry_after: Some(Duration::from_millis(500)),
            })),
            ("inventory", 1..=2) => Err(Error::Dbaas(ErrorClass::Transient)),
            _ => Ok(format!("dbaas-{name}")),
        }
    }
}

struct Ctx {
    api: Api<Database>,
    dbaas: Dbaas,
    started: Instant,
}

async fn reconcile(db: Arc<Database>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let name = db.name_any();
    if db.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Ready") {
        return Ok(Action::requeue(Duration::from_secs(3600)));
    }
    let outcome = ctx.dbaas.provision(&name).await;
    let elapsed = ctx.started.elapsed().as_secs_f64();
    match outcome {
        Ok(instance) => {
            println!("{elapsed:>6.2}s  {name:<10} Provisioning → Ready     instance {instance}");
            let status = DatabaseStatus {
                phase: Some("Ready".into()),
                instance: Some(instance),
            };
            let patch = serde_json::json!({ "status": status });
            ctx.api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(Error::Kube)?;
            Ok(Action::requeue(Duration::from_secs(3600)))
        }
        Err(e) => {
            println!("{elapsed:>6.2}s  {name:<10} Provisioning failed     {e}");
            Err(e)
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().any(|a| a == "--cluster") {
        eprintln!(
            "--cluster arrives with the full DatabaseOperator; this preview runs on the embedded API server only"
        );
        std::process::exit(2);
    }
    let server = ApiServer::new();
    let client = server.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Database::crd())
        .await?;
    await_condition(
        crds,
        "databases.example.kube-reconcile.dev",
        conditions::is_crd_established(),
    )
    .await?;
    println!("embedded API server up; Database CRD established\n");

    let api: Api<Database> = Api::default_namespaced(client);
    for (name, engine) in [
        ("orders", "postgres"),
        ("inventory", "mysql"),
        ("analytics", "postgres"),
    ] {
        let db = Database::new(
            name,
            DatabaseSpec {
                engine: engine.into(),
                replicas: 1,
            },
        );
        api.create(&PostParams::default(), &db).await?;
    }

    let breaker = Breaker::new("dbaas");
    let backoff = BackoffConfig::operator()
        .base(Duration::from_millis(200))
        .build()?;
    let reconciler = reconcile
        .with(TimeoutLayer::new(Duration::from_secs(10)))
        .with(CircuitBreakerLayer::from_breaker(breaker.clone()))
        .with(RateLimitLayer::per_object(Quota::per_second(
            NonZeroU32::new(5).expect("non-zero"),
        )))
        .with(backoff);
    let ctx = Arc::new(Ctx {
        api: api.clone(),
        dbaas: Dbaas::default(),
        started: Instant::now(),
    });
    let controller = Controller::new(api.clone(), watcher::Config::default())
        .run_reconciler(reconciler, Arc::clone(&ctx));
    let controller = tokio::spawn(controller.for_each(|_| async {}));

    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        let list = api.list(&ListParams::default()).await?;
        let ready = list
            .items
            .iter()
            .filter(|d| d.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Ready"))
            .count();
        if ready == list.items.len() || Instant::now() > deadline {
            break (ready, list.items.len());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    controller.abort();

    println!(
        "\n== summary after {:.2}s ==",
        ctx.started.elapsed().as_secs_f64()
    );
    for (name, calls) in ctx.dbaas.calls.lock().expect("dbaas lock").iter() {
        println!(
            "{name:<10} {calls} DBaaS call(s), {} retr{}",
            calls - 1,
            if *calls == 2 { "y" } else { "ies" }
        );
    }
    println!("breaker 'dbaas': {:?}", breaker.state());
    println!("API requests by verb and resource:\n{}", server.requests());
    println!("{} of {} databases Ready", ready.0, ready.1);
    println!(
        "\nThe full Pending → Provisioning → Configuring → Deploying → Verifying → Ready operator is coming with PhaseMachine."
    );
    if ready.0 == ready.1 {
        Ok(())
    } else {
        std::process::exit(1)
    }
}
