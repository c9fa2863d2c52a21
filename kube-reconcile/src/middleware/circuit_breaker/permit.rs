//! [`Permit`]: the right to make one call, and the place its outcome is recorded.

use std::fmt;

use crate::{
    clock::Nanos,
    error::{Classify, ErrorClass},
};

use super::shared::{Admit, Shared, Verdict};

/// Permission to make one call through a [`Breaker`](super::Breaker).
///
/// Say how the call went with [`success`](Permit::success),
/// [`failure`](Permit::failure) or [`record`](Permit::record). Dropping a permit
/// without recording is a cancellation: nothing is recorded, and a half-open probe slot
/// is given back at once.
///
/// # Examples
///
/// ```
/// use kube_reconcile::{ErrorClass, middleware::circuit_breaker::Breaker};
///
/// let breaker = Breaker::new("dbaas");
/// let permit = breaker.try_acquire().expect("a new breaker is closed");
/// let result: Result<u32, ErrorClass> = Err(ErrorClass::Transient); // the call
/// permit.record(&result);
/// assert_eq!(breaker.snapshot().failures, 1);
/// ```
#[must_use = "record the outcome of the call; dropping the permit cancels it"]
#[doc(hidden)]
pub struct Permit<'a> {
    shared: &'a Shared,
    word: u64,
    kind: Admit,
    started: Option<Nanos>,
}

impl<'a> Permit<'a> {
    #[inline]
    pub(super) fn counted(shared: &'a Shared, word: u64) -> Self {
        Permit {
            shared,
            word,
            kind: Admit::Counted,
            started: Self::start(shared),
        }
    }

    pub(super) fn probe(shared: &'a Shared, word: u64) -> Self {
        Permit {
            shared,
            word,
            kind: Admit::Probe,
            started: Self::start(shared),
        }
    }

    /// The start time, read only when slow calls are tracked.
    #[inline]
    fn start(shared: &Shared) -> Option<Nanos> {
        #[cold]
        #[inline(never)]
        fn read(shared: &Shared) -> Nanos {
            shared.now()
        }
        if shared.settings.slow_call_nanos.is_some() {
            Some(read(shared))
        } else {
            None
        }
    }

    pub(super) const fn unrecorded(shared: &'a Shared, word: u64) -> Self {
        Permit {
            shared,
            word,
            kind: Admit::Unrecorded,
            started: None,
        }
    }

    /// Whether this call is a half-open probe, whose outcome decides whether the circuit closes.
    pub(crate) fn is_probe(&self) -> bool {
        self.kind == Admit::Probe
    }

    /// The call succeeded (it still counts as slow if it took too long).
    #[inline]
    pub fn success(self) {
        if self.kind == Admit::Counted && self.started.is_none() {
            // The closed hot path: nothing to measure, nothing to release on drop.
            let (shared, word) = (self.shared, self.word);
            std::mem::forget(self);
            shared.record_success(word);
        } else {
            self.finish(None);
        }
    }

    /// The call failed with an error of `class`.
    ///
    /// Excluded classes ([`Terminal`](ErrorClass::Terminal) and
    /// [`Conflict`](ErrorClass::Conflict)) are not
    /// counted: the permit is released as if cancelled. A
    /// [`Throttled`](ErrorClass::Throttled) error's `retry_after` is honoured when the
    /// circuit opens.
    pub fn failure(self, class: ErrorClass) {
        self.finish(Some((class, false)));
    }

    /// Records a call's result, classifying an error with [`Classify`]; an error that
    /// [is a timeout](Classify::is_timeout) counts as failed and slow.
    pub fn record<T, E: Classify>(self, result: &Result<T, E>) {
        match result {
            Ok(_) => self.success(),
            Err(e) => self.finish(Some((e.class(), e.is_timeout()))),
        }
    }

    /// Gives the permit back without an outcome (the same as dropping it).
    pub(crate) fn cancel(self) {
        drop(self);
    }

    fn finish(self, error: Option<(ErrorClass, bool)>) {
        let (shared, word, kind, started) = (self.shared, self.word, self.kind, self.started);
        // From here on this function gives back the probe slot, not `Drop`.
        std::mem::forget(self);
        if kind == Admit::Unrecorded {
            return;
        }
        if let Some((class, _)) = error
            && shared.excludes(class)
        {
            if kind == Admit::Probe {
                shared.release_probe(word);
            }
            return;
        }
        let timeout = error.is_some_and(|(_, timeout)| timeout);
        let slow = timeout
            || match (started, shared.settings.slow_call_nanos) {
                (Some(started), Some(limit)) => {
                    shared.now().as_raw().saturating_sub(started.as_raw()) >= limit
                }
                _ => false,
            };
        let verdict = Verdict {
            failed: error.is_some(),
            slow,
            retry_after: error.and_then(|(class, _)| class.retry_after()),
        };
        match kind {
            Admit::Counted => shared.record_closed(word, verdict),
            Admit::Probe => shared.record_probe(word, verdict),
            Admit::Unrecorded => {}
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.kind == Admit::Probe {
            self.shared.release_probe(self.word);
        }
    }
}

impl fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("dependency", &&*self.shared.name)
            .field("kind", &self.kind)
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}
