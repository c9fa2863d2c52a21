//! Stretches of [`Transition::paced`](super::Transition::paced): when each object began
//! waiting for the operator's own pacing in its current phase. In memory only: the
//! whole stretch reaches status (`pacedSeconds`) with the handler's next decision.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
};

use k8s_openapi::jiff::Timestamp;

/// One object's current stretch: the phase entry it belongs to and when it began.
#[derive(Clone, Copy, Debug)]
struct Stretch {
    entered: Option<Timestamp>,
    since: Timestamp,
}

/// The open stretches, by object.
#[derive(Debug, Default)]
pub(super) struct Pacing {
    open: Mutex<HashMap<Box<str>, Stretch>>,
}

impl Pacing {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<Box<str>, Stretch>) -> T) -> T {
        // The map stays consistent whatever panicked while holding it.
        f(&mut self.open.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// When the object's stretch in the phase it `entered` began, if it is in one.
    pub(super) fn since(&self, key: &str, entered: Option<Timestamp>) -> Option<Timestamp> {
        self.with(|open| {
            open.get(key)
                .filter(|s| s.entered == entered)
                .map(|s| s.since)
        })
    }

    /// Starts a stretch at `now`, unless one for the same phase entry is open.
    pub(super) fn begin(&self, key: &str, entered: Option<Timestamp>, now: Timestamp) {
        self.with(|open| match open.get_mut(key) {
            Some(s) if s.entered == entered => {}
            Some(s) => {
                *s = Stretch {
                    entered,
                    since: now,
                }
            }
            None => {
                open.insert(
                    key.into(),
                    Stretch {
                        entered,
                        since: now,
                    },
                );
            }
        });
    }

    /// Ends the object's stretch; its start if it belonged to the phase it `entered`.
    pub(super) fn end(&self, key: &str, entered: Option<Timestamp>) -> Option<Timestamp> {
        self.with(|open| open.remove(key))
            .filter(|s| s.entered == entered)
            .map(|s| s.since)
    }

    /// Drops the object's stretch, if any.
    pub(super) fn forget(&self, key: &str) {
        self.with(|open| open.remove(key));
    }

    /// Objects with an open stretch.
    pub(super) fn len(&self) -> usize {
        self.with(|open| open.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    #[test]
    fn a_stretch_belongs_to_one_entry_of_a_phase() {
        let pacing = Pacing::default();
        let entered = Some(at(100));
        pacing.begin("a", entered, at(110));
        pacing.begin("a", entered, at(120));
        assert_eq!(
            pacing.since("a", entered),
            Some(at(110)),
            "the first start stands"
        );
        assert_eq!(
            pacing.since("a", Some(at(200))),
            None,
            "another entry of the phase"
        );
        assert_eq!(pacing.since("b", entered), None);

        // A stretch left from an earlier entry is replaced, and ends as nothing.
        pacing.begin("a", Some(at(200)), at(210));
        assert_eq!(pacing.since("a", Some(at(200))), Some(at(210)));
        assert_eq!(pacing.end("a", entered), None);
        assert_eq!(
            pacing.len(),
            0,
            "ending removes it whatever entry it was for"
        );

        pacing.begin("a", entered, at(300));
        assert_eq!(pacing.end("a", entered), Some(at(300)));
        assert_eq!(pacing.end("a", entered), None);
    }
}
