//! [`OperatorBuilder`]: the settings of an [`Operator`] and the layers they make.

#[cfg(feature = "metrics")]
use std::sync::Arc;
use std::{fmt, time::Duration};

use kube::{Client, runtime::watcher};

use super::Operator;
use crate::{
    leader::LeaderHandle,
    middleware::{
        backoff::{BackoffConfig, BackoffLayer},
        circuit_breaker::Breaker,
        rate_limit::RateLimitLayer,
    },
    phase::{PhaseConfig, PhaseEngine},
    shard::ShardHandle,
};

/// Reconciles at once unless [`OperatorBuilder::concurrency`] says otherwise.
const DEFAULT_CONCURRENCY: std::num::NonZeroU16 = std::num::NonZeroU16::new(64).unwrap();

/// The layers around the engine, as the builder sets them.
pub(super) struct Layers {
    pub(super) timeout: Duration,
    pub(super) backoff: BackoffLayer,
    pub(super) rate_limit: Option<RateLimitLayer>,
    pub(super) breaker: Option<Breaker>,
    pub(super) deferral_status: bool,
    pub(super) leader: Option<LeaderHandle>,
    pub(super) shard: Option<ShardHandle>,
    #[cfg(feature = "metrics")]
    pub(super) metrics: Option<(crate::metrics::Metrics, Arc<str>)>,
    /// Reconciles at once.
    pub(super) concurrency: std::num::NonZeroU16,
}

/// Builds an [`Operator`]; see its defaults.
#[must_use = "call build() to get the operator"]
pub struct OperatorBuilder<M, K> {
    machine: M,
    _resource: std::marker::PhantomData<fn() -> K>,
    client: Client,
    config: PhaseConfig,
    /// The backoff's schedule, when not the default; checked at `build`.
    backoff: Option<BackoffConfig>,
    layers: Layers,
}

impl<M, K> Operator<M, K> {
    /// A builder for the operator of `machine`, writing with `client`.
    pub fn builder(machine: M, client: Client) -> OperatorBuilder<M, K> {
        OperatorBuilder {
            machine,
            _resource: std::marker::PhantomData,
            client,
            config: PhaseConfig::default(),
            backoff: None,
            layers: Layers {
                timeout: Duration::from_secs(30),
                backoff: BackoffLayer::operator(),
                rate_limit: None,
                breaker: None,
                deferral_status: true,
                leader: None,
                shard: None,
                #[cfg(feature = "metrics")]
                metrics: None,
                concurrency: DEFAULT_CONCURRENCY,
            },
        }
    }
}

impl<M, K> OperatorBuilder<M, K> {
    /// The engine's settings (finalizer, controller name, children, retries...).
    pub fn config(mut self, config: PhaseConfig) -> Self {
        self.config = config;
        self
    }

    /// How long one reconcile may take before it fails as timed out.
    pub const fn timeout(mut self, after: Duration) -> Self {
        self.layers.timeout = after;
        self
    }

    /// The schedule of the per-object backoff after a failed reconcile, checked at
    /// [`build`](Self::build) ([`Running::tracked`](crate::phase::Running::tracked) counts
    /// the objects it holds). The same type as the engine's
    /// [`retry`](PhaseConfig::retry) out of the failed phase.
    pub fn backoff(mut self, backoff: BackoffConfig) -> Self {
        self.backoff = Some(backoff);
        self
    }

    /// A rate limit around every reconcile (per object, global or per budget).
    pub fn rate_limit(mut self, rate_limit: RateLimitLayer) -> Self {
        self.layers.rate_limit = Some(rate_limit);
        self
    }

    /// A circuit breaker around every reconcile, usually a dependency's
    /// ([`Dependency::breaker`](crate::external::Dependency::breaker)): while it is open,
    /// objects wait without running their handler.
    pub fn breaker(mut self, breaker: Breaker) -> Self {
        self.layers.breaker = Some(breaker);
        self
    }

