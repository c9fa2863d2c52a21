//! The state every clone of a [`Breaker`](super::Breaker) shares, and its transitions.
//!
//! The closed path touches atomics only: the state word (phase and epoch), the window
//! and the run of consecutive failures. Every transition, every half-open probe
//! reservation and every probe result takes the `control` lock, so probe slots are
//! reserved without a check-then-act race. Each transition bumps the epoch in the state
//! word; a permit remembers the word it was issued under, and its outcome is dropped if
//! the breaker has moved on since (a late result from before an opening or a reset).

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    time::Duration,
};

use crate::{clock::Nanos, error::ErrorClass, rng::Rng};

use super::{
    config::Settings,
    error::Rejected,
    state::{Snapshot, State, Transition, TransitionReason},
    window::{COUNTED, FAILED, SLOW, Window},
};

/// The phase in the low byte of the state word; the epoch fills the rest.
pub(super) const CLOSED: u8 = 0;
pub(super) const OPEN: u8 = 1;
pub(super) const HALF_OPEN: u8 = 2;
pub(super) const FORCED_OPEN: u8 = 3;
pub(super) const DISABLED: u8 = 4;
/// The automatic circuit, shadowed: `METRICS + CLOSED` and so on.
pub(super) const METRICS: u8 = 5;

pub(super) const fn phase(word: u64) -> u8 {
    (word & 0xff) as u8
}

const fn public_state(phase: u8) -> State {
    match phase {
        CLOSED => State::Closed,
        OPEN => State::Open,
        HALF_OPEN => State::HalfOpen,
        FORCED_OPEN => State::ForcedOpen,
        DISABLED => State::Disabled,
        _ => State::MetricsOnly,
    }
}

/// The automatic circuit of a phase; `Closed` for the manual ones.
const fn circuit(phase: u8) -> State {
    match phase {
        OPEN => State::Open,
        HALF_OPEN => State::HalfOpen,
        p if p >= METRICS => circuit(p - METRICS),
        _ => State::Closed,
    }
}

/// The part of a phase that says what the circuit does (`CLOSED`, `OPEN`, `HALF_OPEN`).
const fn circuit_phase(phase: u8) -> u8 {
    if phase >= METRICS { phase - METRICS } else { phase }
}

/// A transition callback.
pub(super) type Callback = Arc<dyn Fn(&Transition) + Send + Sync>;

/// What a finished call says about the dependency.
#[derive(Clone, Copy, Debug)]
pub(super) struct Verdict {
    pub(super) failed: bool,
    pub(super) slow: bool,
    pub(super) retry_after: Option<Duration>,
}

#[derive(Default)]
struct Control {
    /// Openings since the circuit last closed; drives the growth of the open duration.
    openings: u32,
    /// Half-open probes running now.
    in_flight: u32,
    /// Half-open probes that succeeded in this half-open period.
    successes: u32,
    callbacks: Vec<Callback>,
    /// Transitions not yet handed to the callbacks, in order.
    pending: VecDeque<Transition>,
}

pub(super) struct Shared {
    pub(super) name: Arc<str>,
    pub(super) settings: Settings,
    word: AtomicU64,
    open_until: AtomicU64,
    /// The latest deadline a `Retry-After` asked for, as raw nanos; 0 for none.
    retry_until: AtomicU64,
    consecutive: AtomicU32,
    window: Window,
    rng: Rng,
    control: Mutex<Control>,
    dispatching: AtomicBool,
}

impl Shared {
    pub(super) fn new(name: Arc<str>, settings: Settings) -> Self {
        Shared {
            name,
            window: Window::new(settings.window),
            rng: Rng::new(settings.seed),
            settings,
            word: AtomicU64::new(u64::from(CLOSED)),
            open_until: AtomicU64::new(0),
            retry_until: AtomicU64::new(0),
            consecutive: AtomicU32::new(0),
            control: Mutex::new(Control::default()),
            dispatching: AtomicBool::new(false),
        }
    }

    #[inline]
    pub(super) fn word(&self) -> u64 {
        self.word.load(Ordering::Acquire)
    }

    pub(super) fn now(&self) -> Nanos {
        self.settings.clock.now()
    }

