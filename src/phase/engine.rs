//! The engine: turns a [`PhaseMachine`] into a [`Reconciler`].

use std::{fmt, marker::PhantomData, sync::Arc, time::Duration};

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::{
    Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
    core::Request,
    runtime::{
        controller::Action,
        events::{Event, EventType, Recorder, Reporter},
    },
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value, json};

use super::{
    HasPhaseStatus, Phase, PhaseConfig, PhaseConfigError, PhaseError, PhaseMachine, PhaseStatus,
    Step, Transition,
    plan::{self, At, Standing, Why},
    transition::Kind,
};
use crate::{
    clock::{Clock, Nanos},
    error::{Classify, ErrorClass},
    middleware::backoff::RetrySchedule,
    reconciler::Reconciler,
};

/// Runs a [`PhaseMachine`] as a [`Reconciler`], so the middleware wraps it unchanged.
///
/// See the [module docs](super) for the flow, the guarantees and the caveats.
pub struct PhaseEngine<M, K> {
    inner: Arc<Inner<M>>,
    _resource: PhantomData<fn() -> K>,
}

struct Inner<M> {
    machine: M,
    client: Client,
    config: PhaseConfig,
    schedule: RetrySchedule,
    recorder: Option<Recorder>,
    wall: Wall,
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

/// Wall-clock time that follows the injectable clock (and so `tokio::time::pause()`):
/// the system time at start plus the clock's elapsed time.
struct Wall {
    clock: Clock,
    start: Nanos,
    at: Timestamp,
}

impl Wall {
    fn new(clock: Clock) -> Self {
        Wall {
            start: clock.now(),
            clock,
            at: Timestamp::now(),
        }
    }

