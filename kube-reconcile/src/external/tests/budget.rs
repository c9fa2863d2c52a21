//! The gate's budget: turns for callers it holds back, one cell per call, and no budget
//! spent on calls the breaker or the health check refuses.

use super::*;

#[tokio::test(start_paused = true)]
async fn a_spent_budget_holds_calls_back_without_touching_the_condition() {
    let budget = RateBudget::new("dbaas", Quota::per_minute(nz(1)));
    let dbaas = Gate::builder("dbaas")
        .budget(budget.clone())
        .spread(Duration::from_secs(5))
        .seed(3)
        .build();
    let Admission::Ready(pass) = dbaas.admit().await else {
        panic!()
    };
    pass.success();
    let Admission::Unavailable(limited) = dbaas.admit().await else {
        panic!("the budget is spent")
    };
    assert_eq!(limited.reason, UnavailableReason::RateLimited);
    assert_eq!(limited.retry_after, Duration::from_secs(60));
    assert_eq!(limited.condition, None);
    let mut conditions = Conditions::default();
    assert!(!limited.apply(&mut conditions));
    assert!(conditions.is_empty());
}

#[tokio::test(start_paused = true)]
async fn callers_refused_by_the_budget_come_back_one_turn_apart_and_find_their_cell() {
    // Five calls a second, one at a time: a hundred callers find it spent.
    let budget = RateBudget::new("dbaas", Quota::per_second(nz(5)).burst(nz(1)));
    let dbaas = Gate::builder("dbaas")
        .budget(budget.clone())
        .spread(Duration::from_secs(5))
        .seed(4)
        .build();
    let Admission::Ready(pass) = dbaas.admit().await else {
        panic!("the one cell")
    };
    pass.success();
    let mut returns = Vec::new();
    let mut messages = std::collections::BTreeSet::new();
    for _ in 0..100 {
        let Admission::Unavailable(limited) = dbaas.admit().await else {
            panic!("spent")
        };
        messages.insert(limited.message);
        returns.push(limited.retry_after);
    }
    // The message names the budget's own wait, the same for every caller.
    assert_eq!(messages.len(), 1, "{messages:?}");
    returns.sort();
    // Turn i is 200 ms · (i + 1) away: one caller per interval, not all together.
    for (i, back) in returns.iter().enumerate() {
        let turn = Duration::from_millis(200) * (u32::try_from(i).unwrap() + 1);
        assert_eq!(*back, turn, "caller {i}");
    }
    // Coming back at their turns, every caller is admitted the first time.
    let started = tokio::time::Instant::now();
    for back in returns {
        tokio::time::sleep_until(started + back).await;
        let Admission::Ready(pass) = dbaas.admit().await else {
            panic!("refused at its turn {back:?}")
        };
        pass.success();
    }
}

#[tokio::test(start_paused = true)]
async fn inside_the_engine_objects_further_along_get_the_earlier_turns() {
    let budget = RateBudget::new("dbaas", Quota::per_second(nz(5)).burst(nz(1)));
    let dbaas = Gate::builder("dbaas").budget(budget).seed(5).build();
    let Admission::Ready(pass) = dbaas.admit().await else {
        panic!("the one cell")
    };
    pass.success();
    // What a handler run at `priority` is told to wait, as the engine runs it.
    let held = |priority| {
        let dbaas = &dbaas;
        async move {
            let (admission, _) =
                crate::scope::run(priority, &crate::scope::Observer::default(), dbaas.admit())
                    .await;
            let Admission::Unavailable(limited) = admission else {
                panic!("spent")
            };
            limited.retry_after
        }
    };
    let ms = Duration::from_millis;
    // Ten objects starting out queue first come, first served.
    for i in 1..=10 {
        assert_eq!(held(0).await, ms(200) * i);
    }
    // One further along goes ahead of all of them, the next of its kind right after.
    assert_eq!(held(3).await, ms(200));
    assert_eq!(held(3).await, ms(400));
    // And one more starting out waits behind everyone.
    assert_eq!(held(0).await, ms(200) * 13);
}

#[tokio::test(start_paused = true)]
async fn admit_n_takes_a_cell_per_call_or_none() {
    let budget = RateBudget::new("dbaas", Quota::per_second(nz(4)));
    let dbaas = Gate::builder("dbaas").budget(budget.clone()).build();
    let Admission::Ready(pass) = dbaas.admit_n(nz(3)).await else {
        panic!("three of four cells")
    };
    pass.success();
    assert_eq!(budget.capacity().remaining(), 1);
    let Admission::Unavailable(limited) = dbaas.admit_n(nz(2)).await else {
        panic!("two do not fit")
    };
    assert!(limited.retry_after >= Duration::from_millis(250));
    assert_eq!(budget.capacity().remaining(), 1, "a refusal takes nothing");
    // More than the burst takes the whole burst once it is full.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let Admission::Ready(pass) = dbaas.admit_n(nz(9)).await else {
        panic!("clamped to the burst")
    };
    pass.success();
    assert_eq!(budget.capacity().remaining(), 0);
}

