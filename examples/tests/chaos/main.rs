//! The chaos suite: the example operator under random API faults, DBaaS outages and
//! crash-restarts, seeded so every failure can be replayed.
//!
//! Each seed creates a handful of `Database`s (some invalid), turns on a seeded mix of
//! API faults (500, 409, 429, latency, expired and dropped watches) and DBaaS trouble
//! (outages, an error rate, latency, its own 429s), and kills the operator at random
//! moments, restarting it each time. Then the faults stop and the suite checks what must
//! hold: every valid `Database` Ready, exactly one DBaaS instance each, one child of each
//! kind, passwords never regenerated; after deleting everything, no instance, no child,
//! no finalizer, and no per-object middleware state left.
//!
//! `KUBE_RECONCILE_CHAOS_SEED=<n>` runs one seed (as printed by a failing run); without it
//! a fixed list runs. Each seed prints a one-line summary.

use database_operator as example;

use std::{
    collections::BTreeMap,
    fmt,
    num::NonZeroU32,
    time::{Duration, Instant},
};

use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{ConfigMap, Secret, Service},
};
use kube::{
    Api, Client, CustomResourceExt, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use kube_reconcile::{
    middleware::rate_limit::Quota,
    phase::{HasPhaseStatus, Tracked},
};
use kube_reconcile_testing::{ApiServer, Fault, Verb, WorkloadSimulator};
use serde::de::DeserializeOwned;
use serde_json::json;

use example::{
    crd::{Database, DatabaseSpec, Engine},
    dbaas::{DbaasServer, RunningDbaas},
    operator::{DatabaseMachine, READY_RESYNC},
};

/// The seeds run when `KUBE_RECONCILE_CHAOS_SEED` is not set.
mod checks;
mod faults;

use checks::*;
use faults::*;

const SEEDS: [u64; 6] = [
    0x5EED_0001,
    0x5EED_0002,
    0x5EED_0003,
    0x5EED_0004,
    0x5EED_0005,
    0x5EED_0006,
];

/// How long one seed may take to converge (and, separately, to clean up) once the faults
/// stop, before it counts as stuck.
const CONVERGE_WITHIN: Duration = Duration::from_secs(40);

const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";

fn seeds() -> Vec<u64> {
    match std::env::var("KUBE_RECONCILE_CHAOS_SEED") {
        Ok(seed) => {
            let seed = seed.trim();
            let parsed = seed
                .strip_prefix("0x")
                .map_or_else(|| seed.parse(), |hex| u64::from_str_radix(hex, 16));
            vec![
                parsed.unwrap_or_else(|e| {
                    panic!("KUBE_RECONCILE_CHAOS_SEED={seed:?} is not a u64: {e}")
                }),
            ]
        }
        Err(_) => SEEDS.to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_api_faults_dbaas_outages_and_crash_restarts_every_invariant_holds() {
    let seeds = seeds();
    println!(
        "chaos: seeds {} (replay one with KUBE_RECONCILE_CHAOS_SEED=<seed>)",
        seeds
            .iter()
            .map(|s| format!("{s:#x}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let started = Instant::now();
    // The seeds run side by side, each on its own API server and DBaaS.
    let summaries = futures::future::join_all(seeds.iter().map(|&seed| run(seed))).await;
    for summary in &summaries {
        println!("{summary}");
    }
    println!(
        "chaos: {} seeds passed in {:.1}s",
        summaries.len(),
        started.elapsed().as_secs_f64()
    );
}

/// One seed's numbers, printed as a line in the CI log.
struct Summary {
    seed: u64,
    valid: usize,
    invalid: usize,
    restarts: u32,
    api_faults: u64,
    api_requests: u64,
    dbaas_calls: u64,
    dbaas_throttled: u64,
    dbaas_outage_calls: u64,
    dbaas_errors: u64,
    chaos: Duration,
    converge: Duration,
    cleanup: Duration,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "chaos seed {:#x}: {} valid + {} invalid Databases, {} restarts, {} API faults fired \
             in {} requests, DBaaS {} calls ({} 429s, {} in outages, {} injected 500s); \
             chaos {:.1}s, converged in {:.1}s, cleaned up in {:.1}s",
            self.seed,
            self.valid,
            self.invalid,
            self.restarts,
            self.api_faults,
            self.api_requests,
            self.dbaas_calls,
            self.dbaas_throttled,
            self.dbaas_outage_calls,
            self.dbaas_errors,
            self.chaos.as_secs_f64(),
            self.converge.as_secs_f64(),
            self.cleanup.as_secs_f64(),
        )
    }
}

/// One seed's world: the API server, the DBaaS, the workload simulator.
struct World {
    seed: u64,
    server: ApiServer,
    client: Client,
    namespace: String,
    dbaas: RunningDbaas,
    api: Api<Database>,
    _simulator: kube_reconcile_testing::RunningSimulator,
}

impl World {
    fn operator(&self) -> example::Operator {
        let dbaas = example::dbaas(self.dbaas.client())
            .unwrap_or_else(|e| panic!("seed {:#x}: the DBaaS's settings: {e}", self.seed))
            .build();
        let machine = DatabaseMachine::new(Duration::ZERO, READY_RESYNC)
            .unwrap_or_else(|e| panic!("seed {:#x}: the machine's table: {e}", self.seed));
        example::operator(self.client.clone(), machine)
            .and_then(|operator| example::start(operator, self.api.clone(), dbaas))
            .unwrap_or_else(|e| panic!("seed {:#x}: the operator did not start: {e}", self.seed))
    }

    /// Lists `K`, retrying through injected faults.
    async fn list<K>(&self, params: &ListParams) -> Vec<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + fmt::Debug,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), &self.namespace);
        for _ in 0..50 {
            if let Ok(list) = api.list(params).await {
                return list.items;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("seed {:#x}: listing kept failing", self.seed)
    }

    /// Checks every Secret's password against the first one seen for that name.
    async fn check_passwords(&self, seen: &mut BTreeMap<String, Vec<u8>>) {
        for secret in self.list::<Secret>(&ListParams::default()).await {
            let name = secret.name_any();
            let password = secret
                .data
                .unwrap_or_default()
                .remove("password")
                .map(|b| b.0)
                .unwrap_or_default();
            assert_eq!(password.len(), 32, "seed {:#x}: Secret {name}", self.seed);
            let first = seen.entry(name.clone()).or_insert_with(|| password.clone());
            assert!(
                *first == password,
                "seed {:#x}: the password in Secret {name} changed",
                self.seed
            );
        }
    }

    /// How many objects of `K` carry the instance label of `name`.
    async fn children<K>(&self, name: &str) -> Vec<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + fmt::Debug,
        K::DynamicType: Default,
    {
        self.list(&ListParams::default().labels(&format!("{INSTANCE_LABEL}={name}")))
            .await
    }
}

/// Runs one seed and checks every invariant; panics naming the seed on a violation.
async fn run(seed: u64) -> Summary {
    let mut rng = fastrand::Rng::with_seed(seed);
    let world = world(seed, &mut rng).await;

    // The Databases, and one the schema refuses.
    let planned = plan(&mut rng);
    for p in &planned {
        world
            .api
            .create(&PostParams::default(), &p.db)
            .await
            .unwrap_or_else(|e| panic!("seed {seed:#x}: creating {} failed: {e}", p.db.name_any()));
    }
    let mut refused = planned[0].db.clone();
    refused.metadata.name = Some("refused".to_owned());
    refused.spec.replicas = 0;
    assert!(
        matches!(world.api.create(&PostParams::default(), &refused).await,
            Err(kube::Error::Api(s)) if s.code == 422),
        "seed {seed:#x}: replicas 0 must be refused by the schema"
    );

    // Chaos: faults on, the operator killed at random moments and restarted.
    let chaos_started = Instant::now();
    let restarts = rng.u32(4..=7);
    let mut passwords = BTreeMap::new();
    let faults = chaos(&world, &planned, &mut rng, restarts, &mut passwords).await;
    let chaos = chaos_started.elapsed();

    // Calm: the faults stop, a last operator converges.
    let api_faults_fired = world.server.faults().fired();
    world.server.faults().clear();
    world.dbaas.faults().clear();
    let operator = world.operator();
    let converge_started = Instant::now();
    let list = converge(&world, &planned, &faults).await;
    let converge = converge_started.elapsed();
    check_converged(&world, &planned, &list, &mut passwords).await;

    // Delete everything; one more crash in the middle of it.
    for p in &planned {
        world
            .api
            .delete(&p.db.name_any(), &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("seed {seed:#x}: deleting {} failed: {e}", p.db.name_any()));
    }
    let cleanup_started = Instant::now();
    tokio::time::sleep(Duration::from_millis(rng.u64(0..=150))).await;
    operator.controller.abort();
    let operator = world.operator();
    check_cleaned_up(&world, &planned, &operator).await;
    let cleanup = cleanup_started.elapsed();
    operator.controller.abort();

    let stats = world.dbaas.stats();
    Summary {
        seed,
        valid: planned.iter().filter(|p| p.valid).count(),
        invalid: planned.iter().filter(|p| !p.valid).count(),
        restarts: restarts + 1,
        api_faults: api_faults_fired,
        api_requests: world.server.requests().total(),
        dbaas_calls: stats.total_calls(),
        dbaas_throttled: stats.throttled,
        dbaas_outage_calls: stats.outage_calls,
        dbaas_errors: stats.injected_errors,
        chaos,
        converge,
        cleanup,
    }
}
