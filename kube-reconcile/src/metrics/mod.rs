//! Prometheus metrics (feature `metrics`): controller-runtime's reconcile metrics, plus
//! what no framework exports: phases, breakers, deferrals, backoff.
//!
//! One [`Metrics`] holds every family; [`register`](Metrics::register) it in a
//! `prometheus_client` [`Registry`] and [`serve`][] it (`GET /metrics` over HTTP). A
//! phase operator takes it whole: [`OperatorBuilder::metrics`](crate::phase::OperatorBuilder::metrics)
//! records its reconciles, phases, caches and shard, and exports the breaker and budget of
//! every dependency its handlers call. Around a plain reconciler, plug it in where the
//! events happen:
//!
//! - [`Metrics::layer`][]: a metrics layer, outermost around the reconciler;
//! - [`Metrics::observe_breaker`][] or [`Metrics::observe_dependency`][]: per circuit
//!   breaker or dependency;
//! - [`Metrics::phase_observer`][]: into
//!   [`PhaseConfig::on_transition`](crate::phase::PhaseConfig::on_transition).
//!
//! # The metrics
//!
//! controller-runtime's, with its names, labels and buckets, so existing dashboards and
//! alerts work unchanged:
//!
//! | Name | Type | Labels | What |
//! |---|---|---|---|
//! | `controller_runtime_reconcile_total` | counter | `controller`, `result` | Reconciles by result: `success` (done, waiting for a change), `requeue_after` (done with a requeue, or deferred by a layer), `error`; `requeue` is always 0 (kube-runtime has no immediate rate-limited requeue). |
//! | `controller_runtime_reconcile_errors_total` | counter | `controller` | Failed reconciles (terminal ones included). |
//! | `controller_runtime_terminal_reconcile_errors_total` | counter | `controller` | Failed reconciles whose error is [`Terminal`](crate::ErrorClass::Terminal). |
//! | `controller_runtime_reconcile_time_seconds` | histogram | `controller` | Duration of each finished reconcile (deferred ones included, at about 0 s). |
//! | `controller_runtime_active_workers` | gauge | `controller` | Reconciles running now. |
//! | `controller_runtime_max_concurrent_reconciles` | gauge | `controller` | The controller's concurrency, when given to [`OperatorBuilder::concurrency`](crate::phase::OperatorBuilder::concurrency). |
//!
//! Ours:
//!
//! | Name | Type | Labels | What |
//! |---|---|---|---|
//! | `kube_reconcile_errors_total` | counter | `controller`, `class` | Failed reconciles by [error class](crate::ErrorClass): `transient`, `throttled`, `conflict`, `terminal`. |
//! | `kube_reconcile_deferrals_total` | counter | `controller`, `reason` | Reconciles a layer held back without running them: `backing_off`, `rate_limited`, `circuit_open`, `not_leader`. |
//! | `kube_reconcile_deferral_wait_seconds` | histogram | `controller`, `reason` | The wait each deferral asked for (rate-limiter waits are `reason="rate_limited"`). |
//! | `kube_reconcile_rate_limit_rejections_total` | counter | `controller`, `budget` | Deferrals by a rate limit, by exhausted budget: `global`, `object` or a dependency's name. |
//! | `kube_reconcile_backoff_retries_total` | counter | `controller` | Failures the error policy requeued after a delay (the object's backoff when [`Backoff`](crate::middleware::backoff) is in the stack); terminal ones wait for a change and are not counted. |
//! | `kube_reconcile_phase_transitions_total` | counter | `controller`, `from`, `to` | Phase changes the [phase engine](crate::phase) wrote; `from=""` for an object's first phase. |
//! | `kube_reconcile_phase_duration_seconds` | histogram | `controller`, `phase` | Time an object spent in `phase`, observed when it leaves it (whole seconds, from `status.phaseHistory`). |
//! | `kube_reconcile_breaker_state` | gauge | `dependency`, `state` | 1 for the breaker's state, 0 for the others (`closed`, `open`, `half_open`, `forced_open`, `disabled`, `metrics_only`). |
//! | `kube_reconcile_breaker_transitions_total` | counter | `dependency`, `from`, `to` | Breaker state changes. |
//! | `kube_reconcile_shard_objects` | gauge | `ring`, `member` | Objects a [shard](crate::shard) member's controller holds (exported by [`OperatorBuilder::metrics`](crate::phase::OperatorBuilder::metrics) with a shard). |
//! | `kube_reconcile_shard_handovers_total` | counter | `ring`, `member` | Objects the member handed over after a drain request. |
//! | `kube_reconcile_shard_assignments_total` | counter | `ring`, `member` | Objects this process labelled with an owner while it was the ring's assigner. |
//! | `kube_reconcile_budget_rate` | gauge | `budget` | Calls a second a dependency's budget admits now, read at each scrape ([`Metrics::observe_dependency`], or a phase operator with metrics at the dependency's first call): an adaptive budget's estimate of the dependency's capacity. |
//! | `kube_reconcile_cached_children` | gauge | `controller`, `kind` | Children the operator's watch caches hold (an operator with [`metrics`](crate::phase::OperatorBuilder::metrics)); a sharded operator's hold only its own shard's. |
//!
//! Breakers move lazily: an open circuit whose open duration has passed reads `open`
//! until the next call half-opens it. A [`MetricsOnly`](crate::middleware::circuit_breaker::State::MetricsOnly)
//! breaker reports the moves of the circuit it shadows, so `state` shows what an
//! enforcing breaker would do.
//!
//! # Examples
//!
//! ```
//! use std::sync::Arc;
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use kube::runtime::controller::Action;
//! use kube_reconcile::{ErrorClass, Reconciler, ReconcilerExt, metrics::Metrics};
//! use kube_reconcile::middleware::circuit_breaker::{Breaker, CircuitBreakerLayer};
//! use prometheus_client::{encoding::text::encode, registry::Registry};
//!
//! async fn reconcile(_: Arc<ConfigMap>, _: Arc<()>) -> Result<Action, ErrorClass> {
//!     Ok(Action::await_change())
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let metrics = Metrics::default();
//! let mut registry = Registry::default();
//! metrics.register(&mut registry);
//!
//! let dbaas = Breaker::new("dbaas");
//! metrics.observe_breaker(&dbaas);
//! let reconciler = reconcile
//!     .with(CircuitBreakerLayer::from(dbaas))
//!     .with(metrics.layer("configmaps"));
//! reconciler.call(Arc::new(ConfigMap::default()), Arc::new(())).await;
//!
//! let mut text = String::new();
//! encode(&mut text, &registry)?;
//! assert!(text.contains(
//!     r#"controller_runtime_reconcile_total{controller="configmaps",result="success"} 1"#
//! ));
//! assert!(text.contains(r#"kube_reconcile_breaker_state{dependency="dbaas",state="closed"} 1"#));
//! # Ok(()) }
//! ```

