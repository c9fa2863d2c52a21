//! The engine's flows, one test each.

use super::*;

#[tokio::test(start_paused = true)]
async fn the_happy_path_writes_phase_conditions_and_history_at_every_step() {
    let env = env().await;
    // Record every version of the object that the server hands out.
    let (seen, recorder) = env.record("db").await;
    let controller = env.run_controller();
    env.create("db", 3, "").await;
    let ready = env.until_phase("db", "Ready").await;

    // Final status, field by field.
    let status = machine(&ready);
    assert_eq!(status.phase.as_deref(), Some("Ready"));
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(
        condition(&ready, "Ready"),
        Some((ConditionStatus::True, "Verified".into()))
    );
    assert_eq!(condition(&ready, "Reconciling"), None);
    assert_eq!(condition(&ready, "Stalled"), None);
    for c in &status.conditions {
        assert_eq!(c.observed_generation, Some(1), "{c:?}");
        assert!(c.last_transition_time.is_some(), "{c:?}");
    }
    assert_eq!(
        history(&ready),
        [
            "Pending",
            "Provisioning",
            "Configuring",
            "Deploying",
            "Verifying",
            "Ready"
        ]
    );
    let records = &status.phase_history;
    assert_eq!(records[0].from, None);
    assert_eq!(records[0].reason, "Created");
    for pair in records.windows(2) {
        assert_eq!(pair[1].from.as_deref(), Some(pair[0].phase.as_str()));
        assert!(pair[1].entered_at >= pair[0].entered_at);
    }
    assert_eq!(status.retry, None);
    assert_eq!(status.last_error, None);
    assert_eq!(
        ready.status.as_ref().unwrap().endpoint.as_deref(),
        Some("db.svc:5432")
    );
    assert_eq!(ready.finalizers(), ["test.kube-reconcile.dev/cleanup"]);

    // Every intermediate status as the watch saw it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    check_every_step(&seen.lock().unwrap());

    // One event per transition.
    let reasons = env.event_reasons("db").await;
    for reason in [
        "Created",
        "Provisioning",
        "Configuring",
        "Deploying",
        "Verifying",
        "Verified",
    ] {
        assert!(
            reasons.iter().any(|r| r == reason),
            "{reason} missing from {reasons:?}"
        );
    }
    controller.abort();
    recorder.abort();
}

/// The phases in order, and at each step the status and conditions that go with it.
pub(super) fn check_every_step(seen: &[Pipeline]) {
    // Every intermediate status as the watch saw it.
    let mut phases: Vec<&str> = seen.iter().filter_map(phase_of).collect();
    phases.dedup();
    assert_eq!(
        phases,
        [
            "Pending",
            "Provisioning",
            "Configuring",
            "Deploying",
            "Verifying",
            "Ready"
        ]
    );
    let first_ready_time = condition_time(&seen[seen.len() - 1], "Ready");
    for obj in seen {
        let Some(phase) = phase_of(obj) else { continue };
        let status = machine(obj);
        assert_eq!(status.observed_generation, Some(1));
        assert_eq!(
            status.phase_history.last().map(|r| r.phase.as_str()),
            Some(phase)
        );
        if phase == "Ready" {
            assert_eq!(condition(obj, "Ready").unwrap().0, ConditionStatus::True);
        } else {
            let reason = if phase == "Pending" { "Created" } else { phase };
            assert_eq!(
                condition(obj, "Ready"),
                Some((ConditionStatus::False, reason.into()))
            );
            assert_eq!(
                condition(obj, "Reconciling"),
                Some((ConditionStatus::True, reason.into()))
            );
        }
    }
    // While not ready, Ready=False kept its first transition time.
    let not_ready: Vec<_> = seen
        .iter()
        .filter(|o| phase_of(o).is_some_and(|p| p != "Ready"))
        .map(|o| condition_time(o, "Ready"))
        .collect();
    assert!(not_ready.windows(2).all(|w| w[0] == w[1]), "{not_ready:?}");
    assert!(first_ready_time >= not_ready[0]);
}

/// The requeue delay of an action in seconds (kube's `Action` shows it only through `Debug`).
fn requeue_after(action: &kube::runtime::controller::Action) -> Option<f64> {
    let text = format!("{action:?}");
    let inner = text.split("Some(").nth(1)?.split(')').next()?;
    let (value, unit) = inner.split_at(inner.find(|c: char| c.is_ascii_alphabetic())?);
    let value: f64 = value.parse().ok()?;
    Some(match unit {
        "s" => value,
        "ms" => value / 1e3,
        "µs" => value / 1e6,
        "ns" => value / 1e9,
        _ => return None,
    })
}