    fn now(&self) -> Timestamp {
        let elapsed = self.clock.now().saturating_since(self.start);
        SignedDuration::try_from(elapsed)
            .ok()
            .and_then(|d| self.at.checked_add(d).ok())
            .unwrap_or(Timestamp::MAX)
    }
}

/// `to - from`, or zero when `to` is not later.
fn until(from: Timestamp, to: Timestamp) -> Duration {
    Duration::try_from(to.duration_since(from)).unwrap_or_default()
}

fn later(at: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| at.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// A status write the engine decided on.
struct Write {
    status: PhaseStatus,
    extra: Option<Value>,
    event: Option<(EventType, String, String)>,
}

impl<M, K> PhaseEngine<M, K> {
    /// An engine for `machine` with the default [`PhaseConfig`].
    pub fn new(machine: M, client: Client) -> Self {
        Self::build(machine, client, PhaseConfig::default())
    }

    /// An engine for `machine` with `config`.
    ///
    /// # Errors
    ///
    /// A [`PhaseConfigError`] naming the bad setting.
    pub fn with_config(
        machine: M,
        client: Client,
        config: PhaseConfig,
    ) -> Result<Self, PhaseConfigError> {
        config.check()?;
        Ok(Self::build(machine, client, config))
    }

    fn build(machine: M, client: Client, config: PhaseConfig) -> Self {
        let clock = config.clock.clone().unwrap_or_else(Clock::tokio);
        let schedule = match config.retry.clone().schedule() {
            Ok(schedule) => schedule,
            // Only reachable through `new`, whose default schedule is valid.
            Err(_) => crate::middleware::backoff::BackoffConfig::operator()
                .schedule()
                .expect("the operator preset is a valid schedule"),
        };
        let recorder = config.events.then(|| {
            Recorder::new(
                client.clone(),
                Reporter {
                    controller: config.controller.clone(),
                    instance: None,
                },
            )
        });
        PhaseEngine {
            inner: Arc::new(Inner {
                machine,
                client,
                schedule,
                recorder,
                wall: Wall::new(clock),
                config,
            }),
            _resource: PhantomData,
        }
    }

    /// The machine.
    pub fn machine(&self) -> &M {
        &self.inner.machine
    }

    /// The finalizer this engine puts on objects.
    pub fn finalizer(&self) -> &str {
        &self.inner.config.finalizer
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
        async move { inner.reconcile(obj, &ctx).await }
    }
}

impl<M> Inner<M> {
    fn at(&self) -> At {
        At {
            now: self.wall.now(),
            history: self.config.history.get(),
        }
    }

    fn has_finalizer<K: Resource>(&self, obj: &K) -> bool {
        obj.finalizers().iter().any(|f| *f == self.config.finalizer)
    }

    async fn reconcile<K, Ctx>(
        &self,
        obj: Arc<K>,
        ctx: &Arc<Ctx>,
    ) -> Result<Action, PhaseError<M::Error>>
    where
        M: PhaseMachine<K, Ctx>,
        K: Resource + HasPhaseStatus + Clone + Serialize + DeserializeOwned + fmt::Debug,
        K::DynamicType: Default,
    {
        let api = Target::of(&self.client, &*obj);
        if obj.meta().deletion_timestamp.is_some() {
            return self.finalize(&api, &obj, ctx).await;
        }
        let obj = if self.has_finalizer(&*obj) {
            obj
        } else {
            Arc::new(self.add_finalizer(&api, &*obj).await?)
        };
        let obj: &K = &obj;
        let table = self.machine.transitions();
        let status = obj.phase_status().cloned().unwrap_or_default();
        let generation = obj.meta().generation;
        let at = self.at();
        let now = at.now;

        let phase_name = status.phase.clone();
        let Some(name) = phase_name.as_deref() else {
            let why = Why {
                reason: "Created",
                message: "",
            };
            let to = table.initial();
            let next = plan::enter(table, &status, None, to, &why, Some(generation), at);
            let event = (
                EventType::Normal,
                "Created".to_owned(),
                format!("starting in {}", to.name()),
            );
            return self
                .write_then(
                    &api,
                    obj,
                    next,
                    None,
                    Some(event),
                    Action::requeue(Duration::ZERO),
                )
                .await;
        };
        let Some(phase) = M::Phase::from_name(name) else {
            let message = format!(
                "status.phase was {name:?}, which is not a phase of this machine; starting over from {}",
                table.initial().name()
            );
            let why = Why {
                reason: "UnknownPhase",
                message: &message,
            };
            let next = plan::enter(
                table,
                &status,
                Some(name),
                table.initial(),
                &why,
                Some(generation),
                at,
            );
            let event = (
                EventType::Warning,
                "UnknownPhase".to_owned(),
                message.clone(),
            );
            return self
                .write_then(
                    &api,
                    obj,
                    next,
                    None,
                    Some(event),
                    Action::requeue(Duration::ZERO),
                )
                .await;
        };
        let spec_changed = generation.is_some() && generation > status.observed_generation;

        if phase == table.failed() {
            return self.failed(&api, obj, &status, spec_changed, at).await;
        }
        let mut status = status;
        if phase == table.ready() && spec_changed {
            let message = format!(
                "metadata.generation {} is past the observed {}",
                generation.unwrap_or_default(),
                status
                    .observed_generation
                    .map_or_else(|| "none".to_owned(), |g| g.to_string()),
            );
            let why = Why {
                reason: "SpecChanged",
                message: &message,
            };
            if let Some(updating) = table.updating() {
                let next = plan::enter(
                    table,
                    &status,
                    Some(name),
                    updating,
                    &why,
                    Some(generation),
                    at,
                );
                let event = (
                    EventType::Normal,
                    "SpecChanged".to_owned(),
                    transition_note(name, updating.name(), &message),
                );
                return self
                    .write_then(
                        &api,
                        obj,
                        next,
                        None,
                        Some(event),
                        Action::requeue(Duration::ZERO),
                    )
                    .await;
            }
            // No updating phase: the ready handler sees the new spec.
            status.observed_generation = generation;
        }

        let entered = plan::entered_at(&status);
        let deadline = table
            .deadline(phase)
            .and_then(|limit| entered.map(|at| (limit, later(at, limit))));
        if let Some((limit, due)) = deadline
            && now >= due
        {
            let message = format!("{} took longer than {}", phase.name(), humantime(limit));
            let t = Transition::fail("PhaseTimeout", message);
            return self.apply(&api, obj, &status, phase, t, None, at).await;
        }

        let step = Step {
            ctx,
            client: &self.client,
            phase,
            status: &status,
            entered_at: entered,
            now,
        };
        match self.machine.handle(phase, obj, &step).await {
            Ok(t) => {
                self.apply(
                    &api,
                    obj,
                    &status,
                    phase,
                    t,
                    deadline.map(|(_, due)| due),
                    at,
                )
                .await
            }
            Err(error) if error.class() == ErrorClass::Terminal => {
                let reason = self.machine.error_reason(&error);
                let t = Transition::fail_terminal(reason, chain(&error));
                self.apply(&api, obj, &status, phase, t, None, at).await
            }
            Err(error) => {
                let reason = self.machine.error_reason(&error);
                let message = chain(&error);
                let mut next = status.clone();
                plan::record_error(
                    &mut next,
                    phase.name(),
                    &Why {
                        reason: &reason,
                        message: &message,
                    },
                    now,
                );
                if next != status {
                    // Best effort: the handler's error is what the caller needs to see.
                    if let Err(write) = self
                        .patch_status::<K, M::Error>(&api, obj, &next, None)
                        .await
                    {
                        tracing::debug!(object = %obj.name_any(), error = %write, "recording the last error failed");
                    }
                }
                Err(PhaseError::Handler {
                    phase: phase.name(),
                    source: error,
                })
            }
        }
    }

    /// Applies a handler's decision in `phase`.
    #[expect(clippy::too_many_arguments, reason = "one private step of the engine")]
    async fn apply<K, Ctx>(
        &self,
        api: &Target,
        obj: &K,
        status: &PhaseStatus,
        phase: M::Phase,
        t: Transition<M::Phase>,
        deadline: Option<Timestamp>,
        at: At,
    ) -> Result<Action, PhaseError<M::Error>>
    where
        M: PhaseMachine<K, Ctx>,
        K: Resource + HasPhaseStatus + Clone + Serialize + DeserializeOwned + fmt::Debug,
        K::DynamicType: Default,
    {
        if let Some(problem) = t.status_error {
            return Err(PhaseError::StatusFields(problem));
        }
        let table = self.machine.transitions();
        let from = phase.name();
        let reason = t.reason.as_deref().unwrap_or("");
        let message = t.message.as_deref().unwrap_or("");
        match t.kind {
            Kind::Stay(after) => {
                let mut next = status.clone();
                if t.reason.is_some() {
                    let why = Why { reason, message };
                    plan::set_conditions(&mut next, plan::standing_of(table, phase), &why, at.now);
                }
                let left = deadline.map(|due| until(at.now, due));
                let action = match (after, left) {
                    (Some(a), Some(l)) => Action::requeue(a.min(l)),
                    (Some(d), None) | (None, Some(d)) => Action::requeue(d),
                    (None, None) => Action::await_change(),
                };
                self.write_then(api, obj, next, t.status, None, action)
                    .await
            }
            Kind::Done => {
                self.write_then(
                    api,
                    obj,
                    status.clone(),
                    t.status,
                    None,
                    Action::await_change(),
                )
                .await
            }
            Kind::To(to) if !table.allows(phase, to) => {
                let message = format!(
                    "the {from} handler asked for {}, which the transition table does not declare",
                    to.name()
                );
                let why = Why {
                    reason: "UndeclaredTransition",
                    message: &message,
                };
                let mut next = status.clone();
                plan::set_conditions(&mut next, Standing::Stalled, &why, at.now);
                plan::record_error(&mut next, from, &why, at.now);
                self.write(api, obj, &next, None).await?;
                Err(PhaseError::UndeclaredTransition {
                    from,
                    to: to.name(),
                })
            }
            Kind::To(to) if to == table.failed() => {
                let t = Transition::<M::Phase>::fail(reason.to_owned(), message.to_owned());
                Box::pin(self.apply(api, obj, status, phase, t, None, at)).await
            }
            Kind::To(to) => {
                let reason = if reason.is_empty() { to.name() } else { reason };
                let why = Why { reason, message };
                let next = plan::enter(table, status, Some(from), to, &why, None, at);
                let event = (
                    EventType::Normal,
                    reason.to_owned(),
                    transition_note(from, to.name(), message),
                );
                self.write_then(
                    api,
                    obj,
                    next,
                    t.status,
                    Some(event),
                    Action::requeue(Duration::ZERO),
                )
                .await
            }
            Kind::Fail { retry } => {
                let why = Why {
                    reason: if reason.is_empty() { "Failed" } else { reason },
                    message,
                };
                let attempts = status.retry.as_ref().map_or(0, |r| r.attempts);
                let delay = retry.then(|| self.schedule.delay(attempts));
                let next_attempt = delay.map(|d| later(at.now, d));
                let next = plan::fail(table, status, from, &why, next_attempt, at);
                let note = match next_attempt {
                    Some(when) => format!(
                        "{}; retry {} at {when}",
                        transition_note(from, table.failed().name(), message),
                        attempts + 1
                    ),
                    None => format!(
                        "{}; waiting for a spec change",
                        transition_note(from, table.failed().name(), message)
                    ),
                };
                let event = (EventType::Warning, why.reason.to_owned(), note);
                let action = delay.map_or_else(Action::await_change, Action::requeue);
                self.write_then(api, obj, next, t.status, Some(event), action)
                    .await
            }
        }
    }

    /// The failed phase: wait out the retry, then go to the retry phase.
    async fn failed<K, Ctx>(
        &self,
        api: &Target,
        obj: &K,
        status: &PhaseStatus,
        spec_changed: bool,
        at: At,
    ) -> Result<Action, PhaseError<M::Error>>
    where
        M: PhaseMachine<K, Ctx>,
        K: Resource + HasPhaseStatus + Clone + Serialize + DeserializeOwned + fmt::Debug,
        K::DynamicType: Default,
    {
        let table = self.machine.transitions();
        let failed = table.failed().name();
        let due = status
            .retry
            .as_ref()
            .and_then(|r| r.next_attempt_time.as_ref())
            .map(|t| t.0);
        let (why, mut from) = if spec_changed {
            (
                Why {
                    reason: "SpecChanged",
                    message: "the spec changed; starting again",
                },
                status.clone(),
            )
        } else {
            match due {
                None => return Ok(Action::await_change()),
                Some(due) if at.now < due => return Ok(Action::requeue(until(at.now, due))),
                Some(_) => (
                    Why {
                        reason: "Retrying",
                        message: "",
                    },
                    status.clone(),
                ),
            }
        };
        if spec_changed {
            // A new spec starts afresh.
            from.retry = None;
        }
        let attempt = from.retry.as_ref().map_or(0, |r| r.attempts);
        let message = if spec_changed {
            why.message.to_owned()
        } else {
            format!(
                "retry {attempt} after {}",
                status
                    .last_error
                    .as_ref()
                    .map_or("a failure", |e| e.reason.as_str())
            )
        };
        let why = Why {
            reason: why.reason,
            message: &message,
        };
        let to = table.retry();
        let generation = obj.meta().generation;
        let next = plan::enter(table, &from, Some(failed), to, &why, Some(generation), at);
        let event = (
            EventType::Normal,
            why.reason.to_owned(),
            transition_note(failed, to.name(), &message),
        );
        self.write_then(
            api,
            obj,
            next,
            None,
            Some(event),
            Action::requeue(Duration::ZERO),
        )
        .await
    }

    /// Deletion: run the cleanup while our finalizer is on the object, then remove it.
    async fn finalize<K, Ctx>(
        &self,
        api: &Target,
        obj: &Arc<K>,
        ctx: &Arc<Ctx>,
    ) -> Result<Action, PhaseError<M::Error>>
    where
        M: PhaseMachine<K, Ctx>,
        K: Resource + HasPhaseStatus + Clone + Serialize + DeserializeOwned + fmt::Debug,
        K::DynamicType: Default,
    {
        if !self.has_finalizer(&**obj) {
            return Ok(Action::await_change());
        }
        let status = obj.phase_status().cloned().unwrap_or_default();
        let at = self.at();
        let phase = status.phase.as_deref().and_then(M::Phase::from_name);
        let step = Step {
            ctx,
            client: &self.client,
            phase: phase.unwrap_or_else(|| self.machine.transitions().initial()),
            status: &status,
            entered_at: plan::entered_at(&status),
            now: at.now,
        };
        match self.machine.cleanup(obj, &step).await {
            Ok(()) => {
                self.remove_finalizer(api, &**obj).await?;
                self.publish(
                    &**obj,
                    EventType::Normal,
                    "CleanedUp",
                    "cleanup done; finalizer removed",
                )
                .await;
                Ok(Action::await_change())
            }
            Err(error) => {
                let message = format!(
                    "cleanup failed: {}; the finalizer {} stays until it succeeds",
                    chain(&error),
                    self.config.finalizer
                );
                let why = Why {
                    reason: "CleanupFailed",
                    message: &message,
                };
                let mut next = status.clone();
                plan::set_conditions(&mut next, Standing::Retrying, &why, at.now);
                plan::record_error(&mut next, step.phase.name(), &why, at.now);
                if next != status {
                    match self
                        .patch_status::<K, M::Error>(api, &**obj, &next, None)
                        .await
                    {
                        Ok(_) => {
                            self.publish(&**obj, EventType::Warning, "CleanupFailed", &message)
                                .await
                        }
                        Err(write) => {
                            tracing::debug!(object = %obj.name_any(), error = %write, "recording the cleanup failure failed");
                        }
                    }
                }
                Err(PhaseError::Cleanup { source: error })
            }
        }
    }

    /// Writes `status` (if it changed) and publishes `event`, then answers `action`.
    async fn write_then<K, E>(
        &self,
        api: &Target,
        obj: &K,
        status: PhaseStatus,
        extra: Option<Value>,
        event: Option<(EventType, String, String)>,
        action: Action,
    ) -> Result<Action, PhaseError<E>>
    where
        K: Resource + HasPhaseStatus + Clone + Serialize + DeserializeOwned + fmt::Debug,
        K::DynamicType: Default,
    {
        let write = Write {
            status,
            extra,
            event,
        };
        if self
            .write(api, obj, &write.status, write.extra.as_ref())
            .await?
            && let Some((kind, reason, note)) = write.event
        {
            self.publish(obj, kind, &reason, &note).await;
        }
        Ok(action)
    }

    /// Writes `status` and `extra` fields if they change anything; says whether it wrote.
    async fn write<K, E>(
        &self,
        api: &Target,
        obj: &K,
        status: &PhaseStatus,
        extra: Option<&Value>,
    ) -> Result<bool, PhaseError<E>>
    where
        K: Resource + HasPhaseStatus + Clone + Serialize + DeserializeOwned + fmt::Debug,
        K::DynamicType: Default,
    {
        let current = obj.phase_status().cloned().unwrap_or_default();
        let extra_changes = match extra {
            Some(fields) => {
                let whole = serde_json::to_value(obj)
                    .map_err(|e| PhaseError::StatusFields(e.to_string()))?;
                merge_changes(whole.get("status").unwrap_or(&Value::Null), fields)
            }
            None => false,
        };
        if current == *status && !extra_changes {
            return Ok(false);
        }
        self.patch_status(api, obj, status, extra).await?;
        Ok(true)
    }

    async fn patch_status<K, E>(
        &self,
        api: &Target,
        obj: &K,
        status: &PhaseStatus,
        extra: Option<&Value>,
    ) -> Result<K, PhaseError<E>>
    where
        K: Resource + Clone + DeserializeOwned + fmt::Debug,
    {
        let name = obj
            .meta()
            .name
            .as_deref()
            .ok_or(PhaseError::MissingField("metadata.name"))?;
        let rv = obj
            .meta()
            .resource_version
            .as_deref()
            .ok_or(PhaseError::MissingField("metadata.resourceVersion"))?;
        let mut fields = match extra {
            Some(Value::Object(extra)) => extra.clone(),
            _ => Map::new(),
        };
        for (key, value) in status_fields(status) {
            fields.insert(key, value);
        }
        let body = json!({ "metadata": { "resourceVersion": rv }, "status": fields });
        api.send(
            Request::new(&api.url).patch_subresource(
                "status",
                name,
                &PatchParams::default(),
                &Patch::Merge(&body),
            ),
            "writing status",
        )
        .await
    }

    async fn add_finalizer<K, E>(&self, api: &Target, obj: &K) -> Result<K, PhaseError<E>>
    where
        K: Resource + Clone + DeserializeOwned + fmt::Debug,
    {
        let mut finalizers = obj.finalizers().to_vec();
        finalizers.push(self.config.finalizer.clone());
        self.patch_finalizers(api, obj, &finalizers, "adding the finalizer")
            .await
    }

    async fn remove_finalizer<K, E>(&self, api: &Target, obj: &K) -> Result<K, PhaseError<E>>
    where
        K: Resource + Clone + DeserializeOwned + fmt::Debug,
    {
        let finalizers: Vec<String> = obj
            .finalizers()
            .iter()
            .filter(|f| **f != self.config.finalizer)
            .cloned()
            .collect();
        self.patch_finalizers(api, obj, &finalizers, "removing the finalizer")
            .await
    }

    /// Replaces the finalizer list, failing with a conflict if the object moved on.
    async fn patch_finalizers<K, E>(
        &self,
        api: &Target,
        obj: &K,
        finalizers: &[String],
        action: &'static str,
    ) -> Result<K, PhaseError<E>>
    where
        K: Resource + Clone + DeserializeOwned + fmt::Debug,
    {
        let name = obj
            .meta()
            .name
            .as_deref()
            .ok_or(PhaseError::MissingField("metadata.name"))?;
        let rv = obj
            .meta()
            .resource_version
            .as_deref()
            .ok_or(PhaseError::MissingField("metadata.resourceVersion"))?;
        let body = json!({ "metadata": { "resourceVersion": rv, "finalizers": finalizers } });
        api.send(
            Request::new(&api.url).patch(name, &PatchParams::default(), &Patch::Merge(&body)),
            action,
        )
        .await
    }

    /// Publishes an event about `obj`; a failure to publish is logged, never fatal.
    async fn publish<K>(&self, obj: &K, kind: EventType, reason: &str, note: &str)
    where
        K: Resource,
        K::DynamicType: Default,
    {
        let Some(recorder) = &self.recorder else {
            return;
        };
        let event = Event {
            type_: kind,
            reason: truncate(reason, 128).to_owned(),
            note: Some(truncate(note, 1024).to_owned()),
            action: "Transition".to_owned(),
            secondary: None,
        };
        let reference = obj.object_ref(&K::DynamicType::default());
        if let Err(error) = recorder.publish(&event, &reference).await {
            tracing::warn!(object = %obj.name_any(), %error, "publishing an event failed");
        }
    }
}

/// Where an object lives: its collection's URL, for any scope.
struct Target {
    client: Client,
    url: String,
}

impl Target {
    fn of<K>(client: &Client, obj: &K) -> Self
    where
        K: Resource,
        K::DynamicType: Default,
    {
        let url = K::url_path(&K::DynamicType::default(), obj.meta().namespace.as_deref());
        Target {
            client: client.clone(),
            url,
        }
    }

    async fn send<K: DeserializeOwned, E>(
        &self,
        request: Result<http::Request<Vec<u8>>, kube::core::request::Error>,
        action: &'static str,
    ) -> Result<K, PhaseError<E>> {
        let request = request.map_err(|e| PhaseError::Kube {
            action,
            source: kube::Error::BuildRequest(e),
        })?;
        self.client
            .request::<K>(request)
            .await
            .map_err(|source| PhaseError::Kube { action, source })
    }
}

/// The engine's fields of `.status`, with `null` for the absent ones so a merge patch
/// removes them.
fn status_fields(status: &PhaseStatus) -> Map<String, Value> {
    let mut fields = match serde_json::to_value(status) {
        Ok(Value::Object(fields)) => fields,
        _ => Map::new(),
    };
    for key in [
        "phase",
        "observedGeneration",
        "conditions",
        "phaseHistory",
        "retry",
        "lastError",
    ] {
        fields.entry(key).or_insert(Value::Null);
    }
    fields
}

/// Whether merge-patching `patch` onto `current` would change it.
fn merge_changes(current: &Value, patch: &Value) -> bool {
    match (current, patch) {
        (Value::Object(current), Value::Object(patch)) => {
            patch
                .iter()
                .any(|(key, value)| match (current.get(key), value) {
                    (None | Some(Value::Null), Value::Null) => false,
                    (None, _) => true,
                    (Some(now), Value::Object(_)) if now.is_object() => merge_changes(now, value),
                    (Some(now), value) => !same_json(now, value),
                })
        }
        (_, Value::Object(patch)) => !patch.is_empty() || !current.is_object(),
        (current, patch) => !same_json(current, patch),
    }
}

/// JSON equality where numbers compare by value (`1` and `1.0` are the same).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

fn transition_note(from: &str, to: &str, message: &str) -> String {
    if message.is_empty() {
        format!("{from} -> {to}")
    } else {
        format!("{from} -> {to}: {message}")
    }
}

/// An error and its sources, joined by `": "`.
fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A duration for messages: `90s`, `10m`, `1h30m`.
fn humantime(d: Duration) -> String {
    let secs = d.as_secs();
    match (secs / 3600, secs % 3600 / 60, secs % 60) {
        (0, 0, s) if d.subsec_millis() > 0 => {
            format!("{}ms", d.as_millis().max(u128::from(s) * 1000))
        }
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_changes_sees_only_real_differences() {
        let current = json!({ "endpoint": "db:5432", "size": 1, "nested": { "a": 1 } });
        assert!(!merge_changes(&current, &json!({ "endpoint": "db:5432" })));
        assert!(!merge_changes(&current, &json!({ "size": 1.0 })));
        assert!(!merge_changes(&current, &json!({ "gone": null })));
        assert!(!merge_changes(&current, &json!({ "nested": { "a": 1 } })));
        assert!(merge_changes(&current, &json!({ "nested": { "b": 2 } })));
        assert!(merge_changes(&current, &json!({ "endpoint": null })));
        assert!(merge_changes(&Value::Null, &json!({ "endpoint": "x" })));
    }

    #[test]
    fn durations_read_well_in_messages() {
        assert_eq!(humantime(Duration::from_secs(90)), "1m30s");
        assert_eq!(humantime(Duration::from_secs(600)), "10m");
        assert_eq!(humantime(Duration::from_secs(5400)), "1h30m");
        assert_eq!(humantime(Duration::from_millis(250)), "250ms");
        assert_eq!(humantime(Duration::from_secs(7)), "7s");
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 5), "abc");
    }
}
