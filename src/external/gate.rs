//! The gate: [`ExternalDependency::admit`] decides whether a call may go out now.

use std::{fmt, future::Future, sync::Arc, time::Duration};

use k8s_openapi::jiff::{RoundMode, Timestamp, TimestampRound, Unit};
use kube::runtime::controller::Action;

use crate::{
    conditions::{Condition, Conditions},
    error::{Classify, ErrorClass},
    middleware::circuit_breaker::{Permit, State},
};

use super::{dependency::ExternalDependency, health::Health};

/// Why the gate held a call back; the `reason` of the condition it reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UnavailableReason {
    /// The health check says the dependency is down (or the check failed or timed out).
    ExternalSystemUnavailable,
    /// The circuit breaker is open (or forced open, or its half-open probes are all
    /// taken): recent calls failed, so none are made until it half-opens.
    CircuitOpen,
    /// The dependency's rate budget has no cell free: our own pacing, not an outage.
    RateLimited,
}

impl UnavailableReason {
    /// The reason as a condition stores it: `"ExternalSystemUnavailable"`, `"CircuitOpen"`
    /// or `"RateLimited"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            UnavailableReason::ExternalSystemUnavailable => "ExternalSystemUnavailable",
            UnavailableReason::CircuitOpen => "CircuitOpen",
            UnavailableReason::RateLimited => "RateLimited",
        }
    }
}

impl fmt::Display for UnavailableReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The gate held a call back: what happened, when to try again, and what to report.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Unavailable {
    /// The dependency's name.
    pub dependency: Arc<str>,
    /// Why the call was held back.
    pub reason: UnavailableReason,
    /// Why, for a human; ends with `next attempt at <resume_at>` when that is known.
    ///
    /// It holds nothing specific to this caller, so every object held back by the same
    /// outage gets the same message, and a reconcile triggered by the status write of
    /// the previous one finds nothing to change (no write loop).
    pub message: String,
    /// When this caller should try again, from now: [`resume_at`](Unavailable::resume_at)
    /// plus a random spread, so held-back objects do not all return at once.
    pub retry_after: Duration,
    /// `retry_after` as a wall-clock time (this object's next attempt).
    pub next_attempt_time: Timestamp,
    /// When the dependency may be tried again, the same for every caller, rounded up to
    /// a second: the breaker's half-open time, the next health check, or the moment the
    /// budget has a cell. `None` while the breaker is forced open or its half-open
    /// probes are in flight (no time is known).
    pub resume_at: Option<Timestamp>,
    /// When the gate decided, on the dependency's wall clock.
    pub observed_at: Timestamp,
    /// The condition to set: `<type>=False` with this reason and message. `None` for
    /// [`RateLimited`](UnavailableReason::RateLimited): the dependency is fine and the
    /// wait is ours, so the condition is left as it is (and a busy budget does not turn
    /// every held-back reconcile into a status write).
    pub condition: Option<Condition>,
}

impl Unavailable {
    /// What the controller should do: `Action::requeue(retry_after)`.
    pub fn action(&self) -> Action {
        Action::requeue(self.retry_after)
    }

    /// Sets [`condition`](Unavailable::condition) in `conditions`, stamped with
    /// [`observed_at`](Unavailable::observed_at); returns whether anything changed.
    /// Changes nothing when rate limited.
    pub fn apply(&self, conditions: &mut Conditions) -> bool {
        self.condition
            .as_ref()
            .is_some_and(|c| conditions.set(c.clone(), self.observed_at))
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// What [`ExternalDependency::admit`] decided.
#[derive(Debug)]
#[must_use = "a Ready admission holds a breaker permit: make the call through it"]
pub enum Admission<'a> {
    /// Make the call through this pass.
    Ready(Pass<'a>),
    /// Do not call now; report the condition and requeue.
    Unavailable(Unavailable),
}

impl Admission<'_> {
    /// Whether the call may go out.
    pub const fn is_ready(&self) -> bool {
        matches!(self, Admission::Ready(_))
    }

    /// The unavailability, if the call was held back.
    pub const fn unavailable(&self) -> Option<&Unavailable> {
        match self {
            Admission::Unavailable(u) => Some(u),
            Admission::Ready(_) => None,
        }
    }
}

/// Permission to make one unit of work against a dependency (one call, or one
/// [`ExternalResource::ensure`](super::ExternalResource::ensure)), holding a breaker
/// permit and the budget cell already taken.
///
/// Report the outcome with [`call`](Pass::call) or [`record`](Pass::record). Dropping
/// the pass records nothing on the breaker and gives a half-open probe slot back; the
/// budget cell stays spent.
#[must_use = "make the call through the pass; dropping it cancels"]
pub struct Pass<'a> {
    permit: Permit<'a>,
    dependency: &'a ExternalDependency,
}

