//! What must hold after the storm: convergence, one instance and one child of each kind,
//! passwords kept; after deletion, nothing left behind.

use super::*;

/// Whether `db` is where it belongs: Ready at its current spec, or (invalid) failed with
/// `InvalidSpec` at its current spec.
pub(crate) fn settled(db: &Database, valid: bool) -> bool {
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
pub(crate) async fn converge(
    world: &World,
    planned: &[Planned],
    faults: &[String],
) -> Vec<Database> {
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
pub(crate) async fn check_converged(
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
pub(crate) async fn check_cleaned_up(
    world: &World,
    planned: &[Planned],
    operator: &example::Operator,
) {
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

    // Per-object state back to zero:
    // - backoff: no object tracked. Its state is forgotten on success and on terminal
    //   errors, and each object's last reconcile (the one that removed the finalizer)
    //   succeeded; a sweep drops anything idle past its TTL.
    // - rate limit: no object tracked once a sweep forgets the limits that are full
    //   again; a per-object limit of 20/s refills within a second of the last reconcile.
    // - the phase engine: no object held paced (deletion forgets it).
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let tracked = operator.controller.tracked();
        if tracked == Tracked::default() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed:#x}: per-object state left: {tracked:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
