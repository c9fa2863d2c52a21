//! Putting reconcilers together and handing them to a controller: [`ReconcilerExt`],
//! [`Either`], [`controller_fns`] and [`ControllerExt`].

use std::{fmt, future::Future, hash::Hash, pin::Pin, sync::Arc};

use kube::{Resource, runtime::controller::Action};
use tower_layer::Layer;

use super::{Outcome, Reconciler};

/// Stacks middleware onto a reconciler: `reconcile.with(layer)` is `layer.layer(reconcile)`.
///
/// # Examples
///
/// ```
/// # use std::{sync::Arc, time::Duration};
/// # use k8s_openapi::api::core::v1::ConfigMap;
/// # use kube::runtime::controller::Action;
/// use kube_reconcile::{ReconcilerExt, middleware::timeout::TimeoutLayer};
/// # struct Ctx;
/// # async fn reconcile(_: Arc<ConfigMap>, _: Arc<Ctx>) -> Result<Action, kube::Error> { Ok(Action::await_change()) }
///
/// let wrapped = reconcile.with(TimeoutLayer::new(Duration::from_secs(30)));
/// ```
pub trait ReconcilerExt<K, Ctx>: Reconciler<K, Ctx> + Sized {
    /// Wraps `self` in `layer`.
    fn with<L: Layer<Self>>(self, layer: L) -> L::Service {
        layer.layer(self)
    }

    /// Wraps `self` in `layer` if there is one: optional layers (metrics, leader
    /// election) stack without a `match` over every combination.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::{sync::Arc, time::Duration};
    /// # use k8s_openapi::api::core::v1::ConfigMap;
    /// # use kube::runtime::controller::Action;
    /// use kube_reconcile::{ReconcilerExt, middleware::timeout::TimeoutLayer};
    /// # struct Ctx;
    /// # async fn reconcile(_: Arc<ConfigMap>, _: Arc<Ctx>) -> Result<Action, kube::Error> { Ok(Action::await_change()) }
    ///
    /// let timeout: Option<Duration> = std::env::var("TIMEOUT_SECS").ok().and_then(|s| s.parse().ok()).map(Duration::from_secs);
    /// let wrapped = reconcile.with_optional(timeout.map(TimeoutLayer::new));
    /// ```
    fn with_optional<L: Layer<Self>>(self, layer: Option<L>) -> Either<L::Service, Self> {
        match layer {
            Some(layer) => Either::Left(layer.layer(self)),
            None => Either::Right(self),
        }
    }
}

/// One of two reconcilers with the same error type, as
/// [`with_optional`](ReconcilerExt::with_optional) makes them.
#[derive(Clone, Debug)]
pub enum Either<A, B> {
    /// The first (a wrapped reconciler).
    Left(A),
    /// The second (the reconciler as it was).
    Right(B),
}

impl<K, Ctx, A, B> Reconciler<K, Ctx> for Either<A, B>
where
    A: Reconciler<K, Ctx>,
    B: Reconciler<K, Ctx, Error = A::Error>,
{
    type Error = A::Error;

    fn reconcile(
        &self,
        obj: Arc<K>,
        ctx: Arc<Ctx>,
    ) -> impl Future<Output = Result<Action, Self::Error>> + Send {
        match self {
            Either::Left(a) => futures_util::future::Either::Left(a.reconcile(obj, ctx)),
            Either::Right(b) => futures_util::future::Either::Right(b.reconcile(obj, ctx)),
        }
    }

    fn call(
        &self,
        obj: Arc<K>,
        ctx: Arc<Ctx>,
    ) -> impl Future<Output = Outcome<Self::Error>> + Send {
        match self {
            Either::Left(a) => futures_util::future::Either::Left(a.call(obj, ctx)),
            Either::Right(b) => futures_util::future::Either::Right(b.call(obj, ctx)),
        }
    }

    fn error_action(&self, obj: &K, error: &Self::Error) -> Action {
        match self {
            Either::Left(a) => a.error_action(obj, error),
            Either::Right(b) => b.error_action(obj, error),
        }
    }
}

impl<K, Ctx, R: Reconciler<K, Ctx>> ReconcilerExt<K, Ctx> for R {}

