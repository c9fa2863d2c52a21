//! The gate: breaker, health check and budget, and the conditions they report.

use super::*;

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_after_failures_and_probes_at_the_half_open_time() {
    let dbaas = Gate::builder("dbaas")
        .breaker(breaker())
        .start_time(start())
        .build();
    for _ in 0..3 {
        fail(&dbaas).await;
    }
    assert_eq!(dbaas.breaker().state(), State::Open);

    let Admission::Unavailable(open) = dbaas.admit().await else {
        panic!("an open breaker must hold the call back")
    };
    assert_eq!(open.reason, UnavailableReason::CircuitOpen);
    assert_eq!(&*open.dependency, "dbaas");
    assert!(
        open.retry_after >= Duration::from_secs(30)
            && open.retry_after <= Duration::from_secs(30) + Duration::from_millis(1),
        "{open:?}"
    );
    assert_eq!(
        open.next_attempt_time,
        start().checked_add(open.retry_after).unwrap()
    );
    assert_eq!(open.observed_at, start());
    assert_eq!(
        open.resume_at,
        Some(start().checked_add(Duration::from_secs(30)).unwrap())
    );
    assert_eq!(
        open.message,
        "circuit breaker for dbaas is open; next attempt at 2026-03-01T12:00:30Z"
    );
    let condition = open.condition.clone().unwrap();
    assert_eq!(
        (
            condition.type_.as_str(),
            condition.status,
            condition.reason.as_str()
        ),
        (
            "DbaasAvailable",
            crate::conditions::ConditionStatus::False,
            "CircuitOpen"
        )
    );

    // Just before the half-open time: still held back, with the time left.
    tokio::time::advance(Duration::from_secs(29)).await;
    let Admission::Unavailable(still) = dbaas.admit().await else {
        panic!("still open")
    };
    assert!(still.retry_after <= Duration::from_secs(1) + Duration::from_millis(1));
    assert_eq!(
        still.message, open.message,
        "the message names the half-open time, not the caller's"
    );
    let due = start().checked_add(Duration::from_secs(30)).unwrap();
    assert!(
        still.next_attempt_time >= due
            && still.next_attempt_time <= due.checked_add(Duration::from_millis(1)).unwrap()
    );

    // At the half-open time: one probe goes through; a second caller is held back.
    tokio::time::advance(Duration::from_secs(1) + Duration::from_millis(1)).await;
    let Admission::Ready(probe) = dbaas.admit().await else {
        panic!("the half-open breaker must admit a probe")
    };
    assert!(probe.is_probe());
    let Admission::Unavailable(taken) = dbaas.admit().await else {
        panic!("the only probe slot is taken")
    };
    assert_eq!(taken.reason, UnavailableReason::CircuitOpen);
    assert_eq!(
        taken.message,
        "circuit breaker for dbaas is half-open and its probe calls are in flight"
    );
    assert_eq!(taken.resume_at, None);

    // The probe succeeds: closed again, calls flow.
    probe.success();
    assert_eq!(dbaas.breaker().state(), State::Closed);
    assert!(dbaas.admit().await.is_ready());
}

