//! [`Timeout`]: a deadline for each reconcile.
//!
//! An elapsed deadline drops the reconcile future (so it must be cancel-safe, as every
//! kube-runtime reconcile already has to be) and returns [`TimeoutError::Elapsed`],
//! which is [`Transient`](crate::ErrorClass::Transient) for backoff and a failed, slow
//! call for a circuit breaker.

use std::{sync::Arc, time::Duration};

use kube::runtime::controller::Action;
use tower_layer::Layer;

use crate::{
    error::{Classify, ErrorClass},
    reconciler::{Outcome, Reconciler, default_error_action},
};

/// A reconciler whose every call must finish within a deadline.
///
/// Build it with [`TimeoutLayer`] or [`Timeout::new`].
#[derive(Clone, Debug)]
#[doc(hidden)]
pub struct Timeout<R> {
    inner: R,
    after: Duration,
}

impl<R> Timeout<R> {
    /// Wraps `inner` so that each call fails with [`TimeoutError::Elapsed`] after `after`.
    pub(crate) const fn new(inner: R, after: Duration) -> Self {
        Timeout { inner, after }
    }
}

/// Builds [`Timeout`] reconcilers; also puts a deadline on any async call.
///
/// # Examples
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use k8s_openapi::api::core::v1::ConfigMap;
/// use kube::runtime::controller::Action;
/// use kube_reconcile::{ErrorClass, Outcome, Reconciler, ReconcilerExt};
/// use kube_reconcile::middleware::timeout::{TimeoutError, TimeoutLayer};
///
/// async fn slow(_: Arc<ConfigMap>, _: Arc<()>) -> Result<Action, ErrorClass> {
///     tokio::time::sleep(Duration::from_secs(5)).await;
///     Ok(Action::await_change())
/// }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let reconciler = slow.with(TimeoutLayer::new(Duration::from_secs(1)));
/// let outcome = reconciler.call(Arc::new(ConfigMap::default()), Arc::new(())).await;
/// assert!(matches!(outcome, Outcome::Failed(TimeoutError::Elapsed { .. })));
/// # }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct TimeoutLayer {
    after: Duration,
}

impl TimeoutLayer {
    /// A layer with a deadline of `after` per call.
    pub const fn new(after: Duration) -> Self {
        TimeoutLayer { after }
    }
}

impl<R> Layer<R> for TimeoutLayer {
    type Service = Timeout<R>;

    fn layer(&self, inner: R) -> Timeout<R> {
        Timeout::new(inner, self.after)
    }
}

/// The error of a call that had a deadline.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TimeoutError<E> {
    /// The call itself failed.
    #[error(transparent)]
    Reconcile(E),
    /// The deadline passed before the call finished.
    #[error("timed out after {after:?}")]
    Elapsed {
        /// The deadline that passed.
        after: Duration,
    },
}

impl<E: Classify> Classify for TimeoutError<E> {
    fn class(&self) -> ErrorClass {
        match self {
            TimeoutError::Reconcile(e) => e.class(),
            TimeoutError::Elapsed { .. } => ErrorClass::Transient,
        }
    }

    fn is_timeout(&self) -> bool {
        match self {
            TimeoutError::Reconcile(e) => e.is_timeout(),
            TimeoutError::Elapsed { .. } => true,
        }
    }
}

impl<K, Ctx, R> Reconciler<K, Ctx> for Timeout<R>
where
    R: Reconciler<K, Ctx>,
    K: Send + Sync,
    Ctx: Send + Sync,
{
    type Error = TimeoutError<R::Error>;

    async fn reconcile(&self, obj: Arc<K>, ctx: Arc<Ctx>) -> Result<Action, Self::Error> {
        self.call(obj, ctx).await.into_result()
    }

    async fn call(&self, obj: Arc<K>, ctx: Arc<Ctx>) -> Outcome<Self::Error> {
        if let Ok(outcome) = tokio::time::timeout(self.after, self.inner.call(obj, ctx)).await {
            outcome.map_err(TimeoutError::Reconcile)
        } else {
            tracing::debug!(after = ?self.after, "reconcile timed out");
            Outcome::Failed(TimeoutError::Elapsed { after: self.after })
        }
    }

    fn error_action(&self, obj: &K, error: &Self::Error) -> Action {
        match error {
            TimeoutError::Reconcile(e) => self.inner.error_action(obj, e),
            TimeoutError::Elapsed { .. } => default_error_action(ErrorClass::Transient),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ReconcilerExt;
    use k8s_openapi::api::core::v1::ConfigMap;

    async fn slow(_: Arc<ConfigMap>, _: Arc<()>) -> Result<Action, ErrorClass> {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok(Action::await_change())
    }

    #[tokio::test(start_paused = true)]
    async fn elapsed_deadline_is_a_transient_timeout() {
        let r = slow.with(TimeoutLayer::new(Duration::from_secs(2)));
        let started = tokio::time::Instant::now();
        let outcome = r.call(Arc::new(ConfigMap::default()), Arc::new(())).await;
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        let Outcome::Failed(err) = outcome else {
            panic!("expected a failure, got {outcome:?}")
        };
        assert!(err.is_timeout());
        assert_eq!(err.class(), ErrorClass::Transient);
        assert_eq!(err.to_string(), "timed out after 2s");
    }

    #[tokio::test(start_paused = true)]
    async fn inner_errors_keep_their_class() {
        async fn conflict(_: Arc<ConfigMap>, _: Arc<()>) -> Result<Action, ErrorClass> {
            Err(ErrorClass::Conflict)
        }
        let r = conflict.with(TimeoutLayer::new(Duration::from_secs(2)));
        let err = r
            .reconcile(Arc::new(ConfigMap::default()), Arc::new(()))
            .await
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::Conflict);
        assert!(!err.is_timeout());
    }
}
