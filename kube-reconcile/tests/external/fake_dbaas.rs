//! A fake DBaaS for the `external` tests: instances searchable by idempotency key,
//! switchable health, injected failures, and crash points that stop a reconcile dead
//! around an external create.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::SeqCst},
    },
};

use kube_reconcile::{
    Classify, ErrorClass,
    external::{ExactlyOnce, ExternalDependency, Health, IdempotencyKey},
};
use tokio::sync::Notify;

/// One database instance of the fake DBaaS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Instance {
    pub(crate) id: String,
    pub(crate) key: String,
    pub(crate) size: i32,
}

/// What the fake DBaaS answers when it fails.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DbaasError {
    #[error("dbaas answered 503 service unavailable")]
    Unavailable,
}

impl Classify for DbaasError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Transient
    }
}

/// A step of the create protocol where a test can make the reconcile stop dead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CrashPoint {
    /// The create call is about to be sent.
    BeforeCreate,
    /// The DBaaS made the instance, but the response never came back.
    AfterCreateSent,
}

impl CrashPoint {
    pub(crate) const ALL: [CrashPoint; 2] = [CrashPoint::BeforeCreate, CrashPoint::AfterCreateSent];
}

/// Armed crash points: reaching the armed one parks the reconcile forever (the test
/// then drops it, as a process death would) and signals [`Crashes::crashed`].
#[derive(Clone, Debug, Default)]
pub(crate) struct Crashes {
    armed: Arc<Mutex<Option<CrashPoint>>>,
    crashed: Arc<Notify>,
}

impl Crashes {
    pub(crate) fn arm(&self, point: CrashPoint) {
        *self.armed.lock().unwrap() = Some(point);
    }

    /// Never returns if `point` is armed (disarming it first).
    pub(crate) async fn at(&self, point: CrashPoint) {
        let hit = {
            let mut armed = self.armed.lock().unwrap();
            if *armed == Some(point) {
                *armed = None;
                true
            } else {
                false
            }
        };
        if hit {
            self.crashed.notify_one();
            std::future::pending::<()>().await;
        }
    }

    /// Resolves once an armed point was reached.
    pub(crate) async fn crashed(&self) {
        self.crashed.notified().await;
    }

    pub(crate) fn is_armed(&self) -> bool {
        self.armed.lock().unwrap().is_some()
    }
}

#[derive(Debug, Default)]
struct State {
    instances: Mutex<BTreeMap<String, Instance>>,
    next_id: AtomicU32,
    healthy: AtomicBool,
    failing: AtomicBool,
    creates: AtomicU32,
    health_checks: AtomicU32,
    calls: AtomicU32,
    most_per_key: AtomicUsize,
}

/// The fake DBaaS; clones share one system.
#[derive(Clone, Debug)]
pub(crate) struct FakeDbaas {
    state: Arc<State>,
    pub(crate) crashes: Crashes,
}

impl Default for FakeDbaas {
    fn default() -> Self {
        let dbaas = FakeDbaas {
            state: Arc::default(),
            crashes: Crashes::default(),
        };
        dbaas.set_healthy(true);
        dbaas
    }
}

impl FakeDbaas {
    pub(crate) fn set_healthy(&self, healthy: bool) {
        self.state.healthy.store(healthy, SeqCst);
    }

    /// Every call fails with 503 while set (the health endpoint is not affected).
    pub(crate) fn set_failing(&self, failing: bool) {
        self.state.failing.store(failing, SeqCst);
    }

    pub(crate) fn instances(&self) -> Vec<Instance> {
        self.state
            .instances
            .lock()
            .unwrap()
            .values()
            .cloned()
            .collect()
    }

    pub(crate) fn instances_for(&self, key: &str) -> Vec<Instance> {
        self.instances()
            .into_iter()
            .filter(|i| i.key == key)
            .collect()
    }

    /// Instances actually made.
    pub(crate) fn creates(&self) -> u32 {
        self.state.creates.load(SeqCst)
    }

    /// Calls of the API (observe, create, delete), failed or not.
    pub(crate) fn calls(&self) -> u32 {
        self.state.calls.load(SeqCst)
    }

    pub(crate) fn health_checks(&self) -> u32 {
        self.state.health_checks.load(SeqCst)
    }

    /// The most instances one key ever had at once.
    pub(crate) fn most_per_key(&self) -> usize {
        self.state.most_per_key.load(SeqCst)
    }

    fn check(&self) -> Result<(), DbaasError> {
        self.state.calls.fetch_add(1, SeqCst);
        if self.state.failing.load(SeqCst) || !self.state.healthy.load(SeqCst) {
            Err(DbaasError::Unavailable)
        } else {
            Ok(())
        }
    }
}

impl ExternalDependency for FakeDbaas {
    type Error = DbaasError;

    fn name(&self) -> &'static str {
        "dbaas"
    }

    async fn health(&self) -> Health {
        self.state.health_checks.fetch_add(1, SeqCst);
        if self.state.healthy.load(SeqCst) {
            Health::Available
        } else {
            Health::unavailable("GET /health answered 503")
        }
    }
}

impl ExactlyOnce for FakeDbaas {
    type Spec = i32;
    type Resource = Instance;

    fn key_prefix(&self) -> &'static str {
        "db"
    }

    async fn observe(&self, key: &IdempotencyKey) -> Result<Option<Instance>, DbaasError> {
        tokio::task::yield_now().await;
        self.check()?;
        let instances = self.state.instances.lock().unwrap();
        Ok(instances.values().find(|i| i.key == key.as_str()).cloned())
    }

    async fn create(&self, key: &IdempotencyKey, size: &i32) -> Result<Instance, DbaasError> {
        tokio::task::yield_now().await;
        self.crashes.at(CrashPoint::BeforeCreate).await;
        self.check()?;
        // No deduplication on the key: only the protocol keeps it to one instance.
        let instance = Instance {
            id: format!("inst-{}", self.state.next_id.fetch_add(1, SeqCst)),
            key: key.to_string(),
            size: *size,
        };
        {
            let mut instances = self.state.instances.lock().unwrap();
            instances.insert(instance.id.clone(), instance.clone());
            let n = instances.values().filter(|i| i.key == key.as_str()).count();
            self.state.most_per_key.fetch_max(n, SeqCst);
        }
        self.state.creates.fetch_add(1, SeqCst);
        self.crashes.at(CrashPoint::AfterCreateSent).await;
        tokio::task::yield_now().await;
        Ok(instance)
    }

    async fn delete(&self, _: &IdempotencyKey, instance: &Instance) -> Result<(), DbaasError> {
        tokio::task::yield_now().await;
        self.check()?;
        self.state.instances.lock().unwrap().remove(&instance.id);
        Ok(())
    }

    fn id(&self, instance: &Instance) -> Option<String> {
        Some(instance.id.clone())
    }
}
