//! [`DependencyBuilder`]: the settings of a [`Dependency`](super::Dependency) handle.

use std::{fmt, future::Future, num::NonZeroU32, sync::Arc, time::Duration};

use k8s_openapi::jiff::Timestamp;

use crate::{
    clock::Clock,
    middleware::{circuit_breaker::Breaker, rate_limit::RateBudget},
    rng::Rng,
};

use crate::wall_clock::WallClock;

use super::{
    client::ExternalDependency,
    dependency::{Gate, Inner},
    handle::Dependency,
    health::{Health, HealthCache, Probe, Thresholds},
};

/// Builds a [`Dependency`] handle around a client; from [`Dependency::builder`].
///
/// # Default
///
/// | Setting | Default | |
/// |---|---|---|
/// | [`breaker`](Self::breaker) | `Breaker::new(name)` | a breaker of its own with the default configuration |
/// | [`budget`](Self::budget) | none | no rate limit |
/// | [`health_interval`](Self::health_interval) | 10 s | a health answer is reused for this long |
/// | [`health_timeout`](Self::health_timeout) | 5 s | a check that takes longer means unavailable |
/// | [`failure_threshold`](Self::failure_threshold) | 3 | failed checks in a row before an available dependency counts as unavailable (as a Kubernetes probe's `failureThreshold`) |
/// | [`success_threshold`](Self::success_threshold) | 1 | successful checks in a row before an unavailable dependency counts as available again |
/// | [`condition_type`](Self::condition_type) | `<Name>Available` | `dbaas` → `DbaasAvailable`, `billing-api` → `BillingApiAvailable` |
/// | [`spread`](Self::spread) | 5 s | without a budget, callers held back by the health check come back spread over this much (with one, every held-back caller gets a turn at the budget instead) |
#[must_use = "call build() to get the dependency"]
pub struct DependencyBuilder<C> {
    client: C,
    name: Arc<str>,
    breaker: Option<Breaker>,
    budget: Option<RateBudget>,
    probe: Option<Probe>,
    health_interval: Duration,
    health_timeout: Duration,
    thresholds: Thresholds,
    condition_type: Option<String>,
    spread: Duration,
    seed: Option<u64>,
    start_time: Option<Timestamp>,
}

impl<C> DependencyBuilder<C> {
    pub(super) fn new(client: C, name: Arc<str>) -> Self {
        DependencyBuilder {
            client,
            name,
            breaker: None,
            budget: None,
            probe: None,
            health_interval: Duration::from_secs(10),
            health_timeout: Duration::from_secs(5),
            thresholds: Thresholds::default(),
            condition_type: None,
            spread: Duration::from_secs(5),
            seed: None,
            start_time: None,
        }
    }

    /// The circuit breaker to consult; share it with any other client of the dependency.
    pub fn breaker(mut self, breaker: Breaker) -> Self {
        self.breaker = Some(breaker);
        self
    }

