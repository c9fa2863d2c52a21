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
    external::Dependency,
    leader::{LeaderHandle, LeaseConfig},
    metrics::Metrics,
    middleware::{
        backoff::BackoffConfig,
        circuit_breaker::{Breaker, BreakerConfig},
        rate_limit::{Quota, RateBudget, RateLimitLayer},
    },
    phase::{Operator as PhaseOperator, PhaseConfig, Running},
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
    /// The DBaaS breaker, shared by every Database.
    pub breaker: Breaker,
    /// The DBaaS budget, shared by every Database.
    pub dbaas_budget: RateBudget,
    /// The running controller.
    pub controller: Running,
}

/// What else wraps the operator: leader election and metrics.
#[derive(Debug, Default)]
pub struct Wiring {
    /// Reconcile only while this handle leads.
    pub leader: Option<LeaderHandle>,
    /// Reconcile only the Databases this member of the ring owns.
    pub shard: Option<ShardHandle>,
    /// Record metrics here.
    pub metrics: Option<Metrics>,
    /// The DBaaS rate budget instead of an adaptive one (which finds the DBaaS's capacity
    /// from its answers, never above 500 calls a second).
    pub dbaas_budget: Option<RateBudget>,
    /// Phase deadlines at least this long. Waits for a turn at the budget never count
    /// toward them (`Transition::paced`), but outages do: a test whose outages outlast
    /// the lesson's deadlines raises them here.
    pub min_deadline: Duration,
    /// How often a Ready Database is checked for drift, instead of every 5 minutes.
    pub ready_resync: Option<Duration>,
    /// Reconcile at most this many Databases at once (`None`: the operator's default, 64).
    pub concurrency: Option<std::num::NonZeroU16>,
}

/// Starts the operator on `client` against the DBaaS `dbaas` talks to, with leader
/// election, sharding and metrics as `wiring` says.
pub fn start(
    client: Client,
    namespace: &str,
    dbaas: DbaasClient,
    report: &Report,
    wiring: Wiring,
) -> Result<Operator, Box<dyn std::error::Error>> {
    let breaker = BreakerConfig::default()
        .min_calls(std::num::NonZeroU32::new(4).expect("non-zero"))
        .open_duration(Duration::from_secs(2))
        .build("dbaas")?;
    report.watch_breaker(&breaker);
    let budget = wiring.dbaas_budget.unwrap_or_else(|| {
        RateBudget::adaptive(
            "dbaas",
            Quota::per_second(NonZeroU32::new(500).unwrap_or(NonZeroU32::MAX)),
        )
    });
    let dbaas = Dependency::builder(dbaas)
        .breaker(breaker.clone())
        .budget(budget.clone())
        .health_interval(Duration::from_secs(1))
        .build();
    if let Some(metrics) = &wiring.metrics {
        // The breaker's state and the adaptive budget's rate.
        metrics.observe_dependency(&dbaas);
    }
    let ctx = Arc::new(operator::Ctx { dbaas });
    // The controller's name is also the field manager its children are written under.
    let config = PhaseConfig::default()
        .finalizer(FINALIZER)
        .controller("database-operator")
        .retry(
            BackoffConfig::operator()
                .base(Duration::from_millis(500))
                .cap(Duration::from_secs(10)),
        );
    let rate_limit = RateLimitLayer::per_object(Quota::per_second(
        std::num::NonZeroU32::new(20).expect("non-zero"),
    ));
    let backoff = BackoffConfig::operator()
        .base(Duration::from_millis(20))
        .cap(Duration::from_secs(20))
        .build()?;
    // The recommended stack: timeout, rate limit, backoff, a Deferred condition while
    // the middleware holds a Database back, and leader election and metrics if asked.
    let operator = PhaseOperator::builder(
        DatabaseMachine::new(wiring.min_deadline)?.resync(wiring.ready_resync),
        client.clone(),
    )
    .config(config)
    .rate_limit(rate_limit)
    .backoff(backoff)
    .leader(wiring.leader)
    .shard(wiring.shard)
    .metrics(wiring.metrics, "databases")
    .concurrency(wiring.concurrency)
    .build()?;
    let api: Api<Database> = Api::namespaced(client, namespace);
    let controller = operator.spawn(api.clone(), ctx);
    Ok(Operator {
        api,
        breaker,
        dbaas_budget: budget,
        controller,
    })
}

/// `--metrics-addr`, `--leader-elect` and `--shard`: what wraps the operator, and the
/// metrics endpoint (served while it is kept). The operator releases its Leases itself
/// when it stops.
async fn wire(
    options: &Options,
    client: &Client,
    namespace: &str,
    report: &Report,
) -> Result<(Wiring, Option<kube_reconcile::metrics::MetricsServer>), Box<dyn std::error::Error>> {
    let mut wiring = Wiring {
        concurrency: options.max_concurrent_reconciles,
        ..Wiring::default()
    };
    // --metrics-addr: Prometheus metrics over HTTP for as long as the run lasts.
    let metrics_endpoint = match options.metrics_addr {
        Some(addr) => {
            let metrics = Metrics::new();
            let mut registry = prometheus_client::registry::Registry::default();
            metrics.register(&mut registry);
            let endpoint = kube_reconcile::metrics::serve(addr, Arc::new(registry)).await?;
            report.say(&format!(
                "metrics at http://{}/metrics",
                endpoint.local_addr()
            ));
            wiring.metrics = Some(metrics);
            Some(endpoint)
        }
        None => None,
    };
    // --leader-elect: reconcile only while holding the Lease; copies of this process
    // started alongside wait and take over when it stops.
    if options.leader_elect {
        let lease = LeaseConfig::new(namespace.to_owned(), "database-operator");
        let handle = LeaderHandle::spawn(client.clone(), lease)?;
        report.say(&format!(
            "leader election on Lease {namespace}/database-operator as {}",
            handle.identity()
        ));
        wiring.leader = Some(handle);
    } else if options.shard {
        let lease = LeaseConfig::new(namespace.to_owned(), "databases");
        let config = ShardConfig::new(lease).objects_namespace(namespace);
        let shard = ShardHandle::join::<Database>(client.clone(), config).await?;
        report.say(&format!(
            "sharding the Databases as {} (kubectl get databases -L shard.kube-reconcile.dev/databases)",
            shard.identity()
        ));
        wiring.shard = Some(shard);
    }
    Ok((wiring, metrics_endpoint))
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
    let (wiring, _metrics_endpoint) = wire(&options, &client, &namespace, &report).await?;
    let operator = start(client.clone(), &namespace, dbaas, &report, wiring)?;
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
