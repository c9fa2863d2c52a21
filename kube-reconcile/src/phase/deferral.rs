//! What the `Deferred` condition should say after one call: pure arithmetic on the
//! current condition, what the call came to and the time, so it is tested without a
//! server.

use std::time::Duration;

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

use super::messages::truncate;
use crate::{
    conditions::Condition, error::ErrorClass, reconciler::DeferReason, wall_clock::ceil_second,
};

/// The condition type the [`DeferralStatusLayer`](super::DeferralStatusLayer) layer writes.
pub(crate) const DEFERRED: &str = "Deferred";

/// Between the cause and the time in every message, so the time can be read back.
const UNTIL: &str = "; next attempt at ";

/// The longest error text quoted in a message.
const ERROR_TEXT: usize = 512;

/// What one call of the wrapped reconciler came to, as the condition sees it. Times
/// are exact; the message rounds them up to whole seconds.
#[derive(Clone, Debug)]
pub(super) enum Seen<'a> {
    /// The reconcile ran to the end.
    Ran,
    /// The reconcile failed; `next` is when the backoff lets it run again, if known.
    Failed {
        class: ErrorClass,
        attempts: u32,
        next: Option<Timestamp>,
        error: String,
    },
    /// A layer held the reconcile back until `until`.
    Deferred {
        reason: &'a DeferReason,
        attempts: u32,
        until: Timestamp,
    },
}

/// What to do to the condition.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Change {
    /// Set it to this (new, or replacing the current one).
    Set(Condition),
    /// Remove it.
    Clear,
}

/// Decides the condition's next state, or `None` to leave it as it is.
///
/// - A reconcile that ran clears it, and so does a terminal failure (the phase
///   machine's `Stalled` says why; nothing is retried).
/// - A failure that backs off for at least `min_wait` sets `BackingOff`; a conflict
///   (retried at once, not escalated) leaves it alone.
/// - A deferral of at least `min_wait` sets `BackingOff`, `RateLimited` or
///   `CircuitOpen`, unless the current condition already gives the same cause and a
///   time still ahead: a deferral repeated before its time (a watch event, the
///   object's own status write) writes nothing. A follower's deferral
///   (`NotLeader`) never writes: only the leader writes status.
pub(super) fn decide(
    current: Option<&Condition>,
    seen: Seen<'_>,
    now: Timestamp,
    min_wait: Duration,
    generation: Option<i64>,
) -> Option<Change> {
    let due = |until: Timestamp| until.duration_since(now) >= signed(min_wait);
    let wanted = match seen {
        Seen::Ran
        | Seen::Failed {
            class: ErrorClass::Terminal,
            ..
        } => return current.map(|_| Change::Clear),
        Seen::Failed {
            class: ErrorClass::Conflict,
            ..
        }
        | Seen::Failed { next: None, .. }
        | Seen::Deferred {
            reason: DeferReason::NotLeader { .. },
            ..
        } => return None,
        Seen::Failed {
            attempts,
            next: Some(until),
            error,
            ..
        } => {
            if !due(until) {
                return None;
            }
            let cause = format!(
                "reconcile failed {} in a row: {}",
                times(attempts),
                truncate(&error, ERROR_TEXT)
            );
            ("BackingOff", cause, until)
        }
        Seen::Deferred {
            reason,
            attempts,
            until,
        } => {
            let (code, cause) = cause(reason, attempts);
            if current.is_some_and(|c| same_wait(c, code, &cause, now)) || !due(until) {
                return None;
            }
            (code, cause, until)
        }
    };
    let (reason, cause, until) = wanted;
    let message = format!("{cause}{UNTIL}{}", ceil_second(until));
    if current.is_some_and(|c| c.reason == reason && c.message == message) {
        return None;
    }
    let mut condition = Condition::true_(DEFERRED, reason, message).observed_generation(generation);
    condition.last_transition_time = Some(Time(
        current
            .filter(|c| c.status == condition.status)
            .and_then(Condition::last_transition)
            .unwrap_or(now),
    ));
    Some(Change::Set(condition))
}

