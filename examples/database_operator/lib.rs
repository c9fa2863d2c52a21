//! DatabaseOperator: a multi-phase operator for a `Database` custom resource, built on
//! kube-reconcile, runnable with no cluster at all.
//!
//! ```sh
//! cargo run --example database_operator            # embedded API server, simulated DBaaS
//! cargo run --example database_operator -- --help  # flags: --chaos, --count, --serve, --cluster, ...
//! ```
//!
//! This library is the operator; `main.rs` only parses the flags and sets up logging.
//! Its tests and the convergence bench start the operator through [`start`].
//!
//! Each `Database` goes Pending → Provisioning → Configuring → Deploying → Verifying →
//! Ready (Verifying → Failed → Provisioning with backoff; Ready → Updating → Verifying on
//! a spec change). Provisioning creates a credentials Secret (create-only, CSPRNG
//! password) and an instance at the DBaaS (idempotent, rate limited, behind a circuit
//! breaker); Configuring a ConfigMap and a Service; Deploying a StatefulSet; Verifying
//! waits for the replicas and the DBaaS health check. Deleting a `Database` deprovisions
//! its instance through a finalizer.

#![allow(
    clippy::missing_errors_doc,
    clippy::missing_panics_doc,
    reason = "an example, not a published API: its items are public for its own tests and bench"
)]

pub mod children;
pub mod cli;
pub mod crd;
pub mod dbaas;
pub mod operator;
pub mod report;
pub mod scenario;
pub mod standalone;

use std::{num::NonZeroU32, sync::Arc, time::Duration};

use kube::{Api, Client, CustomResourceExt};
use kube_reconcile::{
    ConfigError,
    external::{Dependency, DependencyBuilder},
    leader::{LeaderHandle, LeaseConfig},
    metrics::{Metrics, MetricsServer},
    middleware::{
        backoff::BackoffConfig,
        circuit_breaker::BreakerConfig,
        rate_limit::{Quota, RateBudget, RateLimitLayer},
    },
    phase::{Operator as PhaseOperator, OperatorBuilder, PhaseConfig, Running},
    shard::{ShardConfig, ShardHandle},
};
use kube_reconcile_testing::{ApiServer, WorkloadSimulator};

use self::{
    cli::Options, crd::Database, dbaas::DbaasClient, operator::DatabaseMachine, report::Report,
};

/// The finalizer that deprovisions a deleted Database's instance.
pub const FINALIZER: &str = "example.kube-reconcile.dev/deprovision";

/// The running operator, and what its demo, tests and bench look at.
#[derive(Debug)]
pub struct Operator {
    /// The Databases.
    pub api: Api<Database>,
    /// The DBaaS, behind the breaker and the budget every Database shares.
    pub dbaas: Dependency<DbaasClient>,
    /// The running controller.
    pub controller: Running,
}

/// The operator's settings, as [`operator`] makes them: wrap it further (leader
/// election, sharding, metrics, concurrency) before [`start`].
pub type Builder = OperatorBuilder<DatabaseMachine, Database>;

/// The DBaaS behind its circuit breaker (open for 2 s once half of at least 4 calls
/// failed), an adaptive budget that finds its capacity from its answers (never above
/// 500 calls a second), and a health check at most once a second.
pub fn dbaas(client: DbaasClient) -> Result<DependencyBuilder<DbaasClient>, ConfigError> {
    let breaker = BreakerConfig::default()
        .min_calls(NonZeroU32::new(4).expect("non-zero"))
        .open_duration(Duration::from_secs(2))
        .build("dbaas")?;
    let ceiling = Quota::per_second(NonZeroU32::new(500).expect("non-zero"));
    Ok(Dependency::builder(client)
        .breaker(breaker)
        .budget(RateBudget::adaptive("dbaas", ceiling))
        .health_interval(Duration::from_secs(1)))
}

/// The operator of `machine`: the engine, with this example's finalizer, controller name
/// (also the children's field manager) and retries out of Failed, inside the recommended
/// middleware (a timeout, at most 20 reconciles a second per Database, backoff, and a
/// `Deferred` condition while the middleware holds a Database back).
pub fn operator(client: Client, machine: DatabaseMachine) -> Result<Builder, ConfigError> {
    let config = PhaseConfig::default()
        .finalizer(FINALIZER)
        .controller("database-operator")
        .retry(
            BackoffConfig::operator()
                .base(Duration::from_millis(500))
                .cap(Duration::from_secs(10)),
        );
    let backoff = BackoffConfig::operator()
        .base(Duration::from_millis(20))
        .cap(Duration::from_secs(20));
    let per_object = Quota::per_second(NonZeroU32::new(20).expect("non-zero"));
    Ok(PhaseOperator::builder(machine, client)
        .config(config)
        .rate_limit(RateLimitLayer::per_object(per_object))
        .backoff(backoff))
}

/// Starts `operator` on the Databases of `api`; its handlers call `dbaas`.
pub fn start(
    operator: Builder,
    api: Api<Database>,
    dbaas: Dependency<DbaasClient>,
) -> Result<Operator, ConfigError> {
    let ctx = Arc::new(operator::Ctx {
        dbaas: dbaas.clone(),
    });
    let controller = operator.build()?.spawn(api.clone(), ctx);
    Ok(Operator {
        api,
        dbaas,
        controller,
    })
}