impl<'a> Pass<'a> {
    /// The dependency this pass is for.
    pub const fn dependency(&self) -> &'a ExternalDependency {
        self.dependency
    }

    /// Whether this call is the breaker's half-open probe, which decides whether the
    /// circuit closes again.
    pub fn is_probe(&self) -> bool {
        self.permit.is_probe()
    }

    /// Runs `call` and records its result; see [`record`](Pass::record).
    ///
    /// # Errors
    ///
    /// The call's own error.
    pub async fn call<T, E, F>(self, call: F) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
        E: Classify,
    {
        let result = call.await;
        self.record(&result);
        result
    }

    /// Records a result on the breaker; a retryable failure
    /// ([`Transient`](ErrorClass::Transient), [`Throttled`](ErrorClass::Throttled)) also
    /// makes the next admission run the health check again.
    pub fn record<T, E: Classify>(self, result: &Result<T, E>) {
        if let Err(e) = result
            && matches!(
                e.class(),
                ErrorClass::Transient | ErrorClass::Throttled { .. }
            )
        {
            self.dependency.invalidate_health();
        }
        self.permit.record(result);
    }

    /// Records a success.
    pub fn success(self) {
        self.permit.success();
    }
}

impl fmt::Debug for Pass<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pass")
            .field("dependency", &self.dependency.name())
            .field("probe", &self.is_probe())
            .finish_non_exhaustive()
    }
}

impl ExternalDependency {
    /// Asks whether a call may go out now.
    ///
    /// In order, each step stopping at the first refusal so that nothing later is
    /// spent: the **breaker** (open, forced open, or half-open with every probe slot
    /// taken → [`CircuitOpen`](UnavailableReason::CircuitOpen)); the **health check**
    /// (its cached answer, or a fresh check when the answer is older than the health
    /// interval → [`ExternalSystemUnavailable`](UnavailableReason::ExternalSystemUnavailable));
    /// the **budget** (one cell → [`RateLimited`](UnavailableReason::RateLimited)).
    ///
    /// # Guarantees
    ///
    /// - Never sleeps: a refusal comes back at once with the time to wait. The only
    ///   await is the health check (bounded by the health timeout), shared by every
    ///   caller that arrives while it runs.
    /// - Cancel-safe: dropping the future at its `.await` takes no budget cell, records
    ///   nothing and gives a probe slot back.
    /// - A refusal by the breaker spends no budget cell and runs no health check.
    pub async fn admit(&self) -> Admission<'_> {
        let inner = &*self.inner;
        let permit = match inner.breaker.try_acquire() {
            Ok(permit) => permit,
            Err(rejected) => {
                // The half-open time is the same for every caller; the per-caller
                // spread in `retry_after` is not, and must stay out of the message.
                let (what, resume_after) = match rejected.state {
                    State::ForcedOpen => ("is forced open until reset", None),
                    State::HalfOpen => ("is half-open and its probe calls are in flight", None),
                    _ => ("is open", inner.breaker.snapshot().remaining_open),
                };
                let what = format!("circuit breaker for {} {what}", inner.name);
                return Admission::Unavailable(self.unavailable(
                    UnavailableReason::CircuitOpen,
                    what,
                    rejected.retry_after,
                    resume_after,
                ));
            }
        };
        if let Some(observation) = inner.health.check(inner.wall.clock()).await
            && let Health::Unavailable { message, .. } = observation.health
        {
            drop(permit);
            let recheck = observation
                .valid_until
                .saturating_since(inner.wall.clock().now());
            let what = format!("{} is unavailable: {message}", inner.name);
            return Admission::Unavailable(self.unavailable(
                UnavailableReason::ExternalSystemUnavailable,
                what,
                recheck + inner.rng.up_to(inner.spread),
                Some(recheck),
            ));
        }
        if let Some(budget) = &inner.budget
            && let Err(refused) = budget.check()
        {
            drop(permit);
            let jitter = inner.rng.up_to(inner.spread.min(refused.retry_after));
            let what = format!("rate budget for {} is spent", inner.name);
            return Admission::Unavailable(self.unavailable(
                UnavailableReason::RateLimited,
                what,
                refused.retry_after + jitter,
                Some(refused.retry_after),
            ));
        }
        Admission::Ready(Pass {
            permit,
            dependency: self,
        })
    }

    fn unavailable(
        &self,
        reason: UnavailableReason,
        what: String,
        retry_after: Duration,
        resume_after: Option<Duration>,
    ) -> Unavailable {
        let inner = &*self.inner;
        let observed_at = inner.wall.now();
        let next_attempt_time = inner.wall.after(retry_after);
        let resume_at = resume_after.map(|after| ceil_second(inner.wall.after(after)));
        let message = match resume_at {
            Some(at) => format!("{what}; next attempt at {at:.0}"),
            None => what,
        };
        tracing::debug!(
            dependency = %inner.name,
            reason = reason.as_str(),
            ?retry_after,
            "external dependency held a call back"
        );
        let condition = (reason != UnavailableReason::RateLimited).then(|| {
            Condition::false_(
                inner.condition_type.clone(),
                reason.as_str(),
                message.clone(),
            )
        });
        Unavailable {
            dependency: Arc::clone(&inner.name),
            reason,
            message,
            retry_after,
            next_attempt_time,
            resume_at,
            observed_at,
            condition,
        }
    }
}

/// `at` rounded up to a whole second, so every caller names the same instant.
fn ceil_second(at: Timestamp) -> Timestamp {
    at.round(
        TimestampRound::new()
            .smallest(Unit::Second)
            .mode(RoundMode::Ceil),
    )
    .unwrap_or(at)
}