/// The reason and the cause of a deferral by `reason`.
fn cause(reason: &DeferReason, attempts: u32) -> (&'static str, String) {
    match reason {
        DeferReason::BackingOff if attempts > 0 => (
            "BackingOff",
            format!("backing off after {} in a row", failures(attempts)),
        ),
        DeferReason::BackingOff => ("BackingOff", "backing off after failures".to_owned()),
        DeferReason::RateLimited { budget } => (
            "RateLimited",
            match &**budget {
                "global" => "rate limited by the controller's global limit".to_owned(),
                "object" => "rate limited by the per-object limit".to_owned(),
                name => format!("rate limited by the {name} budget"),
            },
        ),
        DeferReason::CircuitOpen { dependency } => (
            "CircuitOpen",
            format!("the circuit breaker for {dependency} is open"),
        ),
        DeferReason::NotLeader { lease } => ("NotLeader", format!("not the leader of {lease}")),
    }
}

/// Whether `current` already says "`reason`: `cause`" with a time not yet passed. A
/// backoff's cause is the same whatever the count: the failure that set it wrote it.
fn same_wait(current: &Condition, reason: &str, cause: &str, now: Timestamp) -> bool {
    let Some((said, until)) = current.message.rsplit_once(UNTIL) else {
        return false;
    };
    current.reason == reason
        && (reason == "BackingOff" || said == cause)
        && until.parse::<Timestamp>().is_ok_and(|until| until >= now)
}

fn times(n: u32) -> String {
    if n == 1 {
        "once".to_owned()
    } else {
        format!("{n} times")
    }
}

fn failures(n: u32) -> String {
    if n == 1 {
        "1 failure".to_owned()
    } else {
        format!("{n} failures")
    }
}

