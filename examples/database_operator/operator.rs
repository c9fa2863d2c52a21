//! The operator: the phases of a `Database`, one handler each, and the cleanup.

use std::{sync::Arc, time::Duration};

use kube::{Api, Client, ResourceExt};
use kube_reconcile::{
    Classify, ErrorClass,
    ensure::{Ensure, EnsureConfig, EnsureError},
    external::{
        Deletion, ExternalDependency, ExternalError, ExternalResource, GateError, NoJournal,
    },
    phase::{Cleanup, PhaseMachine, Step, TableError, Transition, Transitions},
};
use serde_json::json;

use super::{
    children,
    crd::{Database, storage_gi},
    dbaas::{DbaasClient, DbaasError, Instance, InstanceSpec, InstanceState},
};

kube_reconcile::phases! {
    /// Where a `Database` is in its life.
    pub(crate) enum DbPhase {
        /// Accepted; the spec is checked.
        Pending,
        /// Credentials and the external instance are being created.
        Provisioning,
        /// `ConfigMap` and `Service`.
        Configuring,
        /// The `StatefulSet`.
        Deploying,
        /// Waiting for replicas and the instance's health check.
        Verifying,
        /// Serving.
        Ready,
        /// A spec change is being applied.
        Updating,
        /// Something went wrong; retried with backoff.
        Failed,
    }
}

/// The lesson's state diagram; each deadline is at least `min_deadline`.
pub(crate) fn transitions(min_deadline: Duration) -> Result<Transitions<DbPhase>, TableError> {
    use DbPhase::{
        Configuring, Deploying, Failed, Pending, Provisioning, Ready, Updating, Verifying,
    };
    Transitions::builder(Pending)
        .path([
            Pending,
            Provisioning,
            Configuring,
            Deploying,
            Verifying,
            Ready,
        ])
        .edge(Verifying, Failed)
        .edge(Failed, Provisioning)
        .path([Ready, Updating, Verifying])
        .ready(Ready)
        .updating(Updating)
        .failed(Failed)
        .deadline(Provisioning, Duration::from_secs(120).max(min_deadline))
        .deadline(Verifying, Duration::from_secs(300).max(min_deadline))
        .build()
}

/// What the handlers share.
pub(crate) struct Ctx {
    /// The Kubernetes client.
    pub(crate) client: Client,
    /// The DBaaS API.
    pub(crate) dbaas: DbaasClient,
    /// The DBaaS as a dependency: breaker, rate budget, health.
    pub(crate) gate: ExternalDependency,
    /// Exactly-once creation of DBaaS instances, each call through `gate`.
    pub(crate) instances: ExternalResource<Instances, NoJournal>,
    /// How children are written.
    pub(crate) ensure: EnsureConfig,
}

