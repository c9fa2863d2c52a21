//! The peer: the same `Database` operator written as the lesson's "bad" code writes it.
//!
//! It does the same work as the example operator: the same credentials `Secret` (the
//! password generated once), the same DBaaS instance behind the same idempotency scheme,
//! the same `ConfigMap`, `Service` and `StatefulSet`, the same health check, and the same
//! `status.phase: Ready` at the end, under the same `Controller`. What it leaves out is
//! what the lesson adds:
//!
//! - **Unconditional updates.** Every reconcile reads each child and writes it back
//!   (`create` if missing, else `replace`), and writes the status, whether or not
//!   anything changed.
//! - **Immediate retries.** Any error, a 429 from the DBaaS included, goes back to the
//!   queue at once (`Action::requeue(Duration::ZERO)`): no backoff, no rate limit, no
//!   breaker, no budget for the DBaaS.
//! - **No phase validation.** No transition table: each reconcile runs the whole
//!   sequence from the top and sets `status.phase` to wherever it stopped.
//!
//! It is fair where the lesson does not speak: it waits for a creating instance or an
//! unready `StatefulSet` with the same 250 ms requeue as the example, and requeues a
//! Ready object after the same 300 s.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{ConfigMap, Secret, Service},
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams, PostParams},
    runtime::{Controller, controller::Action, watcher},
};
use kube_reconcile::ensure::Ensure as _;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::json;

use super::example::{
    children,
    crd::{Database, storage_gi},
    dbaas::{DbaasClient, DbaasError, InstanceSpec},
};

/// Why a naive reconcile failed: whatever failed, as it came.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NaiveError {
    /// The Kubernetes API failed.
    #[error("the Kubernetes API failed")]
    Kube(#[from] kube::Error),
    /// The DBaaS failed.
    #[error("the DBaaS failed")]
    Dbaas(#[from] DbaasError),
    /// No randomness for the password.
    #[error("no randomness for a password")]
    Random(#[source] getrandom::Error),
}

/// What the naive reconciler shares.
pub(crate) struct NaiveCtx {
    client: Client,
    dbaas: DbaasClient,
    /// Reconciles run so far.
    pub(crate) reconciles: AtomicU64,
}

/// The naive operator, running.
pub(crate) struct NaiveOperator {
    /// Its shared context (for the reconcile count).
    pub(crate) ctx: Arc<NaiveCtx>,
    /// The controller task.
    pub(crate) controller: tokio::task::JoinHandle<()>,
}

/// Starts the naive operator for the Databases in `namespace`.
pub(crate) fn start(client: Client, namespace: &str, dbaas: DbaasClient) -> NaiveOperator {
    let ctx = Arc::new(NaiveCtx {
        client: client.clone(),
        dbaas,
        reconciles: AtomicU64::new(0),
    });
    let api: Api<Database> = Api::namespaced(client, namespace);
    let controller = Controller::new(api, watcher::Config::default())
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});
    NaiveOperator {
        ctx,
        controller: tokio::spawn(controller),
    }
}

/// Every error: straight back into the queue.
fn error_policy(_: Arc<Database>, _: &NaiveError, _: Arc<NaiveCtx>) -> Action {
    Action::requeue(Duration::ZERO)
}

/// Writes `desired` whatever is there: `create` if missing, else `replace` (keeping only
/// the resource version, and what `keep` takes from the stored object).
async fn put<K>(
    api: &Api<K>,
    mut desired: K,
    keep: impl FnOnce(&K, &mut K),
) -> Result<K, kube::Error>
where
    K: Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let name = desired.name_any();
    match api.get_opt(&name).await? {
        None => api.create(&PostParams::default(), &desired).await,
        Some(existing) => {
            keep(&existing, &mut desired);
            desired.meta_mut().resource_version = existing.resource_version();
            api.replace(&name, &PostParams::default(), &desired).await
        }
    }
}

/// `desired` owned by `db`, labelled as the example labels its children.
fn owned<K: Resource<DynamicType = ()>>(db: &Database, mut desired: K) -> K {
    let meta = desired.meta_mut();
    meta.owner_references = db.controller_owner_ref(&()).map(|o| vec![o]);
    meta.labels = Some(BTreeMap::from([
        ("app.kubernetes.io/instance".to_owned(), db.name_any()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "naive-operator".to_owned(),
        ),
    ]));
    desired
}

/// Writes the status, whatever it was.
async fn set_status(
    api: &Api<Database>,
    db: &Database,
    status: serde_json::Value,
) -> Result<(), kube::Error> {
    api.patch_status(
        &db.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await?;
    Ok(())
}

async fn reconcile(db: Arc<Database>, ctx: Arc<NaiveCtx>) -> Result<Action, NaiveError> {
    ctx.reconciles.fetch_add(1, Ordering::Relaxed);
    let ns = db.namespace().unwrap_or_default();
    let dbs: Api<Database> = Api::namespaced(ctx.client.clone(), &ns);

    // Credentials: the password is kept once generated, but the Secret is written anyway.
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let password = children::password().map_err(NaiveError::Random)?;
    let secret = owned(&db, children::Credentials(password).desired(&db));
    put(&secrets, secret, |stored, desired| {
        desired.string_data = None;
        desired.data.clone_from(&stored.data);
    })
    .await?;

    // The instance: found by its key, else created.
    let key = format!("naive-{}", db.uid().unwrap_or_default());
    let spec = InstanceSpec {
        name: db.name_any(),
        engine: db.spec.engine.as_str().to_owned(),
        version: db.spec.version.clone(),
        storage_gi: storage_gi(&db.spec.storage).unwrap_or(1),
        replicas: u32::try_from(db.spec.replicas).unwrap_or(1),
    };
    let instance = match ctx.dbaas.find_by_key(&key).await? {
        Some(instance) => instance,
        None => ctx.dbaas.create(&key, &spec).await?,
    };
    let mut status = json!({
        "phase": "Provisioning",
        "instanceId": instance.id,
        "credentialsSecret": children::credentials_name(&db),
    });
    if !instance.is_ready() {
        set_status(&dbs, &db, status).await?;
        return Ok(Action::requeue(Duration::from_millis(250)));
    }

    // The children, each written back every time.
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    put(&cms, owned(&db, children::Settings.desired(&db)), |_, _| {}).await?;
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    put(
        &services,
        owned(&db, children::Endpoint.desired(&db)),
        |_, _| {},
    )
    .await?;
    let statefulsets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let sts = put(
        &statefulsets,
        owned(&db, children::Pods.desired(&db)),
        |_, _| {},
    )
    .await?;
    if !children::Pods.readiness(&sts).is_ready() {
        status["phase"] = json!("Deploying");
        set_status(&dbs, &db, status).await?;
        return Ok(Action::requeue(Duration::from_millis(250)));
    }

    // The health check, then Ready.
    let health = ctx.dbaas.health(&instance.id).await?;
    let instance = ctx.dbaas.get(&instance.id).await?;
    if !health.healthy {
        status["phase"] = json!("Verifying");
        set_status(&dbs, &db, status).await?;
        return Ok(Action::requeue(Duration::from_millis(250)));
    }
    status["phase"] = json!("Ready");
    status["endpoint"] = json!(instance.endpoint);
    set_status(&dbs, &db, status).await?;
    Ok(Action::requeue(Duration::from_secs(300)))
}
