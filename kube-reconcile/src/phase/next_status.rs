//! Pure status arithmetic: what the status becomes after a step. No I/O, so it can be
//! property-tested.

use std::time::Duration;

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

use super::{ErrorRecord, Phase, PhaseRecord, PhaseStatus, RetryStatus, Transitions};
use crate::conditions::Condition;

/// The kstatus condition types the engine maintains.
pub(super) const READY: &str = "Ready";
pub(super) const RECONCILING: &str = "Reconciling";
pub(super) const STALLED: &str = "Stalled";

/// How the object stands after a step, as far as conditions go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Standing {
    /// Moving through the phases.
    Progressing,
    /// In the ready phase.
    Ready,
    /// Failed, with a retry scheduled.
    Retrying,
    /// Failed, waiting for a change (terminal error, refused transition).
    Stalled,
}

/// When a step happens and how much history it keeps.
#[derive(Clone, Copy, Debug)]
pub(super) struct At {
    pub(super) now: Timestamp,
    pub(super) history: usize,
}

/// Whether a move starts a new pass through the phases, observing a generation.
#[derive(Clone, Copy, Debug)]
pub(super) enum Observe {
    /// Keep `observedGeneration`.
    Keep,
    /// A new pass from this `metadata.generation`.
    Generation(Option<i64>),
}

/// Why, in two parts.
#[derive(Clone, Debug)]
pub(super) struct Why<'a> {
    pub(super) reason: &'a str,
    pub(super) message: &'a str,
}

/// Sets `Ready`, `Reconciling` and `Stalled` for `standing`, each at the status's
/// observed generation. Removes the abnormal-true ones that do not apply.
pub(super) fn set_conditions(
    status: &mut PhaseStatus,
    standing: Standing,
    why: &Why<'_>,
    now: Timestamp,
) {
    let generation = status.observed_generation;
    let cond = |c: Condition| c.observed_generation(generation);
    let (reason, message) = (why.reason, why.message);
    let conditions = &mut status.conditions;
    match standing {
        Standing::Ready => {
            conditions.set(cond(Condition::true_(READY, reason, message)), now);
            conditions.remove(RECONCILING);
            conditions.remove(STALLED);
        }
        Standing::Progressing | Standing::Retrying => {
            conditions.set(cond(Condition::false_(READY, reason, message)), now);
            conditions.set(cond(Condition::true_(RECONCILING, reason, message)), now);
            conditions.remove(STALLED);
        }
        Standing::Stalled => {
            conditions.set(cond(Condition::false_(READY, reason, message)), now);
            conditions.remove(RECONCILING);
            conditions.set(cond(Condition::true_(STALLED, reason, message)), now);
        }
    }
}

/// Makes conditions read from a corrupt status writable and meaningful again: drops
/// those without a type and the engine's own without a reason (so they are set afresh),
/// stamps those without a transition time, forgets negative generations (which the
/// conditions' schema refuses).
pub(super) fn repair(status: &mut PhaseStatus, now: Timestamp) {
    status.observed_generation = status.observed_generation.filter(|g| *g >= 0);
    let keep = |c: &Condition| {
        let engines = [READY, RECONCILING, STALLED].contains(&c.type_.as_str());
        !c.type_.is_empty() && (!engines || !c.reason.is_empty())
    };
    let sound = |c: &Condition| {
        keep(c) && c.last_transition_time.is_some() && c.observed_generation.is_none_or(|g| g >= 0)
    };
    if status.conditions.iter().all(sound) {
        return;
    }
    status.conditions = std::mem::take(&mut status.conditions)
        .into_vec()
        .into_iter()
        .filter(keep)
        .map(|mut c| {
            c.last_transition_time.get_or_insert(Time(now));
            c.observed_generation = c.observed_generation.filter(|g| *g >= 0);
            c
        })
        .collect();
}

/// Sets conditions a handler asked for, except the engine's own types.
pub(super) fn set_extra_conditions(status: &mut PhaseStatus, extra: &[Condition], now: Timestamp) {
    for c in extra {
        if ![READY, RECONCILING, STALLED].contains(&c.type_.as_str()) {
            let c = c.clone().observed_generation(status.observed_generation);
            status.conditions.set(c, now);
        }
    }
}

/// The standing of an object resting in `phase` (not failing).
pub(super) fn standing_of<P: Phase>(table: &Transitions<P>, phase: P) -> Standing {
    if phase == table.ready() {
        Standing::Ready
    } else {
        Standing::Progressing
    }
}

/// Whether the handler of `phase` already ran in it and stayed with a reason of its own
/// (the `Ready` condition no longer says why the phase was entered): the object's work
/// in this phase is under way.
pub(super) fn under_way(status: &PhaseStatus, phase: &str) -> bool {
    let Some(entry) = status.phase_history.last().filter(|r| r.phase == phase) else {
        return false;
    };
    status
        .conditions
        .find(READY)
        .is_some_and(|c| c.reason != entry.reason)
}

/// The status after moving from `from` to `to`.
///
/// `observe` says whether this move starts a new pass through the phases (entering the
/// initial phase, updating, retrying).
pub(super) fn enter<P: Phase>(
    table: &Transitions<P>,
    status: &PhaseStatus,
    from: Option<&str>,
    to: P,
    why: &Why<'_>,
    observe: Observe,
    at: At,
) -> PhaseStatus {
    let mut next = record_move(table, status, from, to, why, observe, at);
    set_conditions(&mut next, standing_of(table, to), why, at.now);
    next
}

