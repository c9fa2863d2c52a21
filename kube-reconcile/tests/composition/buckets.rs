//! The world of the composition tests: a `Bucket` resource, an object store that keeps
//! buckets by idempotency key, and a phase machine that creates them in Provisioning and
//! deletes them in cleanup, without a word about refusals.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Client, CustomResource, CustomResourceExt, ResourceExt,
    api::{ListParams, PostParams},
};
use kube_reconcile::{
    Classify, ErrorClass,
    external::{
        Dependency, DependencyBuilder, ExactlyOnce, ExternalDependency, ExternalError, Health,
        IdempotencyKey,
    },
    phase::{
        Cleanup, HasPhaseStatus, PhaseConfig, PhaseEngine, PhaseMachine, PhaseStatus, Step,
        Transition, Transitions,
    },
};
use kube_reconcile_testing::ApiServer;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A bucket in an object store.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "test.kube-reconcile.dev",
    version = "v1",
    kind = "Bucket",
    namespaced
)]
#[kube(status = "BucketStatus")]
pub(crate) struct BucketSpec {
    pub(crate) region: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BucketStatus {
    #[serde(flatten)]
    pub(crate) machine: PhaseStatus,
}

impl HasPhaseStatus for Bucket {
    fn phase_status(&self) -> Option<&PhaseStatus> {
        self.status.as_ref().map(|s| &s.machine)
    }
}

kube_reconcile::phases! {
    pub(crate) enum BucketPhase { Pending, Provisioning, Ready, Failed }
}

/// An object store that keeps buckets by idempotency key and counts its calls; clones
/// share it.
#[derive(Clone, Default)]
pub(crate) struct Store(Arc<Shelf>);

/// A health endpoint's answer to its `n`th check.
type Answers = Box<dyn Fn(u32) -> Health + Send + Sync>;

#[derive(Default)]
pub(crate) struct Shelf {
    pub(crate) buckets: Mutex<BTreeMap<String, String>>,
    pub(crate) calls: AtomicU32,
    pub(crate) health_checks: AtomicU32,
    answers: Option<Answers>,
}

impl Store {
    /// A store whose health endpoint answers its `n`th check with `answers(n)`.
    pub(crate) fn with_health(answers: impl Fn(u32) -> Health + Send + Sync + 'static) -> Self {
        Store(Arc::new(Shelf {
            answers: Some(Box::new(answers)),
            ..Shelf::default()
        }))
    }

    /// The handle around this store (sharing it), to configure.
    pub(crate) fn dependency(&self) -> DependencyBuilder<Store> {
        Dependency::builder(self.clone())
    }
}

impl std::ops::Deref for Store {
    type Target = Shelf;
    fn deref(&self) -> &Shelf {
        &self.0
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the object store answered 503")]
pub(crate) struct StoreError;

impl Classify for StoreError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Transient
    }
}

impl ExternalDependency for Store {
    type Error = StoreError;

    fn name(&self) -> &'static str {
        "store"
    }

    async fn health(&self) -> Health {
        let n = self.health_checks.fetch_add(1, Ordering::SeqCst);
        self.answers
            .as_ref()
            .map_or(Health::Available, |answer| answer(n))
    }
}

impl ExactlyOnce for Store {
    type Spec = String;
    type Resource = (String, String);

    fn key_prefix(&self) -> &'static str {
        "bucket"
    }

    async fn observe(&self, key: &IdempotencyKey) -> Result<Option<(String, String)>, StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let buckets = self.buckets.lock().unwrap();
        Ok(buckets
            .get(key.as_str())
            .map(|r| (key.to_string(), r.clone())))
    }

    async fn create(
        &self,
        key: &IdempotencyKey,
        region: &String,
    ) -> Result<(String, String), StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.buckets
            .lock()
            .unwrap()
            .insert(key.to_string(), region.clone());
        Ok((key.to_string(), region.clone()))
    }

    async fn delete(&self, key: &IdempotencyKey, _: &(String, String)) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.buckets.lock().unwrap().remove(key.as_str());
        Ok(())
    }

    fn id(&self, bucket: &(String, String)) -> Option<String> {
        Some(bucket.0.clone())
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum BucketError {
    #[error(transparent)]
    Store(#[from] ExternalError<StoreError>),
}

impl Classify for BucketError {
    fn class(&self) -> ErrorClass {
        match self {
            BucketError::Store(e) => e.class(),
        }
    }
}

pub(crate) struct Ctx {
    pub(crate) buckets: Dependency<Store>,
}

/// Provisioning creates the bucket through the dependency; cleanup deletes it. Neither
/// says a word about refusals: the engine handles them.
pub(crate) struct Buckets {
    pub(crate) table: Transitions<BucketPhase>,
}

impl Buckets {
    fn new() -> Self {
        use BucketPhase::*;
        let table = Transitions::builder(Pending)
            .path([Pending, Provisioning, Ready])
            .edge(Provisioning, Failed)
            .edge(Failed, Provisioning)
            .ready(Ready)
            .failed(Failed)
            .build()
            .unwrap();
        Buckets { table }
    }
}

impl PhaseMachine<Bucket, Ctx> for Buckets {
    type Phase = BucketPhase;
    type Error = BucketError;

    fn transitions(&self) -> &Transitions<BucketPhase> {
        &self.table
    }

    async fn handle(
        &self,
        phase: BucketPhase,
        bucket: &Bucket,
        step: &Step<'_, BucketPhase, Ctx>,
    ) -> Result<Transition<BucketPhase>, BucketError> {
        Ok(match phase {
            BucketPhase::Pending => Transition::to(BucketPhase::Provisioning),
            BucketPhase::Provisioning => {
                step.ctx()
                    .buckets
                    .ensure(bucket, &bucket.spec.region)
                    .await?;
                Transition::to(BucketPhase::Ready)
            }
            BucketPhase::Ready | BucketPhase::Failed => Transition::wait_for_change(),
        })
    }

    async fn cleanup(
        &self,
        bucket: &Bucket,
        step: &Step<'_, BucketPhase, Ctx>,
    ) -> Result<Cleanup, BucketError> {
        step.ctx().buckets.delete(bucket).await?;
        Ok(Cleanup::done())
    }
}

pub(crate) async fn server_with_crd() -> (ApiServer, Client) {
    let server = ApiServer::new();
    let client = server.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Bucket::crd())
        .await
        .unwrap();
    (server, client)
}

/// The bucket engine on `client`, its buckets kept in a store through `buckets`.
pub(crate) fn engine(
    client: &Client,
    buckets: Dependency<Store>,
) -> (PhaseEngine<Buckets, Bucket>, Arc<Ctx>) {
    let engine = PhaseEngine::with_config(
        Buckets::new(),
        client.clone(),
        PhaseConfig::default().finalizer("test.kube-reconcile.dev/bucket"),
    )
    .unwrap();
    (engine, Arc::new(Ctx { buckets }))
}

pub(crate) fn bucket(name: &str) -> Bucket {
    Bucket::new(
        name,
        BucketSpec {
            region: "eu-west-1".to_owned(),
        },
    )
}

pub(crate) fn phase_of(bucket: &Bucket) -> Option<&str> {
    bucket.phase_status().and_then(|s| s.phase.as_deref())
}

pub(crate) async fn until(api: &Api<Bucket>, what: &str, done: impl Fn(&[Bucket]) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let list = api.list(&ListParams::default()).await.unwrap().items;
        if done(&list) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not {what} within 120 s: {:?}",
            list.iter()
                .map(|b| (b.name_any(), phase_of(b).map(str::to_owned)))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
