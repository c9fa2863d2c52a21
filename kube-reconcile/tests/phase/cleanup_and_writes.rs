//! Deletion through the finalizer, a failing cleanup, and the status write: conflicts,
//! stale objects, unknown phases.

use super::*;

#[tokio::test(start_paused = true)]
async fn deletion_runs_the_cleanup_then_removes_the_finalizer() {
    let env = env().await;
    let controller = env.run_controller();
    env.create("db", 3, "").await;
    env.until_phase("db", "Ready").await;
    env.api
        .delete("db", &DeleteParams::default())
        .await
        .unwrap();
    for _ in 0..100 {
        if env.api.get_opt("db").await.unwrap().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(env.api.get_opt("db").await.unwrap().is_none());
    assert_eq!(env.ctx.cleanups.load(Ordering::SeqCst), 1);
    controller.abort();
}

#[tokio::test(start_paused = true)]
async fn a_failing_cleanup_is_visible_and_retried_until_it_succeeds() {
    let env = env().await;
    env.ctx.cleanup_fails.store(true, Ordering::SeqCst);
    let controller = env.run_controller();
    env.create("db", 3, "").await;
    env.until_phase("db", "Ready").await;
    env.api
        .delete("db", &DeleteParams::default())
        .await
        .unwrap();
    let stuck = env
        .until("db", "CleanupFailed", |o| {
            condition(o, "Ready").is_some_and(|(_, r)| r == "CleanupFailed")
        })
        .await;
    let message = machine(&stuck)
        .conditions
        .find("Ready")
        .unwrap()
        .message
        .clone();
    assert!(message.contains("scripted Transient error"), "{message}");
    assert!(
        message.contains("test.kube-reconcile.dev/cleanup"),
        "{message}"
    );
    assert!(stuck.metadata.deletion_timestamp.is_some());
    // Retried with backoff, then it works.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(env.ctx.cleanups.load(Ordering::SeqCst) >= 2);
    env.ctx.cleanup_fails.store(false, Ordering::SeqCst);
    for _ in 0..1000 {
        if env.api.get_opt("db").await.unwrap().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(env.api.get_opt("db").await.unwrap().is_none());
    controller.abort();
}

#[tokio::test(start_paused = true)]
async fn a_conflicting_status_write_is_a_conflict_and_the_next_reconcile_succeeds() {
    let env = env().await;
    env.create("db", 3, "").await;
    env.reconcile("db").await.unwrap();
    env.server()
        .faults()
        .inject(Fault::error(409).verb(Verb::Patch).times(1));
    let err = env.reconcile("db").await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Conflict, "{err:?}");
    assert_eq!(phase_of(&env.get("db").await), Some("Pending"));
    env.reconcile("db").await.unwrap();
    assert_eq!(phase_of(&env.get("db").await), Some("Provisioning"));
}

#[tokio::test(start_paused = true)]
async fn a_stale_object_cannot_overwrite_a_newer_status() {
    let env = env().await;
    env.create("db", 3, "").await;
    env.reconcile("db").await.unwrap();
    let stale = Arc::new(env.get("db").await);
    // Someone else moves the object on; the engine's write from the old copy conflicts.
    env.api
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": { "team": "payments" } } })),
        )
        .await
        .unwrap();
    let err = env
        .engine
        .reconcile(stale, env.ctx.clone())
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Conflict);
    assert_eq!(phase_of(&env.get("db").await), Some("Pending"));
}

#[tokio::test(start_paused = true)]
async fn a_copy_older_than_the_engines_own_write_waits_for_the_cache_and_writes_nothing() {
    let env = env().await;
    env.create("db", 3, "").await;
    env.reconcile("db").await.unwrap();
    let stale = Arc::new(env.get("db").await);
    env.reconcile("db").await.unwrap(); // Pending -> Provisioning
    let written = env.get("db").await;
    // A controller whose cache has not shown that write yet hands the engine the old copy:
    // it waits for the cache instead of sending a write that would conflict.
    let action = env.engine.reconcile(stale, env.ctx.clone()).await.unwrap();
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(Duration::from_secs(1))
    );
    assert_eq!(
        env.get("db").await.resource_version(),
        written.resource_version()
    );
    // The copy with the write reconciles as usual.
    env.reconcile("db").await.unwrap();
    assert_eq!(phase_of(&env.get("db").await), Some("Configuring"));
}

#[tokio::test(start_paused = true)]
async fn an_unknown_phase_starts_over_with_a_warning() {
    let env = env().await;
    env.create("db", 3, "").await;
    env.reconcile("db").await.unwrap();
    env.api
        .patch_status(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "phase": "Exploded" } })),
        )
        .await
        .unwrap();
    env.reconcile("db").await.unwrap();
    let obj = env.get("db").await;
    assert_eq!(phase_of(&obj), Some("Pending"));
    let record = machine(&obj).phase_history.last().cloned().unwrap();
    assert_eq!(record.reason, "UnknownPhase");
    assert_eq!(record.from.as_deref(), Some("Exploded"));
    assert!(
        record.message.contains("\"Exploded\""),
        "{}",
        record.message
    );
}
