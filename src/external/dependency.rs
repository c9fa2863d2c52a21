//! [`ExternalDependency`]: a named external system behind a breaker, a budget and a health check.

use std::{fmt, future::Future, sync::Arc, time::Duration};

use k8s_openapi::jiff::Timestamp;

use crate::{
    clock::Clock,
    conditions::{Condition, Conditions},
    middleware::{circuit_breaker::Breaker, rate_limit::RateBudget},
    rng::Rng,
};

use super::{
    health::{Health, HealthCache, Probe},
    wall::WallClock,
};

/// The condition reason while the dependency is available.
pub(super) const REASON_AVAILABLE: &str = "Available";

/// A named external system (`"dbaas"`) that reconciles call: its circuit breaker, its
/// shared rate budget and its health check, behind one gate.
///
/// Clones share one state. Build one per dependency with [`ExternalDependency::builder`],
/// keep it in the controller's context, and ask it before every external call with
/// [`admit`](ExternalDependency::admit) (or [`call`](ExternalDependency::call)).
/// See the [module documentation](super) for the condition it reports.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use kube_reconcile::external::{Admission, ExternalDependency, Health};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let dbaas = ExternalDependency::builder("dbaas")
///     .health(|| async { Health::unavailable("maintenance") })
///     .build();
/// assert_eq!(dbaas.condition_type(), "DbaasAvailable");
///
/// let Admission::Unavailable(unavailable) = dbaas.admit().await else { unreachable!() };
/// assert_eq!(unavailable.reason.as_str(), "ExternalSystemUnavailable");
/// assert!(unavailable.retry_after >= Duration::from_secs(10)); // the health interval, + spread
/// # }
/// ```
#[derive(Clone)]
pub struct ExternalDependency {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) name: Arc<str>,
    pub(super) condition_type: String,
    pub(super) breaker: Breaker,
    pub(super) budget: Option<RateBudget>,
    pub(super) health: HealthCache,
    pub(super) spread: Duration,
    pub(super) rng: Rng,
    pub(super) wall: WallClock,
}

impl ExternalDependency {
    /// A builder for the dependency called `name`.
    pub fn builder(name: impl Into<Arc<str>>) -> DependencyBuilder {
        DependencyBuilder {
            name: name.into(),
            breaker: None,
            budget: None,
            probe: None,
            health_interval: Duration::from_secs(10),
            health_timeout: Duration::from_secs(5),
            condition_type: None,
            spread: Duration::from_secs(5),
            seed: None,
            clock: None,
            start_time: None,
        }
    }

    /// The dependency's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The circuit breaker the gate consults, shared with anything else that calls
    /// this dependency.
    pub fn breaker(&self) -> &Breaker {
        &self.inner.breaker
    }

    /// The rate budget the gate draws from, if any.
    pub fn budget(&self) -> Option<&RateBudget> {
        self.inner.budget.as_ref()
    }

    /// The condition type this dependency reports (`<Name>Available` by default).
    pub fn condition_type(&self) -> &str {
        &self.inner.condition_type
    }

    /// The last answer of the health check; `None` if there is no health check, it has
    /// not run yet, or it is running now.
    pub fn last_health(&self) -> Option<Health> {
        self.inner.health.last()
    }

    /// Makes the next [`admit`](ExternalDependency::admit) run the health check again
    /// instead of trusting its cached answer.
    pub fn invalidate_health(&self) {
        self.inner.health.invalidate();
    }

    /// The wall-clock time now, as this dependency's clock sees it.
    ///
    /// It follows paused tokio time from the dependency's start time, so conditions
    /// stamped with it are deterministic in tests.
    pub fn now(&self) -> Timestamp {
        self.inner.wall.now()
    }

    /// The condition that says the dependency is available: `<type>=True`,
    /// reason `Available`.
    pub fn available_condition(&self) -> Condition {
        Condition::true_(
            self.inner.condition_type.clone(),
            REASON_AVAILABLE,
            format!("{} is available", self.inner.name),
        )
    }

    /// Sets [`available_condition`](ExternalDependency::available_condition) in
    /// `conditions`, stamped [`now`](ExternalDependency::now); returns whether anything
    /// changed.
    ///
    /// Call it once a call through the gate has succeeded: that is what clears an
    /// earlier `ExternalSystemUnavailable` or `CircuitOpen`.
    pub fn set_available(&self, conditions: &mut Conditions) -> bool {
        conditions.set(self.available_condition(), self.now())
    }

