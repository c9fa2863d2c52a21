//! DatabaseOperator: a multi-phase operator for a `Database` custom resource, built on
//! kube-reconcile, runnable with no cluster at all.
//!
//! ```sh
//! cargo run --example database_operator            # embedded API server, simulated DBaaS
//! cargo run --example database_operator -- --help  # flags: --chaos, --count, --serve, --cluster, ...
//! ```
//!
//! Each `Database` goes Pending → Provisioning → Configuring → Deploying → Verifying →
//! Ready (Verifying → Failed → Provisioning with backoff; Ready → Updating → Verifying on
//! a spec change). Provisioning creates a credentials Secret (create-only, CSPRNG
//! password) and an instance at the DBaaS (idempotent, rate limited, behind a circuit
//! breaker); Configuring a ConfigMap and a Service; Deploying a StatefulSet; Verifying
//! waits for the replicas and the DBaaS health check. Deleting a `Database` deprovisions
//! its instance through a finalizer.

pub(crate) mod children;
pub(crate) mod cli;
pub(crate) mod crd;
#[allow(
    dead_code,
    unused_imports,
    reason = "the DBaaS tests use all of its API; the operator only part of it"
)]
pub(crate) mod dbaas;
pub(crate) mod operator;
pub(crate) mod report;
pub(crate) mod scenario;

use std::{process::ExitCode, time::Duration};

use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Client, CustomResourceExt,
    api::PostParams,
    runtime::{
        Controller,
        wait::{await_condition, conditions},
        watcher,
    },
};
use kube_reconcile::{
    ControllerExt, ReconcilerExt,
    external::{ExternalDependency, Health},
    middleware::{
        backoff::BackoffConfig,
        backoff::BackoffHandle,
        circuit_breaker::{Breaker, BreakerConfig},
        rate_limit::{Quota, RateBudget, RateLimitHandle, RateLimitLayer},
        timeout::TimeoutLayer,
    },
    phase::{PhaseConfig, PhaseEngine},
    testing::{ApiServer, WorkloadSimulator},
};

use self::{
    cli::Options, crd::Database, dbaas::DbaasClient, operator::DatabaseMachine, report::Report,
};

#[tokio::main]
async fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{}", cli::HELP);
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("database_operator: {message}\n\n{}", cli::HELP);
            return ExitCode::from(2);
        }
    };
    match run(options).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("database_operator: {error}");
            let mut source = error.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

/// Everything a run needs, wired together.
pub(crate) struct Operator {
    /// The client the operator uses.
    pub(crate) client: Client,
    /// The Databases.
    pub(crate) api: Api<Database>,
    /// The DBaaS breaker, shared by every Database.
    pub(crate) breaker: Breaker,
    /// The per-object backoff state of the reconciler's retries.
    pub(crate) backoff: BackoffHandle,
    /// The per-object rate limit of the reconciler.
    pub(crate) rate_limit: RateLimitHandle,
    /// The controller task.
    pub(crate) controller: tokio::task::JoinHandle<()>,
}

/// Starts the operator on `client` against the DBaaS at `dbaas_url`.
pub(crate) fn start(
    client: Client,
    namespace: &str,
    dbaas_url: &str,
    report: &Report,
) -> Result<Operator, Box<dyn std::error::Error>> {
    let dbaas = DbaasClient::new(dbaas_url)?;
    let breaker = BreakerConfig::default()
        .min_calls(std::num::NonZeroU32::new(4).expect("non-zero"))
        .open_duration(Duration::from_secs(2))
        .build("dbaas")?;
    report.watch_breaker(&breaker);
    let health = dbaas.clone();
    let gate = ExternalDependency::builder("dbaas")
        .breaker(breaker.clone())
        .budget(RateBudget::new(
            "dbaas",
            Quota::per_second(std::num::NonZeroU32::new(40).expect("non-zero")),
        ))
        .health(move || {
            let health = health.clone();
            async move {
                match health.service_health().await {
                    Ok(true) => Health::Available,
                    Ok(false) => Health::unavailable("its /healthz answers 503"),
                    Err(e) => Health::unavailable(format!("its /healthz cannot be reached: {e}")),
                }
            }
        })
        .health_interval(Duration::from_secs(1))
        .build();
    let ctx = operator::context(client.clone(), dbaas, gate)?;
    let engine = PhaseEngine::with_config(
        DatabaseMachine::new()?,
        client.clone(),
        PhaseConfig::default()
            .finalizer("example.kube-reconcile.dev/deprovision")
            .controller("database-operator")
            .retry(
                BackoffConfig::operator()
                    .base(Duration::from_millis(500))
                    .cap(Duration::from_secs(10)),
            ),
    )?;
    let rate_limit = RateLimitLayer::per_object(Quota::per_second(
        std::num::NonZeroU32::new(20).expect("non-zero"),
    ));
    let backoff = BackoffConfig::operator()
        .base(Duration::from_millis(200))
        .cap(Duration::from_secs(20))
        .build()?;
    let (rate_limit_handle, backoff_handle) = (rate_limit.handle(), backoff.handle());
    let reconciler = engine
        .with(TimeoutLayer::new(Duration::from_secs(30)))
        .with(rate_limit)
        .with(backoff);
    let api: Api<Database> = Api::namespaced(client.clone(), namespace);
    let controller = Controller::new(api.clone(), watcher::Config::default())
        .run_reconciler(reconciler, ctx)
        .for_each(|_| async {});
    Ok(Operator {
        client,
        api,
        breaker,
        backoff: backoff_handle,
        rate_limit: rate_limit_handle,
        controller: tokio::spawn(controller),
    })
}

