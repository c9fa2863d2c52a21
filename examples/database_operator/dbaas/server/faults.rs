//! Fault switches of the simulated DBaaS, changeable while it runs.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use tokio::time::Instant;

/// The fault switches of a running DBaaS; clones share the switches.
///
/// Every switch is off when the server starts. Faults apply in this order: added
/// [latency](Self::latency) (to every call), an [outage](Self::outage) (every call answers
/// 503), then, on the instance API only, the server's rate limit (429) and the
/// [error rate](Self::error_rate) (500). The health endpoints are never rate limited or
/// hit by the error rate; [`fail_health`](Self::fail_health) is theirs.
#[derive(Clone, Debug)]
pub struct DbaasFaults {
    state: Arc<Mutex<FaultState>>,
}

#[derive(Debug)]
struct FaultState {
    outage_until: Option<Instant>,
    error_rate: f64,
    health_failure_rate: f64,
    latency: Duration,
    failing_health: HashMap<String, u32>,
    rng: fastrand::Rng,
}

impl DbaasFaults {
    pub(super) fn new(seed: u64) -> Self {
        DbaasFaults {
            state: Arc::new(Mutex::new(FaultState {
                outage_until: None,
                error_rate: 0.0,
                health_failure_rate: 0.0,
                latency: Duration::ZERO,
                failing_health: HashMap::new(),
                rng: fastrand::Rng::with_seed(seed),
            })),
        }
    }

    /// Every endpoint, `/healthz` included, answers 503 for `duration` from now.
    ///
    /// A later call replaces the window; [`end_outage`](Self::end_outage) ends it early.
    pub fn outage(&self, duration: Duration) {
        self.lock().outage_until = Some(Instant::now() + duration);
        tracing::info!(?duration, "dbaas outage begins");
    }

    /// Ends an outage now.
    pub fn end_outage(&self) {
        self.lock().outage_until = None;
    }

    /// Whether an outage is on now.
    pub fn in_outage(&self) -> bool {
        self.outage_at(Instant::now())
    }

    /// Fails this share of instance API calls with 500, drawn from the server's seeded RNG.
    ///
    /// # Panics
    ///
    /// If `rate` is not within `0.0..=1.0`.
    pub fn error_rate(&self, rate: f64) {
        assert!(
            (0.0..=1.0).contains(&rate),
            "an error rate is within 0.0..=1.0, not {rate}"
        );
        self.lock().error_rate = rate;
    }

    /// Fails this share of `/healthz` checks with 503 (a flaky health endpoint in front of
    /// a service that works), drawn from the server's seeded RNG.
    ///
    /// # Panics
    ///
    /// If `rate` is not within `0.0..=1.0`.
    pub fn flaky_health(&self, rate: f64) {
        assert!(
            (0.0..=1.0).contains(&rate),
            "a failure rate is within 0.0..=1.0, not {rate}"
        );
        self.lock().health_failure_rate = rate;
    }

    /// Delays every answer by `latency` (zero turns it off).
    pub fn latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// The next `times` health checks of the instance named `name` that would pass fail instead.
    ///
    /// Checks of an instance that is not ready fail anyway and use none of them, so the
    /// failures land on the checks that matter. Works for instances not yet created; a later
    /// call replaces the count.
    pub fn fail_health(&self, name: impl Into<String>, times: u32) {
        let name = name.into();
        let mut state = self.lock();
        if times == 0 {
            state.failing_health.remove(&name);
        } else {
            state.failing_health.insert(name, times);
        }
    }

    /// Turns every switch off.
    pub fn clear(&self) {
        let mut state = self.lock();
        state.outage_until = None;
        state.error_rate = 0.0;
        state.health_failure_rate = 0.0;
        state.latency = Duration::ZERO;
        state.failing_health.clear();
    }

    pub(super) fn outage_at(&self, now: Instant) -> bool {
        self.lock().outage_until.is_some_and(|until| now < until)
    }

    pub(super) fn added_latency(&self) -> Duration {
        self.lock().latency
    }

    /// Draws whether this call fails.
    pub(super) fn roll_error(&self) -> bool {
        let mut state = self.lock();
        let rate = state.error_rate;
        rate > 0.0 && state.rng.f64() < rate
    }

    /// Draws whether this `/healthz` check fails.
    pub(super) fn roll_health_failure(&self) -> bool {
        let mut state = self.lock();
        let rate = state.health_failure_rate;
        rate > 0.0 && state.rng.f64() < rate
    }

    /// Uses up one forced health failure of `name`, if one is left.
    pub(super) fn take_health_failure(&self, name: &str) -> bool {
        let mut state = self.lock();
        let Some(left) = state.failing_health.get_mut(name) else {
            return false;
        };
        *left -= 1;
        if *left == 0 {
            state.failing_health.remove(name);
        }
        true
    }

    fn lock(&self) -> MutexGuard<'_, FaultState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
