//! The ways out of the normal flow: the failed phase and its retries, a refused move, and
//! conditions restored on a corrupt status.

use kube::runtime::controller::Action;

use crate::wall_clock::ceil_second;

use super::{
    Phase, PhaseError, PhaseMachine,
    engine::{Inner, Object, later, until},
    flow::Here,
    messages::transition_note,
    next_status::{self, Observe, Standing, Why},
    write::Note,
};

impl<M> Inner<M> {
    /// A known phase without a `Ready` condition (a hand-edited or corrupt status): the
    /// conditions the phase stands for are written back, then the flow goes on.
    ///
    /// Without this, a handler that stays without a reason (a ready object resting)
    /// would leave the object with no `Ready` condition for as long as it stays.
    pub(super) async fn restore_conditions<K: Object, Ctx>(
        &self,
        here: &Here<'_, M::Phase>,
        obj: &K,
    ) -> Result<Action, PhaseError<M::Error>>
    where
        M: PhaseMachine<K, Ctx>,
    {
        let Here {
            api,
            status,
            phase,
            at,
        } = *here;
        let table = self.machine.transitions();
        let restored = format!(
            "status.conditions had no Ready condition in phase {}; restored",
            phase.name()
        );
        let (standing, reason, message) = if phase == table.failed() {
            let waits = status
                .retry
                .as_ref()
                .and_then(|r| r.next_attempt_time.as_ref())
                .is_none();
            let standing = if waits {
                Standing::Stalled
            } else {
                Standing::Retrying
            };
            match &status.last_error {
                Some(e) => (standing, e.reason.as_str(), e.message.clone()),
                None => (standing, "ConditionsRestored", restored.clone()),
            }
        } else {
            (
                next_status::standing_of(table, phase),
                "ConditionsRestored",
                restored.clone(),
            )
        };
        let mut next = status.clone();
        next_status::set_conditions(
            &mut next,
            standing,
            &Why {
                reason,
                message: &message,
            },
            at.now,
        );
        let note = Note::warning("ConditionsRestored", restored);
        self.moved(api, obj, &next, None, note).await
    }

    /// Refuses an undeclared move: the phase stays, `Stalled` says why.
    pub(super) async fn refuse<K: Object, Ctx>(
        &self,
        here: &Here<'_, M::Phase>,
        obj: &K,
        to: M::Phase,
    ) -> Result<Action, PhaseError<M::Error>>
    where
        M: PhaseMachine<K, Ctx>,
    {
        let Here {
            api,
            status,
            phase,
            at,
        } = *here;
        let from = phase.name();
        let message = format!(
            "the {from} handler asked for {}, which the transition table does not declare",
            to.name()
        );
        let why = Why {
            reason: "UndeclaredTransition",
            message: &message,
        };
        let mut next = status.clone();
        next_status::set_conditions(&mut next, Standing::Stalled, &why, at.now);
        next_status::record_error(&mut next, from, &why, at.now);
        self.write::<K, M::Error>(api, obj, &next, None).await?;
        Err(PhaseError::UndeclaredTransition {
            from,
            to: to.name(),
        })
    }

    /// Moves to the failed phase, scheduling a retry unless the failure waits for a change.
    pub(super) async fn fail<K: Object, Ctx>(
        &self,
        here: &Here<'_, M::Phase>,
        obj: &K,
        why: &Why<'_>,
        retry: bool,
        extra: Option<&serde_json::Value>,
    ) -> Result<Action, PhaseError<M::Error>>
    where
        M: PhaseMachine<K, Ctx>,
    {
        let Here {
            api,
            status,
            phase,
            at,
        } = *here;
        let table = self.machine.transitions();
        let attempts = status.retry.as_ref().map_or(0, |r| r.attempts);
        let delay = retry.then(|| self.schedule.delay(attempts));
        // Stored times have whole seconds: round up, so a retry never starts early.
        let next_attempt = delay.map(|d| ceil_second(later(at.now, d)));
        let next = next_status::fail(table, status, phase.name(), why, next_attempt, at);
        let moved = transition_note(phase.name(), table.failed().name(), why.message);
        let text = match next_attempt {
            Some(when) => format!("{moved}; retry {} at {when}", attempts + 1),
            None => format!("{moved}; waiting for a spec change"),
        };
        let action = delay.map_or_else(Action::await_change, Action::requeue);
        self.write_then(
            api,
            obj,
            &next,
            extra,
            Some(Note::warning(why.reason, text)),
            action,
        )
        .await
    }

    /// The failed phase: wait out the retry, then go to the retry phase.
    pub(super) async fn failed<K: Object, Ctx>(
        &self,
        here: &Here<'_, M::Phase>,
        obj: &K,
        spec_changed: bool,
    ) -> Result<Action, PhaseError<M::Error>>
    where
        M: PhaseMachine<K, Ctx>,
    {
        let Here {
            api, status, at, ..
        } = *here;
        let table = self.machine.transitions();
        let failed = table.failed().name();
        let mut from = status.clone();
        let (reason, message) = if spec_changed {
            // A new spec starts afresh.
            from.retry = None;
            ("SpecChanged", "the spec changed; starting again".to_owned())
        } else {
            match status
                .retry
                .as_ref()
                .and_then(|r| r.next_attempt_time.as_ref())
            {
                None => return Ok(Action::await_change()),
                Some(due) if at.now < due.0 => return Ok(Action::requeue(until(at.now, due.0))),
                Some(_) => {
                    let attempt = status.retry.as_ref().map_or(0, |r| r.attempts);
                    let after = status
                        .last_error
                        .as_ref()
                        .map_or("a failure", |e| e.reason.as_str());
                    ("Retrying", format!("retry {attempt} after {after}"))
                }
            }
        };
        let why = Why {
            reason,
            message: &message,
        };
        let to = table.retry();
        let generation = Observe::Generation(obj.meta().generation);
        let next = next_status::enter(table, &from, Some(failed), to, &why, generation, at);
        let note = Note::normal(reason, transition_note(failed, to.name(), &message));
        self.moved(api, obj, &next, None, note).await
    }
}
