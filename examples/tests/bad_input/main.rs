//! Bad input at scale: arbitrary specs and arbitrary status contents fed to the example
//! operator's phase engine on the embedded API server.
//!
//! Specs go in as JSON, so the CRD schema refuses what it can (422, naming the field);
//! what gets through is reconciled. Status contents (random phase strings, garbage
//! condition lists, wrong types in `phaseHistory`, `retry`, `lastError`) go through the
//! status subresource, and, when the schema refuses them, straight into the object the
//! engine is handed, as a cluster without schema validation would store them. Whatever
//! comes in: no panic, a typed result, and a `Ready` condition that says what is wrong or
//! how far the object got.

use database_operator as example;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use kube::{
    Api, Client, CustomResourceExt,
    api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams},
};
use kube_reconcile::{
    Reconciler,
    external::Dependency,
    phase::{HasPhaseStatus, Phase, PhaseConfig, PhaseEngine},
};
use kube_reconcile_testing::ApiServer;
use proptest::{
    prelude::*,
    test_runner::{RngAlgorithm, TestRng, TestRunner},
};
use serde_json::{Value, json};

use example::{
    crd::Database,
    dbaas::DbaasServer,
    operator::{Ctx, DatabaseMachine, DbPhase},
};

/// The example's engine and context on one API server and one DBaaS.
mod inputs;

use inputs::*;

struct World {
    client: Client,
    engine: PhaseEngine<DatabaseMachine, Database>,
    ctx: Arc<Ctx>,
    typed: Api<Database>,
    raw: Api<DynamicObject>,
    names: AtomicU64,
    _dbaas: example::dbaas::RunningDbaas,
}

async fn world() -> World {
    let server = ApiServer::new();
    let client = server.client();
    kube_reconcile_testing::install_crd(&client, &Database::crd())
        .await
        .unwrap();
    let dbaas = DbaasServer::builder()
        .provision_delay(Duration::ZERO)
        .jitter(Duration::ZERO)
        .start()
        .await
        .unwrap();
    let dbaas_client = dbaas.client();
    let ctx = Arc::new(example::operator::Ctx {
        dbaas: Dependency::builder(dbaas_client).build(),
    });
    let engine = PhaseEngine::with_config(
        DatabaseMachine::new(Duration::ZERO, example::operator::READY_RESYNC).unwrap(),
        client.clone(),
        PhaseConfig::default()
            .finalizer("example.kube-reconcile.dev/deprovision")
            .controller("database-operator"),
    )
    .unwrap();
    let resource = ApiResource::erase::<Database>(&());
    World {
        typed: Api::default_namespaced(client.clone()),
        raw: Api::default_namespaced_with(client.clone(), &resource),
        client,
        engine,
        ctx,
        names: AtomicU64::new(0),
        _dbaas: dbaas,
    }
}

/// What one case did, for the summary.
#[derive(Default, Debug)]
struct Tally {
    spec_refused: u64,
    status_refused: u64,
    injected_in_memory: u64,
    reconciled: u64,
    handler_errors: u64,
    invalid_spec: u64,
    unknown_phase: u64,
}

/// The HTTP code and message of an API error.
fn api_error(e: &kube::Error) -> Option<(u16, String)> {
    match e {
        kube::Error::Api(status) => Some((status.code, status.message.clone())),
        _ => None,
    }
}

/// The fields the phase engine owns; the rest of the status belongs to the example's type.
const ENGINE_FIELDS: [&str; 6] = [
    "phase",
    "conditions",
    "phaseHistory",
    "retry",
    "lastError",
    "observedGeneration",
];

/// One case: create with `spec`, put `status` in place, reconcile and check.
async fn case(world: &World, spec: Value, status: Value, tally: &mut Tally) -> Result<(), String> {
    let name = format!("bad-{}", world.names.fetch_add(1, Ordering::Relaxed));
    if !create(world, &name, spec, tally).await? {
        return Ok(());
    }
    let Some(first) = with_status(world, &name, status, tally).await? else {
        return Ok(());
    };
    reconcile_and_check(world, &name, first, tally).await
}

