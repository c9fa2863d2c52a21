//! What a breaker is doing and how it got there: [`State`], [`StateChange`], [`Snapshot`].

use std::{fmt, sync::Arc, time::Duration};

use crate::clock::Nanos;

/// The state of a [`Breaker`](super::Breaker).
///
/// `Closed`, `Open` and `HalfOpen` are the automatic circuit; the other three are set
/// by hand ([`force_open`](super::Breaker::force_open),
/// `disable`, `metrics_only`)
/// and left with [`reset`](super::Breaker::reset).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// Calls flow and their outcomes are recorded.
    Closed,
    /// Calls are refused until the open duration has passed.
    Open,
    /// A few probe calls are let through; their outcomes close or reopen the circuit.
    HalfOpen,
    /// Every call is refused until [`reset`](super::Breaker::reset).
    ForcedOpen,
    /// Every call is admitted and nothing is recorded.
    Disabled,
    /// Every call is admitted; outcomes are recorded and the circuit's transitions are
    /// reported (with [`StateChange::enforced`] `false`) but never refuse a call.
    MetricsOnly,
}

impl State {
    /// The lowercase name used in logs (`"closed"`, `"half_open"`, ...).
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::ForcedOpen => "forced_open",
            State::Disabled => "disabled",
            State::MetricsOnly => "metrics_only",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a breaker changed state.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum TransitionReason {
    /// The failure rate over the window reached the threshold.
    FailureRate {
        /// Failed calls over counted calls in the window.
        rate: f64,
        /// Counted calls in the window.
        calls: u32,
    },
    /// The slow-call rate over the window reached the threshold.
    SlowCallRate {
        /// Slow calls over counted calls in the window.
        rate: f64,
        /// Counted calls in the window.
        calls: u32,
    },
    /// This many counted calls failed in a row.
    ConsecutiveFailures {
        /// The length of the run of failures.
        count: u32,
    },
    /// The open duration passed and a call arrived.
    OpenElapsed,
    /// A half-open probe failed (or was slow, when slow calls are tracked).
    ProbeFailed,
    /// Every probe slot stayed taken for the probe timeout: the probes hang.
    ProbesTimedOut,
    /// Enough half-open probes succeeded.
    ProbesSucceeded {
        /// Successful probes in this half-open period.
        count: u32,
    },
    /// `force_open`, `disable`,
    /// `metrics_only` or `reset`.
    Manual,
}

impl fmt::Display for TransitionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransitionReason::FailureRate { rate, calls } => {
                write!(f, "failure rate {:.0}% over {calls} calls", rate * 100.0)
            }
            TransitionReason::SlowCallRate { rate, calls } => {
                write!(f, "slow call rate {:.0}% over {calls} calls", rate * 100.0)
            }
            TransitionReason::ConsecutiveFailures { count } => {
                write!(f, "{count} consecutive failures")
            }
            TransitionReason::OpenElapsed => f.write_str("open duration elapsed"),
            TransitionReason::ProbeFailed => f.write_str("probe failed"),
            TransitionReason::ProbesTimedOut => f.write_str("probes timed out"),
            TransitionReason::ProbesSucceeded { count } => write!(f, "{count} probes succeeded"),
            TransitionReason::Manual => f.write_str("manual"),
        }
    }
}

/// One change of state, handed to [`on_transition`](super::Breaker::on_transition) callbacks.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct StateChange {
    /// The dependency the breaker protects.
    pub dependency: Arc<str>,
    /// The state before.
    pub from: State,
    /// The state after.
    pub to: State,
    /// When, on the breaker's [`Clock`](crate::clock::Clock).
    pub at: Nanos,
    /// Why.
    pub reason: TransitionReason,
    /// When the circuit (re)opens: until when it stays open.
    pub open_until: Option<Nanos>,
    /// `false` when the breaker is [`MetricsOnly`](State::MetricsOnly): the circuit moved
    /// but calls are still admitted.
    pub enforced: bool,
}

/// A point-in-time view of a breaker, from [`Breaker::snapshot`](super::Breaker::snapshot).
///
/// Counters are read without a lock, so under concurrent calls they may be a call or
/// two apart from each other.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
#[doc(hidden)]
pub struct Snapshot {
    /// The breaker's state.
    pub state: State,
    /// The automatic circuit (`Closed`, `Open` or `HalfOpen`). Equal to `state` unless the
    /// breaker is [`MetricsOnly`](State::MetricsOnly), where it says what an enforcing
    /// breaker would do; `Closed` when forced open or disabled.
    pub circuit: State,
    /// Counted calls in the window (successes and failures; excluded errors and
    /// cancelled calls are not counted).
    pub calls: u32,
    /// Failed calls in the window.
    pub failures: u32,
    /// Slow calls in the window (timeouts included).
    pub slow_calls: u32,
    /// `failures / calls`, or 0 with no calls.
    pub failure_rate: f64,
    /// `slow_calls / calls`, or 0 with no calls.
    pub slow_call_rate: f64,
    /// Counted calls that failed in a row, up to now.
    pub consecutive_failures: u32,
    /// While the circuit is open: when it half-opens (on the next call after this time).
    pub open_until: Option<Nanos>,
    /// While the circuit is open: the time left until `open_until`.
    pub remaining_open: Option<Duration>,
    /// While half-open: probes running now.
    pub probes_in_flight: u32,
    /// While half-open: probes that succeeded in this half-open period.
    pub probe_successes: u32,
    /// Half-open probes admitted since the breaker was built, in every half-open period
    /// (a probe whose permit was given back without an outcome counts too). Compare it
    /// with the calls a dependency saw while the circuit was not closed: only probes get
    /// through.
    pub probes_admitted: u64,
}