/// The boxed future [`controller_fns`] hands to `Controller::run`.
pub(crate) type ReconcileFuture<E> = Pin<Box<dyn Future<Output = Result<Action, E>> + Send>>;

/// Turns a reconciler into the `reconcile` and `error_policy` arguments of
/// [`Controller::run`](kube::runtime::Controller::run).
///
/// Deferrals become `Ok(Action::requeue(wait))`; errors go to the controller's stream
/// unchanged, and `error_policy` asks the reconciler ([`Reconciler::error_action`]) what
/// to do, so per-object backoff needs no glue.
#[allow(
    clippy::type_complexity,
    reason = "the two closure types Controller::run takes; impl Trait cannot be aliased"
)]
pub(crate) fn controller_fns<K, Ctx, R>(
    reconciler: R,
) -> (
    impl FnMut(Arc<K>, Arc<Ctx>) -> ReconcileFuture<R::Error> + Send + 'static,
    impl Fn(Arc<K>, &R::Error, Arc<Ctx>) -> Action + Send + Sync + 'static,
)
where
    R: Reconciler<K, Ctx> + 'static,
    K: Send + Sync + 'static,
    Ctx: Send + Sync + 'static,
{
    let reconciler = Arc::new(reconciler);
    let for_errors = Arc::clone(&reconciler);
    (
        move |obj: Arc<K>, ctx: Arc<Ctx>| -> ReconcileFuture<R::Error> {
            let reconciler = Arc::clone(&reconciler);
            Box::pin(async move { reconciler.call(obj, ctx).await.into_result() })
        },
        move |obj: Arc<K>, error: &R::Error, _ctx: Arc<Ctx>| for_errors.error_action(&obj, error),
    )
}

/// Runs a [`Controller`](kube::runtime::Controller) with a [`Reconciler`].
pub trait ControllerExt<K>
where
    K: Clone + Resource + serde::de::DeserializeOwned + fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + fmt::Debug + Unpin,
{
    /// Like [`Controller::run`](kube::runtime::Controller::run), with `reconcile` and
    /// `error_policy` taken from `reconciler`.
    ///
    /// A scheduled object that left the controller's cache before its turn (deleted
    /// meanwhile) is no reconcile and no error: kube-runtime's
    /// [`ObjectNotFound`](kube::runtime::controller::Error::ObjectNotFound) items are
    /// dropped from the stream (logged at `debug`), so a log of the stream's errors shows
    /// only reconciles that failed.
    fn run_reconciler<R, Ctx>(
        self,
        reconciler: R,
        ctx: Arc<Ctx>,
    ) -> impl futures_core::Stream<
        Item = Result<
            (kube::runtime::reflector::ObjectRef<K>, Action),
            kube::runtime::controller::Error<R::Error, kube::runtime::watcher::Error>,
        >,
    > + Send
    where
        R: Reconciler<K, Ctx> + 'static,
        R::Error: std::error::Error,
        Ctx: Send + Sync + 'static;
}

impl<K> ControllerExt<K> for kube::runtime::Controller<K>
where
    K: Clone + Resource + serde::de::DeserializeOwned + fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + fmt::Debug + Unpin,
{
    fn run_reconciler<R, Ctx>(
        self,
        reconciler: R,
        ctx: Arc<Ctx>,
    ) -> impl futures_core::Stream<
        Item = Result<
            (kube::runtime::reflector::ObjectRef<K>, Action),
            kube::runtime::controller::Error<R::Error, kube::runtime::watcher::Error>,
        >,
    > + Send
    where
        R: Reconciler<K, Ctx> + 'static,
        R::Error: std::error::Error,
        Ctx: Send + Sync + 'static,
    {
        let (reconcile, error_policy) = controller_fns(reconciler);
        futures_util::StreamExt::filter(self.run(reconcile, error_policy, ctx), |item| {
            let gone = match item {
                Err(kube::runtime::controller::Error::ObjectNotFound(object)) => {
                    tracing::debug!(%object, "scheduled object left the cache before its turn");
                    true
                }
                _ => false,
            };
            std::future::ready(!gone)
        })
    }
}
