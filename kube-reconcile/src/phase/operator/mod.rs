//! [`Operator`]: the recommended stack around a [`PhaseEngine`], wired in one place.

use std::{fmt, future::Future, sync::Arc};

use futures_util::{StreamExt as _, stream::BoxStream};
use kube::{
    Api, Client, Resource,
    runtime::{
        Controller, WatchStreamExt as _, controller,
        reflector::{ObjectRef, reflector, store},
        watcher,
    },
};
use serde::{Serialize, de::DeserializeOwned};

mod builder;
mod list_queue;

pub use self::builder::OperatorBuilder;
use self::{builder::Layers, list_queue::ListQueue};
use super::{
    HasPhaseStatus, PhaseEngine, PhaseMachine,
    running::{Running, Tracked},
};
use crate::{
    ControllerExt, ReconcilerExt,
    leader::LeaderHandle,
    middleware::{
        circuit_breaker::CircuitBreakerLayer,
        rate_limit::{RateLimitHandle, RateLimitLayer},
        timeout::TimeoutLayer,
    },
};

/// A phase operator wired the recommended way: the [`PhaseEngine`] inside the
/// middleware, the deferral status, and optionally metrics and leader election, run by a
/// kube-runtime `Controller`.
///
/// ```text
///  ┌ Metrics ──────────── (optional) reconcile counts and durations, phases, deferrals
///  │ ┌ Leader, Shard ──── (optional) only the Lease holder; only this member's objects
///  │ │ ┌ DeferralStatus ─ a Deferred condition says why an object waits, until when
///  │ │ │ ┌ Backoff ────── per object: exponential, not before the next attempt
///  │ │ │ │ ┌ RateLimit ── (optional) per object or global
///  │ │ │ │ │ ┌ CircuitBreaker (optional) a dependency's breaker, shared
///  │ │ │ │ │ │ ┌ Timeout  per reconcile
///  │ │ │ │ │ │ │   PhaseEngine(your PhaseMachine)
/// ```
///
/// # Default
///
/// | Setting | Default |
/// |---|---|
/// | [`config`](OperatorBuilder::config) | [`PhaseConfig::default`](super::PhaseConfig::default) |
/// | [`timeout`](OperatorBuilder::timeout) | 30 s |
/// | [`backoff`](OperatorBuilder::backoff) | [`BackoffConfig::operator`](crate::middleware::backoff::BackoffConfig::operator) (1 s doubling to 300 s, full jitter) |
/// | [`rate_limit`](OperatorBuilder::rate_limit) | none |
/// | [`breaker`](OperatorBuilder::breaker) | none |
/// | [`leader`](OperatorBuilder::leader) | none: every replica reconciles |
/// | [`shard`](OperatorBuilder::shard) | none: every object is this replica's |
/// | `metrics` (feature `metrics`) | none |
/// | [`concurrency`](OperatorBuilder::concurrency) | 64 reconciles at once |
///
/// # Examples
///
/// ```no_run
/// # use std::{sync::Arc, time::Duration};
/// # use kube::CustomResource;
/// # use kube_reconcile::phase::{HasPhaseStatus, PhaseMachine, PhaseStatus, Step, Transition, Transitions};
/// # use schemars::JsonSchema;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema)]
/// # #[kube(group = "example.com", version = "v1", kind = "Cache", namespaced, status = "CacheStatus")]
/// # struct CacheSpec { size_mb: u32 }
/// # #[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
/// # struct CacheStatus { #[serde(flatten)] machine: PhaseStatus }
/// # impl HasPhaseStatus for Cache {
/// #     fn phase_status(&self) -> Option<&PhaseStatus> { self.status.as_ref().map(|s| &s.machine) }
/// # }
/// # kube_reconcile::phases! { enum P { Pending, Ready, Failed } }
/// # struct CacheMachine(Transitions<P>);
/// # impl PhaseMachine<Cache, ()> for CacheMachine {
/// #     type Phase = P;
/// #     type Error = kube::Error;
/// #     fn transitions(&self) -> &Transitions<P> { &self.0 }
/// #     async fn handle(&self, _: P, _: &Cache, _: &Step<'_, P, ()>) -> Result<Transition<P>, kube::Error> {
/// #         Ok(Transition::done())
/// #     }
/// # }
/// # async fn run(machine: CacheMachine) -> Result<(), Box<dyn std::error::Error>> {
/// use kube::{Api, Client};
/// use kube_reconcile::phase::{Operator, PhaseConfig};
///
/// let client = Client::try_default().await?;
/// let operator = Operator::builder(machine, client.clone())
///     .config(PhaseConfig::default().controller("cache-operator"))
///     .timeout(Duration::from_secs(20))
///     .build()?;
/// let running = operator.spawn(Api::<Cache>::all(client), Arc::new(()));
/// tokio::signal::ctrl_c().await?;
/// running.shut_down(Duration::from_secs(30)).await;
/// # Ok(()) }
/// ```
pub struct Operator<M, K> {
    engine: PhaseEngine<M, K>,
    client: Client,
    layers: Layers,
    watcher: watcher::Config,
}

