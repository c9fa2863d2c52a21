//! [`Dependency`]: the one handle around a user's client.

use std::{fmt, future::Future, sync::Arc};

use crate::{conditions::Conditions, middleware::circuit_breaker::Breaker};

use super::{
    builder::DependencyBuilder, client::ExternalDependency, dependency::Gate, error::ExternalError,
};

/// A user's client of an external system, wrapped in everything around its calls: the
/// circuit breaker, the shared rate budget, the health cache and the availability
/// condition. Clones share one state; keep one in the controller's context.
///
/// Every call goes through [`call`](Self::call), or through [`ensure`](Self::ensure) and
/// [`delete`](Self::delete) for resources created exactly once. Each is admitted before
/// it is made (breaker, health, budget) and its answer recorded on the breaker by itself.
/// A call held back fails with [`ExternalError::Unavailable`] without being made; inside
/// a phase handler or cleanup, `?` on that error is all the handling it needs: the engine
/// turns it into the right transition (own pacing: a wait off the deadline, no write;
/// outage or open circuit: a stay with the condition) and sets `<Name>Available=True`
/// for each dependency that answered a call in the step. See the [module
/// documentation](super) for the condition.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use kube_reconcile::{ErrorClass, external::{Dependency, ExternalDependency, ExternalError, Health, UnavailableReason}};
///
/// struct Dbaas;
/// impl ExternalDependency for Dbaas {
///     type Error = ErrorClass;
///     fn name(&self) -> &'static str { "dbaas" }
///     async fn health(&self) -> Health { Health::unavailable("maintenance") }
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let dbaas = Dependency::builder(Dbaas).build();
/// let held = dbaas.call(|_| async { Ok::<_, ErrorClass>(()) }).await.unwrap_err();
/// let ExternalError::Unavailable(unavailable) = held else { unreachable!() };
/// assert_eq!(unavailable.reason, UnavailableReason::ExternalSystemUnavailable);
/// assert!(unavailable.retry_after >= Duration::from_secs(10)); // the health interval, + spread
/// # }
/// ```
pub struct Dependency<C> {
    client: Arc<C>,
    pub(crate) gate: Gate,
}

impl<C> Clone for Dependency<C> {
    fn clone(&self) -> Self {
        Dependency {
            client: Arc::clone(&self.client),
            gate: self.gate.clone(),
        }
    }
}

impl<C: ExternalDependency> Dependency<C> {
    /// The handle with the default settings (see [`DependencyBuilder`]).
    #[cfg(test)]
    pub(crate) fn new(client: C) -> Self {
        Self::builder(client).build()
    }

    /// A builder for the handle around `client`.
    pub fn builder(client: C) -> DependencyBuilder<C> {
        let name = Arc::from(client.name());
        DependencyBuilder::new(client, name)
    }

    pub(super) fn from_parts(client: Arc<C>, gate: Gate) -> Self {
        Dependency { client, gate }
    }

    /// Makes one call (or several that form one unit of work, such as a read and a
    /// check of what was read) if the dependency lets it through, and records its answer
    /// on the breaker.
    ///
    /// `call` is not run when the dependency holds it back. A unit takes one turn at the
    /// budget: give calls that belong together one closure, so that the second does not
    /// queue again behind every other object after the first got its turn. Dropping the
    /// returned future records nothing and gives a half-open probe slot back.
    ///
    /// # Errors
    ///
    /// [`ExternalError::Unavailable`] without making the call, or [`ExternalError::Call`]
    /// with the call's own error.
    pub async fn call<'a, T, F, Fut>(&'a self, call: F) -> Result<T, ExternalError<C::Error>>
    where
        F: FnOnce(&'a C) -> Fut,
        Fut: Future<Output = Result<T, C::Error>>,
    {
        self.gate
            .call(async move { call(&self.client).await })
            .await
    }

    /// The client itself. Calls made on it directly bypass the breaker, the budget and
    /// the condition: for reading what it holds (in tests, say), not for calls.
    pub(crate) fn client(&self) -> &C {
        &self.client
    }

    /// The dependency's name.
    pub fn name(&self) -> &str {
        self.gate.name()
    }

    /// Sets the dependency's availability condition in `conditions`, stamped
    /// with the dependency's clock (which follows paused tokio time); returns whether
    /// anything changed. For reconcilers outside the phase engine, after a call that
    /// succeeded (the engine does this by itself).
    pub fn set_available(&self, conditions: &mut Conditions) -> bool {
        self.gate.set_available(conditions)
    }

    /// The circuit breaker, to share with a
    /// [`CircuitBreakerLayer`](crate::middleware::circuit_breaker::CircuitBreakerLayer):
    /// a layer on it only refuses while the circuit is open, and this handle's real calls
    /// decide when it closes.
    pub fn breaker(&self) -> &Breaker {
        self.gate.breaker()
    }

    /// The rate budget calls draw from, if any: [`RateBudget::rate`](crate::middleware::rate_limit::RateBudget::rate)
    /// reads an adaptive budget's estimate of the dependency's capacity.
    pub fn budget(&self) -> Option<&crate::middleware::rate_limit::RateBudget> {
        self.gate.budget()
    }
}

impl<C> fmt::Debug for Dependency<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dependency")
            .field("gate", &self.gate)
            .finish_non_exhaustive()
    }
}
