//! The metric families, their label sets, and how outcomes map onto label values.

use std::sync::Arc;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};

use crate::{
    error::ErrorClass,
    middleware::circuit_breaker::State,
    reconciler::{DeferReason, Outcome},
};

/// controller-runtime's `controller_runtime_reconcile_time_seconds` buckets.
const RECONCILE_BUCKETS: [f64; 40] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9,
    1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 15.0, 20.0,
    25.0, 30.0, 40.0, 50.0, 60.0,
];

/// Time in a phase: a second to a day.
const PHASE_BUCKETS: [f64; 14] = [
    1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0,
];

/// Waits asked for by deferrals: ten milliseconds to twenty minutes.
const WAIT_BUCKETS: [f64; 14] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 1200.0,
];

fn reconcile_histogram() -> Histogram {
    Histogram::new(RECONCILE_BUCKETS)
}

fn phase_histogram() -> Histogram {
    Histogram::new(PHASE_BUCKETS)
}

fn wait_histogram() -> Histogram {
    Histogram::new(WAIT_BUCKETS)
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ControllerLabels {
    pub(super) controller: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ResultLabels {
    pub(super) controller: Arc<str>,
    pub(super) result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ClassLabels {
    pub(super) controller: Arc<str>,
    pub(super) class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ReasonLabels {
    pub(super) controller: Arc<str>,
    pub(super) reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct BudgetLabels {
    pub(super) controller: Arc<str>,
    pub(super) budget: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct PhaseMoveLabels {
    pub(super) controller: Arc<str>,
    pub(super) from: String,
    pub(super) to: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct PhaseLabels {
    pub(super) controller: Arc<str>,
    pub(super) phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ShardLabels {
    pub(super) ring: Arc<str>,
    pub(super) member: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct CacheLabels {
    pub(super) controller: Arc<str>,
    pub(super) kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct BreakerStateLabels {
    pub(super) dependency: Arc<str>,
    pub(super) state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct BreakerMoveLabels {
    pub(super) dependency: Arc<str>,
    pub(super) from: &'static str,
    pub(super) to: &'static str,
}

/// Every family, shared by all clones of a [`Metrics`](super::Metrics).
#[derive(Debug)]
pub(super) struct Families {
    pub(super) reconcile_total: Family<ResultLabels, Counter>,
    pub(super) reconcile_errors: Family<ControllerLabels, Counter>,
    pub(super) terminal_errors: Family<ControllerLabels, Counter>,
    pub(super) reconcile_time: Histograms<ControllerLabels>,
    pub(super) active_workers: Family<ControllerLabels, Gauge>,
    pub(super) max_concurrent: Family<ControllerLabels, Gauge>,
    pub(super) errors_by_class: Family<ClassLabels, Counter>,
    pub(super) deferrals: Family<ReasonLabels, Counter>,
    pub(super) deferral_wait: Histograms<ReasonLabels>,
    pub(super) rate_limit_rejections: Family<BudgetLabels, Counter>,
    pub(super) backoff_retries: Family<ControllerLabels, Counter>,
    pub(super) phase_transitions: Family<PhaseMoveLabels, Counter>,
    pub(super) phase_duration: Histograms<PhaseLabels>,
    pub(super) breaker_state: Family<BreakerStateLabels, Gauge>,
    pub(super) breaker_transitions: Family<BreakerMoveLabels, Counter>,
    pub(super) shard_objects: Family<ShardLabels, Gauge>,
    pub(super) shard_handovers: Family<ShardLabels, Counter>,
    pub(super) shard_assignments: Family<ShardLabels, Counter>,
    pub(super) cached_children: Family<CacheLabels, Gauge>,
}

impl Default for Families {
    fn default() -> Self {
        Families {
            reconcile_total: Family::default(),
            reconcile_errors: Family::default(),
            terminal_errors: Family::default(),
            reconcile_time: Family::new_with_constructor(reconcile_histogram),
            active_workers: Family::default(),
            max_concurrent: Family::default(),
            errors_by_class: Family::default(),
            deferrals: Family::default(),
            deferral_wait: Family::new_with_constructor(wait_histogram),
            rate_limit_rejections: Family::default(),
            backoff_retries: Family::default(),
            phase_transitions: Family::default(),
            phase_duration: Family::new_with_constructor(phase_histogram),
            breaker_state: Family::default(),
            breaker_transitions: Family::default(),
            shard_objects: Family::default(),
            shard_handovers: Family::default(),
            shard_assignments: Family::default(),
            cached_children: Family::default(),
        }
    }
}

impl Families {
    /// Registers clones of every family (they share their values with `self`).
    ///
    /// Counters are registered without their `_total` suffix: the encoder appends it.
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "controller_runtime_reconcile",
            "Total number of reconciliations per controller",
            self.reconcile_total.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_errors",
            "Total number of reconciliation errors per controller",
            self.reconcile_errors.clone(),
        );
        registry.register(
            "controller_runtime_terminal_reconcile_errors",
            "Total number of terminal reconciliation errors per controller",
            self.terminal_errors.clone(),
        );
        registry.register_with_unit(
            "controller_runtime_reconcile_time",
            "Length of time per reconciliation per controller",
            Unit::Seconds,
            self.reconcile_time.clone(),
        );
        registry.register(
            "controller_runtime_active_workers",
            "Number of currently used workers per controller",
            self.active_workers.clone(),
        );
        registry.register(
            "controller_runtime_max_concurrent_reconciles",
            "Maximum number of concurrent reconciles per controller",
            self.max_concurrent.clone(),
        );
        registry.register(
            "kube_reconcile_errors",
            "Failed reconciles per controller and error class",
            self.errors_by_class.clone(),
        );
        registry.register(
            "kube_reconcile_deferrals",
            "Reconciles a middleware layer held back without running, per controller and reason",
            self.deferrals.clone(),
        );
        registry.register_with_unit(
            "kube_reconcile_deferral_wait",
            "Wait until the next attempt that a deferral asked for, per controller and reason",
            Unit::Seconds,
            self.deferral_wait.clone(),
        );
        registry.register(
            "kube_reconcile_rate_limit_rejections",
            "Reconciles deferred by a rate limit, per controller and exhausted budget",
            self.rate_limit_rejections.clone(),
        );
        registry.register(
            "kube_reconcile_backoff_retries",
            "Failed reconciles the error policy requeued after a delay, per controller",
            self.backoff_retries.clone(),
        );
        registry.register(
            "kube_reconcile_phase_transitions",
            "Phase changes written by the phase engine, per controller and edge",
            self.phase_transitions.clone(),
        );
        registry.register_with_unit(
            "kube_reconcile_phase_duration",
            "Time an object spent in a phase, observed when it left the phase",
            Unit::Seconds,
            self.phase_duration.clone(),
        );
        registry.register(
            "kube_reconcile_breaker_state",
            "Circuit breaker state per dependency: 1 for the current state, 0 for the others",
            self.breaker_state.clone(),
        );
        registry.register(
            "kube_reconcile_breaker_transitions",
            "Circuit breaker state changes per dependency",
            self.breaker_transitions.clone(),
        );
        registry.register(
            "kube_reconcile_shard_objects",
            "Objects a shard member's controller holds, per ring and member",
            self.shard_objects.clone(),
        );
        registry.register(
            "kube_reconcile_shard_handovers",
            "Objects a shard member handed over to another after a drain request",
            self.shard_handovers.clone(),
        );
        registry.register(
            "kube_reconcile_shard_assignments",
            "Objects this process, as the ring's assigner, labelled with an owner",
            self.shard_assignments.clone(),
        );
        registry.register(
            "kube_reconcile_cached_children",
            "Children an operator's watch cache holds, per controller and kind",
            self.cached_children.clone(),
        );
    }
}

/// controller-runtime's `result` label values.
pub(super) const RESULTS: [&str; 4] = ["success", "error", "requeue", "requeue_after"];

/// The `result` label of an outcome, as controller-runtime would count it.
///
/// A success that waits for a change is `success`; one that asks to be requeued after a
/// delay is `requeue_after`, and so is a deferral (the controller sees
/// `Ok(Action::requeue(wait))`); a failure is `error`. kube-runtime has no immediate
/// rate-limited requeue, so `requeue` stays at zero.
pub(super) fn result_label<E>(outcome: &Outcome<E>) -> &'static str {
    match outcome {
        Outcome::Done(action) if *action == kube::runtime::controller::Action::await_change() => {
            "success"
        }
        Outcome::Done(_) | Outcome::Deferred(_) => "requeue_after",
        Outcome::Failed(_) => "error",
    }
}

/// The `class` label of an error class.
pub(super) const fn class_label(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::Transient => "transient",
        ErrorClass::Throttled { .. } => "throttled",
        ErrorClass::Conflict => "conflict",
        ErrorClass::Terminal => "terminal",
    }
}

/// The `reason` label of a deferral.
pub(super) const fn defer_label(reason: &DeferReason) -> &'static str {
    match reason {
        DeferReason::BackingOff => "backing_off",
        DeferReason::RateLimited { .. } => "rate_limited",
        DeferReason::CircuitOpen { .. } => "circuit_open",
        DeferReason::NotLeader { .. } => "not_leader",
    }
}

/// Every breaker state, for the one-hot state gauge.
pub(super) const BREAKER_STATES: [State; 6] = [
    State::Closed,
    State::Open,
    State::HalfOpen,
    State::ForcedOpen,
    State::Disabled,
    State::MetricsOnly,
];

impl Families {
    /// Sets the state gauge of `dependency`: 1 for `state`, 0 for every other state.
    pub(super) fn set_breaker_state(&self, dependency: &Arc<str>, state: State) {
        for s in BREAKER_STATES {
            let labels = BreakerStateLabels {
                dependency: Arc::clone(dependency),
                state: s.as_str(),
            };
            self.breaker_state
                .get_or_create(&labels)
                .set(i64::from(s == state));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kube::runtime::controller::Action;

    use super::*;
    use crate::reconciler::Deferral;

    #[test]
    fn outcomes_map_to_controller_runtime_results() {
        let done = |a| Outcome::<()>::Done(a);
        assert_eq!(result_label(&done(Action::await_change())), "success");
        assert_eq!(
            result_label(&done(Action::requeue(Duration::from_secs(300)))),
            "requeue_after"
        );
        assert_eq!(result_label(&Outcome::Failed(())), "error");
        let deferred = Outcome::<()>::Deferred(Deferral {
            retry_after: Duration::from_secs(2),
            reason: DeferReason::BackingOff,
        });
        assert_eq!(result_label(&deferred), "requeue_after");
        assert!(
            RESULTS.contains(&"requeue"),
            "kept at zero, as a known series"
        );
    }

    #[test]
    fn every_error_class_and_deferral_has_its_own_label() {
        let classes = [
            ErrorClass::Transient,
            ErrorClass::Throttled { retry_after: None },
            ErrorClass::Conflict,
            ErrorClass::Terminal,
        ]
        .map(class_label);
        assert_eq!(classes, ["transient", "throttled", "conflict", "terminal"]);
        let reasons = [
            DeferReason::BackingOff,
            DeferReason::RateLimited {
                budget: "global".into(),
            },
            DeferReason::CircuitOpen {
                dependency: "dbaas".into(),
            },
            DeferReason::NotLeader {
                lease: "default/lock".into(),
            },
        ];
        assert_eq!(
            reasons.each_ref().map(defer_label),
            ["backing_off", "rate_limited", "circuit_open", "not_leader"]
        );
    }

    #[test]
    fn the_breaker_state_gauge_is_one_hot() {
        let families = Families::default();
        let dbaas: Arc<str> = "dbaas".into();
        families.set_breaker_state(&dbaas, State::Closed);
        families.set_breaker_state(&dbaas, State::Open);
        let value = |state: State| {
            families
                .breaker_state
                .get_or_create(&BreakerStateLabels {
                    dependency: Arc::clone(&dbaas),
                    state: state.as_str(),
                })
                .get()
        };
        assert_eq!(value(State::Open), 1);
        assert_eq!(BREAKER_STATES.iter().map(|s| value(*s)).sum::<i64>(), 1);
    }
}
