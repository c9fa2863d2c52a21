//! The [`Reconciler`] trait, what a reconcile step returns, and the glue to `Controller::run`.

use std::{
    borrow::{Borrow, Cow},
    fmt,
    future::Future,
    hash::{Hash, Hasher},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use kube::{Resource, runtime::controller::Action};
use pin_project_lite::pin_project;
use tower_layer::Layer;

use crate::error::{Classify, ErrorClass};

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
/// [`ControllerExt::run_reconciler`] or [`controller_fns`].
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
    /// object. The default depends only on the class of the error (see
    /// [`default_error_action`]); [`Backoff`](crate::middleware::backoff::Backoff)
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
pub fn default_error_action(class: ErrorClass) -> Action {
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
    pub fn into_result(self) -> Result<Action, E> {
        match self {
            Outcome::Done(action) => Ok(action),
            Outcome::Deferred(deferral) => Ok(Action::requeue(deferral.retry_after)),
            Outcome::Failed(error) => Err(error),
        }
    }

    /// Whether the reconcile ran and failed.
    pub const fn is_failed(&self) -> bool {
        matches!(self, Outcome::Failed(_))
    }

    /// Maps the error of a failed outcome.
    pub fn map_err<F, O: FnOnce(E) -> F>(self, op: O) -> Outcome<F> {
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

/// Identity of one object for per-object middleware state.
///
/// Equality and hashing use the UID only, so a deleted and recreated object (same
/// name, new UID) starts with fresh state. An object without a UID (never stored by an
/// API server) is identified by `namespace/name`.
#[derive(Clone)]
pub struct ObjectKey {
    uid: Box<str>,
    namespace: Option<Box<str>>,
    name: Box<str>,
}

impl ObjectKey {
    /// The key of `obj`.
    pub fn of<K: Resource>(obj: &K) -> Self {
        let meta = obj.meta();
        ObjectKey {
            uid: Self::lookup(obj).into_owned().into_boxed_str(),
            namespace: meta.namespace.as_deref().map(Into::into),
            name: meta.name.as_deref().unwrap_or_default().into(),
        }
    }

    /// The string the key hashes as, borrowed from `obj` when it has a UID.
    pub(crate) fn lookup<K: Resource>(obj: &K) -> Cow<'_, str> {
        let meta = obj.meta();
        match meta.uid.as_deref() {
            Some(uid) if !uid.is_empty() => Cow::Borrowed(uid),
            _ => Cow::Owned(format!(
                "{}/{}",
                meta.namespace.as_deref().unwrap_or_default(),
                meta.name.as_deref().unwrap_or_default()
            )),
        }
    }

    /// The object's UID (or `namespace/name` if it had none).
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// The object's namespace; `None` for cluster-scoped objects.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl PartialEq for ObjectKey {
    fn eq(&self, other: &Self) -> bool {
        self.uid == other.uid
    }
}

impl Eq for ObjectKey {}

impl Hash for ObjectKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.uid.hash(state);
    }
}

impl Borrow<str> for ObjectKey {
    fn borrow(&self) -> &str {
        &self.uid
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

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
pub type ReconcileFuture<E> = Pin<Box<dyn Future<Output = Result<Action, E>> + Send>>;

/// Turns a reconciler into the `reconcile` and `error_policy` arguments of
/// [`Controller::run`](kube::runtime::Controller::run).
///
/// Deferrals become `Ok(Action::requeue(wait))`; errors go to the controller's stream
/// unchanged, and `error_policy` asks the reconciler ([`Reconciler::error_action`]) what
/// to do, so per-object backoff needs no glue.
///
/// # Examples
///
/// ```no_run
/// # use std::{sync::Arc, time::Duration};
/// # use futures::StreamExt;
/// # use k8s_openapi::api::core::v1::ConfigMap;
/// # use kube::{Api, Client, runtime::{Controller, controller::Action, watcher}};
/// use kube_reconcile::{ReconcilerExt, controller_fns, middleware::backoff::BackoffLayer};
/// # struct Ctx;
/// # async fn reconcile(_: Arc<ConfigMap>, _: Arc<Ctx>) -> Result<Action, kube::Error> { Ok(Action::await_change()) }
/// # async fn run(client: Client) {
/// let (reconcile, error_policy) = controller_fns(reconcile.with(BackoffLayer::operator()));
/// Controller::new(Api::<ConfigMap>::all(client), watcher::Config::default())
///     .run(reconcile, error_policy, Arc::new(Ctx))
///     .for_each(|_| async {})
///     .await;
/// # }
/// ```
#[allow(
    clippy::type_complexity,
    reason = "the two closure types Controller::run takes; impl Trait cannot be aliased"
)]
pub fn controller_fns<K, Ctx, R>(
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
    /// `error_policy` taken from `reconciler` (see [`controller_fns`]).
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    fn cm(ns: &str, name: &str, uid: Option<&str>) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                uid: uid.map(Into::into),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        }
    }

    #[test]
    fn object_keys_are_equal_only_for_the_same_uid() {
        let a = ObjectKey::of(&cm("ns", "db", Some("u1")));
        let recreated = ObjectKey::of(&cm("ns", "db", Some("u2")));
        assert_ne!(a, recreated);
        assert_eq!(a.to_string(), "ns/db");
        assert_eq!(a.uid(), "u1");
    }

    #[test]
    fn object_without_uid_is_keyed_by_namespace_and_name() {
        let key = ObjectKey::of(&cm("ns", "db", None));
        assert_eq!(key.uid(), "ns/db");
    }

    #[tokio::test]
    async fn plain_functions_are_reconcilers_and_errors_reach_error_policy() {
        async fn fails(_: Arc<ConfigMap>, _: Arc<()>) -> Result<Action, crate::ErrorClass> {
            Err(crate::ErrorClass::Conflict)
        }
        let (mut reconcile, error_policy) = controller_fns(fails);
        let obj = Arc::new(cm("ns", "a", Some("u")));
        let err = reconcile(Arc::clone(&obj), Arc::new(())).await.unwrap_err();
        assert_eq!(
            error_policy(obj, &err, Arc::new(())),
            Action::requeue(Duration::from_secs(1))
        );
    }

    #[test]
    fn deferral_becomes_a_requeue() {
        let outcome: Outcome<()> = Outcome::Deferred(Deferral {
            retry_after: Duration::from_millis(250),
            reason: DeferReason::BackingOff,
        });
        assert_eq!(
            outcome.into_result(),
            Ok(Action::requeue(Duration::from_millis(250)))
        );
    }
}
