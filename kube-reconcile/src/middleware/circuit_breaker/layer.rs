//! [`CircuitBreakerLayer`]: puts a shared [`Breaker`] in front of reconcilers.

use std::sync::Arc;

use tower_layer::Layer;

use super::{Breaker, CircuitBreaker};

/// Builds [`CircuitBreaker`] reconcilers that all share one [`Breaker`].
///
/// # Examples
///
/// One breaker for a database service, shared by a reconciler and a plain API client:
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use k8s_openapi::api::core::v1::ConfigMap;
/// use kube::runtime::controller::Action;
/// use kube_reconcile::{ErrorClass, ReconcilerExt};
/// use kube_reconcile::middleware::circuit_breaker::{BreakerConfig, CircuitBreakerLayer, State};
///
/// # async fn reconcile(_: Arc<ConfigMap>, _: Arc<()>) -> Result<Action, ErrorClass> { Ok(Action::await_change()) }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dbaas = BreakerConfig::default().open_duration(Duration::from_secs(10)).build("dbaas")?;
/// let reconciler = reconcile.with(CircuitBreakerLayer::from(dbaas.clone()));
/// let health = dbaas.call(async { Ok::<_, ErrorClass>(()) }).await;
/// assert!(health.is_ok());
/// assert_eq!(dbaas.state(), State::Closed);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct CircuitBreakerLayer {
    breaker: Breaker,
}

impl CircuitBreakerLayer {
    /// A layer with a new breaker for `dependency` and the
    /// [default configuration](super::BreakerConfig#default).
    pub fn new(dependency: impl Into<Arc<str>>) -> Self {
        Self::from(Breaker::new(dependency))
    }
}

/// A layer that shares `breaker` (and its state) with everyone else holding it.
impl From<Breaker> for CircuitBreakerLayer {
    fn from(breaker: Breaker) -> Self {
        CircuitBreakerLayer { breaker }
    }
}

impl<R> Layer<R> for CircuitBreakerLayer {
    type Service = CircuitBreaker<R>;

    fn layer(&self, inner: R) -> CircuitBreaker<R> {
        CircuitBreaker::new(inner, self.breaker.clone())
    }
}