fn condition_time(obj: &Pipeline, type_: &str) -> Option<k8s_openapi::jiff::Timestamp> {
    machine(obj)
        .conditions
        .find(type_)
        .and_then(kube_reconcile::conditions::Condition::last_transition)
}

#[tokio::test(start_paused = true)]
async fn a_ready_object_costs_zero_writes_per_reconcile() {
    let env = env().await;
    let controller = env.run_controller();
    env.create("db", 3, "").await;
    env.until_phase("db", "Ready").await;
    controller.abort();
    let before = env.server().requests();
    for _ in 0..20 {
        let action = env.reconcile("db").await.unwrap();
        assert_eq!(action, kube::runtime::controller::Action::await_change());
    }
    let delta = env.server().requests().since(&before);
    assert_eq!(delta.writes(), 0, "{delta:?}");
}

#[tokio::test(start_paused = true)]
async fn an_undeclared_transition_is_refused_with_a_condition_and_no_phase_change() {
    let env = env().await;
    env.create("db", 3, "illegal").await;
    env.reconcile("db").await.unwrap(); // finalizer + Pending
    let err = env.reconcile("db").await.unwrap_err();
    assert!(
        matches!(
            err,
            PhaseError::UndeclaredTransition {
                from: "Pending",
                to: "Ready"
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::Terminal);
    let obj = env.get("db").await;
    assert_eq!(phase_of(&obj), Some("Pending"));
    assert_eq!(history(&obj), ["Pending"]);
    assert_eq!(
        condition(&obj, "Stalled"),
        Some((ConditionStatus::True, "UndeclaredTransition".into()))
    );
    let last = machine(&obj).last_error.unwrap();
    assert_eq!(last.reason, "UndeclaredTransition");
    assert!(last.message.contains("asked for Ready"), "{}", last.message);
    // Refusing again writes nothing more.
    let before = env.server().requests();
    env.reconcile("db").await.unwrap_err();
    assert_eq!(env.server().requests().since(&before).writes(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_spec_change_on_a_ready_object_goes_through_updating() {
    let env = env().await;
    let controller = env.run_controller();
    env.create("db", 3, "").await;
    env.until_phase("db", "Ready").await;
    env.resize("db", 5).await;
    let obj = env.until_ready_at("db", 2).await;
    assert_eq!(
        history(&obj)[5..],
        ["Ready", "Updating", "Verifying", "Ready"]
    );
    let updating = &machine(&obj).phase_history[6];
    assert_eq!(updating.reason, "SpecChanged");
    assert_eq!(env.ctx.runs("db", P::Updating), 1);
    assert_eq!(
        env.ctx.runs("db", P::Provisioning),
        1,
        "updating does not start over"
    );
    assert!(
        machine(&obj)
            .conditions
            .iter()
            .all(|c| c.observed_generation == Some(2))
    );
    controller.abort();
}

#[tokio::test(start_paused = true)]
async fn a_failure_is_retried_with_backoff_and_recorded() {
    let env = env().await;
    env.create("db", 3, "fail-verify-once").await;
    let mut failed_at = None;
    for _ in 0..12 {
        env.reconcile("db").await.unwrap();
        let obj = env.get("db").await;
        if phase_of(&obj) == Some("Failed") {
            failed_at = Some(obj);
            break;
        }
    }
    let failed = failed_at.expect("reached Failed");
    let status = machine(&failed);
    let retry = status.retry.clone().unwrap();
    assert_eq!(retry.attempts, 1);
    let next = retry.next_attempt_time.unwrap().0;
    let entered = status.phase_history.last().unwrap().entered_at.0;
    let wait = Duration::try_from(next.duration_since(entered)).unwrap();
    // Operator preset: first delay ≤ 1 s, stored rounded up to a whole second.
    assert!(wait <= Duration::from_secs(2), "{wait:?}");
    assert_eq!(
        condition(&failed, "Ready"),
        Some((ConditionStatus::False, "VerificationFailed".into()))
    );
    assert_eq!(
        condition(&failed, "Reconciling").unwrap().0,
        ConditionStatus::True
    );
    assert_eq!(condition(&failed, "Stalled"), None);
    let last = status.last_error.clone().unwrap();
    assert_eq!(
        (last.phase.as_str(), last.reason.as_str()),
        ("Verifying", "VerificationFailed")
    );

    // Before the retry is due nothing happens and nothing is written.
    let before = env.server().requests();
    let action = env.reconcile("db").await.unwrap();
    assert_eq!(env.server().requests().since(&before).writes(), 0);
    assert!(action != kube::runtime::controller::Action::await_change());
    tokio::time::advance(wait + Duration::from_millis(1)).await;
    env.reconcile("db").await.unwrap();
    let retried = env.get("db").await;
    assert_eq!(phase_of(&retried), Some("Provisioning"));
    assert_eq!(
        machine(&retried).phase_history.last().unwrap().reason,
        "Retrying"
    );
    for _ in 0..6 {
        env.reconcile("db").await.unwrap();
    }
    let ready = env.get("db").await;
    assert_eq!(phase_of(&ready), Some("Ready"));
    assert_eq!(machine(&ready).retry, None, "retries reset once ready");
    assert_eq!(
        machine(&ready).last_error,
        None,
        "the last error ({}) is cleared once ready",
        last.reason
    );
    // Eleven phase changes; the history keeps the last ten.
    assert_eq!(
        history(&ready),
        [
            "Provisioning",
            "Configuring",
            "Deploying",
            "Verifying",
            "Failed",
            "Provisioning",
            "Configuring",
            "Deploying",
            "Verifying",
            "Ready"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_phase_past_its_deadline_fails_with_phase_timeout() {
    let env = env().await;
    env.create("db", 3, "stuck").await;
    env.reconcile("db").await.unwrap(); // Pending
    env.reconcile("db").await.unwrap(); // -> Provisioning
    let action = env.reconcile("db").await.unwrap(); // stays
    // The requeue is capped at the deadline, not the handler's hour.
    let after = requeue_after(&action).expect("a requeue");
    assert!((55.0..=60.0).contains(&after), "{action:?}");
    let waiting = env.get("db").await;
    assert_eq!(
        condition(&waiting, "Reconciling"),
        Some((ConditionStatus::True, "Waiting".into()))
    );
    tokio::time::advance(Duration::from_secs(61)).await;
    env.reconcile("db").await.unwrap();
    let obj = env.get("db").await;
    assert_eq!(phase_of(&obj), Some("Failed"));
    let last = machine(&obj).last_error.unwrap();
    assert_eq!(last.reason, "PhaseTimeout");
    assert_eq!(last.message, "Provisioning took longer than 1m");
}

#[tokio::test(start_paused = true)]
async fn time_held_back_by_the_operators_own_pacing_does_not_count_toward_the_deadline() {
    let env = env().await;
    env.create("db", 3, "queued").await;
    env.reconcile("db").await.unwrap(); // Pending
    env.reconcile("db").await.unwrap(); // -> Provisioning
    let entered = env.get("db").await;
    // Five turns of 30 s, 150 s in all, well past the 60 s deadline: each requeues
    // after its turn, not at the deadline, and none writes.
    for turn in 1..=5 {
        let action = env.reconcile("db").await.unwrap();
        assert_eq!(
            requeue_after(&action),
            Some(30.0),
            "turn {turn}: {action:?}"
        );
        assert_eq!(env.engine.paced_objects(), 1);
        tokio::time::advance(Duration::from_secs(30)).await;
    }
    let queued = env.get("db").await;
    assert_eq!(
        queued.metadata.resource_version, entered.metadata.resource_version,
        "a paced turn writes nothing"
    );

    // The work starts: the time paced goes into the write its condition makes.
    let action = env.reconcile("db").await.unwrap();
    assert_eq!(requeue_after(&action), Some(10.0), "{action:?}");
    let working = env.get("db").await;
    assert_eq!(phase_of(&working), Some("Provisioning"));
    let paced = |obj: &Pipeline| {
        let record = machine(obj).phase_history.last().cloned().unwrap();
        (record.phase, record.paced_seconds)
    };
    assert_eq!(paced(&working), ("Provisioning".into(), Some(150)));

    // Another turn between two checks that change nothing: off the clock too, and
    // nothing written for it (the engine holds it until it writes anyway).
    let action = env.reconcile("db").await.unwrap();
    assert_eq!(requeue_after(&action), Some(30.0), "{action:?}");
    tokio::time::advance(Duration::from_secs(30)).await;
    env.reconcile("db").await.unwrap();
    assert_eq!(env.engine.paced_objects(), 1, "180 s held in memory");
    let checked = env.get("db").await;
    assert_eq!(
        checked.metadata.resource_version, working.metadata.resource_version,
        "paced time alone writes nothing"
    );

    // The deadline counts only the work: 60 s from the first check, 180 s paced.
    tokio::time::advance(Duration::from_secs(59)).await;
    env.reconcile("db").await.unwrap();
    assert_eq!(
        phase_of(&env.get("db").await),
        Some("Provisioning"),
        "59 s of work"
    );
    tokio::time::advance(Duration::from_secs(2)).await;
    env.reconcile("db").await.unwrap();
    let obj = env.get("db").await;
    assert_eq!(phase_of(&obj), Some("Failed"));
    assert_eq!(env.engine.paced_objects(), 0, "it left the phase");
    let last = machine(&obj).last_error.unwrap();
    assert_eq!(
        (last.reason.as_str(), last.message.as_str()),
        ("PhaseTimeout", "Provisioning took longer than 1m")
    );
    // The Provisioning entry keeps what it was paced.
    let provisioning = machine(&obj)
        .phase_history
        .iter()
        .rev()
        .find(|r| r.phase == "Provisioning")
        .cloned()
        .unwrap();
    assert_eq!(provisioning.paced_seconds, Some(180));
}

#[tokio::test(start_paused = true)]
async fn a_terminal_error_stalls_until_the_spec_changes() {
    let env = env().await;
    env.create("db", 3, "terminal").await;
    for _ in 0..3 {
        env.reconcile("db").await.unwrap();
    }
    let obj = env.get("db").await;
    assert_eq!(phase_of(&obj), Some("Failed"));
    assert_eq!(
        condition(&obj, "Stalled"),
        Some((ConditionStatus::True, "ReconcileError".into()))
    );
    assert_eq!(machine(&obj).retry.unwrap().next_attempt_time, None);
    // Time alone does not help.
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert_eq!(
        env.reconcile("db").await.unwrap(),
        kube::runtime::controller::Action::await_change()
    );
    env.api
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "script": "" } })),
        )
        .await
        .unwrap();
    for _ in 0..6 {
        env.reconcile("db").await.unwrap();
    }
    let obj = env.get("db").await;
    assert_eq!(phase_of(&obj), Some("Ready"));
    assert_eq!(machine(&obj).observed_generation, Some(2));
}

#[tokio::test(start_paused = true)]
async fn invalid_input_fails_with_a_reason_and_a_fix_moves_it_on() {
    let env = env().await;
    let controller = env.run_controller();
    env.create("big", 11, "").await;
    let failed = env.until_phase("big", "Failed").await;
    let (status, reason) = condition(&failed, "Stalled").unwrap();
    assert_eq!(
        (status, reason.as_str()),
        (ConditionStatus::True, "InvalidSpec")
    );
    assert!(
        machine(&failed)
            .conditions
            .find("Stalled")
            .unwrap()
            .message
            .contains("spec.size is 11")
    );
    env.api
        .patch(
            "big",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "size": 4 } })),
        )
        .await
        .unwrap();
    let ready = env.until_phase("big", "Ready").await;
    assert_eq!(condition(&ready, "Stalled"), None);
    controller.abort();
}

#[tokio::test(start_paused = true)]
async fn a_retryable_handler_error_keeps_the_phase_and_is_recorded() {
    let env = env().await;
    env.create("db", 3, "flaky").await;
    env.reconcile("db").await.unwrap();
    env.reconcile("db").await.unwrap();
    let err = env.reconcile("db").await.unwrap_err();
    assert!(
        matches!(
            err,
            PhaseError::Handler {
                phase: "Provisioning",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::Transient);
    let obj = env.get("db").await;
    assert_eq!(phase_of(&obj), Some("Provisioning"));
    assert_eq!(
        machine(&obj).last_error.unwrap().message,
        "scripted Transient error"
    );
    // The same error again writes nothing.
    let before = env.server().requests();
    env.reconcile("db").await.unwrap_err();
    assert_eq!(env.server().requests().since(&before).writes(), 0);
}

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
    env.reconcile("db").await.unwrap(); // Pending -> Provisioning
    let err = env
        .engine
        .reconcile(stale, env.ctx.clone())
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Conflict);
    assert_eq!(phase_of(&env.get("db").await), Some("Provisioning"));
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
