//! Time held back by [`Transition::paced`](super::Transition::paced), per object, in
//! memory.
//!
//! While an object is paced nothing is written. The engine keeps, for the phase entry the
//! object is in, what status had recorded when it started tracking (`base`), the stretches
//! since (`closed`) and the one it may be in now (`open`). Their sum is what the deadline
//! leaves out. The sum goes into `pacedSeconds` whenever the engine writes status anyway;
//! it never causes a write of its own.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use k8s_openapi::jiff::Timestamp;

use super::engine::until;

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
}

impl Entry {
    fn total(&self, now: Timestamp) -> Duration {
        self.base + self.closed + self.open.map_or(Duration::ZERO, |since| until(since, now))
    }
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

    /// The time the object has been paced in the phase it `entered`, up to `now`;
    /// `recorded` (what status says) when nothing is tracked in memory.
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
                .map_or(recorded, |e| e.total(now))
        })
    }

    /// Starts a stretch at `now`, unless the object is in one.
    pub(super) fn begin(
        &self,
        key: &str,
        entered: Option<Timestamp>,
        recorded: Duration,
        now: Timestamp,
    ) {
        self.with(|entries| match entries.get_mut(key) {
            Some(e) if e.entered == entered => {
                e.open.get_or_insert(now);
            }
            _ => {
                let fresh = Entry {
                    entered,
                    base: recorded,
                    closed: Duration::ZERO,
                    open: Some(now),
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
                e.closed += until(since, now);
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

        pacing.begin("a", entered, secs(7), at(110));
        pacing.begin("a", entered, secs(7), at(120));
        assert_eq!(
            pacing.held("a", entered, secs(7), at(130)),
            secs(27),
            "the first start stands"
        );
        assert_eq!(pacing.close("a", entered, at(140)), Some(secs(37)));
        assert_eq!(
            pacing.held("a", entered, secs(7), at(500)),
            secs(37),
            "closed: the clock stops"
        );

        // Another stretch adds to it; status (written or not) does not change the sum.
        pacing.begin("a", entered, secs(37), at(600));
        assert_eq!(pacing.close("a", entered, at(610)), Some(secs(47)));
        assert_eq!(pacing.len(), 1);
        assert_eq!(
            pacing.held("b", entered, Duration::ZERO, at(610)),
            Duration::ZERO
        );
    }

    #[test]
    fn another_entry_of_the_phase_starts_afresh() {
        let pacing = Pacing::default();
        pacing.begin("a", Some(at(100)), Duration::ZERO, at(110));
        assert_eq!(pacing.held("a", Some(at(200)), secs(3), at(210)), secs(3));
        assert_eq!(pacing.close("a", Some(at(200)), at(210)), None);
        assert_eq!(pacing.len(), 0, "the stale entry is dropped");

        pacing.begin("a", Some(at(100)), Duration::ZERO, at(110));
        pacing.begin("a", Some(at(200)), secs(3), at(210));
        assert_eq!(pacing.close("a", Some(at(200)), at(215)), Some(secs(8)));
        pacing.forget("a");
        assert_eq!(pacing.len(), 0);
    }
}