/// The status after the move, conditions aside: each condition is set once per step,
/// so a condition that keeps its status keeps its transition time.
fn record_move<P: Phase>(
    table: &Transitions<P>,
    status: &PhaseStatus,
    from: Option<&str>,
    to: P,
    why: &Why<'_>,
    observe: Observe,
    at: At,
) -> PhaseStatus {
    let At {
        now,
        history: history_limit,
    } = at;
    let mut next = status.clone();
    next.phase = Some(to.name().to_owned());
    if let Observe::Generation(generation) = observe {
        next.observed_generation = generation;
    }
    next.phase_history.push(PhaseRecord {
        phase: to.name().to_owned(),
        from: from.map(str::to_owned),
        entered_at: Time(now),
        reason: why.reason.to_owned(),
        message: why.message.to_owned(),
        paced_seconds: None,
    });
    let excess = next
        .phase_history
        .len()
        .saturating_sub(history_limit.max(1));
    next.phase_history.drain(..excess);
    if to == table.ready() {
        // Ready: what went wrong on the way is history (the phase history keeps it).
        next.retry = None;
        next.last_error = None;
    } else if let Some(retry) = &mut next.retry {
        // A retry in progress: the wait is over once the object left the failed phase.
        retry.next_attempt_time = None;
    }
    next
}

/// The status after `from` failed: the failed phase, the retry schedule (`next_attempt`
/// `None` for a failure that waits for a change) and the error.
pub(super) fn fail<P: Phase>(
    table: &Transitions<P>,
    status: &PhaseStatus,
    from: &str,
    why: &Why<'_>,
    next_attempt: Option<Timestamp>,
    at: At,
) -> PhaseStatus {
    let now = at.now;
    let attempts = status
        .retry
        .as_ref()
        .map_or(0, |r| r.attempts)
        .saturating_add(1);
    let failed = table.failed();
    let mut next = record_move(table, status, Some(from), failed, why, Observe::Keep, at);
    next.retry = Some(RetryStatus {
        attempts,
        next_attempt_time: next_attempt.map(Time),
    });
    next.last_error = Some(ErrorRecord {
        phase: from.to_owned(),
        reason: why.reason.to_owned(),
        message: why.message.to_owned(),
        time: Time(now),
    });
    let standing = if next_attempt.is_some() {
        Standing::Retrying
    } else {
        Standing::Stalled
    };
    set_conditions(&mut next, standing, why, now);
    next
}

/// Records `error` as the last error (keeping its first-seen time if it is the same).
pub(super) fn record_error(status: &mut PhaseStatus, phase: &str, why: &Why<'_>, now: Timestamp) {
    let same = status
        .last_error
        .as_ref()
        .is_some_and(|e| e.phase == phase && e.reason == why.reason && e.message == why.message);
    if !same {
        status.last_error = Some(ErrorRecord {
            phase: phase.to_owned(),
            reason: why.reason.to_owned(),
            message: why.message.to_owned(),
            time: Time(now),
        });
    }
}

/// The history's entry for the current phase.
fn current(status: &PhaseStatus) -> Option<&PhaseRecord> {
    let phase = status.phase.as_deref()?;
    status.phase_history.last().filter(|r| r.phase == phase)
}

/// When the object entered its current phase, from the history.
pub(super) fn entered_at(status: &PhaseStatus) -> Option<Timestamp> {
    current(status).map(|r| r.entered_at.0)
}

/// How long the current phase has been held back by the operator's own pacing, as
/// recorded.
pub(super) fn paced_for(status: &PhaseStatus) -> Duration {
    Duration::from_secs(current(status).and_then(|r| r.paced_seconds).unwrap_or(0))
}

/// Records `paced` (rounded up to whole seconds) as the current phase's paced time;
/// nothing for none.
pub(super) fn set_paced(status: &mut PhaseStatus, paced: Duration) {
    if paced.is_zero() {
        return;
    }
    let phase = status.phase.clone();
    if let Some(record) = status
        .phase_history
        .last_mut()
        .filter(|r| Some(&r.phase) == phase.as_ref())
    {
        let seconds = paced
            .as_secs()
            .saturating_add(u64::from(paced.subsec_nanos() > 0));
        record.paced_seconds = Some(seconds);
    }
}

/// `status` with `paced` as its current phase's paced time, when that is more than it
/// records.
pub(super) fn with_paced(
    status: &PhaseStatus,
    paced: Duration,
) -> std::borrow::Cow<'_, PhaseStatus> {
    if paced <= paced_for(status) {
        return std::borrow::Cow::Borrowed(status);
    }
    let mut next = status.clone();
    set_paced(&mut next, paced);
    std::borrow::Cow::Owned(next)
}

/// `status` without paced times: what decides whether a write is needed (they are
/// written along with other changes, never on their own).
pub(super) fn without_paced(status: &PhaseStatus) -> std::borrow::Cow<'_, PhaseStatus> {
    if status
        .phase_history
        .iter()
        .all(|r| r.paced_seconds.is_none())
    {
        return std::borrow::Cow::Borrowed(status);
    }
    let mut bare = status.clone();
    for record in &mut bare.phase_history {
        record.paced_seconds = None;
    }
    std::borrow::Cow::Owned(bare)
}
