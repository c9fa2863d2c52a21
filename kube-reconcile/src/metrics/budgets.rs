//! `kube_reconcile_budget_rate`: each observed dependency budget's rate, read at scrape
//! time (an adaptive budget's rate moves with every answer; nothing is pushed).

use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, gauge::ConstGauge},
};

use crate::middleware::rate_limit::RateBudget;

/// The budgets to export, shared by the [`Metrics`](super::Metrics) clones and the
/// collector in the registry.
#[derive(Debug, Default)]
pub(super) struct Budgets(Mutex<Vec<RateBudget>>);

impl Budgets {
    /// Exports `budget` from now on; a second call for it (or a clone) does nothing. The
    /// series is per budget name: a second budget of the same name replaces the first
    /// (a warning says so).
    pub(super) fn observe(&self, budget: &RateBudget) {
        let mut budgets = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if budgets.iter().any(|b| b.is(budget)) {
            return;
        }
        if budgets.iter().any(|b| b.name() == budget.name()) {
            tracing::warn!(
                budget = budget.name(),
                "a second rate budget of this name is exported: it replaces the first"
            );
        }
        budgets.retain(|b| b.name() != budget.name());
        budgets.push(budget.clone());
    }
}

/// Registered once per registry by [`Metrics::register`](super::Metrics::register).
#[derive(Debug)]
pub(super) struct BudgetCollector(pub(super) Arc<Budgets>);

impl Collector for BudgetCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let budgets = &self.0.0;
        let rates: Vec<(String, f64)> = budgets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|b| (b.name().to_owned(), b.rate()))
            .collect();
        if rates.is_empty() {
            return Ok(());
        }
        let mut metric = encoder.encode_descriptor(
            "kube_reconcile_budget_rate",
            "Calls a second a dependency budget admits now: an adaptive budget's estimate of the dependency's capacity",
            None,
            MetricType::Gauge,
        )?;
        for (name, rate) in rates {
            let labels = [("budget", name)];
            ConstGauge::new(rate).encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