use std::sync::{
    Arc, Mutex, PoisonError,
    atomic::{AtomicU64, Ordering},
};

use prometheus_client::registry::Registry;

use crate::{
    external::{Dependency, ExternalDependency},
    middleware::circuit_breaker::{Breaker, WeakBreaker},
    phase::PhaseChange,
    shard::{ShardEvent, ShardHandle},
};

mod budgets;
mod families;
mod layer;
mod serve;
#[cfg(test)]
pub(crate) mod tests;

pub(crate) use self::layer::MetricsLayer;
pub use self::serve::{MetricsServer, serve};

use self::families::{BreakerMoveLabels, Families, PhaseLabels, PhaseMoveLabels, ShardLabels};

/// Every metric this crate exports, shared by all clones.
///
/// Create one per process (`Metrics::default()`: empty families, registered nowhere),
/// [`register`](Metrics::register) it once, and hand clones to
/// the places that record. The [module docs](self) list the metrics.
#[derive(Clone, Default)]
pub struct Metrics {
    families: Arc<Families>,
    budgets: Arc<budgets::Budgets>,
    /// The breakers exported so far, each once (without keeping them alive).
    breakers: Arc<Mutex<Vec<WeakBreaker>>>,
    /// Which `Metrics` these are (clones share it): dependency gates remember it.
    id: MetricsId,
}

