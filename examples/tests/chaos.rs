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
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use kube_reconcile::{middleware::rate_limit::Quota, phase::HasPhaseStatus};
use kube_reconcile_testing::{ApiServer, Fault, Verb, WorkloadSimulator};
use serde::de::DeserializeOwned;
use serde_json::json;

use example::{
    crd::{Database, DatabaseSpec, Engine},
    dbaas::{DbaasServer, RunningDbaas},
    report::Report,
};

/// The seeds run when `KUBE_RECONCILE_CHAOS_SEED` is not set.
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
        example::start(
            self.client.clone(),
            &self.namespace,
            self.dbaas.client(),
            &Report::new(),
        )
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

/// A Database the seed creates, and whether the operator should accept it.
struct Planned {
    db: Database,
    valid: bool,
}

fn plan(rng: &mut fastrand::Rng) -> Vec<Planned> {
    let n = rng.usize(5..=7);
    (0..n)
        .map(|i| {
            let engine = if rng.bool() {
                Engine::Postgres
            } else {
                Engine::Mysql
            };
            let mut version = (*rng.choice(engine.versions()).unwrap_or(&"16")).to_owned();
            let mut replicas = *rng.choice(&[1, 3]).unwrap_or(&1);
            let mut storage = format!("{}Gi", rng.u32(1..=20));
            // About one in four is wrong in a way only the operator can tell.
            let valid = rng.u8(0..4) != 0;
            if !valid {
                match rng.u8(0..3) {
                    0 => "9.6".clone_into(&mut version),
                    1 => replicas = 2,
                    _ => "lots".clone_into(&mut storage),
                }
            }
            let db = Database::new(
                &format!("db-{i}"),
                DatabaseSpec {
                    engine,
                    version,
                    replicas,
                    storage,
                    retain_on_delete: false,
                },
            );
            Planned { db, valid }
        })
        .collect()
}

/// A seeded mix of API faults; returns what was turned on, for a failure message.
fn api_faults(server: &ApiServer, rng: &mut fastrand::Rng) -> Vec<String> {
    let mut on = Vec::new();
    let mut add = |fault: Fault| {
        on.push(format!("{fault:?}"));
        server.faults().inject(fault);
    };
    let p = |rng: &mut fastrand::Rng, max: f64| 0.02 + rng.f64() * max;
    add(Fault::error(500).verb(Verb::Patch).rate(p(rng, 0.08)));
    add(Fault::error(409).verb(Verb::Patch).rate(p(rng, 0.08)));
    add(Fault::error(500).verb(Verb::Create).rate(p(rng, 0.1)));
    add(Fault::error(429)
        .retry_after(1)
        .verb(Verb::Get)
        .rate(p(rng, 0.04)));
    add(Fault::error(503).verb(Verb::Get).rate(p(rng, 0.05)));
    add(Fault::latency(Duration::from_millis(rng.u64(5..=40))).rate(p(rng, 0.2)));
    add(Fault::expired().verb(Verb::Watch).rate(p(rng, 0.15)));
    add(Fault::error(500).verb(Verb::List).rate(p(rng, 0.1)));
    add(Fault::drop_watch(Duration::from_millis(rng.u64(200..=900))).rate(p(rng, 0.4)));
    on
}

/// The seed's API server (with the CRD), DBaaS and workload simulator.
async fn world(seed: u64, rng: &mut fastrand::Rng) -> World {
    let server = ApiServer::builder().seed(seed).build();
    let client = server.client();
    example::install_crd(&client)
        .await
        .unwrap_or_else(|e| panic!("seed {seed:#x}: installing the CRD failed: {e}"));
    let dbaas = DbaasServer::builder()
        .provision_delay(Duration::from_millis(100))
        .update_delay(Duration::from_millis(50))
        .delete_delay(Duration::from_millis(50))
        .jitter(Duration::from_millis(50))
        .rate_limit(Quota::per_second(
            NonZeroU32::new(rng.u32(4..=12)).unwrap_or(NonZeroU32::MIN),
        ))
        .seed(seed)
        .start()
        .await
        .unwrap_or_else(|e| panic!("seed {seed:#x}: the DBaaS did not start: {e}"));
    World {
        seed,
        namespace: client.default_namespace().to_owned(),
        api: Api::default_namespaced(client.clone()),
        _simulator: WorkloadSimulator::new(client.clone())
            .ready_after(Duration::from_millis(50))
            .start(),
        client,
        server,
        dbaas,
    }
}

