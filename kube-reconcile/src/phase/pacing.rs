//! Time held back by [`Transition::paced`](super::Transition::paced), per object, in
//! memory.
//!
//! While an object is paced nothing is written. The engine keeps, for the phase entry the
//! object is in, what status had recorded when it started tracking (`base`), the stretches
//! since (`closed`) and the one it may be in now (`open`). Their sum is what the deadline
//! leaves out. The sum goes into `pacedSeconds` whenever the engine writes status anyway;
//! it never causes a write of its own.
//!
//! An open stretch counts until the object is reconciled again, but no longer than twice
//! the wait it asked for plus a second after its latest paced decision: an engine that
//! stops reconciling the object (it lost the lead, or the object was force-deleted) does
//! not keep growing its allowance.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use k8s_openapi::jiff::Timestamp;

use super::engine::{later, until};

/// One object's paced time in one entry of a phase.
#[derive(Clone, Copy, Debug)]
struct Entry {
    /// The phase entry (`enteredAt`) this is about.
    entered: Option<Timestamp>,
    /// What status recorded when tracking began.
    base: Duration,
    /// Stretches ended since.
    closed: Duration,
    /// The stretch the object is in, if any: when it began.
    open: Option<Timestamp>,
    /// Until when the open stretch may count: its latest paced decision plus twice the
    /// wait it asked for and a second.
    counts_until: Timestamp,
}

impl Entry {
    fn total(&self, now: Timestamp) -> Duration {
        let open = self.open.map_or(Duration::ZERO, |since| {
            until(since, now.min(self.counts_until))
        });
        self.base.saturating_add(self.closed).saturating_add(open)
    }
}

/// The end of what a paced decision at `now` asking for `after` may count.
fn counts_until(now: Timestamp, after: Duration) -> Timestamp {
    later(
        now,
        after
            .saturating_mul(2)
            .saturating_add(Duration::from_secs(1)),
    )
}

/// The paced time of every object that has some in its current phase.
#[derive(Debug, Default)]
pub(super) struct Pacing {
    entries: Mutex<HashMap<Box<str>, Entry>>,
}

impl Pacing {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<Box<str>, Entry>) -> T) -> T {
        // The map stays consistent whatever panicked while holding it.
        f(&mut self.entries.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The time the object has been paced in the phase it `entered`, up to `now`: what
    /// memory holds, or `recorded` (what status says, perhaps written by another
    /// replica) if that is more.
    pub(super) fn held(
        &self,
        key: &str,
        entered: Option<Timestamp>,
        recorded: Duration,
        now: Timestamp,
    ) -> Duration {
        self.with(|entries| {
            entries
                .get(key)
                .filter(|e| e.entered == entered)
                .map_or(recorded, |e| e.total(now).max(recorded))
        })
    }

    /// A paced decision at `now` asking to come back after `after`: starts a stretch,
    /// unless the object is in one, which it extends. Nothing is tracked for an object
    /// whose phase entry is unknown (no history record): it has no deadline either.
    pub(super) fn begin(
        &self,
        key: &str,
        entered: Option<Timestamp>,
        recorded: Duration,
        now: Timestamp,
        after: Duration,
    ) {
        if entered.is_none() {
            return;
        }
        let until = counts_until(now, after);
        self.with(|entries| match entries.get_mut(key) {
            Some(e) if e.entered == entered => {
                e.open.get_or_insert(now);
                e.counts_until = until;
            }
            _ => {
                let fresh = Entry {
                    entered,
                    base: recorded,
                    closed: Duration::ZERO,
                    open: Some(now),
                    counts_until: until,
                };
                entries.insert(key.into(), fresh);
            }
        });
    }

    /// Ends the object's stretch, if it is in one, and returns the paced time of the
    /// phase it `entered`; `None` when nothing is tracked for that phase entry (an entry
    /// for an earlier one is dropped).
    pub(super) fn close(
        &self,
        key: &str,
        entered: Option<Timestamp>,
        now: Timestamp,
    ) -> Option<Duration> {
        self.with(|entries| {
            let e = entries.get_mut(key)?;
            if e.entered != entered {
                entries.remove(key);
                return None;
            }
            if let Some(since) = e.open.take() {
                e.closed = e
                    .closed
                    .saturating_add(until(since, now.min(e.counts_until)));
            }
            Some(e.total(now))
        })
    }

    /// Drops what is tracked for the object (it left the phase, or is gone).
    pub(super) fn forget(&self, key: &str) {
        self.with(|entries| entries.remove(key));
    }

    /// Objects with paced time tracked.
    pub(super) fn len(&self) -> usize {
        self.with(|entries| entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn stretches_add_up_from_what_status_recorded() {
        let pacing = Pacing::default();
        let entered = Some(at(100));
        assert_eq!(pacing.held("a", entered, secs(7), at(110)), secs(7));

        pacing.begin("a", entered, secs(7), at(110), secs(30));
        pacing.begin("a", entered, secs(7), at(120), secs(30));
        let held = pacing.held("a", entered, secs(7), at(130));
        assert_eq!(held, secs(27), "the first start stands");
        assert_eq!(pacing.close("a", entered, at(140)), Some(secs(37)));
        let held = pacing.held("a", entered, secs(7), at(500));
        assert_eq!(held, secs(37), "closed: the clock stops");

        // Another stretch adds to it; status (written or not) does not change the sum,
        // unless it says more (another replica wrote it).
        pacing.begin("a", entered, secs(37), at(600), secs(30));
        assert_eq!(pacing.close("a", entered, at(610)), Some(secs(47)));
        assert_eq!(pacing.held("a", entered, secs(90), at(610)), secs(90));
        assert_eq!(pacing.len(), 1);
        let other = pacing.held("b", entered, Duration::ZERO, at(610));
        assert_eq!(other, Duration::ZERO);
    }

    #[test]
    fn an_open_stretch_stops_counting_when_the_object_is_not_reconciled_again() {
        let pacing = Pacing::default();
        let entered = Some(at(100));
        pacing.begin("a", entered, Duration::ZERO, at(100), secs(10));
        // Due back at 110; counted until 121 at the most (twice the wait, and a second).
        assert_eq!(pacing.held("a", entered, Duration::ZERO, at(115)), secs(15));
        assert_eq!(
            pacing.held("a", entered, Duration::ZERO, at(3600)),
            secs(21)
        );
        // Each paced decision extends it.
        pacing.begin("a", entered, Duration::ZERO, at(120), secs(10));
        assert_eq!(pacing.close("a", entered, at(3600)), Some(secs(41)));
        // Nothing is tracked without a phase entry.
        pacing.begin("b", None, Duration::ZERO, at(100), secs(10));
        assert_eq!(pacing.len(), 1);
    }

    #[test]
    fn another_entry_of_the_phase_starts_afresh() {
        let pacing = Pacing::default();
        pacing.begin("a", Some(at(100)), Duration::ZERO, at(110), secs(30));
        assert_eq!(pacing.held("a", Some(at(200)), secs(3), at(210)), secs(3));
        assert_eq!(pacing.close("a", Some(at(200)), at(210)), None);
        assert_eq!(pacing.len(), 0, "the stale entry is dropped");

        pacing.begin("a", Some(at(100)), Duration::ZERO, at(110), secs(30));
        pacing.begin("a", Some(at(200)), secs(3), at(210), secs(30));
        assert_eq!(pacing.close("a", Some(at(200)), at(215)), Some(secs(8)));
        pacing.forget("a");
        assert_eq!(pacing.len(), 0);
    }
}