/// Running the operator: what its watch and its engine need of `K`.
impl<M, K> Operator<M, K>
where
    K: Resource + HasPhaseStatus + Clone + Serialize + DeserializeOwned + fmt::Debug,
    K: Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + fmt::Debug + Unpin,
{
    /// Runs the controller over the objects of `api`, with the handlers' context `ctx`,
    /// on a tokio task, until [`Running::shut_down`]: it stops taking new work, lets the
    /// reconciles in flight finish (kube-runtime's graceful shutdown) and releases the
    /// [leader](OperatorBuilder::leader) and [shard](OperatorBuilder::shard) Leases, so
    /// another replica takes over at once instead of after the lease duration. Failed
    /// reconciles are logged by the engine and retried by the backoff.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (as `tokio::spawn` does).
    pub fn spawn<Ctx>(self, api: Api<K>, ctx: Arc<Ctx>) -> Running
    where
        M: PhaseMachine<K, Ctx>,
        Ctx: Send + Sync + 'static,
    {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            // A dropped handle leaves the operator running.
            if stopped.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let (engine, backoff) = (self.engine.clone(), self.layers.backoff.handle());
        let rate_limit = self.layers.rate_limit.as_ref().map(RateLimitLayer::handle);
        let tracked = move || Tracked {
            backing_off: backoff.sweep(),
            rate_limited: rate_limit.as_ref().map_or(0, RateLimitHandle::sweep),
            paced: engine.paced_objects(),
        };
        let task = tokio::spawn(self.run(api, ctx, signal));
        Running::new(stop, task, Box::new(tracked))
    }

    /// The controller until the watch ends, or `stop` fired and the reconciles in flight
    /// finished and the Leases were handed over.
    fn run<Ctx>(
        self,
        api: Api<K>,
        ctx: Arc<Ctx>,
        stop: impl Future<Output = ()> + Send + Sync + 'static,
    ) -> impl Future<Output = ()> + Send
    where
        M: PhaseMachine<K, Ctx>,
        Ctx: Send + Sync + 'static,
    {
        let mut layers = self.layers;
        let selector = self.engine.children_selector();
        let selector = match (&layers.shard, selector) {
            (Some(shard), Some((selector, manager))) => {
                self.engine.cache().partial();
                Some((format!("{selector},{}", shard.label_selector()), manager))
            }
            (_, selector) => selector,
        };
        // Each child kind is cached from the first read of one of its children.
        let started = selector.map(|(selector, manager)| {
            self.engine
                .cache()
                .start_on_first_read(self.client.clone(), selector, manager)
        });
        // The cache sizes, exported after every change when there are metrics.
        #[cfg(feature = "metrics")]
        let report: Option<Box<dyn Fn() + Send>> =
            layers.metrics.as_ref().map(|(metrics, name)| {
                let observe = metrics.cache_observer(Arc::clone(name));
                let cache = self.engine.cache().clone();
                Box::new(move || observe(cache.sizes())) as Box<dyn Fn() + Send>
            });
        #[cfg(not(feature = "metrics"))]
        let report: Option<Box<dyn Fn() + Send>> = None;
        let deferrals = layers
            .deferral_status
            .then(|| super::DeferralStatusLayer::new(self.client.clone()).backoff(&layers.backoff));
        let reconciler = self
            .engine
            .with(TimeoutLayer::new(layers.timeout))
            .with_optional(layers.breaker.map(CircuitBreakerLayer::from))
            .with_optional(layers.rate_limit)
            .with(layers.backoff)
            .with_optional(deferrals)
            .with_optional(layers.shard.as_ref().map(|s| s.layer(self.client.clone())))
            .with_optional(layers.leader.as_ref().map(LeaderHandle::layer));
        #[cfg(feature = "metrics")]
        let reconciler = reconciler.with_optional(layers.metrics.map(|(metrics, name)| {
            let bound = layers.concurrency.get();
            metrics.layer(name).max_concurrent_reconciles(bound)
        }));
        let objects = match &layers.shard {
            Some(shard) => shard.watcher_config(self.watcher),
            None => self.watcher,
        };
        let window = usize::from(layers.concurrency.get());
        let (mut controller, queue) = lean_controller(api, objects, window);
        controller = controller.with_config(
            kube::runtime::controller::Config::default().concurrency(layers.concurrency.get()),
        );
        if let Some(shard) = &layers.shard {
            // The controller's cache holds the member's objects: counted for `owned`.
            let store = controller.store();
            shard.count_with(move || store.len());
        }
        // Stopped, the operator hands its Leases over at once, as controller-runtime's
        // `LeaderElectionReleaseOnCancel` does.
        controller = controller.graceful_shutdown_on(stop);
        let leader = layers.leader.clone();
        let controller = controller
            .run_reconciler(reconciler, ctx)
            .for_each(move |result| {
                finished(&queue, &result);
                std::future::ready(())
            });
        // Never done by itself (not even with no kind to cache): the controller decides.
        let caches = keep_caches(started, report);
        // The shard's tasks stop with its last handle: this one lives as long as the
        // controller, so an operator given the only handle keeps its membership.
        let shard = layers.shard.take();
        async move {
            // The caches live as long as the controller; they never end by themselves.
            futures_util::future::select(std::pin::pin!(controller), std::pin::pin!(caches)).await;
            if let Some(leader) = leader
                && let Err(error) = leader.release().await
            {
                tracing::warn!(%error, "the leader Lease was not released; it expires");
            }
            if let Some(shard) = &shard
                && let Err(error) = shard.release().await
            {
                tracing::warn!(%error, "the shard membership was not released; it expires");
            }
            drop(shard);
        }
    }
}