    /// At most `n` reconciles at once (`None`: the default, 64; kube-runtime's
    /// `controller::Config::concurrency`, which alone has no bound). Objects held back by
    /// the middleware return at once and hold no slot, so the bound limits real work: how
    /// hard this replica presses the API server and its dependencies when many objects
    /// need work at once (a start, a hand-over), and how much memory the reconciles in
    /// flight take then (about 11 KiB each for the example's).
    ///
    /// It is also how many objects of a list (the first one, or a relist) are out with the
    /// controller at once: the others wait their turn behind every later event, so objects
    /// already under way finish first.
    pub const fn concurrency(mut self, n: Option<std::num::NonZeroU16>) -> Self {
        if let Some(n) = n {
            self.layers.concurrency = n;
        }
        self
    }

    /// Reconcile only while `leader` holds its Lease (`None`: always).
    pub fn leader(mut self, leader: Option<LeaderHandle>) -> Self {
        self.layers.leader = leader;
        self
    }

    /// Reconcile only the objects `shard` owns (`None`: all of them): the controller
    /// watches only the objects labelled for this member, and reconciles them only while
    /// it holds its membership Lease, handing them over when the ring's assigner asks.
    /// Join the ring with [`ShardHandle::join`] for the operator's kind. The running
    /// operator keeps the handle alive; keep a clone to [release](ShardHandle::release)
    /// the membership on shutdown.
    pub fn shard(mut self, shard: Option<ShardHandle>) -> Self {
        self.layers.shard = shard;
        self
    }

    /// Record metrics under `controller` (`None`: no metrics): reconciles around the
    /// whole stack, every phase change, the watch caches' sizes, with a
    /// [`shard`](Self::shard) the member's counts (`kube_reconcile_shard_*`), and the
    /// breaker and budget of every dependency the handlers and cleanup call, from its
    /// first call ([`Metrics::observe_dependency`](crate::metrics::Metrics::observe_dependency)
    /// without naming it; calls from a task a handler spawns are not seen).
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn metrics(
        mut self,
        metrics: Option<crate::metrics::Metrics>,
        controller: impl Into<Arc<str>>,
    ) -> Self {
        self.layers.metrics = metrics.map(|m| (m, controller.into()));
        self
    }

    /// The operator.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`](crate::ConfigError) naming the bad setting of the
    /// [`config`](Self::config) or the [`backoff`](Self::backoff).
    pub fn build(mut self) -> Result<Operator<M, K>, crate::ConfigError> {
        if let Some(backoff) = self.backoff {
            self.layers.backoff = backoff.build()?;
        }
        let mut config = self.config;
        if let Some(shard) = &self.layers.shard {
            // Children carry their owner's shard label: each member caches its own.
            config.children = config.children.owner_label(shard.label_key());
        }
        #[cfg(feature = "metrics")]
        if let Some((metrics, name)) = &self.layers.metrics {
            config = config.on_transition(metrics.phase_observer(Arc::clone(name)));
            config.dependencies_observer.metrics = Some(metrics.clone());
            if let Some(breaker) = &self.layers.breaker {
                metrics.observe_breaker(breaker);
            }
            if let Some(shard) = &self.layers.shard {
                metrics.observe_shard(shard);
            }
        }
        let engine = PhaseEngine::with_config(self.machine, self.client.clone(), config)?;
        Ok(Operator {
            engine,
            client: self.client,
            layers: self.layers,
            watcher: watcher::Config::default(),
        })
    }
}

impl<M, K> fmt::Debug for OperatorBuilder<M, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OperatorBuilder")
            .field("config", &self.config)
            .field("layers", &self.layers)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Layers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Layers")
            .field("timeout", &self.timeout)
            .field("rate_limit", &self.rate_limit.is_some())
            .field("breaker", &self.breaker)
            .field("deferral_status", &self.deferral_status)
            .field("leader", &self.leader.is_some())
            .field("shard", &self.shard)
            .finish_non_exhaustive()
    }
}
