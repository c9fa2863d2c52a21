//! The gate: [`Gate::admit`] decides whether a call may go out now.

use std::{fmt, future::Future, num::NonZeroU32, sync::Arc, time::Duration};

use crate::{
    conditions::Condition,
    error::{Classify, ErrorClass},
    middleware::circuit_breaker::{Permit, State},
    wall_clock::ceil_second,
};

use super::{
    dependency::Gate,
    health::Health,
    unavailable::{Unavailable, UnavailableReason},
};

/// What [`Gate::admit`] decided.
#[derive(Debug)]
#[must_use = "a Ready admission holds a breaker permit: make the call through it"]
pub(crate) enum Admission<'a> {
    /// Make the call through this pass.
    Ready(Pass<'a>),
    /// Do not call now; report the condition and requeue.
    Unavailable(Unavailable),
}

#[cfg(test)]
impl Admission<'_> {
    /// Whether the call may go out.
    pub(crate) const fn is_ready(&self) -> bool {
        matches!(self, Admission::Ready(_))
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
pub(crate) struct Pass<'a> {
    permit: Permit<'a>,
    dependency: &'a Gate,
}

impl Pass<'_> {
    /// Whether this call is the breaker's half-open probe, which decides whether the
    /// circuit closes again.
    pub(crate) fn is_probe(&self) -> bool {
        self.permit.is_probe()
    }

    /// Runs `call` and records its result (see [`record`](Pass::record)), and the
    /// [hint](super::RateLimitHint) the client reported from its answer, if any.
    ///
    /// # Errors
    ///
    /// The call's own error.
    pub(crate) async fn call<T, E, F>(self, call: F) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
        E: Classify,
    {
        let (result, hint) = super::hint::collect(call).await;
        let gate = self.dependency;
        self.record(&result);
        // What the answer said of the dependency's limit: running out, the budget slows
        // down now rather than after the dependency's refusals.
        if let (Some(hint), Some(budget)) = (hint, gate.budget()) {
            budget.hinted(hint);
        }
        result
    }

    /// Records a result on the breaker; a retryable failure
    /// ([`Transient`](ErrorClass::Transient), [`Throttled`](ErrorClass::Throttled)) also
    /// makes the next admission run the health check again.
    ///
    /// With a budget, a [`Throttled`](ErrorClass::Throttled) answer is the budget's to act
    /// on (it slows down) and no breaker sample: a busy dependency is not a broken one,
    /// and a breaker opened by a burst of 429s would starve this process for the whole
    /// open duration while other processes sharing the dependency take its share.
    ///
    /// Inside a phase handler or cleanup, a success also tells the engine that the
    /// dependency answered: the engine sets its availability condition to `True`.
    pub(crate) fn record<T, E: Classify>(self, result: &Result<T, E>) {
        let budget = self.dependency.budget();
        match result {
            Ok(_) => {
                self.answered();
                budget.inspect(|b| b.answered());
            }
            Err(e) => {
                let class = e.class();
                if matches!(class, ErrorClass::Transient | ErrorClass::Throttled { .. }) {
                    self.dependency.invalidate_health();
                }
                if let (ErrorClass::Throttled { .. }, Some(budget)) = (class, budget) {
                    budget.throttled();
                    self.permit.cancel();
                    return;
                }
            }
        }
        self.permit.record(result);
    }

    /// Records a success.
    #[cfg(test)]
    pub(crate) fn success(self) {
        self.answered();
        self.permit.success();
    }

    fn answered(&self) {
        crate::scope::answered(|| self.dependency.available_condition());
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

impl Gate {
    /// Asks whether a call may go out now.
    ///
    /// In order, each step stopping at the first refusal so that nothing later is
    /// spent: the **breaker** (open, forced open, or half-open with every probe slot
    /// taken → [`CircuitOpen`](UnavailableReason::CircuitOpen)); the **health check**
    /// (its cached answer, or a fresh check when the answer is older than the health
    /// interval → [`ExternalSystemUnavailable`](UnavailableReason::ExternalSystemUnavailable));
    /// the **budget** (one cell, or one per call with [`admit_n`](Self::admit_n) →
    /// [`RateLimited`](UnavailableReason::RateLimited)).
    ///
    /// # Guarantees
    ///
    /// - Never sleeps: a refusal comes back at once with the time to wait. The only
    ///   await is the health check (bounded by the health timeout), shared by every
    ///   caller that arrives while it runs.
    /// - Cancel-safe: dropping the future at its `.await` takes no budget cell, records
    ///   nothing and gives a probe slot back.
    /// - A refusal by the breaker spends no budget cell and runs no health check.
    /// - With a budget, every caller held back comes back in turn: each gets its own
    ///   turn in the budget's queue, one emission interval (per call) after the previous
    ///   one and no earlier than the breaker's half-open time, the next health check or
    ///   the budget's exact wait (see [`Unavailable::retry_after`]). Ten thousand
    ///   objects waiting on a budget of five calls a second, or on an outage, make about
    ///   five attempts a second, not ten thousand at every health check. Without a
    ///   budget they come back spread at random over the [`spread`](super::DependencyBuilder::spread)
    ///   (health) or the breaker's own spread.
    ///
    /// # Caveats
    ///
    /// - The health check and the breaker are separate signals: the check's answers are
    ///   not recorded on the breaker (one answer is shared by many callers and would be
    ///   counted many times), and the breaker counts only calls made through a [`Pass`].
    /// - A [`Pass`] is one unit of work and takes one budget cell, however many calls it
    ///   makes (an `ensure` may observe and then create); [`admit_n`](Self::admit_n)
    ///   takes one per call.
    /// - The budget cell of a pass that is dropped without a call stays spent: the
    ///   budget cannot tell whether the request had already gone out.
    pub(crate) async fn admit(&self) -> Admission<'_> {
        self.admit_n(NonZeroU32::MIN).await
    }

    /// [`admit`](Gate::admit) for a unit of work that makes `calls` calls
    /// that count against the budget (an `ensure` that observes and then creates makes
    /// two): the pass takes that many cells, or none.
    ///
    /// Size the budget in calls, as the dependency counts them, and say here how many
    /// each unit of work makes; a unit that makes more than it took can still exceed
    /// the dependency's limit.
    ///
    /// # Caveats
    ///
    /// More calls than the budget's burst could never fit at once: such a pass takes
    /// the whole burst, and its calls can exceed the dependency's limit.
    pub(crate) async fn admit_n(&self, calls: NonZeroU32) -> Admission<'_> {
        crate::scope::called(self);
        let inner = &*self.inner;
        let permit = match self.acquire(calls) {
            Admission::Ready(pass) => pass.permit,
            refused @ Admission::Unavailable(_) => return refused,
        };
        if let Some(observation) = inner.health.check(inner.wall.clock()).await
            && let Health::Unavailable { message, .. } = observation.health
        {
            drop(permit);
            let now = inner.wall.clock().now();
            let recheck = observation.valid_until.saturating_since(now);
            // The outage's start, not the next check: the message then stays the same
            // for the whole outage, and an object held back again and again is written
            // once, not once per health interval.
            let since = inner.wall.at(observation.down_since.unwrap_or(now));
            let what = format!("{} is unavailable since {since:.0}: {message}", inner.name);
            let retry_after = self
                .turn(calls, recheck)
                .unwrap_or_else(|| recheck + inner.rng.up_to(inner.spread));
            return Admission::Unavailable(self.unavailable(
                UnavailableReason::ExternalSystemUnavailable,
                what,
                retry_after,
                Some(recheck),
            ));
        }
        let taken = inner
            .budget
            .as_ref()
            .map_or(calls, |budget| calls.min(budget.quota().max_burst()));
        if let Some(budget) = &inner.budget
            && let Err(refused) = budget.check_n(taken)
        {
            drop(permit);
            // `taken` is within the burst, so the refusal always carries a wait.
            let wait = refused
                .retry_after()
                .unwrap_or_else(|| budget.quota().refill_time());
            // Each refused caller gets its own turn, so the callers come back at the
            // rate the budget refills instead of all at once. The turns are already
            // apart; jitter would only make a late caller take the next one's cell.
            let turn = budget.turn(taken, wait);
            let what = format!("rate budget for {} is spent", inner.name);
            return Admission::Unavailable(self.unavailable(
                UnavailableReason::RateLimited,
                what,
                turn,
                Some(wait),
            ));
        }
        Admission::Ready(Pass {
            permit,
            dependency: self,
        })
    }

    /// A pass holding a breaker permit for one call, or the refusal.
    fn acquire(&self, calls: NonZeroU32) -> Admission<'_> {
        let inner = &*self.inner;
        let rejected = match inner.breaker.try_acquire() {
            Ok(permit) => {
                return Admission::Ready(Pass {
                    permit,
                    dependency: self,
                });
            }
            Err(rejected) => rejected,
        };
        // The half-open time is the same for every caller; the per-caller spread in
        // `retry_after` is not, and must stay out of the message.
        let (what, resume_after) = match rejected.state {
            State::ForcedOpen => ("is forced open until reset", None),
            State::HalfOpen => ("is half-open and its probe calls are in flight", None),
            _ => ("is open", inner.breaker.snapshot().remaining_open),
        };
        let what = format!("circuit breaker for {} {what}", inner.name);
        let retry_after = self
            .turn(calls, resume_after.unwrap_or(rejected.retry_after))
            .unwrap_or(rejected.retry_after);
        Admission::Unavailable(self.unavailable(
            UnavailableReason::CircuitOpen,
            what,
            retry_after,
            resume_after,
        ))
    }

    /// A pass for a call whose budget cell an earlier pass of the same unit of work
    /// already took ([`admit_n`](Self::admit_n)): only the breaker is asked, so each
    /// call of the unit is admitted and recorded on its own.
    pub(crate) fn admit_prepaid(&self) -> Admission<'_> {
        self.acquire(NonZeroU32::MIN)
    }

    /// With a budget: the caller's turn in the budget's queue, no earlier than
    /// `earliest`. Every caller held back, whatever by, will need cells when it is let
    /// through, so they all queue at the budget: when the dependency comes back they
    /// return at the rate the budget serves, and while it is down each turn costs one
    /// reconcile instead of every waiting object coming back every health interval.
    fn turn(&self, calls: NonZeroU32, earliest: Duration) -> Option<Duration> {
        let budget = self.inner.budget.as_ref()?;
        Some(budget.turn(calls.min(budget.quota().max_burst()), earliest))
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
            Some(at) if reason != UnavailableReason::ExternalSystemUnavailable => {
                format!("{what}; next attempt at {at:.0}")
            }
            _ => what,
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
        let unavailable = Unavailable {
            dependency: Arc::clone(&inner.name),
            reason,
            message,
            retry_after,
            next_attempt_time,
            resume_at,
            observed_at,
            condition,
        };
        // Inside a phase handler or cleanup, the engine turns it into the right
        // transition (see `crate::scope`).
        crate::scope::held_back(&unavailable);
        unavailable
    }
}
