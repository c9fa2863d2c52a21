//! When a closed breaker opens, and what it never counts.

use proptest::prelude::*;

use super::*;
use crate::middleware::timeout::TimeoutError;

#[test]
fn breaker_opens_at_the_failure_rate_once_min_calls_are_in_a_count_window() {
    let clock = ManualClock::new();
    let breaker = config(&clock).build("dbaas").unwrap();
    let seen = transitions(&breaker);
    for _ in 0..3 {
        fail(&breaker);
    }
    // 100% failures, but only 3 of the 4 calls needed to judge.
    assert_eq!(breaker.state(), State::Closed);
    fail(&breaker);
    assert_eq!(breaker.state(), State::Open);
    let opened = seen.lock().unwrap()[0].clone();
    assert_eq!((opened.from, opened.to), (State::Closed, State::Open));
    assert_eq!(
        opened.reason,
        TransitionReason::FailureRate {
            rate: 1.0,
            calls: 4
        }
    );
    assert_eq!(
        opened.open_until,
        Some(crate::clock::Nanos::ZERO.saturating_add(Duration::from_secs(30)))
    );
}

#[test]
fn breaker_stays_closed_below_the_failure_rate_and_counts_only_the_last_calls() {
    let clock = ManualClock::new();
    let breaker = config(&clock)
        .failure_rate_threshold(0.5)
        .build("dbaas")
        .unwrap();
    // 1 of 4 and 2 of 8 failed; then 10 successes push those out of the 10-call window.
    for _ in 0..2 {
        for _ in 0..3 {
            succeed(&breaker);
        }
        fail(&breaker);
    }
    assert_eq!(breaker.state(), State::Closed);
    for _ in 0..10 {
        succeed(&breaker);
    }
    let snapshot = breaker.snapshot();
    assert_eq!((snapshot.calls, snapshot.failures), (10, 0));
    for _ in 0..4 {
        fail(&breaker);
    }
    assert_eq!(breaker.state(), State::Closed, "4 of 10 is below 50%");
    fail(&breaker);
    assert_eq!(breaker.state(), State::Open, "5 of 10 reaches 50%");
}

#[test]
fn breaker_opens_at_the_failure_rate_over_a_time_window() {
    let clock = ManualClock::new();
    let breaker = config(&clock)
        .window(Window::time(Duration::from_secs(10)))
        .build("dbaas")
        .unwrap();
    for _ in 0..3 {
        fail(&breaker);
    }
    clock.advance(Duration::from_secs(11));
    // The three old failures slid out: 1 of 4 fails.
    for _ in 0..3 {
        succeed(&breaker);
    }
    fail(&breaker);
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(
        (breaker.snapshot().calls, breaker.snapshot().failures),
        (4, 1)
    );
    clock.advance(Duration::from_secs(5));
    fail(&breaker);
    assert_eq!(breaker.state(), State::Closed, "2 of 5");
    fail(&breaker);
    assert_eq!(breaker.state(), State::Open, "3 of 6");
}

#[test]
fn breaker_opens_after_consecutive_failures_whatever_the_rate() {
    let clock = ManualClock::new();
    let breaker = config(&clock)
        .min_calls(nz(10))
        .consecutive_failures(3)
        .build("dbaas")
        .unwrap();
    let seen = transitions(&breaker);
    fail(&breaker);
    fail(&breaker);
    succeed(&breaker);
    fail(&breaker);
    fail(&breaker);
    assert_eq!(breaker.state(), State::Closed, "a success broke the run");
    assert_eq!(breaker.snapshot().consecutive_failures, 2);
    fail(&breaker);
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(
        seen.lock().unwrap()[0].reason,
        TransitionReason::ConsecutiveFailures { count: 3 }
    );
}

#[test]
fn slow_calls_open_the_breaker_at_the_slow_call_rate() {
    let clock = ManualClock::new();
    let breaker = config(&clock)
        .slow_call_duration(Duration::from_secs(1))
        .slow_call_rate_threshold(0.5)
        .build("dbaas")
        .unwrap();
    let seen = transitions(&breaker);
    let slow_success = || {
        let permit = breaker.try_acquire().unwrap();
        clock.advance(Duration::from_secs(2));
        permit.success();
    };
    succeed(&breaker);
    succeed(&breaker);
    slow_success();
    assert_eq!(breaker.snapshot().slow_calls, 1);
    slow_success();
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(
        seen.lock().unwrap()[0].reason,
        TransitionReason::SlowCallRate {
            rate: 0.5,
            calls: 4
        }
    );
    assert_eq!(
        breaker.snapshot().failures,
        0,
        "slow successes are not failures"
    );
}

#[test]
fn a_timeout_counts_as_a_slow_failure() {
    let clock = ManualClock::new();
    let breaker = config(&clock).build("dbaas").unwrap();
    let timed_out: Result<(), TimeoutError<ErrorClass>> = Err(TimeoutError::Elapsed {
        after: Duration::from_secs(5),
    });
    breaker.try_acquire().unwrap().record(&timed_out);
    let snapshot = breaker.snapshot();
    assert_eq!(
        (snapshot.calls, snapshot.failures, snapshot.slow_calls),
        (1, 1, 1)
    );
}

#[test]
fn excluded_classes_are_not_counted() {
    let clock = ManualClock::new();
    let breaker = config(&clock)
        .exclude(ErrorClass::Throttled { retry_after: None })
        .build("dbaas")
        .unwrap();
    for _ in 0..10 {
        let permit = breaker.try_acquire().unwrap();
        permit.failure(ErrorClass::Throttled {
            retry_after: Some(Duration::from_secs(9)),
        });
    }
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.snapshot().calls, 0);
}

#[test]
fn a_result_from_before_a_state_change_is_not_recorded() {
    let clock = ManualClock::new();
    let breaker = config(&clock).build("dbaas").unwrap();
    let late = breaker.try_acquire().unwrap();
    trip(&breaker);
    breaker.reset();
    late.failure(ErrorClass::Transient);
    assert_eq!(breaker.snapshot().calls, 0);
}

#[derive(Clone, Copy, Debug)]
enum Uncounted {
    Terminal,
    Conflict,
    TerminalResult,
    Cancelled,
}

proptest! {
    #[test]
    fn terminal_and_conflict_outcomes_never_open_the_breaker(
        outcomes in proptest::collection::vec(
            prop_oneof![
                Just(Uncounted::Terminal),
                Just(Uncounted::Conflict),
                Just(Uncounted::TerminalResult),
                Just(Uncounted::Cancelled),
            ],
            0..200,
        ),
        consecutive in 0u32..5,
    ) {
        let clock = ManualClock::new();
        let breaker = config(&clock).min_calls(nz(1)).consecutive_failures(consecutive).build("dbaas").unwrap();
        for outcome in outcomes {
            let permit = breaker.try_acquire().unwrap();
            match outcome {
                Uncounted::Terminal => permit.failure(ErrorClass::Terminal),
                Uncounted::Conflict => permit.failure(ErrorClass::Conflict),
                Uncounted::TerminalResult => permit.record(&Err::<(), _>(crate::terminal(std::io::Error::other("gone")))),
                Uncounted::Cancelled => drop(permit),
            }
            prop_assert_eq!(breaker.state(), State::Closed);
        }
        prop_assert_eq!(breaker.snapshot().calls, 0);
        prop_assert_eq!(breaker.snapshot().consecutive_failures, 0);
    }
}