/// A process-unique id of a [`Metrics`] and its clones (never 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MetricsId(u64);

impl Default for MetricsId {
    fn default() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        MetricsId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Adds every family to `registry`. Values are shared: what is recorded through this
    /// `Metrics` (or a clone) shows in `registry`.
    ///
    /// Register once per registry; a second time would export every family twice.
    /// To prefix the names, pass `registry.sub_registry_with_prefix("myapp")`.
    pub fn register(&self, registry: &mut Registry) {
        self.families.register(registry);
        registry.register_collector(Box::new(budgets::BudgetCollector(Arc::clone(
            &self.budgets,
        ))));
    }

    /// A layer that records controller-runtime's reconcile metrics under
    /// `controller="<controller>"`. Put it outermost:
    /// `reconciler.with(backoff).with(metrics.layer("databases"))`.
    pub fn layer(&self, controller: impl Into<Arc<str>>) -> MetricsLayer {
        MetricsLayer::new(self.clone(), controller.into())
    }

    /// Exports `breaker`'s state and counts its transitions, under its dependency name.
    ///
    /// Sets the state gauge now, then follows every change through
    /// [`Breaker::on_transition`]. Call it before the breaker is in use (a change racing
    /// with this call may leave the gauge on the old state until the next change); a
    /// second call for the same breaker (or a clone of it) does nothing. Two breakers of
    /// one dependency name share its series (a warning says so).
    pub fn observe_breaker(&self, breaker: &Breaker) {
        {
            let mut breakers = self.breakers.lock().unwrap_or_else(PoisonError::into_inner);
            if breakers.iter().any(|b| b.is(breaker)) {
                return;
            }
            breakers.retain(|b| b.upgrade().is_some());
            if breakers
                .iter()
                .filter_map(WeakBreaker::upgrade)
                .any(|b| b.dependency() == breaker.dependency())
            {
                tracing::warn!(
                    dependency = breaker.dependency(),
                    "a second circuit breaker of this name is exported: both move the same series"
                );
            }
            breakers.push(breaker.downgrade());
        }
        let families = Arc::clone(&self.families);
        let dependency: Arc<str> = breaker.dependency().into();
        let name = Arc::clone(&dependency);
        breaker.on_transition(move |t| {
            families
                .breaker_transitions
                .get_or_create(&BreakerMoveLabels {
                    dependency: Arc::clone(&name),
                    from: t.from.as_str(),
                    to: t.to.as_str(),
                })
                .inc();
            families.set_breaker_state(&name, t.to);
        });
        self.families
            .set_breaker_state(&dependency, breaker.state());
    }

    /// Exports what `dependency` holds: its breaker's state and transitions (as
    /// [`observe_breaker`](Self::observe_breaker)) and, when it has a budget, the budget's
    /// rate now (`kube_reconcile_budget_rate{budget}`: an adaptive budget's estimate of the
    /// dependency's capacity, read at each scrape). A second call does nothing.
    ///
    /// A phase operator with [metrics](crate::phase::OperatorBuilder::metrics) does this
    /// by itself for every dependency its handlers and cleanup call, at the first call
    /// (a call from a task the handler spawns is not seen). Call it for a dependency whose
    /// state should show before then, or that anything else calls (a plain reconciler, a
    /// [`PhaseEngine`](crate::phase::PhaseEngine) run without the operator's builder).
    pub fn observe_dependency<C: ExternalDependency>(&self, dependency: &Dependency<C>) {
        self.observe_gate(&dependency.gate);
    }