#[tokio::test(start_paused = true)]
async fn every_caller_held_back_by_one_outage_gets_the_same_condition() {
    let dbaas = Gate::builder("dbaas")
        .breaker(
            BreakerConfig::default()
                .consecutive_failures(1)
                .open_duration_jitter(0.0)
                .build("dbaas")
                .unwrap(),
        )
        .health(|| async { Health::Available })
        .spread(Duration::from_secs(5))
        .build();
    fail(&dbaas).await;
    let mut waits = std::collections::BTreeSet::new();
    let mut conditions = Vec::new();
    for _ in 0..20 {
        tokio::time::advance(Duration::from_millis(137)).await;
        let Admission::Unavailable(open) = dbaas.admit().await else {
            panic!()
        };
        waits.insert(open.next_attempt_time);
        conditions.push(open.condition.unwrap());
    }
    assert!(waits.len() > 1, "requeues are spread");
    assert!(
        conditions.windows(2).all(|w| w[0] == w[1]),
        "{conditions:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_pass_gives_its_slot_back() {
    let dbaas = Gate::builder("dbaas").breaker(breaker()).build();
    for _ in 0..3 {
        fail(&dbaas).await;
    }
    tokio::time::advance(Duration::from_secs(31)).await;
    let first = dbaas.admit().await;
    assert!(first.is_ready());
    drop(first);
    let Admission::Ready(again) = dbaas.admit().await else {
        panic!("the slot was given back")
    };
    assert!(again.is_probe());
}

#[tokio::test(start_paused = true)]
async fn an_unhealthy_dependency_is_held_back_until_the_next_health_check() {
    let (up, runs) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU32::new(0)),
    );
    let dbaas = Gate::builder("dbaas")
        .health(switchable(&up, &runs))
        .health_interval(Duration::from_secs(10))
        .spread(Duration::ZERO)
        .start_time(start())
        .build();

    let Admission::Unavailable(down) = dbaas.admit().await else {
        panic!("unhealthy")
    };
    assert_eq!(down.reason, UnavailableReason::ExternalSystemUnavailable);
    assert_eq!(down.retry_after, Duration::from_secs(10));
    assert_eq!(
        down.message,
        "dbaas is unavailable since 2026-03-01T12:00:00Z: 503 from /health"
    );

    // Within the interval the cached answer stands, for every caller.
    up.store(true, SeqCst);
    tokio::time::advance(Duration::from_secs(4)).await;
    let Admission::Unavailable(cached) = dbaas.admit().await else {
        panic!("cached answer")
    };
    assert_eq!(cached.retry_after, Duration::from_secs(6));
    assert_eq!(cached.next_attempt_time, down.next_attempt_time);
    assert_eq!(runs.load(SeqCst), 1);

    tokio::time::advance(Duration::from_secs(6)).await;
    assert!(dbaas.admit().await.is_ready());
    assert_eq!(runs.load(SeqCst), 2);
    assert!(dbaas.admit().await.is_ready());
    assert_eq!(runs.load(SeqCst), 2, "a healthy answer is reused too");
}

