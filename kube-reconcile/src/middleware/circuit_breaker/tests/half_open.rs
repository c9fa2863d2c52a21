//! Leaving the open state: probes, their cap, their cancellation, and the open duration.

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

use futures::FutureExt;
use proptest::prelude::*;

use super::*;

/// A breaker that is open and due to half-open on the next call.
fn due_to_half_open(clock: &ManualClock, config: BreakerConfig) -> Breaker {
    let breaker = config.build("dbaas").unwrap();
    let open_for = trip(&breaker);
    clock.advance(open_for);
    breaker
}

#[test]
fn open_breaker_refuses_calls_until_the_open_duration_passes_then_half_opens() {
    let clock = ManualClock::new();
    let breaker = config(&clock).build("dbaas").unwrap();
    let seen = transitions(&breaker);
    assert_eq!(trip(&breaker), Duration::from_secs(30));
    clock.advance(Duration::from_secs(29));
    let rejected = breaker.try_acquire().unwrap_err();
    assert_eq!(rejected.state, State::Open);
    let spread = Duration::from_secs(5);
    let left = Duration::from_secs(1);
    assert!(
        rejected.retry_after >= left && rejected.retry_after <= left + spread,
        "{rejected:?}"
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(breaker.state(), State::Open, "transitions are lazy");
    let probe = breaker.try_acquire().unwrap();
    assert!(probe.is_probe());
    assert_eq!(breaker.state(), State::HalfOpen);
    assert_eq!(
        edges(&seen),
        [(State::Closed, State::Open), (State::Open, State::HalfOpen)]
    );
}

#[test]
fn probes_admitted_counts_every_probe_slot_across_half_open_periods() {
    let clock = ManualClock::new();
    let breaker = due_to_half_open(&clock, config(&clock).permitted_probes(nz(2)));
    assert_eq!(breaker.snapshot().probes_admitted, 0, "no probe yet");
    let first = breaker.try_acquire().unwrap();
    let second = breaker.try_acquire().unwrap();
    assert!(breaker.try_acquire().is_err(), "both slots taken");
    assert_eq!(breaker.snapshot().probes_admitted, 2);
    // A probe given back without an outcome still counts: its call may have gone out.
    drop(second);
    let third = breaker.try_acquire().unwrap();
    assert_eq!(breaker.snapshot().probes_admitted, 3);
    first.failure(ErrorClass::Transient);
    drop(third);
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(breaker.snapshot().probes_admitted, 3, "kept while open");
    // The next half-open period adds to the same count.
    clock.advance(Duration::from_secs(600));
    let fourth = breaker.try_acquire().unwrap();
    assert!(fourth.is_probe());
    assert_eq!(breaker.snapshot().probes_admitted, 4);
    fourth.success();
}

#[test]
fn breaker_closes_after_enough_successful_probes_with_a_fresh_window() {
    let clock = ManualClock::new();
    let breaker = due_to_half_open(
        &clock,
        config(&clock)
            .permitted_probes(nz(2))
            .probes_to_close(nz(3)),
    );
    let seen = transitions(&breaker);
    let first = breaker.try_acquire().unwrap();
    let second = breaker.try_acquire().unwrap();
    let full = breaker.try_acquire().unwrap_err();
    assert_eq!(full.state, State::HalfOpen);
    assert!(
        full.retry_after >= Duration::from_millis(2500)
            && full.retry_after <= Duration::from_secs(5)
    );
    first.success();
    let third = breaker
        .try_acquire()
        .expect("a finished probe frees its slot");
    second.success();
    assert_eq!(breaker.state(), State::HalfOpen);
    assert_eq!(breaker.snapshot().probe_successes, 2);
    third.success();
    assert_eq!(breaker.state(), State::Closed);
    let last = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        (last.from, last.to, last.reason),
        (
            State::HalfOpen,
            State::Closed,
            TransitionReason::ProbesSucceeded { count: 3 }
        )
    );
    let snapshot = breaker.snapshot();
    assert_eq!(
        (
            snapshot.calls,
            snapshot.failures,
            snapshot.consecutive_failures
        ),
        (0, 0, 0)
    );
}

