//! Phase metrics from the engine: transitions and time in each phase.

use kube_reconcile::{
    error::HandlerError,
    external::{Dependency, ExternalDependency, Health},
    middleware::rate_limit::RateBudget,
    phase::Operator,
};

use super::*;

/// A cache that warms up for 20 seconds before it is ready.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "metrics.kube-reconcile.dev",
    version = "v1",
    kind = "Cache",
    namespaced,
    status = "CacheStatus"
)]
struct CacheSpec {
    size_mb: u32,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
struct CacheStatus {
    #[serde(flatten)]
    machine: PhaseStatus,
}

impl HasPhaseStatus for Cache {
    fn phase_status(&self) -> Option<&PhaseStatus> {
        self.status.as_ref().map(|s| &s.machine)
    }
}

kube_reconcile::phases! {
    /// Where a cache is in its life.
    enum CachePhase { Pending, Warming, Ready, Updating, Failed }
}

struct CacheMachine {
    table: Transitions<CachePhase>,
}

impl PhaseMachine<Cache, ()> for CacheMachine {
    type Phase = CachePhase;
    type Error = kube::Error;

    fn transitions(&self) -> &Transitions<CachePhase> {
        &self.table
    }

    async fn handle(
        &self,
        phase: CachePhase,
        _: &Cache,
        step: &Step<'_, CachePhase, ()>,
    ) -> Result<Transition<CachePhase>, kube::Error> {
        Ok(match phase {
            CachePhase::Pending | CachePhase::Updating => Transition::to(CachePhase::Warming),
            CachePhase::Warming if step.time_in_phase() < Duration::from_secs(20) => {
                Transition::stay(Duration::from_secs(10))
            }
            CachePhase::Warming => Transition::to(CachePhase::Ready),
            CachePhase::Ready | CachePhase::Failed => Transition::done(),
        })
    }
}

#[tokio::test(start_paused = true)]
async fn phase_changes_and_time_in_each_phase_come_from_the_engine() {
    use CachePhase::{Failed, Pending, Ready, Updating, Warming};
    let server = ApiServer::new();
    let client = server.client();
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &Cache::crd())
        .await
        .expect("CRD created");
    let metrics = Metrics::default();
    let registry = registry_of(&metrics);
    let table = Transitions::builder(Pending)
        .path([Pending, Warming, Ready, Updating, Warming])
        .edge(Failed, Warming)
        .ready(Ready)
        .updating(Updating)
        .failed(Failed)
        .build()
        .expect("a valid table");
    let config = PhaseConfig::default()
        .events(false)
        .on_transition(metrics.phase_observer("caches"));
    let engine =
        PhaseEngine::with_config(CacheMachine { table }, client.clone(), config).expect("valid");
    let caches: Api<Cache> = Api::default_namespaced(client);
    let controller = Controller::new(caches.clone(), watcher::Config::default())
        .run_reconciler(engine.with(metrics.layer("caches")), Arc::new(()));
    tokio::spawn(controller.for_each(|_| async {}));
    create_hot_until_ready(&caches, Duration::from_secs(60)).await;

    let m = Scrape::of(&registry);
    let c = ("controller", "caches");
    let moved = |from, to| {
        m.value(
            "kube_reconcile_phase_transitions_total",
            &[c, ("from", from), ("to", to)],
        )
    };
    assert_eq!(moved("", "Pending"), 1.0);
    assert_eq!(moved("Pending", "Warming"), 1.0);
    assert_eq!(moved("Warming", "Ready"), 1.0);
    let spent = |phase, what: &str| {
        m.value(
            &format!("kube_reconcile_phase_duration_seconds_{what}"),
            &[c, ("phase", phase)],
        )
    };
    assert_eq!(spent("Warming", "sum"), 20.0, "two stays of 10 s");
    assert_eq!(spent("Warming", "count"), 1.0);
    assert_eq!(spent("Pending", "count"), 1.0);
    assert_eq!(spent("Ready", "count"), 0.0, "not left");
    assert!(
        m.value(
            "controller_runtime_reconcile_total",
            &[c, ("result", "success")]
        ) >= 1.0
    );
}