    /// Runs `call` if the gate lets it through, and records its result on the breaker.
    ///
    /// `call` is not polled when the gate holds it back. Dropping the returned future
    /// records nothing.
    ///
    /// # Errors
    ///
    /// [`GateError::Unavailable`](super::GateError::Unavailable) without making the
    /// call, or [`GateError::Call`](super::GateError::Call) with the call's own error.
    pub async fn call<T, E, F>(&self, call: F) -> Result<T, super::GateError<E>>
    where
        F: Future<Output = Result<T, E>>,
        E: crate::error::Classify,
    {
        match self.admit().await {
            super::Admission::Ready(pass) => pass.call(call).await.map_err(super::GateError::Call),
            super::Admission::Unavailable(unavailable) => {
                Err(super::GateError::Unavailable(Box::new(unavailable)))
            }
        }
    }
}

impl fmt::Debug for ExternalDependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExternalDependency")
            .field("name", &self.inner.name)
            .field("condition_type", &self.inner.condition_type)
            .field("breaker", &self.inner.breaker)
            .field("budget", &self.inner.budget)
            .finish_non_exhaustive()
    }
}

/// Builds an [`ExternalDependency`].
///
/// # Default
///
/// | Setting | Default | |
/// |---|---|---|
/// | [`breaker`](Self::breaker) | `Breaker::new(name)` | a breaker of its own with the default configuration |
/// | [`budget`](Self::budget) | none | no rate limit |
/// | [`health`](Self::health) | none | only the breaker and the budget gate calls |
/// | [`health_interval`](Self::health_interval) | 10 s | a health answer is reused for this long |
/// | [`health_timeout`](Self::health_timeout) | 5 s | a check that takes longer means unavailable |
/// | [`condition_type`](Self::condition_type) | `<Name>Available` | `dbaas` → `DbaasAvailable`, `billing-api` → `BillingApiAvailable` |
/// | [`spread`](Self::spread) | 5 s | callers held back by the health check or the budget come back spread over this much |
/// | [`clock`](Self::clock) | [`Clock::tokio`] | read at [`build`](Self::build) |
/// | [`start_time`](Self::start_time) | `Timestamp::now()` | the wall-clock time at build |
#[must_use = "call build() to get the dependency"]
pub struct DependencyBuilder {
    name: Arc<str>,
    breaker: Option<Breaker>,
    budget: Option<RateBudget>,
    probe: Option<Probe>,
    health_interval: Duration,
    health_timeout: Duration,
    condition_type: Option<String>,
    spread: Duration,
    seed: Option<u64>,
    clock: Option<Clock>,
    start_time: Option<Timestamp>,
}

impl DependencyBuilder {
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
    pub fn health<F, Fut>(mut self, check: F) -> Self
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

    /// The condition type to report, instead of `<Name>Available`.
    pub fn condition_type(mut self, condition_type: impl Into<String>) -> Self {
        self.condition_type = Some(condition_type.into());
        self
    }

    /// The spread over which held-back callers come back, so they do not all return
    /// at once. The breaker adds its own spread to its refusals.
    pub const fn spread(mut self, spread: Duration) -> Self {
        self.spread = spread;
        self
    }

    /// Seeds the spread's randomness, for reproducible tests.
    pub const fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The clock for health answers and next-attempt times.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The wall-clock time at [`build`](Self::build); later wall-clock times are this
    /// plus the time elapsed on the clock.
    pub const fn start_time(mut self, start: Timestamp) -> Self {
        self.start_time = Some(start);
        self
    }

    /// The dependency.
    ///
    /// Create it inside the tokio runtime whose (possibly paused) clock it should follow.
    pub fn build(self) -> ExternalDependency {
        let condition_type = self
            .condition_type
            .unwrap_or_else(|| default_condition_type(&self.name));
        let breaker = self
            .breaker
            .unwrap_or_else(|| Breaker::new(Arc::clone(&self.name)));
        let clock = self.clock.unwrap_or_default();
        let wall = WallClock::new(clock, self.start_time.unwrap_or_else(Timestamp::now));
        ExternalDependency {
            inner: Arc::new(Inner {
                name: self.name,
                condition_type,
                breaker,
                budget: self.budget,
                health: HealthCache::new(self.probe, self.health_interval, self.health_timeout),
                spread: self.spread,
                rng: Rng::new(self.seed),
                wall,
            }),
        }
    }
}

impl fmt::Debug for DependencyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DependencyBuilder")
            .field("name", &self.name)
            .field("breaker", &self.breaker)
            .field("budget", &self.budget)
            .field("health", &self.probe.is_some())
            .field("health_interval", &self.health_interval)
            .field("health_timeout", &self.health_timeout)
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
