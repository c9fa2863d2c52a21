//! A workload simulator (like kwok): marks `StatefulSets` and Deployments ready and runs
//! Pods, after a delay.
//!
//! Neither the embedded server nor a bare kube-apiserver runs Pods, so nothing would ever
//! report a workload ready or a Pod running. The simulator watches `StatefulSets`,
//! Deployments and Pods through any `kube::Client` and, after a configurable delay, writes
//! the status a healthy controller manager and kubelet would: all replicas ready and
//! `observedGeneration` current; a Pod `Running` with its conditions (`PodScheduled`,
//! `Initialized`, `ContainersReady`, `Ready`), a running status per container, a start
//! time and a Pod IP. Workloads and Pods can be held unready (a Pod then stays `Pending`)
//! to test what an operator does while it waits.
//!
//! Workloads get their Pods, as the controller manager would make them: a `StatefulSet`'s
//! `name-0` … `name-(n-1)`, a Deployment's `ReplicaSet` and its Pods, created and deleted
//! as replicas change and replaced when the template changes; the simulator then runs them
//! like any other Pod. [`WorkloadSimulator::owned_pods`] turns that off.

mod owned;

use std::{
    collections::{BTreeSet, HashMap},
    future::poll_fn,
    pin::pin,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures_core::Stream;
use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    core::v1::Pod,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;
use tokio::task::JoinHandle;

/// `(kind, namespace, name)` of a workload.
type WorkloadKey = (&'static str, String, String);

#[derive(Debug, Default)]
struct Shared {
    unready: BTreeSet<(String, String)>,
    /// Generation already scheduled or written per workload, so each change is handled once.
    handled: HashMap<WorkloadKey, (i64, bool)>,
}

/// Marks `StatefulSets` and Deployments ready and runs Pods after a delay. Stops when
/// dropped.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use kube_reconcile_testing::{ApiServer, WorkloadSimulator};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let server = ApiServer::new();
/// let simulator = WorkloadSimulator::new(server.client()).ready_after(Duration::from_millis(200)).start();
/// simulator.keep_unready("default", "flaky-db");
/// # }
/// ```
pub struct WorkloadSimulator {
    client: Client,
    settings: Settings,
}

/// How the simulator behaves; shared by its watch loops.
#[derive(Clone, Debug)]
struct Settings {
    ready_after: Duration,
    owned_pods: bool,
    /// Watch only this namespace (`None`: every namespace).
    namespace: Option<String>,
}

impl std::fmt::Debug for WorkloadSimulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadSimulator")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A running [`WorkloadSimulator`].
#[derive(Debug)]
pub struct RunningSimulator {
    shared: Arc<Mutex<Shared>>,
    tasks: Vec<JoinHandle<()>>,
}

impl WorkloadSimulator {
    /// A simulator over `client` that marks workloads ready after 1 s.
    pub fn new(client: Client) -> Self {
        WorkloadSimulator {
            client,
            settings: Settings {
                ready_after: Duration::from_secs(1),
                owned_pods: true,
                namespace: None,
            },
        }
    }

    /// Whether `StatefulSets` and Deployments get Pods (and Deployments `ReplicaSets`).
    ///
    /// # Default
    ///
    /// `true`. Turn it off where only the workloads' status matters and the Pods would
    /// be load of their own (a benchmark of an operator that creates thousands).
    #[must_use]
    pub fn owned_pods(mut self, owned_pods: bool) -> Self {
        self.settings.owned_pods = owned_pods;
        self
    }

    /// Simulates only the workloads and Pods in `namespace`, so tests that share a
    /// cluster (the real tier's control plane) do not run each other's Pods.
    ///
    /// # Default
    ///
    /// Every namespace.
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.settings.namespace = Some(namespace.into());
        self
    }

    /// How long a workload takes to become ready after each spec change.
    #[must_use]
    pub fn ready_after(mut self, delay: Duration) -> Self {
        self.settings.ready_after = delay;
        self
    }

    /// Starts watching in the background (needs a tokio runtime).
    pub fn start(self) -> RunningSimulator {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let sts = tokio::spawn(run::<StatefulSet>(
            self.client.clone(),
            self.settings.clone(),
            Arc::clone(&shared),
            "StatefulSet",
        ));
        let deploy = tokio::spawn(run::<Deployment>(
            self.client.clone(),
            self.settings.clone(),
            Arc::clone(&shared),
            "Deployment",
        ));
        let pods = tokio::spawn(run::<Pod>(
            self.client,
            Settings {
                owned_pods: false,
                ..self.settings
            },
            Arc::clone(&shared),
            "Pod",
        ));
        RunningSimulator {
            shared,
            tasks: vec![sts, deploy, pods],
        }
    }
}

impl RunningSimulator {
    /// Keeps the workload or Pod `namespace/name` unready (a Pod `Pending`) until
    /// [`make_ready`](Self::make_ready).
    pub fn keep_unready(&self, namespace: &str, name: &str) {
        let mut s = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        s.unready.insert((namespace.to_string(), name.to_string()));
        s.handled
            .retain(|(_, ns, n), _| !(ns == namespace && n == name));
    }

    /// Lets a workload or Pod held by [`keep_unready`](Self::keep_unready) become ready
    /// again, at its next change the simulator's watch sees.
    pub fn make_ready(&self, namespace: &str, name: &str) {
        let mut s = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        s.unready.remove(&(namespace.to_string(), name.to_string()));
        s.handled
            .retain(|(_, ns, n), _| !(ns == namespace && n == name));
    }
}

impl Drop for RunningSimulator {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

trait Workload:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + std::fmt::Debug
    + serde::de::DeserializeOwned
    + Send
    + Sync
    + 'static
{
    fn desired_replicas(&self) -> i32;
    fn ready_status(&self, replicas: i32, ready: i32) -> serde_json::Value;

    /// The workload as the owner of Pods (`None` for a Pod).
    fn owner(&self) -> Option<owned::Owner> {
        None
    }

    /// Whether the object already shows the status the simulator would write (a Pod
    /// found running when the simulator starts is left alone).
    fn settled(&self, unready: bool) -> bool {
        let _ = unready;
        false
    }
}

/// A workload's side of owning Pods.
/// A workload's side of owning Pods, read from its JSON: whether `spec` is optional
/// depends on the k8s-openapi version the crate is built with.
fn owner_of<K: Resource + serde::Serialize>(obj: &K, kind: owned::Kind) -> owned::Owner {
    let json = serde_json::to_value(obj).unwrap_or_default();
    let at = |path: &str| json.pointer(path).cloned().unwrap_or_default();
    let meta = obj.meta();
    owned::Owner {
        kind,
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        replicas: replicas_of(&json),
        template: at("/spec/template"),
        selector: at("/spec/selector/matchLabels"),
        service_name: at("/spec/serviceName").as_str().map(str::to_owned),
        claims: at("/spec/volumeClaimTemplates")
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.pointer("/metadata/name")?.as_str().map(str::to_owned))
            .collect(),
    }
}

/// `spec.replicas` of a workload's JSON (1 when unset, as the API server defaults it).
fn replicas_of(json: &serde_json::Value) -> i32 {
    json.pointer("/spec/replicas")
        .and_then(serde_json::Value::as_i64)
        .and_then(|n| i32::try_from(n).ok())
        .unwrap_or(1)
}

impl Workload for StatefulSet {
    fn desired_replicas(&self) -> i32 {
        replicas_of(&serde_json::to_value(self).unwrap_or_default())
    }

    fn owner(&self) -> Option<owned::Owner> {
        Some(owner_of(self, owned::Kind::StatefulSet))
    }

    fn ready_status(&self, replicas: i32, ready: i32) -> serde_json::Value {
        let revision = self.owner().map(|o| o.revision()).unwrap_or_default();
        json!({
            "observedGeneration": self.metadata.generation,
            "replicas": replicas,
            "readyReplicas": ready,
            "currentReplicas": replicas,
            "updatedReplicas": replicas,
            "availableReplicas": ready,
            "currentRevision": revision,
            "updateRevision": revision,
            "collisionCount": 0,
        })
    }
}

impl Workload for Deployment {
    fn desired_replicas(&self) -> i32 {
        replicas_of(&serde_json::to_value(self).unwrap_or_default())
    }

    fn owner(&self) -> Option<owned::Owner> {
        Some(owner_of(self, owned::Kind::Deployment))
    }

    fn ready_status(&self, replicas: i32, ready: i32) -> serde_json::Value {
        let available = if ready >= replicas { "True" } else { "False" };
        json!({
            "observedGeneration": self.metadata.generation,
            "replicas": replicas,
            "readyReplicas": ready,
            "updatedReplicas": replicas,
            "availableReplicas": ready,
            "unavailableReplicas": replicas - ready,
            "conditions": [
                { "type": "Available", "status": available, "reason": if ready >= replicas { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" } },
                { "type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable" },
            ],
        })
    }
}

impl Workload for Pod {
    fn desired_replicas(&self) -> i32 {
        1
    }

    fn ready_status(&self, _replicas: i32, ready: i32) -> serde_json::Value {
        let running = ready > 0;
        let truth = if running { "True" } else { "False" };
        let now = jiff::Timestamp::now()
            .round(jiff::Unit::Second)
            .unwrap_or_else(|_| jiff::Timestamp::now())
            .to_string();
        let containers: Vec<serde_json::Value> = self
            .spec
            .iter()
            .flat_map(|spec| &spec.containers)
            .map(|c| {
                let state = if running {
                    json!({ "running": { "startedAt": now } })
                } else {
                    json!({ "waiting": { "reason": "ContainerCreating" } })
                };
                json!({
                    "name": c.name,
                    "image": c.image.clone().unwrap_or_default(),
                    "imageID": "",
                    "ready": running,
                    "started": running,
                    "restartCount": 0,
                    "state": state,
                })
            })
            .collect();
        let condition = |type_: &str, status: &str| json!({ "type": type_, "status": status, "lastTransitionTime": now });
        let ip = pod_ip(&self.namespace().unwrap_or_default(), &self.name_any());
        json!({
            "phase": if running { "Running" } else { "Pending" },
            "conditions": [
                condition("PodScheduled", "True"),
                condition("Initialized", "True"),
                condition("ContainersReady", truth),
                condition("Ready", truth),
            ],
            "containerStatuses": containers,
            "hostIP": "10.0.0.1",
            "podIP": ip,
            "podIPs": [{ "ip": ip }],
            "startTime": now,
        })
    }

    fn settled(&self, unready: bool) -> bool {
        let phase = self.status.as_ref().and_then(|s| s.phase.as_deref());
        phase == Some(if unready { "Pending" } else { "Running" })
    }
}

/// A stable address for a Pod in 10.244.0.0/16, from its namespace and name.
fn pod_ip(namespace: &str, name: &str) -> String {
    // FNV-1a: stable across runs and processes, unlike the standard library's hasher.
    let hash = namespace
        .bytes()
        .chain([b'/'])
        .chain(name.bytes())
        .fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
    let [_, _, high, low] = hash.to_be_bytes();
    format!("10.244.{high}.{}", low.max(1))
}

async fn run<K: Workload>(
    client: Client,
    settings: Settings,
    shared: Arc<Mutex<Shared>>,
    kind: &'static str,
) {
    let Settings {
        ready_after: delay,
        owned_pods,
        namespace,
    } = settings;
    let api: Api<K> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut events = pin!(
        watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
    );
    while let Some(next) = poll_fn(|cx| events.as_mut().poll_next(cx)).await {
        let Ok(obj) = next else { continue };
        let (Some(ns), name) = (obj.namespace(), obj.name_any()) else {
            continue;
        };
        let generation = obj.meta().generation.unwrap_or(0);
        if obj.meta().deletion_timestamp.is_some() {
            continue;
        }
        let unready = {
            let mut s = shared.lock().unwrap_or_else(PoisonError::into_inner);
            let unready = s.unready.contains(&(ns.clone(), name.clone()));
            let key = (kind, ns.clone(), name.clone());
            if s.handled.get(&key) == Some(&(generation, unready)) {
                continue;
            }
            s.handled.insert(key, (generation, unready));
            unready
        };
        if obj.settled(unready) {
            continue;
        }
        let api: Api<K> = Api::namespaced(client.clone(), &ns);
        let replicas = obj.desired_replicas();
        let ready = if unready { 0 } else { replicas };
        let status = obj.ready_status(replicas, ready);
        let owner = obj.owner().filter(|_| owned_pods);
        let client = client.clone();
        tokio::spawn(async move {
            // A kubelet and a controller manager keep trying: so does the simulator, or
            // one failed write (an injected fault) would leave the workload unready.
            let mut wait = Duration::from_millis(50);
            if let Some(owner) = &owner {
                for _ in 0..20 {
                    match owned::sync(&client, owner).await {
                        Ok(()) => break,
                        Err(kube::Error::Api(e)) if matches!(e.code, 403 | 404) => return,
                        // A Pod the server refuses is not retried; the workload still
                        // becomes ready, as its status is what most tests wait on.
                        Err(kube::Error::Api(e)) if e.code < 500 && e.code != 429 => {
                            tracing::warn!(workload = %name, error = %e.message, "the simulator could not create its Pods");
                            break;
                        }
                        Err(_) => {
                            tokio::time::sleep(wait).await;
                            wait = (wait * 2).min(Duration::from_secs(2));
                        }
                    }
                }
            }
            if !unready {
                tokio::time::sleep(delay).await;
            }
            let patch = json!({ "status": status });
            wait = Duration::from_millis(50);
            for _ in 0..20 {
                match api
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => {
                        if let Some(owner) = owner.filter(|o| o.kind == owned::Kind::Deployment) {
                            let _ =
                                owned::replica_set_ready(&client, &owner, replicas, ready).await;
                        }
                        return;
                    }
                    Err(kube::Error::Api(e)) if e.code == 404 => return,
                    Err(_) => {
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(2));
                    }
                }
            }
        });
    }
}
