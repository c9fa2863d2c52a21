//! Telling observers about the phase changes the engine wrote.

use std::{fmt, sync::Arc, time::Duration};

use k8s_openapi::jiff::Timestamp;

use super::{PhaseRecord, PhaseStatus};

/// One phase change the engine wrote, as handed to
/// [`PhaseConfig::on_transition`](super::PhaseConfig::on_transition) callbacks.
///
/// It says nothing about the controller or the object's kind, so one callback serves any
/// engine; a callback that needs them captures them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PhaseChange<'a> {
    /// The object's namespace; `None` for a cluster-scoped object.
    pub namespace: Option<&'a str>,
    /// The object's name.
    pub name: &'a str,
    /// The phase left; `None` when the object entered its first phase.
    pub from: Option<&'a str>,
    /// The phase entered.
    pub to: &'a str,
    /// Why, as the `CamelCase` reason recorded in `status.phaseHistory`.
    pub reason: &'a str,
    /// How long the object was in `from`, from the entry times in `status.phaseHistory`
    /// (which keeps whole seconds, so this is whole seconds too). `None` when the history
    /// has no entry for `from` (a first phase, or a hand-edited status).
    pub time_in_from: Option<Duration>,
    /// When the change happened, on the engine's clock.
    pub at: Timestamp,
}

/// A phase-change callback.
pub(super) type Callback = Arc<dyn Fn(&PhaseChange<'_>) + Send + Sync>;

/// The callbacks of a [`PhaseConfig`](super::PhaseConfig).
#[derive(Clone, Default)]
pub(super) struct Observers(pub(super) Vec<Callback>);

impl fmt::Debug for Observers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} callback(s)", self.0.len())
    }
}

impl Observers {
    /// Calls every callback if writing `new` over `old` moved the object to a phase.
    pub(super) fn notify(
        &self,
        namespace: Option<&str>,
        name: &str,
        old: Option<&PhaseStatus>,
        new: &PhaseStatus,
    ) {
        if self.0.is_empty() {
            return;
        }
        let Some(entered) = moved(old, new) else {
            return;
        };
        let change = PhaseChange {
            namespace,
            name,
            from: entered.from.as_deref(),
            to: &entered.phase,
            reason: &entered.reason,
            time_in_from: time_in_from(old, entered),
            at: entered.entered_at.0,
        };
        for callback in &self.0 {
            callback(&change);
        }
    }
}

/// The record of the phase `new` entered, if it entered one that `old` had not.
///
/// Every move appends a history record stamped with the time of the move; a write that
/// only changes conditions, errors or the record's paced time leaves the record's phase,
/// origin and time as they were.
fn moved<'a>(old: Option<&PhaseStatus>, new: &'a PhaseStatus) -> Option<&'a PhaseRecord> {
    let last = new.phase_history.last()?;
    let before = old.and_then(|s| s.phase_history.last());
    let same = before.is_some_and(|b| {
        PhaseRecord {
            paced_seconds: last.paced_seconds,
            ..b.clone()
        } == *last
    });
    (!same).then_some(last)
}

/// Whole seconds from the old status's entry into `entered.from` to `entered`.
fn time_in_from(old: Option<&PhaseStatus>, entered: &PhaseRecord) -> Option<Duration> {
    let from = entered.from.as_deref()?;
    let since = old?
        .phase_history
        .last()
        .filter(|r| r.phase == from)?
        .entered_at
        .0;
    // Stored times keep whole seconds: compare at that precision, so a phase that took
    // exactly n seconds reads n whatever the sub-second offset of the clock.
    let seconds = entered
        .entered_at
        .0
        .as_second()
        .saturating_sub(since.as_second());
    Some(Duration::from_secs(u64::try_from(seconds).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn record(phase: &str, from: Option<&str>, second: i64, nanos: i32) -> PhaseRecord {
        PhaseRecord {
            phase: phase.to_owned(),
            from: from.map(str::to_owned),
            entered_at: Time(Timestamp::new(second, nanos).expect("a valid time")),
            reason: format!("To{phase}"),
            message: String::new(),
            paced_seconds: None,
        }
    }

    fn status(history: Vec<PhaseRecord>) -> PhaseStatus {
        PhaseStatus {
            phase: history.last().map(|r| r.phase.clone()),
            phase_history: history,
            ..PhaseStatus::default()
        }
    }

    type Seen = Vec<(Option<String>, String, String, Option<Duration>)>;

    fn observed(old: Option<&PhaseStatus>, new: &PhaseStatus) -> Seen {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let observers = Observers(vec![Arc::new(move |c: &PhaseChange<'_>| {
            assert_eq!((c.namespace, c.name), (Some("ns"), "db"));
            sink.lock().expect("not poisoned").push((
                c.from.map(str::to_owned),
                c.to.to_owned(),
                c.reason.to_owned(),
                c.time_in_from,
            ));
        })]);
        observers.notify(Some("ns"), "db", old, new);
        seen.lock().expect("not poisoned").clone()
    }

    #[test]
    fn a_move_reports_the_whole_seconds_spent_in_the_phase_left() {
        // Stored with whole seconds; the new entry still has its nanoseconds.
        let old = status(vec![record("Provisioning", Some("Pending"), 100, 0)]);
        let mut new = old.clone();
        new.phase_history.push(record(
            "Configuring",
            Some("Provisioning"),
            107,
            900_000_000,
        ));
        assert_eq!(
            observed(Some(&old), &new),
            [(
                Some("Provisioning".to_owned()),
                "Configuring".to_owned(),
                "ToConfiguring".to_owned(),
                Some(Duration::from_secs(7))
            )]
        );
    }

    #[test]
    fn the_first_phase_has_no_from_and_no_time() {
        let new = status(vec![record("Pending", None, 5, 0)]);
        assert_eq!(
            observed(None, &new),
            [(None, "Pending".to_owned(), "ToPending".to_owned(), None)]
        );
    }

    #[test]
    fn a_write_without_a_move_reports_nothing() {
        let old = status(vec![record("Provisioning", Some("Pending"), 100, 0)]);
        let mut new = old.clone();
        new.observed_generation = Some(2);
        assert!(observed(Some(&old), &new).is_empty());
        // Nor does one that records the phase's paced time.
        new.phase_history[0].paced_seconds = Some(150);
        assert!(observed(Some(&old), &new).is_empty());
    }

    #[test]
    fn a_full_history_still_reports_the_move() {
        let old = status(vec![
            record("Pending", None, 1, 0),
            record("Provisioning", Some("Pending"), 2, 0),
        ]);
        // History bounded at two entries: the oldest went, the move is still the last.
        let new = status(vec![
            record("Provisioning", Some("Pending"), 2, 0),
            record("Failed", Some("Provisioning"), 9, 0),
        ]);
        let seen = observed(Some(&old), &new);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].3, Some(Duration::from_secs(7)));
    }

    #[test]
    fn a_hand_edited_history_gives_no_time_in_phase() {
        // The last entry does not name the phase left: the time cannot be known.
        let old = status(vec![record("Deploying", Some("Configuring"), 1, 0)]);
        let mut new = old.clone();
        new.phase_history
            .push(record("Ready", Some("Verifying"), 9, 0));
        assert_eq!(observed(Some(&old), &new)[0].3, None);
    }
}
