//! Moving between states, and telling the callbacks and `tracing` about it.

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crate::clock::Nanos;

use super::{
    shared::Shared,
    state::{State, StateChange, TransitionReason},
    state_word::{CLOSED, HALF_OPEN, METRICS, OPEN, circuit, phase, public_state},
};

/// A transition callback.
pub(super) type Callback = Arc<dyn Fn(&StateChange) + Send + Sync>;

/// Everything that changes only under the breaker's lock.
#[derive(Default)]
pub(super) struct Control {
    /// Openings since the circuit last closed; drives the growth of the open duration.
    pub(super) openings: u32,
    /// Half-open probes running now.
    pub(super) in_flight: u32,
    /// Half-open probes that succeeded in this half-open period.
    pub(super) successes: u32,
    /// When the latest probe slot was reserved.
    pub(super) last_reserved: Nanos,
    /// Probe slots reserved since the breaker was built.
    pub(super) probes_admitted: u64,
    callbacks: Vec<Callback>,
    /// Transitions not yet handed to the callbacks, in order.
    pending: VecDeque<StateChange>,
}

impl Shared {
    /// Opens the circuit for the next open duration (or a server's longer `Retry-After`).
    pub(super) fn open(
        &self,
        c: &mut Control,
        word: u64,
        now: Nanos,
        reason: TransitionReason,
    ) -> u64 {
        let s = &self.settings;
        let grown = s.open_duration.as_secs_f64()
            * s.open_duration_growth
                .powi(i32::try_from(c.openings).unwrap_or(i32::MAX));
        let mut open_for =
            Duration::try_from_secs_f64(grown.min(s.max_open_duration.as_secs_f64()))
                .map_or(s.max_open_duration, |d| d.min(s.max_open_duration));
        if s.open_duration_jitter > 0.0 {
            open_for = open_for.mul_f64(1.0 - s.open_duration_jitter * self.rng.fraction());
        }
        c.openings = c.openings.saturating_add(1);
        let retry_until = Nanos::from_raw(self.retry_until.swap(0, Ordering::Relaxed));
        let until = now.saturating_add(open_for).max(retry_until);
        self.open_until.store(until.as_raw(), Ordering::Relaxed);
        let target = if phase(word) >= METRICS {
            METRICS + OPEN
        } else {
            OPEN
        };
        self.transition(c, word, target, now, reason, Some(until))
    }

    pub(super) fn half_open(&self, c: &mut Control, word: u64, now: Nanos) -> u64 {
        let target = if phase(word) >= METRICS {
            METRICS + HALF_OPEN
        } else {
            HALF_OPEN
        };
        self.transition(c, word, target, now, TransitionReason::OpenElapsed, None)
    }

    pub(super) fn close(&self, c: &mut Control, word: u64, now: Nanos, reason: TransitionReason) {
        self.window.clear();
        self.consecutive.store(0, Ordering::Relaxed);
        self.retry_until.store(0, Ordering::Relaxed);
        c.openings = 0;
        let target = if phase(word) >= METRICS {
            METRICS + CLOSED
        } else {
            CLOSED
        };
        self.transition(c, word, target, now, reason, None);
    }

    /// Publishes `target` with a new epoch and reports the change; returns the new word.
    pub(super) fn transition(
        &self,
        c: &mut Control,
        word: u64,
        target: u8,
        at: Nanos,
        reason: TransitionReason,
        open_until: Option<Nanos>,
    ) -> u64 {
        c.in_flight = 0;
        c.successes = 0;
        let next = ((word >> 8).wrapping_add(1) << 8) | u64::from(target);
        self.word.store(next, Ordering::Release);
        let (from_phase, metrics) = (phase(word), target >= METRICS && phase(word) >= METRICS);
        let (from, to) = if metrics {
            (circuit(from_phase), circuit(target))
        } else {
            (public_state(from_phase), public_state(target))
        };
        if from == to {
            return next;
        }
        let enforced = target < METRICS;
        let (name, from_s, to_s) = (&*self.name, from.as_str(), to.as_str());
        if matches!(to, State::Open | State::ForcedOpen) {
            let open_for = open_until.map(|until| until.saturating_since(at));
            tracing::warn!(
                dependency = name,
                from = from_s,
                to = to_s,
                %reason,
                enforced,
                open_for = ?open_for,
                "circuit breaker opened"
            );
        } else {
            tracing::info!(
                dependency = name,
                from = from_s,
                to = to_s,
                %reason,
                enforced,
                "circuit breaker state changed"
            );
        }
        if !c.callbacks.is_empty() {
            c.pending.push_back(StateChange {
                dependency: Arc::clone(&self.name),
                from,
                to,
                at,
                reason,
                open_until,
                enforced,
            });
        }
        next
    }

    pub(super) fn add_callback(&self, callback: Callback) {
        self.lock().callbacks.push(callback);
    }

    /// Runs `f` under the control lock, then hands any transitions it made to the callbacks.
    pub(super) fn with_control<T>(&self, f: impl FnOnce(&mut Control) -> T) -> T {
        let (out, pending) = {
            let mut c = self.lock();
            let out = f(&mut c);
            (out, !c.pending.is_empty())
        };
        if pending {
            self.dispatch();
        }
        out
    }

    /// Calls the callbacks for pending transitions, in order, outside the control lock.
    ///
    /// One thread dispatches at a time; a transition queued meanwhile (even by a callback
    /// calling back into the breaker) is delivered by that thread before it lets go.
    fn dispatch(&self) {
        struct Release<'a>(&'a AtomicBool);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        while !self.dispatching.swap(true, Ordering::Acquire) {
            let release = Release(&self.dispatching);
            loop {
                let next = {
                    let mut c = self.lock();
                    c.pending.pop_front().map(|t| (t, c.callbacks.clone()))
                };
                let Some((transition, callbacks)) = next else {
                    break;
                };
                for callback in &callbacks {
                    callback(&transition);
                }
            }
            drop(release);
            if self.lock().pending.is_empty() {
                break;
            }
        }
    }
}