#[test]
fn a_failed_probe_reopens_the_breaker_for_longer_up_to_the_max() {
    let clock = ManualClock::new();
    let breaker = config(&clock)
        .open_duration(Duration::from_secs(10))
        .open_duration_growth(2.0)
        .max_open_duration(Duration::from_secs(35))
        .permitted_probes(nz(1))
        .build("dbaas")
        .unwrap();
    let seen = transitions(&breaker);
    let mut open_for = trip(&breaker);
    let mut periods = vec![open_for];
    for _ in 0..3 {
        clock.advance(open_for);
        breaker
            .try_acquire()
            .unwrap()
            .failure(ErrorClass::Transient);
        open_for = breaker.snapshot().remaining_open.unwrap();
        periods.push(open_for);
    }
    let secs = |s| Duration::from_secs(s);
    assert_eq!(periods, [secs(10), secs(20), secs(35), secs(35)]);
    assert_eq!(
        seen.lock().unwrap().last().unwrap().reason,
        TransitionReason::ProbeFailed
    );
    // Closing resets the growth.
    clock.advance(open_for);
    breaker.try_acquire().unwrap().success();
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(trip(&breaker), secs(10));
}

#[test]
fn opening_honours_the_largest_retry_after_seen() {
    let clock = ManualClock::new();
    let breaker = config(&clock)
        .permitted_probes(nz(1))
        .build("dbaas")
        .unwrap();
    for wait in [90, 120, 60] {
        let throttled = ErrorClass::Throttled {
            retry_after: Some(Duration::from_secs(wait)),
        };
        breaker.try_acquire().unwrap().failure(throttled);
    }
    clock.advance(Duration::from_secs(10));
    fail(&breaker);
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(
        breaker.snapshot().remaining_open,
        Some(Duration::from_secs(110)),
        "120 s asked at t=0"
    );
    clock.advance(Duration::from_secs(110));
    let probe = breaker.try_acquire().unwrap();
    probe.failure(ErrorClass::Throttled {
        retry_after: Some(Duration::from_secs(600)),
    });
    assert_eq!(
        breaker.snapshot().remaining_open,
        Some(Duration::from_secs(600)),
        "beyond max_open_duration"
    );
}

#[test]
fn half_open_never_admits_more_than_permitted_probes_across_threads() {
    let clock = ManualClock::new();
    let breaker = due_to_half_open(&clock, config(&clock).permitted_probes(nz(1)));
    let running = AtomicU32::new(0);
    let most = AtomicU32::new(0);
    let admitted = AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..20_000 {
                    let Ok(permit) = breaker.try_acquire() else {
                        continue;
                    };
                    assert!(permit.is_probe());
                    most.fetch_max(running.fetch_add(1, SeqCst) + 1, SeqCst);
                    admitted.fetch_add(1, SeqCst);
                    std::thread::yield_now();
                    running.fetch_sub(1, SeqCst);
                    drop(permit); // cancelled: the slot comes back
                }
            });
        }
    });
    assert_eq!(most.load(SeqCst), 1);
    assert!(admitted.load(SeqCst) > 1, "slots came back");
    assert_eq!(breaker.state(), State::HalfOpen);
    assert_eq!(breaker.snapshot().probes_in_flight, 0);
}

#[test]
fn dropped_probe_futures_give_their_slots_back() {
    let clock = ManualClock::new();
    let breaker = due_to_half_open(&clock, config(&clock).permitted_probes(nz(2)));
    for _ in 0..5 {
        let stuck = breaker.call(std::future::pending::<Result<(), ErrorClass>>());
        assert!(stuck.now_or_never().is_none(), "polled once, then dropped");
    }
    assert_eq!(breaker.snapshot().probes_in_flight, 0);
    let held = [
        breaker.try_acquire().unwrap(),
        breaker.try_acquire().unwrap(),
    ];
    assert_eq!(breaker.snapshot().probes_in_flight, 2);
    let refused = breaker
        .call(async { Ok::<_, ErrorClass>(()) })
        .now_or_never()
        .unwrap();
    assert!(matches!(refused.unwrap_err(), BreakerError::Open { .. }));
    drop(held);
    let ran = breaker
        .call(async { Ok::<_, ErrorClass>(()) })
        .now_or_never()
        .unwrap();
    assert!(ran.is_ok());
    assert_eq!(breaker.state(), State::HalfOpen, "1 of 3 probes succeeded");
}