    fn lock(&self) -> MutexGuard<'_, Control> {
        // Nothing panics while the lock is held (callbacks run outside it).
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The admission decision for every phase but the fast ones (closed, disabled).
    /// `Ok(true)` is a probe, `Ok(false)` an unrecorded call.
    pub(super) fn acquire_slow(&self, mut word: u64) -> Result<(u64, bool), Rejected> {
        loop {
            let p = phase(word);
            if p == FORCED_OPEN {
                let wait = self.settings.open_duration + self.rng.up_to(self.settings.spread);
                return Err(Rejected { retry_after: wait, state: State::ForcedOpen });
            }
            if circuit_phase(p) == CLOSED {
                return Ok((word, false));
            }
            let now = self.now();
            if circuit_phase(p) == OPEN {
                let until = Nanos::from_raw(self.open_until.load(Ordering::Relaxed));
                if now < until {
                    if p >= METRICS {
                        return Ok((word, false));
                    }
                    let wait = until.saturating_since(now) + self.rng.up_to(self.settings.spread);
                    return Err(Rejected { retry_after: wait, state: State::Open });
                }
            }
            let decided = self.with_control(|c| {
                let current = self.word();
                if current != word {
                    return Err(current);
                }
                let mut word = word;
                if circuit_phase(p) == OPEN {
                    word = self.half_open(c, word, now);
                }
                if c.in_flight < self.settings.permitted_probes {
                    c.in_flight += 1;
                    Ok(Ok((word, true)))
                } else if p >= METRICS {
                    Ok(Ok((word, false)))
                } else {
                    let half = self.settings.spread / 2;
                    let wait = half + self.rng.up_to(self.settings.spread - half);
                    Ok(Err(Rejected { retry_after: wait, state: State::HalfOpen }))
                }
            });
            match decided {
                Ok(decision) => return decision,
                // The breaker moved while we looked: decide again on the new state.
                Err(current) => word = current,
            }
        }
    }

    /// Records a success (not slow) of a call admitted while closed: the hot path.
    #[inline]
    pub(super) fn record_success(&self, word: u64) {
        if self.word() != word {
            return;
        }
        self.window.record(COUNTED, &self.settings.clock, false);
        if self.consecutive.load(Ordering::Relaxed) != 0 {
            self.consecutive.store(0, Ordering::Relaxed);
        }
    }

    /// Records the outcome of a call admitted while closed.
    pub(super) fn record_closed(&self, word: u64, verdict: Verdict) {
        if !verdict.failed && !verdict.slow {
            self.record_success(word);
            return;
        }
        if self.word() != word {
            return;
        }
        let clock = &self.settings.clock;
        self.note_retry_after(verdict.retry_after);
        let outcome = COUNTED | if verdict.failed { FAILED } else { 0 } | if verdict.slow { SLOW } else { 0 };
        let totals = self.window.record(outcome, clock, true);
        let run = if verdict.failed {
            self.consecutive.fetch_add(1, Ordering::Relaxed).saturating_add(1)
        } else {
            self.consecutive.store(0, Ordering::Relaxed);
            0
        };
        let s = &self.settings;
        let rate = |part: u32, calls: u32| f64::from(part) / f64::from(calls);
        let reason = match totals {
            Some(t) if t.calls >= s.min_calls && verdict.failed && rate(t.failures, t.calls) >= s.failure_rate_threshold => {
                Some(TransitionReason::FailureRate { rate: rate(t.failures, t.calls), calls: t.calls })
            }
            Some(t)
                if t.calls >= s.min_calls
                    && verdict.slow
                    && s.slow_call_nanos.is_some()
                    && rate(t.slow, t.calls) >= s.slow_call_rate_threshold =>
            {
                Some(TransitionReason::SlowCallRate { rate: rate(t.slow, t.calls), calls: t.calls })
            }
            _ if s.consecutive_failures > 0 && run >= s.consecutive_failures => {
                Some(TransitionReason::ConsecutiveFailures { count: run })
            }
            _ => None,
        };
        if let Some(reason) = reason {
            self.with_control(|c| {
                if self.word() == word {
                    let now = self.now();
                    self.open(c, word, now, reason);
                }
            });
        }
    }

    /// Records the outcome of a half-open probe: a failure reopens, enough successes close.
    pub(super) fn record_probe(&self, word: u64, verdict: Verdict) {
        self.note_retry_after(verdict.retry_after);
        self.with_control(|c| {
            if self.word() != word {
                return;
            }
            c.in_flight = c.in_flight.saturating_sub(1);
            let now = self.now();
            if verdict.failed || (verdict.slow && self.settings.slow_call_nanos.is_some()) {
                self.open(c, word, now, TransitionReason::ProbeFailed);
            } else {
                c.successes += 1;
                if c.successes >= self.settings.probes_to_close {
                    let count = c.successes;
                    self.close(c, word, now, TransitionReason::ProbesSucceeded { count });
                }
            }
        });
    }

    /// Gives back the slot of a probe that ended without an outcome (dropped or excluded).
    pub(super) fn release_probe(&self, word: u64) {
        self.with_control(|c| {
            if self.word() == word {
                c.in_flight = c.in_flight.saturating_sub(1);
            }
        });
    }

