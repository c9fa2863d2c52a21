//! Failures, one test each: retries with backoff, deadlines (and the pacing that does not
//! count toward them), terminal errors, invalid input, retryable handler errors.

use super::*;
use crate::flows::requeue_after;

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
        Some((ConditionStatus::True, "ScriptedTerminal".into())),
        "the error's own reason"
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
async fn an_error_met_while_ready_is_cleared_once_the_handler_succeeds() {
    let env = env().await;
    env.create("db", 3, "flaky-ready").await;
    for _ in 0..6 {
        let _ = env.reconcile("db").await;
    }
    assert_eq!(phase_of(&env.get("db").await), Some("Ready"));
    let erred = env.reconcile("db").await;
    assert!(erred.is_err(), "the Ready handler failed once: {erred:?}");
    let obj = env.get("db").await;
    assert_eq!(phase_of(&obj), Some("Ready"));
    assert_eq!(
        machine(&obj).last_error.map(|e| e.reason),
        Some("ReconcileError".to_owned())
    );
    env.reconcile("db").await.unwrap();
    let obj = env.get("db").await;
    assert_eq!(machine(&obj).last_error, None, "overcome, so not shown");
    // And then nothing more to write.
    let version = obj.metadata.resource_version.clone();
    env.reconcile("db").await.unwrap();
    assert_eq!(env.get("db").await.metadata.resource_version, version);
}
