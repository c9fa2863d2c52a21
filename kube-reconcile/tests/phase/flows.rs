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
pub(crate) fn requeue_after(action: &kube::runtime::controller::Action) -> Option<f64> {
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
        .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
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