/// Polls the children's caches, each one from when it is `started`, calling `report` after
/// every change; never done by itself.
async fn keep_caches(
    mut started: Option<tokio::sync::mpsc::UnboundedReceiver<BoxStream<'static, ()>>>,
    report: Option<Box<dyn Fn() + Send>>,
) {
    let mut watches = futures_util::stream::SelectAll::new();
    loop {
        tokio::select! {
            Some(watch) = async {
                match &mut started {
                    Some(started) => started.recv().await,
                    None => None,
                }
            } => watches.push(watch),
            Some(()) = watches.next() => {
                if let Some(report) = &report {
                    report();
                }
            }
            else => std::future::pending::<()>().await,
        }
    }
}

/// A controller over the objects of `api` whose cache leaves out their managed fields (the
/// engine never reads them, and as `serde_json` trees they were half of each object's
/// heap), and whose listed objects go to it `window` at a time ([`ListQueue`]); the queue
/// hears of finished reconciles through [`finished`].
fn lean_controller<K>(
    api: Api<K>,
    config: watcher::Config,
    window: usize,
) -> (Controller<K>, Arc<ListQueue<K>>)
where
    K: Resource + Clone + DeserializeOwned + fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (store, writer) = store();
    let events = reflector(
        writer,
        watcher(api, config).modify(|obj: &mut K| obj.meta_mut().managed_fields = None),
    );
    let (queue, released) = ListQueue::new(store.clone(), window);
    let triggers = queue.triggers(events, released);
    (Controller::for_stream(triggers, store), queue)
}

/// Tells `queue` that the reconcile `result` is about finished.
fn finished<K, E, Q>(
    queue: &ListQueue<K>,
    result: &Result<(ObjectRef<K>, kube::runtime::controller::Action), controller::Error<E, Q>>,
) where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    match result {
        Ok((object, _)) => queue.finished(object.namespace.as_deref(), &object.name),
        Err(controller::Error::ReconcilerFailed(_, object)) => {
            queue.finished(object.namespace.as_deref(), &object.name);
        }
        Err(_) => {}
    }
}

impl<M, K> fmt::Debug for Operator<M, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Operator")
            .field("layers", &self.layers)
            .finish_non_exhaustive()
    }
}
