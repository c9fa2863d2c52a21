//! The state every clone of a [`Breaker`](super::Breaker) shares, and its transitions.
//!
//! The closed path touches atomics only: the state word (phase and epoch), the window
//! and the run of consecutive failures. Every transition, every half-open probe
//! reservation and every probe result takes the `control` lock, so probe slots are
//! reserved without a check-then-act race. Each transition bumps the epoch in the state
//! word; a permit remembers the word it was issued under, and its outcome is dropped if
//! the breaker has moved on since (a late result from before an opening or a reset).

use std::{
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    time::Duration,
};

use crate::{clock::Nanos, error::ErrorClass, rng::Rng};

use super::{
    error::Rejected,
    settings::Settings,
    state::{Snapshot, State, TransitionReason},
    state_word::{
        CLOSED, DISABLED, FORCED_OPEN, METRICS, OPEN, circuit, circuit_phase, phase, public_state,
    },
    transition::Control,
    window::{COUNTED, FAILED, SLOW, Window},
};

/// How a call was admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Admit {
    /// While closed: the outcome goes into the window.
    Counted,
    /// A half-open probe holding one of the permitted slots.
    Probe,
    /// Admitted without recording (disabled, or metrics-only while the circuit is not closed).
    Unrecorded,
}

/// What a finished call says about the dependency.
#[derive(Clone, Copy, Debug)]
pub(super) struct Verdict {
    pub(super) failed: bool,
    pub(super) slow: bool,
    pub(super) retry_after: Option<Duration>,
}

