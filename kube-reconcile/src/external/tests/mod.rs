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

mod budget;
mod gate;
mod protocol;

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("test values are not zero")
}

fn start() -> Timestamp {
    "2026-03-01T12:00:00Z".parse().expect("valid timestamp")
}

/// A breaker that opens after 3 consecutive failures for exactly 30 s (+ at most 1 ms).
fn breaker() -> Breaker {
    BreakerConfig::default()
        .consecutive_failures(3)
        .open_duration(Duration::from_secs(30))
        .open_duration_jitter(0.0)
        .permitted_probes(nz(1))
        .spread(Duration::from_millis(1))
        .seed(7)
        .build("dbaas")
        .unwrap()
}

/// A health check that answers `up` and counts its runs.
fn switchable(
    up: &Arc<AtomicBool>,
    runs: &Arc<AtomicU32>,
) -> impl Fn() -> std::future::Ready<Health> + Send + Sync + 'static {
    let (up, runs) = (Arc::clone(up), Arc::clone(runs));
    move || {
        runs.fetch_add(1, SeqCst);
        std::future::ready(if up.load(SeqCst) {
            Health::Available
        } else {
            Health::unavailable("503 from /health")
        })
    }
}

async fn fail(dbaas: &Gate) {
    let Admission::Ready(pass) = dbaas.admit().await else {
        panic!("expected the gate to admit")
    };
    let _ = pass
        .call(async { Err::<(), _>(ErrorClass::Transient) })
        .await;
}