    /// The rate budget every admitted call draws one cell from.
    pub fn budget(mut self, budget: RateBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// The health check: an async function answering [`Health`] (or a `Result`).
    ///
    /// It runs at most once per [`health_interval`](Self::health_interval) for all
    /// callers together, and again early after a call through the gate failed. It does
    /// not draw from the budget and is not recorded on the breaker: the breaker counts
    /// real calls, the health check is a separate signal.
    pub(crate) fn health<F, Fut>(mut self, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: Into<Health>,
    {
        self.probe = Some(Probe::new(check));
        self
    }

    /// How long a health answer stands before the next caller checks again.
    pub const fn health_interval(mut self, interval: Duration) -> Self {
        self.health_interval = interval;
        self
    }

    /// How long a health check may take before it counts as unavailable.
    pub const fn health_timeout(mut self, timeout: Duration) -> Self {
        self.health_timeout = timeout;
        self
    }

    /// How many failed health checks in a row make an available dependency
    /// unavailable (default 3). A single failed answer of a flaky health endpoint then
    /// holds back no one; the first check ever counts at once, whatever it says.
    pub const fn failure_threshold(mut self, checks: NonZeroU32) -> Self {
        self.thresholds.failure = checks;
        self
    }

    /// How many successful health checks in a row make an unavailable dependency
    /// available again (default 1).
    pub const fn success_threshold(mut self, checks: NonZeroU32) -> Self {
        self.thresholds.success = checks;
        self
    }

    /// The condition type to report, instead of `<Name>Available`.
    pub fn condition_type(mut self, condition_type: impl Into<String>) -> Self {
        self.condition_type = Some(condition_type.into());
        self
    }

    /// Without a [`budget`](Self::budget): the spread over which callers held back by
    /// the health check come back, so they do not all return at once (the breaker adds
    /// its own spread to its refusals). With one, every held-back caller gets a turn at
    /// the budget instead, one emission interval apart.
    pub const fn spread(mut self, spread: Duration) -> Self {
        self.spread = spread;
        self
    }

    /// Seeds the spread's randomness, for reproducible tests.
    #[cfg(test)]
    pub(crate) const fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The wall-clock time at [`build`](Self::build); later wall-clock times are this
    /// plus the time elapsed on the clock.
    #[cfg(test)]
    pub(crate) const fn start_time(mut self, start: Timestamp) -> Self {
        self.start_time = Some(start);
        self
    }

    /// The gate alone, with the health check set by [`health`](Self::health) if any.
    pub(crate) fn build_gate(self) -> (C, Gate) {
        let condition_type = self
            .condition_type
            .unwrap_or_else(|| default_condition_type(&self.name));
        let breaker = self
            .breaker
            .unwrap_or_else(|| Breaker::new(Arc::clone(&self.name)));
        breaker.mark_gated();
        let wall = WallClock::new(
            Clock::default(),
            self.start_time.unwrap_or_else(Timestamp::now),
        );
        let gate = Gate {
            inner: Arc::new(Inner {
                name: self.name,
                condition_type,
                breaker,
                budget: self.budget,
                health: HealthCache::new(
                    self.probe,
                    self.health_interval,
                    self.health_timeout,
                    self.thresholds,
                ),
                spread: self.spread,
                rng: Rng::new(self.seed),
                wall,
                #[cfg(feature = "metrics")]
                observed_by: std::sync::atomic::AtomicU64::new(0),
            }),
        };
        (self.client, gate)
    }
}

#[cfg(test)]
impl DependencyBuilder<()> {
    /// The gate alone (for the unit tests, which give it a health closure).
    pub(crate) fn build(self) -> Gate {
        self.build_gate().1
    }
}

impl<C: ExternalDependency> DependencyBuilder<C> {
    /// The handle. Its health check is the client's
    /// [`health`](ExternalDependency::health).
    ///
    /// Build it inside the tokio runtime whose (possibly paused) clock it should follow.
    pub fn build(self) -> Dependency<C> {
        let client = Arc::new(self.client);
        let probe = Arc::clone(&client);
        let builder = DependencyBuilder {
            client: (),
            name: self.name,
            breaker: self.breaker,
            budget: self.budget,
            probe: None,
            health_interval: self.health_interval,
            health_timeout: self.health_timeout,
            thresholds: self.thresholds,
            condition_type: self.condition_type,
            spread: self.spread,
            seed: self.seed,
            start_time: self.start_time,
        }
        .health(move || {
            let client = Arc::clone(&probe);
            async move { client.health().await }
        });
        let ((), gate) = builder.build_gate();
        Dependency::from_parts(client, gate)
    }
}

impl<C> fmt::Debug for DependencyBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DependencyBuilder")
            .field("name", &self.name)
            .field("breaker", &self.breaker)
            .field("budget", &self.budget)
            .field("health", &self.probe.is_some())
            .field("health_interval", &self.health_interval)
            .field("health_timeout", &self.health_timeout)
            .field("failure_threshold", &self.thresholds.failure)
            .field("success_threshold", &self.thresholds.success)
            .field("condition_type", &self.condition_type)
            .field("spread", &self.spread)
            .finish_non_exhaustive()
    }
}

/// `dbaas` → `DbaasAvailable`, `billing-api` → `BillingApiAvailable`; a name with no
/// letters or digits gives `ExternalSystemAvailable`.
fn default_condition_type(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 9);
    for word in name.split(|c: char| !c.is_ascii_alphanumeric()) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
            out.extend(chars);
        }
    }
    if out.is_empty() || !out.starts_with(|c: char| c.is_ascii_alphabetic()) {
        out.insert_str(0, "ExternalSystem");
    }
    out.push_str("Available");
    out
}

#[cfg(test)]
mod tests {
    use super::default_condition_type;

    #[test]
    fn the_default_condition_type_is_the_name_in_camel_case() {
        assert_eq!(default_condition_type("dbaas"), "DbaasAvailable");
        assert_eq!(default_condition_type("billing-api"), "BillingApiAvailable");
        assert_eq!(default_condition_type("s3.eu_west"), "S3EuWestAvailable");
        assert_eq!(default_condition_type("DBaaS"), "DBaaSAvailable");
        assert_eq!(default_condition_type("--"), "ExternalSystemAvailable");
        assert_eq!(
            default_condition_type("9lives"),
            "ExternalSystem9livesAvailable"
        );
    }
}