/// Creates the Database; `false` when the schema refused it (checking how).
async fn create(world: &World, name: &str, spec: Value, tally: &mut Tally) -> Result<bool, String> {
    let manifest: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.kube-reconcile.dev/v1alpha1",
        "kind": "Database",
        "metadata": { "name": name },
        "spec": spec,
    }))
    .map_err(|e| e.to_string())?;
    match world.raw.create(&PostParams::default(), &manifest).await {
        Ok(_) => Ok(true),
        Err(e) => {
            // The schema refused it: a 422 (or 400 for a body that is not an object) naming
            // what is wrong.
            let (code, message) = api_error(&e).ok_or_else(|| format!("create: {e}"))?;
            if !(code == 422 || code == 400) || message.is_empty() {
                return Err(format!("create refused with {code}: {message}"));
            }
            if code == 422 && !message.contains("spec") {
                return Err(format!("a 422 that names no spec field: {message}"));
            }
            tally.spec_refused += 1;
            Ok(false)
        }
    }
}

/// Puts `status` in place: through the subresource, else (refused) into the object handed
/// to the engine. Returns that object, or `None` when there is nothing to inject.
async fn with_status(
    world: &World,
    name: &str,
    status: Value,
    tally: &mut Tally,
) -> Result<Option<Database>, String> {
    // Whatever the schema let through, the Rust type reads.
    world
        .typed
        .get(name)
        .await
        .map_err(|e| format!("a Database the schema accepted cannot be read: {e}"))?;
    let patched = world
        .raw
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await;
    let first = match patched {
        Ok(_) => world
            .typed
            .get(name)
            .await
            .map_err(|e| format!("a status the schema accepted cannot be read: {e}"))?,
        Err(e) => {
            let (code, message) = api_error(&e).ok_or_else(|| format!("status patch: {e}"))?;
            if code != 422 && code != 400 {
                return Err(format!("status patch refused with {code}: {message}"));
            }
            tally.status_refused += 1;
            // Only the engine's fields go in by hand: a status that is no object, or the
            // example's own fields, are the example's type to read, and the schema's to
            // refuse (as it just did).
            let Value::Object(fields) = &status else {
                return Ok(None);
            };
            tally.injected_in_memory += 1;
            let engine_part = Value::Object(
                fields
                    .iter()
                    .filter(|(k, _)| ENGINE_FIELDS.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            );
            // The finalizer first, as an earlier reconcile would have added it: the engine
            // reads the object again when it adds its finalizer, which would drop what
            // is injected here.
            let with_finalizer = world
                .raw
                .patch(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({
                        "metadata": { "finalizers": [example::FINALIZER] }
                    })),
                )
                .await
                .map_err(|e| format!("adding the finalizer: {e}"))?;
            let mut raw = serde_json::to_value(&with_finalizer).map_err(|e| e.to_string())?;
            raw["status"] = engine_part;
            serde_json::from_value::<Database>(raw)
                .map_err(|e| format!("a corrupt engine status makes the object unreadable: {e}"))?
        }
    };
    Ok(Some(first))
}