#[tokio::test(start_paused = true)]
async fn callers_arriving_together_share_one_health_check() {
    let runs = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&runs);
    let dbaas = Gate::builder("dbaas")
        .health(move || {
            counted.fetch_add(1, SeqCst);
            async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Health::Available
            }
        })
        .build();
    let admissions = futures::future::join_all((0..8).map(|_| dbaas.admit())).await;
    assert!(admissions.iter().all(Admission::is_ready));
    assert_eq!(runs.load(SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_health_check_that_hangs_counts_as_unavailable_after_the_timeout() {
    let dbaas = Gate::builder("dbaas")
        .health(std::future::pending::<Health>)
        .health_timeout(Duration::from_secs(2))
        .build();
    let Admission::Unavailable(hung) = dbaas.admit().await else {
        panic!("a hung check is unavailable")
    };
    assert!(hung.message.ends_with(": health check timed out after 2s"));
}

#[tokio::test(start_paused = true)]
async fn a_failed_call_makes_the_next_admission_check_health_again() {
    let (up, runs) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicU32::new(0)));
    // Each failed check counts at once, so the recheck alone decides.
    let dbaas = Gate::builder("dbaas")
        .health(switchable(&up, &runs))
        .health_interval(Duration::from_secs(60))
        .failure_threshold(nz(1))
        .build();
    let Admission::Ready(pass) = dbaas.admit().await else {
        panic!()
    };
    pass.success();
    assert_eq!(runs.load(SeqCst), 1);

    // A terminal error says nothing about health: the answer stands.
    let Admission::Ready(pass) = dbaas.admit().await else {
        panic!()
    };
    let _ = pass
        .call(async { Err::<(), _>(ErrorClass::Terminal) })
        .await;
    assert!(dbaas.admit().await.is_ready());
    assert_eq!(runs.load(SeqCst), 1);

    // A transient one does: the next caller checks again, and sees the outage at once.
    up.store(false, SeqCst);
    fail(&dbaas).await;
    let Admission::Unavailable(down) = dbaas.admit().await else {
        panic!("rechecked and found down")
    };
    assert_eq!(down.reason, UnavailableReason::ExternalSystemUnavailable);
    assert_eq!(runs.load(SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn the_condition_keeps_its_transition_time_while_the_outage_lasts_and_clears_after_a_success()
{
    let (up, runs) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU32::new(0)),
    );
    let dbaas = Gate::builder("billing-api")
        .health(switchable(&up, &runs))
        .spread(Duration::ZERO)
        .failure_threshold(nz(1))
        .start_time(start())
        .build();
    let mut conditions = Conditions::default();
    let Admission::Unavailable(first) = dbaas.admit().await else {
        panic!()
    };
    assert!(first.apply(&mut conditions));
    tokio::time::advance(Duration::from_secs(10)).await;
    let Admission::Unavailable(second) = dbaas.admit().await else {
        panic!()
    };
    assert_eq!(
        second.retry_after,
        Duration::from_secs(10),
        "the next check"
    );
    assert!(
        !second.apply(&mut conditions),
        "the message names the outage's start, which a later check does not move"
    );
    let condition = conditions.find("BillingApiAvailable").unwrap();
    assert_eq!(condition.last_transition(), Some(start()));
    assert_eq!(
        condition.message,
        "billing-api is unavailable since 2026-03-01T12:00:00Z: 503 from /health"
    );

    // A failed call makes the next admission check again; the outage keeps its start.
    dbaas.invalidate_health();
    tokio::time::advance(Duration::from_secs(3)).await;
    let Admission::Unavailable(third) = dbaas.admit().await else {
        panic!()
    };
    assert_eq!(third.message, condition.message);

    up.store(true, SeqCst);
    tokio::time::advance(Duration::from_secs(10)).await;
    let value = dbaas.call(async { Ok::<_, ErrorClass>(42) }).await.unwrap();
    assert_eq!(value, 42);
    assert!(dbaas.set_available(&mut conditions));
    assert!(
        !dbaas.set_available(&mut conditions),
        "setting it again changes nothing"
    );
    let condition = conditions.find("BillingApiAvailable").unwrap();
    assert_eq!(
        (condition.reason.as_str(), condition.message.as_str()),
        ("Available", "billing-api is available")
    );
    assert_eq!(
        condition.last_transition(),
        Some(start().checked_add(Duration::from_secs(23)).unwrap())
    );

    // The next outage has a start of its own.
    up.store(false, SeqCst);
    dbaas.invalidate_health();
    tokio::time::advance(Duration::from_secs(5)).await;
    let Admission::Unavailable(again) = dbaas.admit().await else {
        panic!()
    };
    assert_eq!(
        again.message,
        "billing-api is unavailable since 2026-03-01T12:00:28Z: 503 from /health"
    );
}

#[tokio::test(start_paused = true)]
async fn call_reports_a_held_back_call_as_throttled_with_the_wait() {
    let dbaas = Gate::builder("dbaas").build();
    dbaas.breaker().force_open();
    let mut made = false;
    let err = dbaas
        .call(async {
            made = true;
            Ok::<_, ErrorClass>(())
        })
        .await
        .unwrap_err();
    assert!(!made);
    let wait = err.unavailable().unwrap().retry_after;
    assert_eq!(
        crate::Classify::class(&err),
        ErrorClass::Throttled {
            retry_after: Some(wait)
        }
    );
    assert_eq!(
        err.to_string(),
        "circuit breaker for dbaas is forced open until reset"
    );
}

#[tokio::test(start_paused = true)]
async fn an_available_dependency_goes_down_after_the_failure_threshold_and_back_after_the_success_threshold()
 {
    let (up, runs) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicU32::new(0)));
    let dbaas = Gate::builder("dbaas")
        .health(switchable(&up, &runs))
        .health_interval(Duration::from_secs(1))
        .failure_threshold(nz(2))
        .success_threshold(nz(2))
        .build();
    let mut ready = Vec::new();
    for up_now in [true, false, false, false, true, true, true] {
        up.store(up_now, SeqCst);
        ready.push(dbaas.admit().await.is_ready());
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    // Down after the second failed check in a row, up after the second success in a row.
    assert_eq!(ready, [true, true, false, false, false, true, true]);
    assert_eq!(runs.load(SeqCst), 7);
}