#[test]
fn an_excluded_error_from_a_probe_gives_its_slot_back() {
    let clock = ManualClock::new();
    let breaker = due_to_half_open(&clock, config(&clock).permitted_probes(nz(1)));
    breaker.try_acquire().unwrap().failure(ErrorClass::Terminal);
    assert_eq!(breaker.state(), State::HalfOpen);
    assert!(breaker.try_acquire().unwrap().is_probe());
}

#[test]
fn hung_probes_reopen_the_breaker_after_the_probe_timeout() {
    let clock = ManualClock::new();
    let breaker = due_to_half_open(&clock, config(&clock).permitted_probes(nz(2)));
    let seen = transitions(&breaker);
    let hung = [
        breaker.try_acquire().unwrap(),
        breaker.try_acquire().unwrap(),
    ];
    clock.advance(Duration::from_secs(59));
    assert_eq!(breaker.try_acquire().unwrap_err().state, State::HalfOpen);
    clock.advance(Duration::from_secs(1));
    let rejected = breaker.try_acquire().unwrap_err();
    assert_eq!(rejected.state, State::Open);
    let reopened = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!((reopened.from, reopened.to), (State::HalfOpen, State::Open));
    assert_eq!(reopened.reason, TransitionReason::ProbesTimedOut);
    assert_eq!(
        breaker.snapshot().remaining_open,
        Some(Duration::from_secs(60)),
        "grown ×2"
    );
    // The hung probes finally answer: too late to count.
    for probe in hung {
        probe.success();
    }
    assert_eq!(breaker.state(), State::Open);
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Acquire,
    Succeed(usize),
    Fail(usize),
    Drop(usize),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Acquire),
        1 => any::<usize>().prop_map(Op::Succeed),
        1 => any::<usize>().prop_map(Op::Fail),
        1 => any::<usize>().prop_map(Op::Drop),
        1 => (0u64..20).prop_map(Op::Advance),
    ]
}

proptest! {
    #[test]
    fn probes_in_flight_never_exceed_the_permit(ops in proptest::collection::vec(op(), 0..300)) {
        let clock = ManualClock::new();
        let breaker = config(&clock)
            .min_calls(nz(1))
            .open_duration(Duration::from_secs(10))
            .permitted_probes(nz(2))
            .build("dbaas")
            .unwrap();
        let seen = transitions(&breaker);
        // Live permits, with the number of transitions seen when each was issued.
        let mut held: Vec<(Permit<'_>, usize)> = Vec::new();
        for op in ops {
            match op {
                Op::Acquire => {
                    if let Ok(permit) = breaker.try_acquire() {
                        held.push((permit, seen.lock().unwrap().len()));
                    }
                }
                Op::Succeed(i) if !held.is_empty() => held.swap_remove(i % held.len()).0.success(),
                Op::Fail(i) if !held.is_empty() => held.swap_remove(i % held.len()).0.failure(ErrorClass::Transient),
                Op::Drop(i) if !held.is_empty() => drop(held.swap_remove(i % held.len())),
                Op::Advance(secs) => clock.advance(Duration::from_secs(secs)),
                _ => {}
            }
            let epoch = seen.lock().unwrap().len();
            let live = held.iter().filter(|(p, at)| p.is_probe() && *at == epoch).count();
            prop_assert!(live <= 2, "{live} probes at once");
            if breaker.state() == State::HalfOpen {
                prop_assert_eq!(breaker.snapshot().probes_in_flight as usize, live);
            }
        }
    }
}