fn signed(d: Duration) -> k8s_openapi::jiff::SignedDuration {
    k8s_openapi::jiff::SignedDuration::try_from(d).unwrap_or(k8s_openapi::jiff::SignedDuration::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::conditions::ConditionStatus;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).expect("in range")
    }

    const MIN: Duration = Duration::from_secs(1);

    fn set(change: Option<Change>) -> Condition {
        match change {
            Some(Change::Set(c)) => c,
            other => panic!("expected a new condition, got {other:?}"),
        }
    }

    /// Held back by `reason` until `until`.
    fn held(reason: &DeferReason, until: Timestamp) -> Seen<'_> {
        Seen::Deferred {
            reason,
            attempts: 0,
            until,
        }
    }

    fn limited(budget: &str) -> DeferReason {
        DeferReason::RateLimited {
            budget: Arc::from(budget),
        }
    }

    #[test]
    fn a_long_deferral_sets_the_cause_and_the_time() {
        let reason = limited("dbaas");
        let seen = held(&reason, at(30));
        let c = set(decide(None, seen, at(0), MIN, Some(3)));
        assert_eq!(c.type_, DEFERRED);
        assert_eq!(c.status, ConditionStatus::True);
        assert_eq!(c.reason, "RateLimited");
        assert_eq!(
            c.message,
            format!(
                "rate limited by the dbaas budget; next attempt at {}",
                at(30)
            )
        );
        assert_eq!(c.observed_generation, Some(3));
        assert_eq!(c.last_transition(), Some(at(0)));
    }

    #[test]
    fn a_repeated_deferral_before_its_time_writes_nothing() {
        let reason = DeferReason::CircuitOpen {
            dependency: Arc::from("dbaas"),
        };
        let first = held(&reason, at(30));
        let current = set(decide(None, first, at(0), MIN, None));
        // Asked again at 10 s with a different spread: the condition still holds.
        let again = held(&reason, at(33));
        assert_eq!(decide(Some(&current), again, at(10), MIN, None), None);
        // Past its time and still open: a new time, same transition time.
        let later = held(&reason, at(62));
        let next = set(decide(Some(&current), later, at(31), MIN, None));
        assert!(next.message.ends_with(&at(62).to_string()));
        assert_eq!(next.last_transition(), Some(at(0)));
    }

    #[test]
    fn another_cause_replaces_the_condition_at_once() {
        let dbaas = limited("dbaas");
        let global = limited("global");
        let current = set(decide(None, held(&dbaas, at(30)), at(0), MIN, None));
        let next = set(decide(
            Some(&current),
            held(&global, at(20)),
            at(5),
            MIN,
            None,
        ));
        assert!(
            next.message
                .starts_with("rate limited by the controller's global limit")
        );
    }

    #[test]
    fn short_deferrals_and_followers_write_nothing() {
        let reason = limited("object");
        let short = held(
            &reason,
            at(0) + k8s_openapi::jiff::SignedDuration::from_millis(400),
        );
        assert_eq!(decide(None, short, at(0), MIN, None), None);
        let follower = DeferReason::NotLeader {
            lease: Arc::from("ns/op"),
        };
        let seen = held(&follower, at(60));
        assert_eq!(decide(None, seen, at(0), MIN, None), None);
    }

    #[test]
    fn each_failure_says_how_many_and_until_when() {
        let failed = |attempts, next| Seen::Failed {
            class: ErrorClass::Transient,
            attempts,
            next: Some(next),
            error: "the DBaaS answered 503".to_owned(),
        };
        let first = set(decide(None, failed(1, at(2)), at(0), MIN, None));
        assert_eq!(first.reason, "BackingOff");
        assert_eq!(
            first.message,
            format!(
                "reconcile failed once in a row: the DBaaS answered 503; next attempt at {}",
                at(2)
            )
        );
        let second = set(decide(Some(&first), failed(2, at(6)), at(2), MIN, None));
        assert!(
            second
                .message
                .starts_with("reconcile failed 2 times in a row")
        );
        // The backoff's own deferral while waiting adds nothing.
        let waiting = Seen::Deferred {
            reason: &DeferReason::BackingOff,
            attempts: 2,
            until: at(6),
        };
        assert_eq!(decide(Some(&second), waiting, at(3), MIN, None), None);
    }

    #[test]
    fn running_or_a_terminal_failure_clears_it_and_a_conflict_keeps_it() {
        let reason = limited("object");
        let current = set(decide(None, held(&reason, at(30)), at(0), MIN, None));
        assert_eq!(
            decide(Some(&current), Seen::Ran, at(31), MIN, None),
            Some(Change::Clear)
        );
        assert_eq!(decide(None, Seen::Ran, at(31), MIN, None), None);
        let terminal = Seen::Failed {
            class: ErrorClass::Terminal,
            attempts: 0,
            next: None,
            error: "bad spec".to_owned(),
        };
        assert_eq!(
            decide(Some(&current), terminal, at(31), MIN, None),
            Some(Change::Clear)
        );
        let conflict = Seen::Failed {
            class: ErrorClass::Conflict,
            attempts: 0,
            next: Some(at(32)),
            error: "409".to_owned(),
        };
        assert_eq!(decide(Some(&current), conflict, at(31), MIN, None), None);
    }

    #[test]
    fn a_corrupt_message_is_rewritten() {
        let reason = limited("object");
        let mut current =
            Condition::true_(DEFERRED, "RateLimited", "garbage; next attempt at soon");
        current.last_transition_time = Some(Time(at(-5)));
        let next = set(decide(
            Some(&current),
            held(&reason, at(30)),
            at(0),
            MIN,
            None,
        ));
        assert_eq!(next.last_transition(), Some(at(-5)));
        assert!(
            next.message
                .starts_with("rate limited by the per-object limit")
        );
    }
}
