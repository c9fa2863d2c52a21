//! [`MetricsLayer`] and [`Measured`]: controller-runtime's reconcile metrics around any
//! reconciler.

use std::{fmt, sync::Arc, time::Duration};

use kube::runtime::controller::Action;
use prometheus_client::metrics::{counter::Counter, gauge::Gauge, histogram::Histogram};
use tower_layer::Layer;

use super::{
    Metrics,
    families::{
        BudgetLabels, ClassLabels, ControllerLabels, Families, RESULTS, ReasonLabels, ResultLabels,
        class_label, defer_label, result_label,
    },
};
use crate::{
    clock::Clock,
    error::{Classify, ErrorClass},
    reconciler::{DeferReason, Outcome, Reconciler},
};

/// Builds [`Measured`]: the reconcile metrics of one controller.
///
/// Made by [`Metrics::layer`]. Put it outermost, so it sees what the controller sees:
/// deferrals by every other layer, and the error policy's answer.
///
/// # Default
///
/// - no `controller_runtime_max_concurrent_reconciles` series (see
///   [`max_concurrent_reconciles`](MetricsLayer::max_concurrent_reconciles))
/// - durations on the tokio clock
#[derive(Clone, Debug)]
#[must_use]
pub struct MetricsLayer {
    metrics: Metrics,
    controller: Arc<str>,
    max_concurrent: Option<u16>,
}

impl MetricsLayer {
    pub(super) fn new(metrics: Metrics, controller: Arc<str>) -> Self {
        MetricsLayer {
            metrics,
            controller,
            max_concurrent: None,
        }
    }

    /// The concurrency the controller runs with (kube-runtime's
    /// `controller::Config::concurrency`; 0 for unbounded), exported as
    /// `controller_runtime_max_concurrent_reconciles` when the layer wraps a reconciler.
    pub const fn max_concurrent_reconciles(mut self, concurrency: u16) -> Self {
        self.max_concurrent = Some(concurrency);
        self
    }
}

impl<R> Layer<R> for MetricsLayer {
    type Service = Measured<R>;

    /// Wraps `inner`, and creates the controller's series at zero so dashboards and
    /// alerts see them before the first reconcile.
    fn layer(&self, inner: R) -> Measured<R> {
        let families = &self.metrics.families;
        let labels = ControllerLabels {
            controller: Arc::clone(&self.controller),
        };
        if let Some(n) = self.max_concurrent {
            families
                .max_concurrent
                .get_or_create(&labels)
                .set(i64::from(n));
        }
        let results = RESULTS.map(|result| {
            families.reconcile_total.get_or_create_owned(&ResultLabels {
                controller: Arc::clone(&self.controller),
                result,
            })
        });
        let series = Series {
            results,
            errors: families.reconcile_errors.get_or_create_owned(&labels),
            terminal: families.terminal_errors.get_or_create_owned(&labels),
            time: families.reconcile_time.get_or_create_owned(&labels),
            active: families.active_workers.get_or_create_owned(&labels),
            retries: families.backoff_retries.get_or_create_owned(&labels),
        };
        Measured {
            inner,
            shared: Arc::new(Shared {
                families: Arc::clone(families),
                controller: Arc::clone(&self.controller),
                series,
                clock: Clock::default(),
            }),
        }
    }
}

/// A reconciler whose calls are counted and timed under controller-runtime's names.
///
/// Built by [`MetricsLayer`]. For every [`call`](Reconciler::call):
///
/// | Outcome | Recorded |
/// |---|---|
/// | `Done` with `Action::await_change()` | `controller_runtime_reconcile_total{result="success"}` |
/// | `Done` with `Action::requeue(d)` | `…{result="requeue_after"}` |
/// | `Deferred` | `…{result="requeue_after"}`, `kube_reconcile_deferrals_total{reason}`, `kube_reconcile_deferral_wait_seconds{reason}`, and `kube_reconcile_rate_limit_rejections_total{budget}` for a rate limit |
/// | `Failed` | `…{result="error"}`, `controller_runtime_reconcile_errors_total`, `kube_reconcile_errors_total{class}`, and `controller_runtime_terminal_reconcile_errors_total` for a `Terminal` error |
///
/// Every finished call is observed in `controller_runtime_reconcile_time_seconds`, and
/// counts in `controller_runtime_active_workers` while it runs.
/// [`error_action`](Reconciler::error_action) answers that requeue after a delay count in
/// `kube_reconcile_backoff_retries_total`.
///
/// # Guarantees
///
/// Cancel-safe: a call dropped at its `.await` leaves `active_workers` as it was before
/// the call and records nothing else.
#[derive(Clone)]
pub struct Measured<R> {
    inner: R,
    shared: Arc<Shared>,
}

