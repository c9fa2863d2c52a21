//! The seeded trouble: which Databases, which API faults, which DBaaS outages and when the
//! operator is killed.

use super::*;

/// A Database the seed creates, and whether the operator should accept it.
pub(crate) struct Planned {
    pub(crate) db: Database,
    pub(crate) valid: bool,
}

pub(crate) fn plan(rng: &mut fastrand::Rng) -> Vec<Planned> {
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
pub(crate) fn api_faults(server: &ApiServer, rng: &mut fastrand::Rng) -> Vec<String> {
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
pub(crate) async fn world(seed: u64, rng: &mut fastrand::Rng) -> World {
    let server = ApiServer::builder().seed(seed).build();
    let client = server.client();
    kube_reconcile_testing::install_crd(&client, &Database::crd())
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
pub(crate) async fn chaos(
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