/// Installs the `Database` CRD and waits until it is served.
pub(crate) async fn install_crd(client: &Client) -> Result<(), Box<dyn std::error::Error>> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = Database::crd();
    let name = crd.metadata.name.clone().unwrap_or_default();
    if crds.get_opt(&name).await?.is_none() {
        crds.create(&PostParams::default(), &crd).await?;
    }
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(crds, &name, conditions::is_crd_established()),
    )
    .await??;
    Ok(())
}

pub(crate) async fn run(options: Options) -> Result<bool, Box<dyn std::error::Error>> {
    let report = Report::new();
    // The API server: embedded unless --cluster.
    let server = (!options.cluster).then(ApiServer::new);
    let client = if let Some(server) = &server {
        server.client()
    } else {
        let client = Client::try_default().await?;
        report.say(&format!(
            "using the current kube context (namespace {})",
            client.default_namespace()
        ));
        client
    };
    let namespace = client.default_namespace().to_owned();
    if server.is_some() || options.install_crd {
        install_crd(&client).await?;
        report.say("Database CRD installed and established");
    }
    // The DBaaS: simulated on 127.0.0.1 unless --dbaas-url.
    let simulated = match &options.dbaas_url {
        Some(_) => None,
        None => Some(
            dbaas::DbaasServer::builder()
                .provision_delay(Duration::from_millis(400))
                .rate_limit(Quota::per_second(
                    std::num::NonZeroU32::new(50).expect("non-zero"),
                ))
                .start()
                .await?,
        ),
    };
    let dbaas_url = options.dbaas_url.clone().unwrap_or_else(|| {
        simulated
            .as_ref()
            .map(dbaas::RunningDbaas::url)
            .unwrap_or_default()
    });
    report.say(&format!(
        "DBaaS at {dbaas_url}{}",
        if simulated.is_some() {
            " (simulated)"
        } else {
            ""
        }
    ));
    // Nothing runs pods on the embedded server: a simulator marks StatefulSets ready.
    let _simulator = server.as_ref().map(|_| {
        WorkloadSimulator::new(client.clone())
            .ready_after(Duration::from_millis(300))
            .start()
    });
    let operator = start(client.clone(), &namespace, &dbaas_url, &report)?;
    let printer = report.print_transitions(operator.api.clone());

    let outcome = scenario::run(
        &options,
        &operator,
        simulated.as_ref(),
        server.as_ref(),
        &report,
    )
    .await;
    let ok = match outcome {
        Ok(ok) => ok,
        Err(error) => {
            report.say(&format!("scenario failed: {error}"));
            false
        }
    };
    report
        .summary(&operator, server.as_ref(), simulated.as_ref())
        .await;
    if options.serve
        && let Some(server) = &server
    {
        // The operator keeps running: edit a Database with kubectl and watch it move.
        scenario::serve(server, &operator).await?;
    }
    printer.abort();
    operator.controller.abort();
    println!(
        "\n{}",
        if ok {
            "every valid Database reached Ready"
        } else {
            "NOT every valid Database reached Ready"
        }
    );
    Ok(ok)
}
