//! The engine: turns a [`PhaseMachine`] into a [`Reconciler`].

use std::{fmt, marker::PhantomData, sync::Arc, time::Duration};

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::{Client, Resource, runtime::controller::Action};
use serde::{Serialize, de::DeserializeOwned};
use tracing::Instrument as _;

use super::{HasPhaseStatus, PhaseConfig, PhaseError, PhaseMachine};
use crate::{
    error::Classify as _, middleware::backoff::RetrySchedule, reconciler::Reconciler,
    wall_clock::WallClock,
};

/// Runs a [`PhaseMachine`] as a [`Reconciler`], so the middleware wraps it unchanged.
///
/// See the [module docs](super) for the flow, the guarantees and the caveats.
pub struct PhaseEngine<M, K> {
    inner: Arc<Inner<M>>,
    _resource: PhantomData<fn() -> K>,
}

/// What every clone of an engine shares.
pub(super) struct Inner<M> {
    pub(super) machine: M,
    pub(super) client: Client,
    pub(super) config: PhaseConfig,
    pub(super) schedule: RetrySchedule,
    pub(super) recorder: Option<super::recorder::Recorder>,
    pub(super) wall: WallClock,
    /// Objects held back by the operator's own pacing, and since when.
    pub(super) pacing: super::pacing::Pacing,
    /// Watch caches of child kinds, read before the server.
    pub(super) cache: crate::ensure::ChildCache,
    /// The version of each object the engine last wrote, until its cache shows it.
    pub(super) own_writes: super::own_writes::OwnWrites,
}

impl<M, K> Clone for PhaseEngine<M, K> {
    fn clone(&self) -> Self {
        PhaseEngine {
            inner: Arc::clone(&self.inner),
            _resource: PhantomData,
        }
    }
}

impl<M: fmt::Debug, K> fmt::Debug for PhaseEngine<M, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PhaseEngine")
            .field("machine", &self.inner.machine)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// `to - from`, or zero when `to` is not later.
pub(super) fn until(from: Timestamp, to: Timestamp) -> Duration {
    Duration::try_from(to.duration_since(from)).unwrap_or_default()
}

pub(super) fn later(at: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| at.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

impl<M, K> PhaseEngine<M, K> {
    /// An engine for `machine` with `config`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`](crate::ConfigError) naming the bad setting.
    pub fn with_config(
        machine: M,
        client: Client,
        mut config: PhaseConfig,
    ) -> Result<Self, crate::ConfigError> {
        // One name: the controller's children are written under its name unless their
        // configuration names another field manager.
        if config.children.get_field_manager() == crate::ensure::DEFAULT_FIELD_MANAGER {
            config.children = config.children.field_manager(config.controller.clone());
        }
        config.check()?;
        Ok(Self::build(machine, client, config))
    }

    fn build(machine: M, client: Client, config: PhaseConfig) -> Self {
        let clock = crate::clock::Clock::default();
        let schedule = match config.retry.clone().schedule() {
            Ok(schedule) => schedule,
            // Unreachable: `with_config` checked the schedule before calling this.
            Err(_) => crate::middleware::backoff::BackoffConfig::operator()
                .schedule()
                .expect("the operator preset is a valid schedule"),
        };
        let recorder = config
            .events
            .then(|| super::recorder::Recorder::new(client.clone(), config.controller.clone()));
        PhaseEngine {
            inner: Arc::new(Inner {
                machine,
                client,
                schedule,
                recorder,
                wall: WallClock::new(clock, Timestamp::now()),
                pacing: super::pacing::Pacing::default(),
                cache: crate::ensure::ChildCache::default(),
                own_writes: super::own_writes::OwnWrites::default(),
                config,
            }),
            _resource: PhantomData,
        }
    }

    /// The engine's watch caches of child kinds.
    pub(super) fn cache(&self) -> &crate::ensure::ChildCache {
        &self.inner.cache
    }

    /// The label selector of every child this engine writes, and its field manager
    /// (`None` with labels off).
    pub(super) fn children_selector(&self) -> Option<(String, String)> {
        let children = &self.inner.config.children;
        let manager = children.get_field_manager();
        children.labels_on().then(|| {
            (
                format!("{}={manager}", crate::ensure::MANAGED_BY),
                manager.to_owned(),
            )
        })
    }

    /// How many objects the engine holds paced time for in memory
    /// ([`Transition::paced`](super::Transition::paced)): those paced in the phase they
    /// are in. Zero once every object has left such a phase or was deleted through the
    /// engine's finalizer (an object whose finalizer was removed by hand keeps its few
    /// bytes until the process ends). An operator's count is
    /// [`Running::tracked`](super::Running::tracked).
    #[doc(hidden)]
    pub fn paced_objects(&self) -> usize {
        self.inner.pacing.len()
    }
}

impl<M, K, Ctx> Reconciler<K, Ctx> for PhaseEngine<M, K>
where
    M: PhaseMachine<K, Ctx>,
    K: Resource + HasPhaseStatus + Clone + Serialize + DeserializeOwned + fmt::Debug,
    K: Send + Sync + 'static,
    K::DynamicType: Default,
    Ctx: Send + Sync + 'static,
{
    type Error = PhaseError<M::Error>;

    fn reconcile(
        &self,
        obj: Arc<K>,
        ctx: Arc<Ctx>,
    ) -> impl Future<Output = Result<Action, Self::Error>> + Send {
        let inner = Arc::clone(&self.inner);
        let span = tracing::info_span!(
            "phase_reconcile",
            object = %format_args!("{}/{}", obj.meta().namespace.as_deref().unwrap_or(""), obj.meta().name.as_deref().unwrap_or("")),
            phase = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        let record = span.clone();
        async move {
            let result = inner.reconcile(obj, &ctx).await;
            let outcome = match &result {
                Ok(action) if *action == Action::await_change() => "done",
                Ok(_) => "requeue",
                Err(e) => match e.class() {
                    crate::error::ErrorClass::Terminal => "terminal_error",
                    crate::error::ErrorClass::Conflict => "conflict",
                    _ => "error",
                },
            };
            record.record("outcome", outcome);
            result
        }
        .instrument(span)
    }
}

/// What the engine needs of a resource, in one name.
pub(super) trait Object:
    Resource<DynamicType: Default> + HasPhaseStatus + Clone + Serialize + DeserializeOwned + fmt::Debug
{
}

impl<K> Object for K where
    K: Resource<DynamicType: Default>
        + HasPhaseStatus
        + Clone
        + Serialize
        + DeserializeOwned
        + fmt::Debug
{
}
