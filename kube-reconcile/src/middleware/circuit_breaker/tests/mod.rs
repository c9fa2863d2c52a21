//! Behaviour of the breaker and its reconciler wrapper, on a manual or paused clock.

use std::{
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::Duration,
};

use super::*;
use crate::{ErrorClass, clock::ManualClock};

mod half_open;
mod modes;
mod reconciler;
mod trip;

const fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("test counts are not zero")
}

/// A deterministic configuration on `clock`: no open-duration jitter, a fixed seed, and
/// only the trips a test turns on.
fn config(clock: &ManualClock) -> BreakerConfig {
    BreakerConfig::default()
        .clock(clock.clock())
        .seed(7)
        .open_duration_jitter(0.0)
        .consecutive_failures(0)
        .window(Window::count(nz(10)))
        .min_calls(nz(4))
}

fn succeed(breaker: &Breaker) {
    breaker.try_acquire().expect("admitted").success();
}

fn fail(breaker: &Breaker) {
    breaker
        .try_acquire()
        .expect("admitted")
        .failure(ErrorClass::Transient);
}

/// Every transition `breaker` reports, as `(from, to)`, with the full records.
fn transitions(breaker: &Breaker) -> Arc<Mutex<Vec<StateChange>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    breaker.on_transition(move |t| sink.lock().unwrap().push(t.clone()));
    seen
}

fn edges(seen: &Mutex<Vec<StateChange>>) -> Vec<(State, State)> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|t| (t.from, t.to))
        .collect()
}

/// Opens `breaker` (`min_calls` failures in a row) and returns the open period it chose.
fn trip(breaker: &Breaker) -> Duration {
    while breaker.state() == State::Closed {
        fail(breaker);
    }
    breaker.snapshot().remaining_open.expect("open")
}