/// `--max-concurrent-reconciles`, `--metrics-addr`, `--leader-elect` and `--shard` around
/// `operator`, and the metrics endpoint (served while it is kept). The operator releases
/// its Leases itself when it stops.
async fn wire(
    options: &Options,
    operator: Builder,
    client: &Client,
    namespace: &str,
    report: &Report,
) -> Result<(Builder, Option<MetricsServer>), Box<dyn std::error::Error>> {
    let mut operator = operator.concurrency(options.max_concurrent_reconciles);
    let mut endpoint = None;
    if let Some(addr) = options.metrics_addr {
        let metrics = Metrics::default();
        let mut registry = prometheus_client::registry::Registry::default();
        metrics.register(&mut registry);
        let served = kube_reconcile::metrics::serve(addr, Arc::new(registry)).await?;
        report.say(&format!(
            "metrics at http://{}/metrics",
            served.local_addr()
        ));
        operator = operator.metrics(Some(metrics), "databases");
        endpoint = Some(served);
    }
    // --leader-elect: reconcile only while holding the Lease; copies of this process
    // started alongside wait and take over when it stops.
    if options.leader_elect {
        let lease = LeaseConfig::new(namespace.to_owned(), "database-operator");
        let handle = LeaderHandle::spawn(client.clone(), lease)?;
        report.say(&format!(
            "leader election on Lease {namespace}/database-operator as {}",
            handle.identity()
        ));
        operator = operator.leader(Some(handle));
    } else if options.shard {
        let lease = LeaseConfig::new(namespace.to_owned(), "databases");
        let config = ShardConfig::new(lease).objects_namespace(namespace);
        let shard = ShardHandle::join::<Database>(client.clone(), config).await?;
        report.say(&format!(
            "sharding the Databases as {} (kubectl get databases -L shard.kube-reconcile.dev/databases)",
            shard.identity()
        ));
        operator = operator.shard(Some(shard));
    }
    Ok((operator, endpoint))
}

/// `--operator-only`: no script; reconcile what is there until stopped, then hand over
/// cleanly (no new work, reconciles in flight finish for up to 30 s, the Lease released,
/// the kubeconfig deleted).
async fn operate(
    server: Option<&ApiServer>,
    operator: Operator,
    namespace: &str,
    report: &Report,
) -> Result<(), Box<dyn std::error::Error>> {
    let printer = report.print_transitions(operator.api.clone());
    let kubeconfig = match server {
        Some(server) => Some(scenario::serve_for_kubectl(server, namespace).await?),
        None => None,
    };
    report.say(&format!(
        "operator only: reconciling the Databases in namespace {namespace} (Ctrl-C or SIGTERM stops)"
    ));
    scenario::stopped().await?;
    report.say("stopping: no new work; waiting for the reconciles in flight");
    let finished = operator.controller.shut_down(Duration::from_secs(30)).await;
    printer.abort();
    if let Some(kubeconfig) = kubeconfig {
        kubeconfig.remove()?;
    }
    report.say(if finished {
        "stopped: every reconcile in flight finished"
    } else {
        "stopped: reconciles still running after 30 s were cut"
    });
    Ok(())
}

/// Runs what the flags ask for: the scripted demo (the default), or the operator alone
/// with `--operator-only`, or the DBaaS alone with `--dbaas-only`. `Ok(false)` when not
/// every valid Database reached Ready.
///
/// # Errors
///
/// When the API server, the DBaaS or the metrics endpoint cannot be reached or started.
pub async fn run(options: Options) -> Result<bool, Box<dyn std::error::Error>> {
    let report = Report::new();
    if options.dbaas_only {
        standalone::dbaas_only(&options, &report).await?;
        return Ok(true);
    }
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
    let namespace = options
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    if server.is_some() || options.install_crd {
        kube_reconcile_testing::install_crd(&client, &Database::crd()).await?;
        report.say("Database CRD installed and established");
    }
    let (simulated, dbaas) = standalone::dbaas_for(&options, &report).await?;
    // Nothing runs pods on the embedded server: a simulator marks StatefulSets ready.
    let _simulator = server.as_ref().map(|_| {
        WorkloadSimulator::new(client.clone())
            .ready_after(Duration::from_millis(300))
            .start()
    });
    let dbaas = self::dbaas(dbaas)?.build();
    report.watch_breaker(dbaas.breaker());
    let machine = DatabaseMachine::new(Duration::ZERO, operator::READY_RESYNC)?;
    let operator = self::operator(client.clone(), machine)?;
    let (operator, _metrics) = wire(&options, operator, &client, &namespace, &report).await?;
    let operator = start(operator, Api::namespaced(client.clone(), &namespace), dbaas)?;
    if options.operator_only {
        let server = server.as_ref();
        operate(server, operator, &namespace, &report).await?;
        return Ok(true);
    }
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
    // Stops gracefully and hands the Lease over at once instead of letting it expire.
    operator.controller.shut_down(Duration::from_secs(5)).await;
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
