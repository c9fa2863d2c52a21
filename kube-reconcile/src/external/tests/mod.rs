//! Unit tests of the gate and of the create/delete protocol.

use std::{
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering::SeqCst},
    },
    time::Duration,
};

use k8s_openapi::jiff::Timestamp;

use super::{gate::Admission, *};
use crate::{
    ErrorClass,
    conditions::Conditions,
    middleware::{
        circuit_breaker::{Breaker, BreakerConfig, State},
        rate_limit::{Quota, RateBudget},
    },
};

mod gate;
mod protocol;

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("test values are not zero")
}

fn start() -> Timestamp {
    "2026-03-01T12:00:00Z".parse().expect("valid timestamp")
}
