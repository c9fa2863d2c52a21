//! [`Gate`]: a named external system's breaker, budget and health check, behind one gate.

use std::{fmt, future::Future, sync::Arc, time::Duration};

use crate::{
    conditions::Condition,
    middleware::{circuit_breaker::Breaker, rate_limit::RateBudget},
    rng::Rng,
};

use crate::wall_clock::WallClock;

#[cfg(test)]
use super::builder::DependencyBuilder;
use super::health::HealthCache;

/// The condition reason while the dependency is available.
pub(super) const REASON_AVAILABLE: &str = "Available";

/// The machinery of a [`Dependency`](super::Dependency) handle: the breaker, the
/// budget, the health cache and the condition, without the client. Clones share one
/// state.
#[derive(Clone)]
pub(crate) struct Gate {
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
    /// The [`Metrics`](crate::metrics::Metrics) that exported this gate last (its id; 0:
    /// none), so that a call through the gate costs them one atomic load.
    #[cfg(feature = "metrics")]
    pub(super) observed_by: std::sync::atomic::AtomicU64,
}

impl Gate {
    /// A builder for the gate called `name`, with no client (for the unit tests).
    #[cfg(test)]
    pub(crate) fn builder(name: impl Into<Arc<str>>) -> DependencyBuilder<()> {
        DependencyBuilder::new((), name.into())
    }

    /// The dependency's name.
    pub(crate) fn name(&self) -> &str {
        &self.inner.name
    }

    /// The circuit breaker the gate consults, shared with anything else that calls
    /// this dependency.
    pub(crate) fn breaker(&self) -> &Breaker {
        &self.inner.breaker
    }

    /// The rate budget the gate draws from, if any.
    pub(crate) fn budget(&self) -> Option<&RateBudget> {
        self.inner.budget.as_ref()
    }

    /// Records that the metrics `id` export this gate; whether they did not already.
    /// Once they do, a load (no write, so calls from many threads share the cache line).
    #[cfg(feature = "metrics")]
    pub(crate) fn observed_by(&self, id: u64) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let seen = &self.inner.observed_by;
        seen.load(Relaxed) != id && seen.swap(id, Relaxed) != id
    }

    /// Makes the next [`admit`](Gate::admit) run the health check again
    /// instead of trusting its cached answer.
    pub(crate) fn invalidate_health(&self) {
        self.inner.health.invalidate();
    }

    /// The wall-clock time now, as this dependency's clock sees it (following paused
    /// tokio time from the start time).
    pub(crate) fn now(&self) -> k8s_openapi::jiff::Timestamp {
        self.inner.wall.now()
    }

    /// Sets the available condition in `conditions`, stamped [`now`](Self::now).
    pub(crate) fn set_available(&self, conditions: &mut crate::conditions::Conditions) -> bool {
        conditions.set(self.available_condition(), self.now())
    }

    /// The condition that says the dependency is available: `<type>=True`,
    /// reason `Available`.
    pub(crate) fn available_condition(&self) -> Condition {
        Condition::true_(
            self.inner.condition_type.clone(),
            REASON_AVAILABLE,
            format!("{} is available", self.inner.name),
        )
    }

    /// Runs `call` if the gate lets it through, and records its result on the breaker.
    ///
    /// `call` is not polled when the gate holds it back. Dropping the returned future
    /// records nothing.
    ///
    /// # Errors
    ///
    /// [`ExternalError::Unavailable`](super::ExternalError::Unavailable) without making
    /// the call, or [`ExternalError::Call`](super::ExternalError::Call) with its error.
    pub(crate) async fn call<T, E, F>(&self, call: F) -> Result<T, super::ExternalError<E>>
    where
        F: Future<Output = Result<T, E>>,
        E: crate::error::Classify,
    {
        match self.admit().await {
            super::gate::Admission::Ready(pass) => {
                pass.call(call).await.map_err(super::ExternalError::Call)
            }
            super::gate::Admission::Unavailable(unavailable) => {
                Err(super::ExternalError::Unavailable(Box::new(unavailable)))
            }
        }
    }
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("name", &self.inner.name)
            .field("condition_type", &self.inner.condition_type)
            .field("breaker", &self.inner.breaker)
            .field("budget", &self.inner.budget)
            .finish_non_exhaustive()
    }
}