pub(super) struct Shared {
    pub(super) name: Arc<str>,
    pub(super) settings: Settings,
    pub(super) word: AtomicU64,
    pub(super) open_until: AtomicU64,
    /// The latest deadline a `Retry-After` asked for, as raw nanos; 0 for none.
    pub(super) retry_until: AtomicU64,
    pub(super) consecutive: AtomicU32,
    pub(super) window: Window,
    pub(super) rng: Rng,
    control: Mutex<Control>,
    pub(super) dispatching: AtomicBool,
    /// An external dependency records every call through this breaker itself.
    pub(super) gated: AtomicBool,
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
            gated: AtomicBool::new(false),
        }
    }

    #[inline]
    pub(super) fn word(&self) -> u64 {
        self.word.load(Ordering::Acquire)
    }

    pub(super) fn now(&self) -> Nanos {
        self.settings.clock.now()
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Control> {
        // Nothing panics while the lock is held (callbacks run outside it).
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The admission decision for any state (`try_acquire` handles closed and disabled
    /// itself and comes here for the rest).
    #[cold]
    #[inline(never)]
    pub(super) fn acquire_slow(&self, mut word: u64) -> Result<(u64, Admit), Rejected> {
        loop {
            let p = phase(word);
            match p {
                CLOSED => return Ok((word, Admit::Counted)),
                _ if p == METRICS + CLOSED => return Ok((word, Admit::Counted)),
                DISABLED => return Ok((word, Admit::Unrecorded)),
                FORCED_OPEN => {
                    let wait = self.settings.open_duration + self.spread();
                    return Err(Rejected {
                        retry_after: wait,
                        state: State::ForcedOpen,
                    });
                }
                _ => {}
            }
            let now = self.now();
            if circuit_phase(p) == OPEN {
                let until = Nanos::from_raw(self.open_until.load(Ordering::Relaxed));
                if now < until {
                    return self.refuse_open(word, until, now);
                }
            }
            let decided = self.with_control(|c| {
                let current = self.word();
                if current != word {
                    return Err(current);
                }
                Ok(self.admit_probe(c, word, now))
            });
            match decided {
                Ok(decision) => return decision,
                // The breaker moved while we looked: decide again on the new state.
                Err(current) => word = current,
            }
        }
    }

    /// Whether a call would be refused now, without reserving anything: refused while
    /// forced open or open before its time; an open circuit whose time is up and a
    /// half-open one are left to whoever takes the probe.
    pub(super) fn peek(&self) -> Result<(), Rejected> {
        let word = self.word();
        let p = phase(word);
        if p == FORCED_OPEN {
            return Err(Rejected {
                retry_after: self.settings.open_duration + self.spread(),
                state: State::ForcedOpen,
            });
        }
        if p < METRICS && circuit_phase(p) == OPEN {
            let now = self.now();
            let until = Nanos::from_raw(self.open_until.load(Ordering::Relaxed));
            if now < until {
                return self.refuse_open(word, until, now).map(drop);
            }
        }
        Ok(())
    }

    /// Half-opens an open circuit whose time is up, then reserves a probe slot if one is free.
    fn admit_probe(
        &self,
        c: &mut Control,
        mut word: u64,
        now: Nanos,
    ) -> Result<(u64, Admit), Rejected> {
        let s = &self.settings;
        if circuit_phase(phase(word)) == OPEN {
            word = self.half_open(c, word, now);
        }
        if c.in_flight < s.permitted_probes {
            c.in_flight += 1;
            c.probes_admitted += 1;
            c.last_reserved = now;
            return Ok((word, Admit::Probe));
        }
        if now.saturating_since(c.last_reserved) >= s.probe_timeout {
            // Every slot was taken at least `probe_timeout` ago and none came back: the
            // probes hang (or their permits leaked). Reopen; their outcomes are now stale.
            let word = self.open(c, word, now, TransitionReason::ProbesTimedOut);
            let until = Nanos::from_raw(self.open_until.load(Ordering::Relaxed));
            return self.refuse_open(word, until, now);
        }
        if phase(word) >= METRICS {
            return Ok((word, Admit::Unrecorded));
        }
        let half = s.spread / 2;
        let wait = half + self.rng.up_to(s.spread.saturating_sub(half));
        Err(Rejected {
            retry_after: wait,
            state: State::HalfOpen,
        })
    }

    /// The answer of an open circuit: refused until `until` plus a spread, unless only
    /// metrics are kept.
    fn refuse_open(&self, word: u64, until: Nanos, now: Nanos) -> Result<(u64, Admit), Rejected> {
        if phase(word) >= METRICS {
            return Ok((word, Admit::Unrecorded));
        }
        let wait = until.saturating_since(now) + self.spread();
        Err(Rejected {
            retry_after: wait,
            state: State::Open,
        })
    }

    /// A random share of the stampede spread.
    fn spread(&self) -> Duration {
        self.rng.up_to(self.settings.spread)
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
        let outcome =
            COUNTED | if verdict.failed { FAILED } else { 0 } | if verdict.slow { SLOW } else { 0 };
        let totals = self.window.record(outcome, clock, true);
        let run = if verdict.failed {
            self.consecutive
                .fetch_add(1, Ordering::Relaxed)
                .saturating_add(1)
        } else {
            self.consecutive.store(0, Ordering::Relaxed);
            0
        };
        let s = &self.settings;
        let rate = |part: u32, calls: u32| f64::from(part) / f64::from(calls);
        let reason = match totals {
            Some(t)
                if t.calls >= s.min_calls
                    && verdict.failed
                    && rate(t.failures, t.calls) >= s.failure_rate_threshold =>
            {
                Some(TransitionReason::FailureRate {
                    rate: rate(t.failures, t.calls),
                    calls: t.calls,
                })
            }
            Some(t)
                if t.calls >= s.min_calls
                    && verdict.slow
                    && s.slow_call_nanos.is_some()
                    && rate(t.slow, t.calls) >= s.slow_call_rate_threshold =>
            {
                Some(TransitionReason::SlowCallRate {
                    rate: rate(t.slow, t.calls),
                    calls: t.calls,
                })
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

    pub(super) fn snapshot(&self) -> Snapshot {
        let word = self.word();
        let p = phase(word);
        let totals = self.window.totals(&self.settings.clock);
        let (probes_in_flight, probe_successes, probes_admitted) = {
            let c = self.lock();
            (c.in_flight, c.successes, c.probes_admitted)
        };
        let circuit = circuit(p);
        let open_until = (circuit == State::Open)
            .then(|| Nanos::from_raw(self.open_until.load(Ordering::Relaxed)));
        let rate = |part: u32| {
            if totals.calls == 0 {
                0.0
            } else {
                f64::from(part) / f64::from(totals.calls)
            }
        };
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
            probes_admitted,
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