/// Why a handler failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// A child object could not be written.
    #[error("writing a child object failed")]
    Ensure(#[from] EnsureError),
    /// The Kubernetes API failed.
    #[error("the Kubernetes API failed")]
    Kube(#[from] kube::Error),
    /// A DBaaS call failed, or the DBaaS cannot be called now.
    #[error(transparent)]
    Dbaas(#[from] GateError<DbaasError>),
    /// Creating or deleting the DBaaS instance failed.
    #[error(transparent)]
    Instance(#[from] ExternalError<DbaasError, std::convert::Infallible>),
    /// The system's random source failed.
    #[error("no randomness for a password")]
    Random(#[source] getrandom::Error),
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Error::Ensure(e) => e.class(),
            Error::Kube(e) => e.class(),
            Error::Dbaas(e) => e.class(),
            Error::Instance(e) => e.class(),
            Error::Random(_) => ErrorClass::Transient,
        }
    }
}

/// The DBaaS instances, for [`ExternalResource`]: found by the idempotency key.
pub(crate) struct Instances(pub DbaasClient);

impl kube_reconcile::external::ExternalClient for Instances {
    type Spec = InstanceSpec;
    type Resource = Instance;
    type Error = DbaasError;

    async fn observe(
        &self,
        key: &kube_reconcile::external::IdempotencyKey,
    ) -> Result<Option<Instance>, DbaasError> {
        Ok(self
            .0
            .find_by_key(key.as_str())
            .await?
            .filter(|i| i.state != InstanceState::Deleting))
    }

    async fn create(
        &self,
        key: &kube_reconcile::external::IdempotencyKey,
        spec: &InstanceSpec,
    ) -> Result<Instance, DbaasError> {
        self.0.create(key.as_str(), spec).await
    }

    async fn delete(
        &self,
        _: &kube_reconcile::external::IdempotencyKey,
        instance: &Instance,
    ) -> Result<(), DbaasError> {
        self.0.delete(&instance.id).await.map(|_| ())
    }

    fn id(&self, instance: &Instance) -> String {
        instance.id.clone()
    }
}

/// The `Database` operator.
pub(crate) struct DatabaseMachine {
    table: Transitions<DbPhase>,
    /// How long a Ready Database rests before its children are checked for drift.
    resync: Duration,
}

impl DatabaseMachine {
    /// The machine with the lesson's table, each deadline at least `min_deadline`.
    pub(crate) fn new(min_deadline: Duration) -> Result<Self, TableError> {
        Ok(DatabaseMachine {
            table: transitions(min_deadline)?,
            resync: Duration::from_secs(300),
        })
    }

    /// Checks Ready Databases for drift every `resync` (`None`: every 5 minutes).
    pub(crate) fn resync(mut self, resync: Option<Duration>) -> Self {
        if let Some(resync) = resync {
            self.resync = resync;
        }
        self
    }
}

type Handled = Result<Transition<DbPhase>, Error>;

impl PhaseMachine<Database, Ctx> for DatabaseMachine {
    type Phase = DbPhase;
    type Error = Error;

    fn transitions(&self) -> &Transitions<DbPhase> {
        &self.table
    }

    async fn handle(
        &self,
        phase: DbPhase,
        db: &Database,
        step: &Step<'_, DbPhase, Ctx>,
    ) -> Handled {
        let ctx = step.ctx();
        // What the schema cannot say: checked before any side effect, in every phase
        // that starts work, so a fixed spec moves on.
        if matches!(
            phase,
            DbPhase::Pending | DbPhase::Provisioning | DbPhase::Updating
        ) && let Some(problem) = db.spec_problem()
        {
            return Ok(Transition::fail_terminal("InvalidSpec", problem));
        }
        match phase {
            DbPhase::Pending => {
                Ok(Transition::to(DbPhase::Provisioning).because("Accepted", "spec is valid"))
            }
            // Boxed: creating the instance through the dependency is a large future.
            DbPhase::Provisioning => Box::pin(provision(db, ctx)).await,
            DbPhase::Configuring => {
                let ensure = Ensure::with_config(ctx.client.clone(), db, ctx.ensure.clone())?;
                ensure.apply(&children::config_map(db)).await?;
                ensure.apply(&children::service(db)).await?;
                Ok(Transition::to(DbPhase::Deploying)
                    .because("Configured", "ConfigMap and Service in place"))
            }
            DbPhase::Deploying => {
                let ensure = Ensure::with_config(ctx.client.clone(), db, ctx.ensure.clone())?;
                ensure.apply(&children::stateful_set(db)).await?;
                Ok(Transition::to(DbPhase::Verifying).because("Deployed", "StatefulSet applied"))
            }
            DbPhase::Verifying => verify(db, ctx).await,
            DbPhase::Updating => update(db, ctx).await,
            DbPhase::Ready => {
                // Repair drift of the children; costs reads only when nothing drifted.
                let ensure = Ensure::with_config(ctx.client.clone(), db, ctx.ensure.clone())?;
                ensure.apply(&children::config_map(db)).await?;
                ensure.apply(&children::service(db)).await?;
                ensure.apply(&children::stateful_set(db)).await?;
                Ok(Transition::stay(self.resync))
            }
            DbPhase::Failed => Ok(Transition::done()),
        }
    }

    async fn cleanup(
        &self,
        db: &Database,
        step: &Step<'_, DbPhase, Ctx>,
    ) -> Result<Cleanup, Error> {
        let ctx = step.ctx();
        if db.spec.retain_on_delete {
            return Ok(Cleanup::done());
        }
        match ctx.instances.delete(db).await? {
            Deletion::Gone => tracing::info!(database = %db.name_any(), "no DBaaS instance left"),
            Deletion::Requested(instance) => {
                tracing::info!(database = %db.name_any(), instance = %instance.id, "DBaaS instance deleted");
            }
        }
        Ok(Cleanup::done())
    }

    fn error_reason(&self, error: &Error) -> std::borrow::Cow<'static, str> {
        match error {
            Error::Ensure(EnsureError::NotOwned { .. }) => "ChildNotOwned".into(),
            Error::Ensure(_) | Error::Kube(_) => "KubernetesError".into(),
            Error::Dbaas(_) | Error::Instance(_) => "DbaasError".into(),
            Error::Random(_) => "NoRandomness".into(),
        }
    }
}

fn spec_of(db: &Database) -> InstanceSpec {
    InstanceSpec {
        name: db.name_any(),
        engine: db.spec.engine.as_str().to_owned(),
        version: db.spec.version.clone(),
        storage_gi: storage_gi(&db.spec.storage).unwrap_or(1),
        replicas: u32::try_from(db.spec.replicas).unwrap_or(1),
    }
}

async fn provision(db: &Database, ctx: &Ctx) -> Handled {
    let ensure = Ensure::with_config(ctx.client.clone(), db, ctx.ensure.clone())?;
    let secret = children::credentials(db, &children::password().map_err(Error::Random)?);
    ensure.create_only(&secret).await?;
    let instance = ctx
        .instances
        .ensure(db, &spec_of(db))
        .await?
        .into_resource();
    let status =
        json!({ "instanceId": instance.id, "credentialsSecret": children::credentials_name(db) });
    Ok(match instance.state {
        InstanceState::Ready => Transition::to(DbPhase::Configuring).because(
            "Provisioned",
            format!("DBaaS instance {} is ready", instance.id),
        ),
        _ => Transition::stay(Duration::from_millis(250)).because(
            "InstanceCreating",
            format!("DBaaS instance {} is {}", instance.id, instance.state),
        ),
    }
    .with_status(status))
}

async fn verify(db: &Database, ctx: &Ctx) -> Handled {
    let sts = Api::<k8s_openapi::api::apps::v1::StatefulSet>::namespaced(
        ctx.client.clone(),
        &db.namespace().unwrap_or_default(),
    )
    .get_opt(&db.name_any())
    .await?;
    let ready = sts.as_ref().map_or(0, children::ready_replicas);
    // What Deploying applied: a spec changed since then reaches the StatefulSet through
    // Updating once this pass is Ready, so waiting for the new count here would wait forever.
    let wanted = sts
        .as_ref()
        .and_then(|s| s.spec.replicas)
        .unwrap_or(db.spec.replicas);
    if ready < wanted || !sts.as_ref().is_some_and(children::rolled_out) {
        return Ok(Transition::stay(Duration::from_millis(250)).because(
            "WaitingForReplicas",
            format!("{ready}/{wanted} replicas ready"),
        ));
    }
    let Some(id) = db.status.as_ref().and_then(|s| s.instance_id.clone()) else {
        return Ok(Transition::fail(
            "InstanceMissing",
            "no DBaaS instance is recorded; provisioning again",
        ));
    };
    // One turn at the budget for both calls: taken one by one, the second would queue
    // again behind every other Database after the first got its turn, and the first
    // would be repeated at each turn.
    let (instance, health) = ctx
        .gate
        .call(async {
            let instance = ctx.dbaas.get(&id).await?;
            Ok::<_, DbaasError>((instance, ctx.dbaas.health(&id).await?))
        })
        .await?;
    if !health.healthy {
        let why = health
            .reason
            .unwrap_or_else(|| "no reason given".to_owned());
        return Ok(Transition::fail(
            "HealthCheckFailed",
            format!("DBaaS instance {id} failed its health check: {why}"),
        ));
    }
    Ok(Transition::to(DbPhase::Ready)
        .because(
            "Verified",
            format!("{ready} replicas ready; instance {id} healthy"),
        )
        .with_status(json!({ "endpoint": instance.endpoint })))
}

async fn update(db: &Database, ctx: &Ctx) -> Handled {
    let Some(id) = db.status.as_ref().and_then(|s| s.instance_id.clone()) else {
        return Ok(Transition::fail(
            "InstanceMissing",
            "no DBaaS instance is recorded; provisioning again",
        ));
    };
    ctx.gate.call(ctx.dbaas.update(&id, &spec_of(db))).await?;
    let ensure = Ensure::with_config(ctx.client.clone(), db, ctx.ensure.clone())?;
    let mut changed = Vec::new();
    for outcome in [
        ensure.apply(&children::config_map(db)).await?,
        ensure.apply(&children::service(db)).await?,
        ensure.apply(&children::stateful_set(db)).await?,
    ] {
        changed.extend(outcome.fields().iter().cloned());
    }
    let message = if changed.is_empty() {
        "nothing to change in the children".to_owned()
    } else {
        format!("changed {}", changed.join(", "))
    };
    Ok(Transition::to(DbPhase::Verifying).because("Updated", message))
}

/// The shared context, ready to run.
pub(crate) fn context(
    client: Client,
    dbaas: DbaasClient,
    gate: ExternalDependency,
) -> Result<Arc<Ctx>, Box<dyn std::error::Error>> {
    let instances =
        ExternalResource::new("db", Instances(dbaas.clone()), NoJournal)?.through(gate.clone());
    let ensure = EnsureConfig::default()
        .field_manager("database-operator")
        .part_of("database-operator");
    Ok(Arc::new(Ctx {
        client,
        dbaas,
        gate,
        instances,
        ensure,
    }))
}