/// Reconciles a few times; checks the conditions after each and at the end.
async fn reconcile_and_check(
    world: &World,
    name: &str,
    mut first: Database,
    tally: &mut Tally,
) -> Result<(), String> {
    let written_phase = first.phase().map(str::to_owned);
    // A status that claims the ready phase at the current generation cannot be told from
    // a real one: the machine does not check the spec again there.
    let claims_ready = written_phase.as_deref() == Some("Ready")
        && first.phase_status().and_then(|s| s.observed_generation) == first.metadata.generation;
    let problem = first.spec_problem();

    for round in 0..4 {
        let outcome = tokio::time::timeout(
            Duration::from_secs(10),
            world
                .engine
                .reconcile(Arc::new(first.clone()), world.ctx.clone()),
        )
        .await
        .map_err(|_| "a reconcile hung for 10s".to_owned())?;
        tally.reconciled += 1;
        if outcome.is_err() {
            tally.handler_errors += 1;
        }
        let now = world
            .typed
            .get(name)
            .await
            .map_err(|e| format!("after a reconcile the object cannot be read: {e}"))?;
        let ready = now
            .phase_status()
            .and_then(|s| s.conditions.find("Ready").cloned())
            .ok_or_else(|| {
                format!(
                    "no Ready condition after reconcile {round}: {:?}",
                    now.status
                )
            })?;
        if ready.reason.is_empty() {
            return Err(format!("a Ready condition without a reason: {ready:?}"));
        }
        // A phase the machine does not know is named, and the object starts over.
        if round == 0
            && let Some(phase) = &written_phase
            && DbPhase::from_name(phase).is_none()
        {
            if ready.reason != "UnknownPhase" || !ready.message.contains("status.phase") {
                return Err(format!("phase {phase:?}: {ready:?}"));
            }
            tally.unknown_phase += 1;
        }
        first = now;
    }
    // An invalid spec ends with Ready=False, InvalidSpec and the problem in the message,
    // whatever phase the status claimed; a valid one is progressing or ready.
    let ready = first
        .phase_status()
        .and_then(|s| s.conditions.find("Ready").cloned())
        .ok_or("no Ready condition")?;
    match problem {
        Some(problem) => {
            if ready.status == kube_reconcile::conditions::ConditionStatus::True && !claims_ready {
                return Err(format!(
                    "Ready=True with an invalid spec ({problem}): {first:?}"
                ));
            }
            // From where the spec is checked (the start, a restart, an update), the
            // object must end up saying what is wrong.
            let checked_on_the_way = match written_phase.as_deref().map(DbPhase::from_name) {
                None
                | Some(None | Some(DbPhase::Pending | DbPhase::Provisioning | DbPhase::Updating)) => {
                    true
                }
                Some(Some(DbPhase::Ready)) => !claims_ready,
                Some(Some(_)) => false,
            };
            if checked_on_the_way && ready.reason != "InvalidSpec" {
                return Err(format!(
                    "an invalid spec ({problem}) from phase {written_phase:?} ends with {ready:?}"
                ));
            }
            if first.phase() == Some("Failed") && ready.reason == "InvalidSpec" {
                if ready.message != problem {
                    return Err(format!(
                        "InvalidSpec says {:?}, not {problem:?}",
                        ready.message
                    ));
                }
                tally.invalid_spec += 1;
            }
        }
        None => {
            if ready.reason == "InvalidSpec" {
                return Err(format!("a valid spec reads as invalid: {ready:?}"));
            }
        }
    }
    Ok(())
}

#[test]
fn arbitrary_specs_and_statuses_never_panic_and_always_leave_a_ready_condition() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let world = rt.block_on(world());
    let tally = std::cell::RefCell::new(Tally::default());
    // A fixed seed, so every run (and CI) tries the same 512 inputs; set
    // KUBE_RECONCILE_BAD_INPUT_SEED to explore others.
    let seed = std::env::var("KUBE_RECONCILE_BAD_INPUT_SEED").map_or(0x0BAD_1A9E, |s| {
        let parsed = match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => s.parse(),
        };
        parsed.unwrap_or_else(|e| panic!("KUBE_RECONCILE_BAD_INPUT_SEED={s:?}: {e}"))
    });
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        ProptestConfig {
            cases: 512,
            failure_persistence: None,
            ..ProptestConfig::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    let result = runner.run(&(spec(), status()), |(spec, status)| {
        rt.block_on(case(&world, spec, status, &mut tally.borrow_mut()))
            .map_err(TestCaseError::fail)
    });
    println!("bad input: seed {seed:#x}, {:?}", tally.borrow());
    if let Err(e) = result {
        panic!("{e}");
    }
    drop(world.client);
}

/// The inputs the property test found, kept as regressions: each once left an object
/// unreadable, unwritable or without a `Ready` condition.
#[test]
fn statuses_the_property_test_found_now_end_with_a_ready_condition() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let world = rt.block_on(world());
    let spec = json!({ "engine": "postgres", "version": "14", "replicas": 1 });
    for status in [
        // Resting in Ready with no conditions: the handler stays without a reason.
        json!({ "phase": "Ready", "observedGeneration": 1 }),
        // A Ready condition with nothing but its type.
        json!({ "phase": "Ready", "observedGeneration": 1, "conditions": [{ "type": "Ready" }] }),
        // An entry that is not an object (in memory: the schema refuses it).
        json!({ "conditions": [null] }),
        // A negative generation, copied into every condition the schema then refused.
        json!({ "phase": "Pending", "observedGeneration": -1 }),
        // An observed generation from the future.
        json!({ "phase": "Ready", "observedGeneration": 99, "conditions": [] }),
    ] {
        let mut tally = Tally::default();
        rt.block_on(case(&world, spec.clone(), status.clone(), &mut tally))
            .unwrap_or_else(|e| panic!("{status}: {e}"));
        assert!(tally.reconciled > 0, "{status}: {tally:?}");
    }
}