#[tokio::test(start_paused = true)]
async fn with_a_budget_callers_held_back_by_an_outage_or_the_breaker_queue_for_turns() {
    let (up, runs) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU32::new(0)),
    );
    let budget = RateBudget::new("dbaas", Quota::per_second(nz(5)));
    let dbaas = Gate::builder("dbaas")
        .budget(budget.clone())
        .breaker(breaker())
        .health(switchable(&up, &runs))
        .health_interval(Duration::from_secs(10))
        .build();
    // Down: fifty callers come back from the next health check on, 200 ms apart, and
    // not all at once every health interval.
    let mut backs = Vec::new();
    for _ in 0..50 {
        let Admission::Unavailable(down) = dbaas.admit().await else {
            panic!("down")
        };
        assert_eq!(down.reason, UnavailableReason::ExternalSystemUnavailable);
        backs.push(down.retry_after);
    }
    for (i, back) in backs.iter().enumerate() {
        let turn = Duration::from_secs(10) + Duration::from_millis(200) * u32::try_from(i).unwrap();
        assert_eq!(*back, turn, "caller {i}");
    }
    assert!(budget.capacity().is_full(), "a turn spends no cell");
    assert_eq!(runs.load(SeqCst), 1);

    // Forced open: no earlier than the breaker says (its 30 s open duration), and the
    // next caller one turn later, two intervals for a caller of two calls.
    up.store(true, SeqCst);
    dbaas.breaker().force_open();
    let Admission::Unavailable(open) = dbaas.admit_n(nz(2)).await else {
        panic!("forced open")
    };
    assert_eq!(open.reason, UnavailableReason::CircuitOpen);
    assert!(open.retry_after >= Duration::from_secs(30));
    let Admission::Unavailable(next) = dbaas.admit().await else {
        panic!("forced open")
    };
    assert!(
        next.retry_after >= open.retry_after + Duration::from_millis(400),
        "{next:?} {open:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refusal_by_the_breaker_spends_no_budget_and_runs_no_health_check() {
    let (up, runs) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicU32::new(0)));
    let budget = RateBudget::new("dbaas", Quota::per_minute(nz(1)));
    let dbaas = Gate::builder("dbaas")
        .budget(budget.clone())
        .health(switchable(&up, &runs))
        .build();
    dbaas.breaker().force_open();
    let Admission::Unavailable(forced) = dbaas.admit().await else {
        panic!()
    };
    assert!(
        forced
            .message
            .starts_with("circuit breaker for dbaas is forced open")
    );
    assert!(budget.capacity().is_full());
    assert_eq!(runs.load(SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn an_unhealthy_dependency_spends_no_budget_and_records_nothing_on_the_breaker() {
    let (up, runs) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU32::new(0)),
    );
    let budget = RateBudget::new("dbaas", Quota::per_minute(nz(1)));
    let dbaas = Gate::builder("dbaas")
        .budget(budget.clone())
        .health(switchable(&up, &runs))
        .build();
    for _ in 0..10 {
        assert!(!dbaas.admit().await.is_ready());
    }
    assert!(budget.capacity().is_full());
    assert_eq!(dbaas.breaker().snapshot().calls, 0);
}

#[tokio::test(start_paused = true)]
async fn with_a_budget_429s_slow_the_budget_and_never_open_the_breaker() {
    let throttled = || Err::<(), _>(ErrorClass::Throttled { retry_after: None });
    // A breaker that opens after 3 consecutive failures; 20 answers of 429 in a row.
    let budget = RateBudget::adaptive("dbaas", Quota::per_second(nz(1000)));
    let before = budget.rate();
    let dbaas = Gate::builder("dbaas")
        .budget(budget.clone())
        .breaker(breaker())
        .build();
    for _ in 0..20 {
        match dbaas.admit().await {
            Admission::Ready(pass) => pass.record(&throttled()),
            Admission::Unavailable(held) => {
                assert_eq!(held.reason, UnavailableReason::RateLimited, "{held:?}");
                tokio::time::sleep(held.retry_after).await;
            }
        }
    }
    assert_eq!(dbaas.breaker().state(), State::Closed);
    assert_eq!(
        dbaas.breaker().snapshot().calls,
        0,
        "no 429 is a breaker sample"
    );
    assert!(
        budget.rate() < before,
        "the budget slowed down: {} of {before}",
        budget.rate()
    );

    // Without a budget, nothing else hears them: the breaker counts them.
    let alone = Gate::builder("dbaas").breaker(breaker()).build();
    for _ in 0..3 {
        let Admission::Ready(pass) = alone.admit().await else {
            panic!("closed")
        };
        pass.record(&throttled());
    }
    assert_eq!(alone.breaker().state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn an_answer_that_says_the_limit_is_running_out_slows_the_budget_before_any_429() {
    let budget = RateBudget::adaptive("dbaas", Quota::per_second(nz(1000)));
    let dbaas = Gate::builder("dbaas").budget(budget.clone()).build();
    let answer = |left: u64| async move {
        crate::external::RateLimitHint::new(left, Some(100), None).report();
        Ok::<_, ErrorClass>(())
    };
    let gate = &dbaas;
    let call = |left| async move {
        let Admission::Ready(pass) = gate.admit().await else {
            panic!("the budget has cells")
        };
        pass.call(answer(left)).await.unwrap();
    };
    let start = budget.rate();
    // Half or more left: nothing to act on.
    call(50).await;
    assert!(
        (budget.rate() - start).abs() < 1e-9,
        "{} of {start}",
        budget.rate()
    );
    // Less than half: the cut a 429 would make (the slow start ends at half).
    call(49).await;
    assert!(
        (budget.rate() - start / 2.0).abs() < 1e-9,
        "{} of {start}",
        budget.rate()
    );
    // Marks in the second after a cut answer calls sent at the old rate.
    call(0).await;
    assert!(
        (budget.rate() - start / 2.0).abs() < 1e-9,
        "{} of {start}",
        budget.rate()
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    call(0).await;
    assert!(
        (budget.rate() - start * 0.35).abs() < 1e-6,
        "{} of {start}",
        budget.rate()
    );
}