    /// [`observe_dependency`](Self::observe_dependency) by the dependency's gate: on every
    /// call through the gate of an operator with metrics, so one atomic load once the
    /// gate has been exported.
    pub(crate) fn observe_gate(&self, gate: &crate::external::Gate) {
        if !gate.observed_by(self.id.0) {
            return;
        }
        self.observe_breaker(gate.breaker());
        if let Some(budget) = gate.budget() {
            self.budgets.observe(budget);
        }
    }

    /// Exports `shard`'s counts under its ring and member: the objects its controller
    /// holds (when it runs through [`OperatorBuilder::shard`](crate::phase::OperatorBuilder::shard)),
    /// the objects it handed over, and the objects this process assigned as the ring's
    /// assigner. Call it once per member; [`OperatorBuilder::metrics`](crate::phase::OperatorBuilder::metrics)
    /// calls it for the operator's shard.
    pub(crate) fn observe_shard(&self, shard: &ShardHandle) {
        let families = Arc::clone(&self.families);
        let ring: Arc<str> = shard.ring().into();
        let member: Arc<str> = shard.identity().into();
        let labels = ShardLabels { ring, member };
        if let Some(owned) = shard.owned() {
            families
                .shard_objects
                .get_or_create(&labels)
                .set(i64::try_from(owned).unwrap_or(i64::MAX));
        }
        shard.observe(move |_, event| match event {
            ShardEvent::Owned(n) => {
                families
                    .shard_objects
                    .get_or_create(&labels)
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
            ShardEvent::HandedOver => {
                families.shard_handovers.get_or_create(&labels).inc();
            }
            ShardEvent::Assigned => {
                families.shard_assignments.get_or_create(&labels).inc();
            }
        });
    }

    /// Sets the cached-children gauges of `controller` from `(kind, held)` counts.
    pub(crate) fn cache_observer(
        &self,
        controller: Arc<str>,
    ) -> impl Fn(Vec<(String, usize)>) + Send + Sync + 'static {
        let families = Arc::clone(&self.families);
        move |sizes| {
            for (kind, held) in sizes {
                let labels = families::CacheLabels {
                    controller: Arc::clone(&controller),
                    kind,
                };
                families
                    .cached_children
                    .get_or_create(&labels)
                    .set(i64::try_from(held).unwrap_or(i64::MAX));
            }
        }
    }

    /// A callback for [`PhaseConfig::on_transition`](crate::phase::PhaseConfig::on_transition)
    /// that counts phase changes and observes the time spent in the phase left, under
    /// `controller="<controller>"`.
    ///
    /// # Examples
    ///
    /// ```
    /// use kube_reconcile::{metrics::Metrics, phase::PhaseConfig};
    ///
    /// let metrics = Metrics::default();
    /// let config = PhaseConfig::default().on_transition(metrics.phase_observer("databases"));
    /// # let _ = config;
    /// ```
    pub fn phase_observer(
        &self,
        controller: impl Into<Arc<str>>,
    ) -> impl Fn(&PhaseChange<'_>) + Send + Sync + 'static {
        let families = Arc::clone(&self.families);
        let controller: Arc<str> = controller.into();
        move |change| {
            families
                .phase_transitions
                .get_or_create(&PhaseMoveLabels {
                    controller: Arc::clone(&controller),
                    from: change.from.unwrap_or_default().to_owned(),
                    to: change.to.to_owned(),
                })
                .inc();
            if let (Some(from), Some(spent)) = (change.from, change.time_in_from) {
                families
                    .phase_duration
                    .get_or_create(&PhaseLabels {
                        controller: Arc::clone(&controller),
                        phase: from.to_owned(),
                    })
                    .observe(spent.as_secs_f64());
            }
        }
    }
}
