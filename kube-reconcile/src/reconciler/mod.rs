//! The [`Reconciler`] trait, what a reconcile step returns, and the glue to `Controller::run`.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use kube::runtime::controller::Action;
use pin_project_lite::pin_project;

use crate::error::{Classify, ErrorClass};

mod compose;
mod object_key;

pub use self::{
    compose::{ControllerExt, Either, ReconcilerExt},
    object_key::ObjectKey,
};

/// One reconcile step for objects of kind `K` with shared context `Ctx`.
///
/// Plain async functions of the shape kube-runtime expects implement it already:
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use k8s_openapi::api::core::v1::ConfigMap;
/// use kube::runtime::controller::Action;
/// use kube_reconcile::Reconciler;
///
/// struct Ctx;
///
/// async fn reconcile(cm: Arc<ConfigMap>, _ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
///     Ok(Action::requeue(Duration::from_secs(300)))
/// }
///
/// fn assert_reconciler<R: Reconciler<ConfigMap, Ctx>>(_: &R) {}
/// assert_reconciler(&reconcile);
/// ```
///
/// Middleware ([`Backoff`](crate::middleware::backoff::Backoff),
/// [`RateLimit`](crate::middleware::rate_limit::RateLimit), ...) implement it too, so a
/// wrapped reconciler is still a reconciler. Hand it to a controller with
/// [`ControllerExt::run_reconciler`].
pub trait Reconciler<K, Ctx>: Send + Sync {
    /// The error a failed step returns; classified by the middleware.
    type Error: Classify + Send + 'static;

    /// Reconciles one object.
    fn reconcile(
        &self,
        obj: Arc<K>,
        ctx: Arc<Ctx>,
    ) -> impl Future<Output = Result<Action, Self::Error>> + Send;

    /// Reconciles one object and says whether the step ran, was deferred or failed.
    ///
    /// Middleware calls this on the layer it wraps, so an outer layer can tell a
    /// deferral by an inner one (which must not reset backoff) from a success. The
    /// default runs [`reconcile`](Reconciler::reconcile); only layers that defer need
    /// to override it.
    fn call(
        &self,
        obj: Arc<K>,
        ctx: Arc<Ctx>,
    ) -> impl Future<Output = Outcome<Self::Error>> + Send {
        IntoOutcome {
            inner: self.reconcile(obj, ctx),
        }
    }

    /// The action for the controller's `error_policy` after this step failed with `error`.
    ///
    /// Called synchronously right after a failed [`call`](Reconciler::call) for the same
    /// object. The default depends only on the class of the error (requeue in 5 s; 1 s
    /// on a conflict; the server's `Retry-After` when throttled; wait for a change when
    /// terminal); [`Backoff`](crate::middleware::backoff::Backoff)
    /// answers with the object's own exponential delay.
    fn error_action(&self, obj: &K, error: &Self::Error) -> Action {
        let _ = obj;
        default_error_action(error.class())
    }
}

/// The action for a failure when no layer keeps per-object state.
///
/// `Transient` → requeue in 5 s; `Throttled` → the server's `retry_after`, else 5 s;
/// `Conflict` → requeue in 1 s; `Terminal` → wait for a change to the object.
pub(crate) fn default_error_action(class: ErrorClass) -> Action {
    match class {
        ErrorClass::Conflict => Action::requeue(Duration::from_secs(1)),
        ErrorClass::Throttled {
            retry_after: Some(d),
        } => Action::requeue(d),
        ErrorClass::Terminal => Action::await_change(),
        _ => Action::requeue(Duration::from_secs(5)),
    }
}

impl<K, Ctx, F, Fut, E> Reconciler<K, Ctx> for F
where
    F: Fn(Arc<K>, Arc<Ctx>) -> Fut + Send + Sync,
    Fut: Future<Output = Result<Action, E>> + Send,
    E: Classify + Send + 'static,
{
    type Error = E;

    fn reconcile(
        &self,
        obj: Arc<K>,
        ctx: Arc<Ctx>,
    ) -> impl Future<Output = Result<Action, E>> + Send {
        self(obj, ctx)
    }
}

/// What one call of a [`Reconciler`] came to.
#[derive(Debug)]
pub enum Outcome<E> {
    /// The reconcile ran and succeeded with this action.
    Done(Action),
    /// A layer held the reconcile back without running it; not a failure.
    Deferred(Deferral),
    /// The reconcile ran and failed.
    Failed(E),
}

impl<E> Outcome<E> {
    /// The result a controller sees: a deferral becomes `Ok(Action::requeue(wait))`.
    ///
    /// # Errors
    ///
    /// The reconciler's error, when it ran and failed.
    pub(crate) fn into_result(self) -> Result<Action, E> {
        match self {
            Outcome::Done(action) => Ok(action),
            Outcome::Deferred(deferral) => Ok(Action::requeue(deferral.retry_after)),
            Outcome::Failed(error) => Err(error),
        }
    }

    /// Whether the reconcile ran and failed.
    #[cfg(test)]
    pub(crate) const fn is_failed(&self) -> bool {
        matches!(self, Outcome::Failed(_))
    }

    /// Maps the error of a failed outcome.
    pub(crate) fn map_err<F, O: FnOnce(E) -> F>(self, op: O) -> Outcome<F> {
        match self {
            Outcome::Done(action) => Outcome::Done(action),
            Outcome::Deferred(deferral) => Outcome::Deferred(deferral),
            Outcome::Failed(error) => Outcome::Failed(op(error)),
        }
    }
}

impl<E> From<Result<Action, E>> for Outcome<E> {
    fn from(result: Result<Action, E>) -> Self {
        match result {
            Ok(action) => Outcome::Done(action),
            Err(error) => Outcome::Failed(error),
        }
    }
}

/// Why and for how long a layer held a reconcile back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deferral {
    /// When to try again (jitter included).
    pub retry_after: Duration,
    /// Which layer deferred, and why.
    pub reason: DeferReason,
}

/// Which layer deferred a reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeferReason {
    /// The object is backing off after failures and its next attempt is not due yet.
    BackingOff,
    /// A rate limit (global, per object or the named budget) had no capacity.
    RateLimited {
        /// The budget that was exhausted: `"global"`, `"object"` or a dependency name.
        budget: Arc<str>,
    },
    /// The circuit breaker for this dependency is open.
    CircuitOpen {
        /// The dependency the breaker protects.
        dependency: Arc<str>,
    },
    /// This process does not lead the election (or its term ended mid-reconcile).
    NotLeader {
        /// The Lease, as `namespace/name`.
        lease: Arc<str>,
    },
}

impl fmt::Display for DeferReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeferReason::BackingOff => f.write_str("backing off"),
            DeferReason::RateLimited { budget } => write!(f, "rate limited ({budget})"),
            DeferReason::CircuitOpen { dependency } => write!(f, "circuit open ({dependency})"),
            DeferReason::NotLeader { lease } => write!(f, "not the leader ({lease})"),
        }
    }
}

pin_project! {
    /// The future of the default [`Reconciler::call`].
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    struct IntoOutcome<F> {
        #[pin]
        inner: F,
    }
}

impl<F, E> Future for IntoOutcome<F>
where
    F: Future<Output = Result<Action, E>>,
{
    type Output = Outcome<E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx).map(Outcome::from)
    }
}

#[cfg(test)]
mod tests;
