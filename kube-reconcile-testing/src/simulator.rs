//! A workload simulator (like kwok): marks `StatefulSets` and Deployments ready after a delay.
//!
//! Neither the embedded server nor a bare kube-apiserver runs Pods, so nothing would ever
//! report a workload ready. The simulator watches `StatefulSets` and Deployments through any
//! `kube::Client` and, after a configurable delay, writes the status a healthy controller
//! manager would: all replicas ready, `observedGeneration` current. Workloads can be held
//! unready to test what an operator does while it waits.

use std::{
    collections::{BTreeSet, HashMap},
    future::poll_fn,
    pin::pin,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures_core::Stream;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
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

/// Marks `StatefulSets` and Deployments ready after a delay. Stops when dropped.
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
    ready_after: Duration,
}

impl std::fmt::Debug for WorkloadSimulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadSimulator")
            .field("ready_after", &self.ready_after)
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
            ready_after: Duration::from_secs(1),
        }
    }

    /// How long a workload takes to become ready after each spec change.
    #[must_use]
    pub fn ready_after(mut self, delay: Duration) -> Self {
        self.ready_after = delay;
        self
    }

    /// Starts watching in the background (needs a tokio runtime).
    pub fn start(self) -> RunningSimulator {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let sts = tokio::spawn(run::<StatefulSet>(
            self.client.clone(),
            self.ready_after,
            Arc::clone(&shared),
            "StatefulSet",
        ));
        let deploy = tokio::spawn(run::<Deployment>(
            self.client,
            self.ready_after,
            Arc::clone(&shared),
            "Deployment",
        ));
        RunningSimulator {
            shared,
            tasks: vec![sts, deploy],
        }
    }
}

impl RunningSimulator {
    /// Keeps the workload `namespace/name` (either kind) unready until [`make_ready`](Self::make_ready).
    pub fn keep_unready(&self, namespace: &str, name: &str) {
        let mut s = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        s.unready.insert((namespace.to_string(), name.to_string()));
        s.handled
            .retain(|(_, ns, n), _| !(ns == namespace && n == name));
    }

    /// Lets a workload held by [`keep_unready`](Self::keep_unready) become ready again.
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
}

impl Workload for StatefulSet {
    fn desired_replicas(&self) -> i32 {
        self.spec.replicas.unwrap_or(1)
    }

    fn ready_status(&self, replicas: i32, ready: i32) -> serde_json::Value {
        let revision = format!(
            "{}-{}",
            self.name_any(),
            self.metadata.generation.unwrap_or(1)
        );
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
        self.spec.replicas.unwrap_or(1)
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

async fn run<K: Workload>(
    client: Client,
    delay: Duration,
    shared: Arc<Mutex<Shared>>,
    kind: &'static str,
) {
    let api: Api<K> = Api::all(client.clone());
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
        let api: Api<K> = Api::namespaced(client.clone(), &ns);
        let replicas = obj.desired_replicas();
        let status = obj.ready_status(replicas, if unready { 0 } else { replicas });
        tokio::spawn(async move {
            if !unready {
                tokio::time::sleep(delay).await;
            }
            let patch = json!({ "status": status });
            // A kubelet and a controller manager keep trying: so does the simulator, or
            // one failed write (an injected fault) would leave the workload unready.
            let mut wait = Duration::from_millis(50);
            for _ in 0..20 {
                match api
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => return,
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