/// A stock service the caches reserve memory at, as an external dependency.
#[derive(Debug)]
struct Stock;

impl ExternalDependency for Stock {
    type Error = kube::Error;

    fn name(&self) -> &'static str {
        "stock"
    }

    async fn health(&self) -> Health {
        Health::Available
    }
}

/// Reserves a cache's memory at the stock service, then it is Ready.
struct ReservingMachine {
    table: Transitions<CachePhase>,
}

impl PhaseMachine<Cache, Dependency<Stock>> for ReservingMachine {
    type Phase = CachePhase;
    type Error = HandlerError;

    fn transitions(&self) -> &Transitions<CachePhase> {
        &self.table
    }

    async fn handle(
        &self,
        phase: CachePhase,
        _: &Cache,
        step: &Step<'_, CachePhase, Dependency<Stock>>,
    ) -> Result<Transition<CachePhase>, HandlerError> {
        Ok(match phase {
            CachePhase::Pending => {
                step.ctx().call(|_| async { Ok(()) }).await?;
                Transition::to(CachePhase::Ready)
            }
            _ => Transition::done(),
        })
    }
}

/// An operator with metrics exports the breaker and budget of each dependency its
/// handlers call, with nobody naming the dependency to the metrics; naming it as well
/// counts nothing twice.
#[tokio::test(start_paused = true)]
async fn an_operator_exports_the_dependencies_its_handlers_call() {
    use CachePhase::{Failed, Pending, Ready};
    let server = ApiServer::new();
    let client = server.client();
    kube_reconcile_testing::install_crd(&client, &Cache::crd())
        .await
        .expect("CRD installed");
    let metrics = Metrics::default();
    let registry = registry_of(&metrics);
    let quota = Quota::per_second(NonZeroU32::new(50).expect("non-zero"));
    let stock = Dependency::builder(Stock)
        .budget(RateBudget::new("stock", quota))
        .build();
    let state = |m: &Scrape, state| {
        m.get(
            "kube_reconcile_breaker_state",
            &[("dependency", "stock"), ("state", state)],
        )
    };
    assert_eq!(
        state(&Scrape::of(&registry), "closed"),
        None,
        "not called yet"
    );

    let table = Transitions::builder(Pending)
        .path([Pending, Ready])
        .edge(Failed, Pending)
        .ready(Ready)
        .failed(Failed)
        .build()
        .expect("a valid table");
    let operator = Operator::builder(ReservingMachine { table }, client.clone())
        .config(PhaseConfig::default().events(false))
        .metrics(Some(metrics.clone()), "caches")
        .build()
        .expect("valid");
    let caches: Api<Cache> = Api::default_namespaced(client);
    let running = operator.spawn(caches.clone(), Arc::new(stock.clone()));
    create_hot_until_ready(&caches, Duration::from_secs(10)).await;
    let m = Scrape::of(&registry);
    assert_eq!(state(&m, "closed"), Some(1.0), "exported at its first call");
    assert_eq!(
        m.get("kube_reconcile_budget_rate", &[("budget", "stock")]),
        Some(50.0)
    );

    // Named by hand as well: one export, every transition counted once.
    metrics.observe_dependency(&stock);
    stock.breaker().force_open();
    let m = Scrape::of(&registry);
    assert_eq!(state(&m, "forced_open"), Some(1.0));
    assert_eq!(
        m.get(
            "kube_reconcile_breaker_transitions_total",
            &[
                ("dependency", "stock"),
                ("from", "closed"),
                ("to", "forced_open")
            ]
        ),
        Some(1.0)
    );
    running.abort();
}

/// Creates the cache `hot` and checks that it is Ready `after` that.
async fn create_hot_until_ready(caches: &Api<Cache>, after: Duration) {
    caches
        .create(
            &PostParams::default(),
            &Cache::new("hot", CacheSpec { size_mb: 64 }),
        )
        .await
        .expect("created");
    tokio::time::sleep(after).await;
    let hot = caches.get("hot").await.expect("read");
    assert_eq!(
        hot.phase_status().and_then(|s| s.phase.as_deref()),
        Some("Ready")
    );
}