/// Faults on; the operator started and killed at random moments `restarts` times, a spec
/// changed midway, the passwords checked after each kill. Returns the faults turned on.
async fn chaos(
    world: &World,
    planned: &[Planned],
    rng: &mut fastrand::Rng,
    restarts: u32,
    passwords: &mut BTreeMap<String, Vec<u8>>,
) -> Vec<String> {
    let faults = api_faults(&world.server, rng);
    world.dbaas.faults().error_rate(0.05 + rng.f64() * 0.15);
    world
        .dbaas
        .faults()
        .latency(Duration::from_millis(rng.u64(0..=20)));
    let resized = planned.iter().find(|p| p.valid).map(|p| p.db.name_any());
    for round in 0..restarts {
        if rng.u8(0..3) == 0 {
            world
                .dbaas
                .faults()
                .outage(Duration::from_millis(rng.u64(200..=700)));
        }
        let operator = world.operator();
        tokio::time::sleep(Duration::from_millis(rng.u64(150..=700))).await;
        // Midway, a user changes a spec: the update must not regenerate anything either.
        if round == restarts / 2
            && let Some(name) = &resized
        {
            let patch = json!({ "spec": { "replicas": 5 } });
            for _ in 0..20 {
                if world
                    .api
                    .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .is_ok()
                {
                    break;
                }
            }
        }
        operator.controller.abort();
        world.check_passwords(passwords).await;
    }
    faults
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

/// Whether `db` is where it belongs: Ready at its current spec, or (invalid) failed with
/// `InvalidSpec` at its current spec.
fn settled(db: &Database, valid: bool) -> bool {
    let Some(status) = db.phase_status() else {
        return false;
    };
    let current = status.observed_generation == db.metadata.generation;
    if valid {
        current && db.phase() == Some("Ready") && status.conditions.is_true("Ready")
    } else {
        db.phase() == Some("Failed")
            && status
                .conditions
                .find("Stalled")
                .is_some_and(|c| c.reason == "InvalidSpec")
    }
}

/// Waits until every planned Database is settled; returns them.
async fn converge(world: &World, planned: &[Planned], faults: &[String]) -> Vec<Database> {
    let deadline = Instant::now() + CONVERGE_WITHIN;
    loop {
        let list = world.list::<Database>(&ListParams::default()).await;
        let unsettled: Vec<_> = planned
            .iter()
            .filter(|p| {
                !list
                    .iter()
                    .any(|d| d.name_any() == p.db.name_any() && settled(d, p.valid))
            })
            .collect();
        if unsettled.is_empty() {
            return list;
        }
        if Instant::now() > deadline {
            let states: Vec<_> = unsettled
                .iter()
                .map(|p| {
                    let stored = list.iter().find(|d| d.name_any() == p.db.name_any());
                    (
                        p.db.name_any(),
                        p.valid,
                        stored.and_then(|d| d.phase().map(str::to_owned)),
                        stored.and_then(|d| {
                            d.phase_status()
                                .and_then(|s| s.conditions.find("Ready").cloned())
                        }),
                    )
                })
                .collect();
            panic!(
                "seed {:#x}: not settled {}s after the faults stopped: {states:#?}\nfaults: {faults:#?}",
                world.seed,
                CONVERGE_WITHIN.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks the converged state: instances, children, passwords, conditions.
async fn check_converged(
    world: &World,
    planned: &[Planned],
    list: &[Database],
    passwords: &mut BTreeMap<String, Vec<u8>>,
) {
    let seed = world.seed;
    let valid: Vec<_> = planned.iter().filter(|p| p.valid).collect();
    // Exactly one external instance per valid Database, none for the invalid ones.
    let instances = world.dbaas.instances();
    for p in planned {
        let name = p.db.name_any();
        let count = instances.iter().filter(|i| i.name == name).count();
        assert_eq!(
            count,
            usize::from(p.valid),
            "seed {seed:#x}: DBaaS instances named {name}: {instances:#?}"
        );
        let stored = list.iter().find(|d| d.name_any() == name);
        let recorded = stored
            .and_then(|d| d.status.as_ref())
            .and_then(|s| s.instance_id.clone());
        if p.valid {
            let instance = instances.iter().find(|i| i.name == name);
            assert_eq!(
                recorded.as_deref(),
                instance.map(|i| i.id.as_str()),
                "seed {seed:#x}: {name} records another instance than the one it has"
            );
        } else {
            // The condition says what to change.
            let ready = stored
                .and_then(|d| d.phase_status())
                .and_then(|s| s.conditions.find("Ready").cloned());
            let ready = ready.unwrap_or_else(|| panic!("seed {seed:#x}: {name} has no Ready"));
            assert_eq!(ready.reason, "InvalidSpec", "seed {seed:#x}: {name}");
            assert!(
                ready.message.starts_with("spec."),
                "seed {seed:#x}: {name}: {}",
                ready.message
            );
        }
    }
    assert_eq!(
        world.dbaas.stats().instances_created,
        valid.len() as u64,
        "seed {seed:#x}: instances created"
    );
    // One child of each kind per valid Database, none for an invalid one.
    for p in planned {
        let name = p.db.name_any();
        let want = usize::from(p.valid);
        let counts = [
            ("Secret", world.children::<Secret>(&name).await.len()),
            ("ConfigMap", world.children::<ConfigMap>(&name).await.len()),
            ("Service", world.children::<Service>(&name).await.len()),
            (
                "StatefulSet",
                world.children::<StatefulSet>(&name).await.len(),
            ),
        ];
        for (kind, count) in counts {
            assert_eq!(count, want, "seed {seed:#x}: {kind}s of {name}");
        }
    }
    world.check_passwords(passwords).await;
    assert_eq!(
        passwords.len(),
        valid.len(),
        "seed {seed:#x}: one Secret per valid Database: {:?}",
        passwords.keys()
    );
}

/// After every Database was deleted: waits until everything is gone, then checks the
/// operator's per-object middleware state is back to zero.
async fn check_cleaned_up(world: &World, planned: &[Planned], operator: &example::Operator) {
    let seed = world.seed;
    let deadline = Instant::now() + CONVERGE_WITHIN;
    loop {
        let databases = world.list::<Database>(&ListParams::default()).await;
        let instances = world.dbaas.stats().live_instances;
        let mut children = 0;
        for p in planned {
            let name = p.db.name_any();
            children += world.children::<Secret>(&name).await.len()
                + world.children::<ConfigMap>(&name).await.len()
                + world.children::<Service>(&name).await.len()
                + world.children::<StatefulSet>(&name).await.len();
        }
        if databases.is_empty() && instances == 0 && children == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed:#x}: not cleaned up: Databases {:?} (finalizers {:?}), {instances} DBaaS instances, {children} children",
            databases
                .iter()
                .map(ResourceExt::name_any)
                .collect::<Vec<_>>(),
            databases
                .iter()
                .map(|d| d.finalizers().to_vec())
                .collect::<Vec<_>>(),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stats = world.dbaas.stats();
    assert_eq!(
        stats.instances_deleted, stats.instances_created,
        "seed {seed:#x}: every created instance was deleted"
    );
    // No finalizer anywhere in the namespace's kinds the operator touches.
    for finalizers in world
        .list::<Secret>(&ListParams::default())
        .await
        .iter()
        .map(|o| o.finalizers().to_vec())
        .chain(
            world
                .list::<ConfigMap>(&ListParams::default())
                .await
                .iter()
                .map(|o| o.finalizers().to_vec()),
        )
    {
        assert!(finalizers.is_empty(), "seed {seed:#x}: {finalizers:?}");
    }

    // Per-object middleware state back to zero:
    // - backoff: no object tracked. Its state is forgotten on success and on terminal
    //   errors, and each object's last reconcile (the one that removed the finalizer)
    //   succeeded; a sweep drops anything idle past its TTL.
    // - rate limit: no object tracked once a sweep forgets the limits that are full
    //   again; a per-object limit of 20/s refills within a second of the last reconcile.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let backoff = operator.backoff.sweep();
        let rate_limited = operator.rate_limit.sweep();
        if backoff == 0 && rate_limited == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed:#x}: per-object state left: backoff {:?}, rate limit {rate_limited} keys",
            operator.backoff
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(operator.backoff.len(), 0, "seed {seed:#x}");
    assert_eq!(operator.rate_limit.keys_tracked(), 0, "seed {seed:#x}");
    // - the phase engine: no object held paced (deletion forgets it).
    assert_eq!(operator.engine.paced_objects(), 0, "seed {seed:#x}");
}
