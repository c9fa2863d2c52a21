//! The state word: a phase in the low byte, an epoch bumped by every transition above it.

use super::state::State;

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

pub(super) const fn public_state(phase: u8) -> State {
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
pub(super) const fn circuit(phase: u8) -> State {
    match phase {
        OPEN => State::Open,
        HALF_OPEN => State::HalfOpen,
        p if p >= METRICS => circuit(p - METRICS),
        _ => State::Closed,
    }
}

/// The part of a phase that says what the circuit does (`CLOSED`, `OPEN`, `HALF_OPEN`).
pub(super) const fn circuit_phase(phase: u8) -> u8 {
    if phase >= METRICS {
        phase - METRICS
    } else {
        phase
    }
}
