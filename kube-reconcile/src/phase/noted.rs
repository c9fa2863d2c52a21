//! A handler's or cleanup's decision, settled with what the library noted while it ran
//! (see `crate::scope`).

use std::{future::Future, time::Duration};

use super::{Cleanup, Transition};
use crate::{
    conditions::Condition,
    error::{Classify, ErrorClass},
    external::{Unavailable, UnavailableReason},
};

/// What a handler or a cleanup decides: [`Transition`] or [`Cleanup`].
pub(super) trait Decision: Sized {
    /// Held back by the operator's own pacing for `after`.
    fn paced(after: Duration) -> Self;
    /// Not yet, for `after`, with the reason in `Ready`.
    fn waiting(after: Duration, reason: &'static str, message: String) -> Self;
    /// The conditions the decision sets.
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;

    /// What a call held back by an external dependency means: its rate budget is own
    /// pacing; an outage or an open circuit waits with the dependency's condition.
    fn held(unavailable: &Unavailable) -> Self {
        if unavailable.reason == UnavailableReason::RateLimited {
            return Self::paced(unavailable.retry_after);
        }
        let mut held = Self::waiting(
            unavailable.retry_after,
            unavailable.reason.as_str(),
            unavailable.message.clone(),
        );
        held.conditions_mut().extend(unavailable.condition.clone());
        held
    }
}

impl<P: Copy> Decision for Transition<P> {
    fn paced(after: Duration) -> Self {
        Transition::paced(after)
    }

    fn waiting(after: Duration, reason: &'static str, message: String) -> Self {
        Transition::stay(after).because(reason, message)
    }

    fn conditions_mut(&mut self) -> &mut Vec<Condition> {
        &mut self.conditions
    }
}

impl Decision for Cleanup {
    fn paced(after: Duration) -> Self {
        Cleanup::paced(after)
    }

    fn waiting(after: Duration, reason: &'static str, message: String) -> Self {
        Cleanup::wait(after).because(reason, message)
    }

    fn conditions_mut(&mut self) -> &mut Vec<Condition> {
        &mut self.conditions
    }
}

/// Runs a handler or cleanup in a scope (`priority`: how far along the object is, for
/// the turns of dependency budgets) and settles its decision: a failure because a
/// dependency held a call back is that refusal's decision, not an error; the conditions
/// of the dependencies it called go along with a decision that does not set them.
pub(super) async fn noted<D: Decision, E: Classify>(
    priority: u32,
    config: &super::PhaseConfig,
    run: impl Future<Output = Result<D, E>>,
) -> Result<D, E> {
    // Boxed: a handler's future (a whole phase of user code) is often large, and the
    // engine's future is what the controller holds for every reconcile in flight.
    let observer = &config.dependencies_observer;
    let (decided, notes) = crate::scope::run(priority, observer, Box::pin(run)).await;
    let conditions = notes.conditions();
    let decided = match (decided, &notes.refusal) {
        (Err(error), Some(refusal)) if error.class() != ErrorClass::Terminal => {
            Ok(D::held(refusal))
        }
        (decided, _) => decided,
    };
    decided.map(|mut decision| {
        crate::scope::add_missing(decision.conditions_mut(), conditions);
        decision
    })
}
