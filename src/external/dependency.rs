//! [`ExternalDependency`]: a named external system behind a breaker, a budget and a health check.

use std::{fmt, future::Future, sync::Arc, time::Duration};

use k8s_openapi::jiff::Timestamp;

use crate::{
    conditions::{Condition, Conditions},
    middleware::{circuit_breaker::Breaker, rate_limit::RateBudget},
    rng::Rng,
};

use crate::wall::WallClock;

use super::{
    builder::DependencyBuilder,
    health::{Health, HealthCache},
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
        DependencyBuilder::new(name.into())
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
