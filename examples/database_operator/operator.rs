//! The operator: the phases of a `Database`, one handler each, and the cleanup.

use std::time::Duration;

use kube::ResourceExt;
use kube_reconcile::{
    ConfigError, ErrorClass, HandlerError,
    ensure::Readiness,
    external::{Deletion, Dependency, ExactlyOnce, ExternalDependency, Health, IdempotencyKey},
    phase::{Cleanup, PhaseMachine, Step, Transition, Transitions},
};
use serde_json::json;

use super::{
    children::{self, Credentials, Endpoint, Pods, Settings},
    crd::{Database, storage_gi},
    dbaas::{DbaasClient, DbaasError, Instance, InstanceSpec, InstanceState},
};

kube_reconcile::phases! {
    /// Where a `Database` is in its life.
    pub enum DbPhase {
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
pub fn transitions(min_deadline: Duration) -> Result<Transitions<DbPhase>, ConfigError> {
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

/// What the handlers share: the DBaaS, behind its breaker, budget and health check.
#[derive(Debug)]
pub struct Ctx {
    /// The DBaaS behind its breaker, budget and health checks.
    pub dbaas: Dependency<DbaasClient>,
}

/// The DBaaS client is the dependency itself: no wrapper type.
impl ExternalDependency for DbaasClient {
    type Error = DbaasError;

    fn name(&self) -> &'static str {
        "dbaas"
    }

    async fn health(&self) -> Health {
        match self.service_health().await {
            Ok(true) => Health::Available,
            Ok(false) => Health::unavailable("its /healthz answers 503"),
            Err(e) => Health::unavailable(format!("its /healthz cannot be reached: {e}")),
        }
    }
}

/// DBaaS instances are found by the idempotency key they were created with
/// (`dbaas-<uid>`).
impl ExactlyOnce for DbaasClient {
    type Spec = InstanceSpec;
    type Resource = Instance;

    async fn observe(&self, key: &IdempotencyKey) -> Result<Option<Instance>, DbaasError> {
        let found = self.find_by_key(key.as_str()).await?;
        Ok(found.filter(|i| i.state != InstanceState::Deleting))
    }

    async fn create(
        &self,
        key: &IdempotencyKey,
        spec: &InstanceSpec,
    ) -> Result<Instance, DbaasError> {
        DbaasClient::create(self, key.as_str(), spec).await
    }

    async fn delete(&self, _: &IdempotencyKey, instance: &Instance) -> Result<(), DbaasError> {
        DbaasClient::delete(self, &instance.id).await.map(|_| ())
    }
}

/// How long a Ready Database rests before its children are checked for drift, unless
/// [`DatabaseMachine::new`] says otherwise.
pub const READY_RESYNC: Duration = Duration::from_secs(300);

/// The `Database` operator.
#[derive(Debug)]
pub struct DatabaseMachine {
    table: Transitions<DbPhase>,
    /// How long a Ready Database rests before its children are checked for drift.
    resync: Duration,
}

impl DatabaseMachine {
    /// The machine with the lesson's table, each deadline at least `min_deadline`; it
    /// checks Ready Databases for drift every `resync`.
    pub fn new(min_deadline: Duration, resync: Duration) -> Result<Self, ConfigError> {
        let table = transitions(min_deadline)?;
        Ok(DatabaseMachine { table, resync })
    }
}

type Handled = Result<Transition<DbPhase>, HandlerError>;

impl PhaseMachine<Database, Ctx> for DatabaseMachine {
    type Phase = DbPhase;
    type Error = HandlerError;

    fn transitions(&self) -> &Transitions<DbPhase> {
        &self.table
    }

    async fn handle(
        &self,
        phase: DbPhase,
        db: &Database,
        step: &Step<'_, DbPhase, Ctx>,
    ) -> Handled {
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
            DbPhase::Provisioning => Box::pin(provision(db, step)).await,
            DbPhase::Configuring => {
                step.ensure(db, &Settings).await?;
                step.ensure(db, &Endpoint).await?;
                Ok(Transition::to(DbPhase::Deploying)
                    .because("Configured", "ConfigMap and Service in place"))
            }
            DbPhase::Deploying => {
                step.ensure(db, &Pods).await?;
                Ok(Transition::to(DbPhase::Verifying).because("Deployed", "StatefulSet applied"))
            }
            DbPhase::Verifying => verify(db, step).await,
            DbPhase::Updating => update(db, step).await,
            DbPhase::Ready => {
                // Repair drift of the children; costs reads only when nothing drifted.
                step.ensure(db, &Settings).await?;
                step.ensure(db, &Endpoint).await?;
                step.ensure(db, &Pods).await?;
                Ok(Transition::stay(self.resync))
            }
            DbPhase::Failed => Ok(Transition::done()),
        }
    }

    async fn cleanup(
        &self,
        db: &Database,
        step: &Step<'_, DbPhase, Ctx>,
    ) -> Result<Cleanup, HandlerError> {
        if db.spec.retain_on_delete {
            return Ok(Cleanup::done());
        }
        match step.ctx().dbaas.delete(db).await? {
            Deletion::Gone => tracing::info!(database = %db.name_any(), "no DBaaS instance left"),
            Deletion::Requested(instance) => {
                tracing::info!(database = %db.name_any(), instance = %instance.id, "DBaaS instance deleted");
            }
        }
        Ok(Cleanup::done())
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

async fn provision(db: &Database, step: &Step<'_, DbPhase, Ctx>) -> Handled {
    let password = children::password()
        .map_err(|e| HandlerError::other(ErrorClass::Transient, "NoRandomness", e))?;
    step.ensure(db, &Credentials(password)).await?;
    let instance = step
        .ctx()
        .dbaas
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

async fn verify(db: &Database, step: &Step<'_, DbPhase, Ctx>) -> Handled {
    if let Readiness::Waiting(why) = step.readiness(db, &Pods).await? {
        return Ok(Transition::stay(Duration::from_millis(250)).because("WaitingForReplicas", why));
    }
    let Some(id) = db.status.as_ref().and_then(|s| s.instance_id.clone()) else {
        return Ok(Transition::fail(
            "InstanceMissing",
            "no DBaaS instance is recorded; provisioning again",
        ));
    };
    // One turn at the budget for both calls: taken one by one, the second would queue
    // again behind every other Database after the first got its turn.
    let (instance, health) = step
        .ctx()
        .dbaas
        .call(|dbaas| async move { Ok((dbaas.get(&id).await?, dbaas.health(&id).await?)) })
        .await?;
    if !health.healthy {
        let why = health
            .reason
            .unwrap_or_else(|| "no reason given".to_owned());
        return Ok(Transition::fail(
            "HealthCheckFailed",
            format!(
                "DBaaS instance {} failed its health check: {why}",
                instance.id
            ),
        ));
    }
    Ok(Transition::to(DbPhase::Ready)
        .because(
            "Verified",
            format!("replicas ready; instance {} healthy", instance.id),
        )
        .with_status(json!({ "endpoint": instance.endpoint })))
}

async fn update(db: &Database, step: &Step<'_, DbPhase, Ctx>) -> Handled {
    let Some(id) = db.status.as_ref().and_then(|s| s.instance_id.clone()) else {
        return Ok(Transition::fail(
            "InstanceMissing",
            "no DBaaS instance is recorded; provisioning again",
        ));
    };
    let spec = spec_of(db);
    step.ctx()
        .dbaas
        .call(|dbaas| dbaas.update(&id, &spec))
        .await?;
    let mut changed = Vec::new();
    for outcome in [
        step.ensure(db, &Settings).await?,
        step.ensure(db, &Endpoint).await?,
        step.ensure(db, &Pods).await?,
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