    /// Moves to a manual state (or back to closed) with a fresh window.
    pub(super) fn set_manual(&self, target: u8) {
        self.with_control(|c| {
            let word = self.word();
            self.window.clear();
            self.consecutive.store(0, Ordering::Relaxed);
            self.retry_until.store(0, Ordering::Relaxed);
            c.openings = 0;
            let now = self.now();
            self.transition(c, word, target, now, TransitionReason::Manual, None);
        });
    }

    fn note_retry_after(&self, retry_after: Option<Duration>) {
        if let Some(wait) = retry_after {
            let until = self.now().saturating_add(wait).as_raw();
            self.retry_until.fetch_max(until, Ordering::Relaxed);
        }
    }

    fn open(&self, c: &mut Control, word: u64, now: Nanos, reason: TransitionReason) {
        let s = &self.settings;
        let grown = s.open_duration.as_secs_f64() * s.open_duration_growth.powi(i32::try_from(c.openings).unwrap_or(i32::MAX));
        let mut open_for = Duration::try_from_secs_f64(grown.min(s.max_open_duration.as_secs_f64()))
            .map_or(s.max_open_duration, |d| d.min(s.max_open_duration));
        if s.open_duration_jitter > 0.0 {
            open_for = open_for.mul_f64(1.0 - s.open_duration_jitter * self.rng.fraction());
        }
        c.openings = c.openings.saturating_add(1);
        let retry_until = Nanos::from_raw(self.retry_until.swap(0, Ordering::Relaxed));
        let until = now.saturating_add(open_for).max(retry_until);
        self.open_until.store(until.as_raw(), Ordering::Relaxed);
        let target = if phase(word) >= METRICS { METRICS + OPEN } else { OPEN };
        self.transition(c, word, target, now, reason, Some(until));
    }

    fn half_open(&self, c: &mut Control, word: u64, now: Nanos) -> u64 {
        let target = if phase(word) >= METRICS { METRICS + HALF_OPEN } else { HALF_OPEN };
        self.transition(c, word, target, now, TransitionReason::OpenElapsed, None)
    }

    fn close(&self, c: &mut Control, word: u64, now: Nanos, reason: TransitionReason) {
        self.window.clear();
        self.consecutive.store(0, Ordering::Relaxed);
        self.retry_until.store(0, Ordering::Relaxed);
        c.openings = 0;
        let target = if phase(word) >= METRICS { METRICS + CLOSED } else { CLOSED };
        self.transition(c, word, target, now, reason, None);
    }

    /// Publishes `target` with a new epoch and reports the change; returns the new word.
    fn transition(&self, c: &mut Control, word: u64, target: u8, at: Nanos, reason: TransitionReason, open_until: Option<Nanos>) -> u64 {
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
            tracing::warn!(dependency = name, from = from_s, to = to_s, %reason, enforced, until = ?open_until.map(|u| u.saturating_since(at)), "circuit breaker opened");
        } else {
            tracing::info!(dependency = name, from = from_s, to = to_s, %reason, enforced, "circuit breaker state changed");
        }
        if !c.callbacks.is_empty() {
            c.pending.push_back(Transition { dependency: Arc::clone(&self.name), from, to, at, reason, open_until, enforced });
        }
        next
    }

    pub(super) fn add_callback(&self, callback: Callback) {
        self.lock().callbacks.push(callback);
    }

    /// Runs `f` under the control lock, then hands any transitions it made to the callbacks.
    fn with_control<T>(&self, f: impl FnOnce(&mut Control) -> T) -> T {
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
                let Some((transition, callbacks)) = next else { break };
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

    pub(super) fn snapshot(&self) -> Snapshot {
        let word = self.word();
        let p = phase(word);
        let totals = self.window.totals(&self.settings.clock);
        let (probes_in_flight, probe_successes) = {
            let c = self.lock();
            (c.in_flight, c.successes)
        };
        let circuit = circuit(p);
        let open_until = (circuit == State::Open).then(|| Nanos::from_raw(self.open_until.load(Ordering::Relaxed)));
        let rate = |part: u32| if totals.calls == 0 { 0.0 } else { f64::from(part) / f64::from(totals.calls) };
        let half_open = circuit == State::HalfOpen;
        Snapshot {
            state: public_state(p),
            circuit,
            calls: totals.calls,
            failures: totals.failures,
            slow_calls: totals.slow,
            failure_rate: rate(totals.failures),
            slow_call_rate: rate(totals.slow),
            consecutive_failures: self.consecutive.load(Ordering::Relaxed),
            open_until,
            remaining_open: open_until.map(|u| u.saturating_since(self.now())),
            probes_in_flight: if half_open { probes_in_flight } else { 0 },
            probe_successes: if half_open { probe_successes } else { 0 },
        }
    }

    pub(super) fn state(&self) -> State {
        public_state(phase(self.word()))
    }

    /// Whether errors of `class` are left out of every count.
    pub(super) const fn excludes(&self, class: ErrorClass) -> bool {
        self.settings.excludes(class)
    }
}