/// The series of one controller, resolved once.
struct Series {
    /// `controller_runtime_reconcile_total`, in the order of [`RESULTS`].
    results: [Counter; 4],
    errors: Counter,
    terminal: Counter,
    time: Histogram,
    active: Gauge,
    retries: Counter,
}

struct Shared {
    families: Arc<Families>,
    controller: Arc<str>,
    series: Series,
    clock: Clock,
}

impl Shared {
    fn record<E: Classify>(&self, outcome: &Outcome<E>, elapsed: Duration) {
        let series = &self.series;
        let result = result_label(outcome);
        if let Some(i) = RESULTS.iter().position(|r| *r == result) {
            series.results[i].inc();
        }
        series.time.observe(elapsed.as_secs_f64());
        match outcome {
            Outcome::Done(_) => {}
            Outcome::Failed(error) => {
                let class = error.class();
                series.errors.inc();
                if class == ErrorClass::Terminal {
                    series.terminal.inc();
                }
                self.families
                    .errors_by_class
                    .get_or_create(&ClassLabels {
                        controller: Arc::clone(&self.controller),
                        class: class_label(class),
                    })
                    .inc();
            }
            Outcome::Deferred(deferral) => {
                let labels = ReasonLabels {
                    controller: Arc::clone(&self.controller),
                    reason: defer_label(&deferral.reason),
                };
                self.families.deferrals.get_or_create(&labels).inc();
                self.families
                    .deferral_wait
                    .get_or_create(&labels)
                    .observe(deferral.retry_after.as_secs_f64());
                if let DeferReason::RateLimited { budget } = &deferral.reason {
                    self.families
                        .rate_limit_rejections
                        .get_or_create(&BudgetLabels {
                            controller: Arc::clone(&self.controller),
                            budget: Arc::clone(budget),
                        })
                        .inc();
                }
            }
        }
    }
}

/// Counts one running reconcile in `active_workers` until dropped.
struct Active<'a>(&'a Gauge);

impl<'a> Active<'a> {
    fn enter(gauge: &'a Gauge) -> Self {
        gauge.inc();
        Active(gauge)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl<R: fmt::Debug> fmt::Debug for Measured<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Measured")
            .field("inner", &self.inner)
            .field("controller", &self.shared.controller)
            .finish_non_exhaustive()
    }
}

impl<K, Ctx, R> Reconciler<K, Ctx> for Measured<R>
where
    R: Reconciler<K, Ctx>,
    K: Send + Sync,
    Ctx: Send + Sync,
{
    type Error = R::Error;

    async fn reconcile(&self, obj: Arc<K>, ctx: Arc<Ctx>) -> Result<Action, Self::Error> {
        self.call(obj, ctx).await.into_result()
    }

    async fn call(&self, obj: Arc<K>, ctx: Arc<Ctx>) -> Outcome<Self::Error> {
        let shared = &*self.shared;
        let _active = Active::enter(&shared.series.active);
        let start = shared.clock.now();
        let outcome = self.inner.call(obj, ctx).await;
        shared.record(&outcome, shared.clock.now().saturating_since(start));
        outcome
    }

    fn error_action(&self, obj: &K, error: &Self::Error) -> Action {
        let action = self.inner.error_action(obj, error);
        if action != Action::await_change() {
            self.shared.series.retries.inc();
        }
        action
    }
}

#[cfg(test)]
#[allow(
    clippy::float_cmp,
    reason = "metric values here are small integers, exact in f64"
)]
mod tests;
