use futures::executor::block_on;
use proptest::prelude::*;

use super::*;
use crate::clock::Nanos;

/// Any valid schedule on a manual clock.
fn any_config() -> impl Strategy<Value = BackoffConfig> {
    let jitter = prop_oneof![Just(Jitter::Full), Just(Jitter::Equal), Just(Jitter::None)];
    let factor = prop_oneof![Just(1.0), 1.0..4.0, Just(1e300), Just(f64::MAX)];
    let cap_times = prop_oneof![1u32..=4, 1u32..=1_000_000];
    (
        1u64..=10_000_000_000,
        cap_times,
        factor,
        jitter,
        any::<u64>(),
        1u32..=1000,
    )
        .prop_map(|(base, cap_times, factor, jitter, seed, conflict_div)| {
            // Caps up to ~11 days keep the manual clock far from the end of time.
            let cap = Duration::from_nanos(base)
                .saturating_mul(cap_times)
                .min(Duration::from_secs(1_000_000));
            BackoffConfig::operator()
                .base(Duration::from_nanos(base))
                .cap(cap)
                .factor(factor)
                .jitter(jitter)
                .seed(seed)
                .conflict_delay(cap / conflict_div)
        })
}

fn any_class() -> impl Strategy<Value = ErrorClass> {
    let retry_after = prop_oneof![
        Just(None),
        (0u64..=10_000_000_000_000).prop_map(|ns| Some(Duration::from_nanos(ns))),
        Just(Some(Duration::MAX)),
    ];
    prop_oneof![
        3 => Just(ErrorClass::Transient),
        1 => retry_after.prop_map(|retry_after| ErrorClass::Throttled { retry_after }),
        1 => Just(ErrorClass::Conflict),
        1 => Just(ErrorClass::Terminal),
    ]
}

#[derive(Clone, Debug)]
enum Op {
    /// Advance the clock by this many thousandths of the cap.
    Advance(u32),
    /// Advance the clock to the key's next attempt.
    AdvanceToDue,
    /// A reconcile of the object, at a new generation if `bump`.
    Call { bump: bool, step: Step },
}

fn any_op() -> impl Strategy<Value = Op> {
    let step = prop_oneof![
        1 => Just(Step::Succeed),
        1 => Just(Step::Defer),
        5 => any_class().prop_map(Step::Fail),
    ];
    prop_oneof![
        1 => (0u32..=3000).prop_map(Op::Advance),
        2 => Just(Op::AdvanceToDue),
        4 => (proptest::bool::weighted(0.1), step).prop_map(|(bump, step)| Op::Call { bump, step }),
    ]
}

proptest! {
    #[test]
    fn every_delay_is_within_zero_and_the_cap(config in any_config(), ops in proptest::collection::vec(any_op(), 1..60)) {
        let cap = config.clone().resolve().unwrap().policy.cap;
        let (r, inner, time) = manual(config);
        let mut generation = 1;
        for op in ops {
            match op {
                Op::Advance(permille) => time.advance(cap.mul_f64(f64::from(permille) / 1000.0)),
                Op::AdvanceToDue => time.advance(r.handle().remaining("u").unwrap_or_default()),
                Op::Call { bump, step } => {
                    generation += i64::from(bump);
                    inner.then(step);
                    let cm = object("u", Some(generation));
                    let outcome = block_on(run(&r, &cm));
                    if let Outcome::Deferred(Deferral { retry_after, reason: DeferReason::BackingOff }) = &outcome {
                        prop_assert!(*retry_after <= cap, "deferred {retry_after:?} > cap {cap:?}");
                    }
                    let remaining = r.handle().remaining("u");
                    prop_assert!(remaining.is_none_or(|d| d <= cap), "delay {remaining:?} > cap {cap:?}");
                    if let Outcome::Failed(err) = outcome {
                        let expected = match (err, remaining) {
                            (ErrorClass::Terminal, _) => Action::await_change(),
                            (_, Some(d)) => Action::requeue(d),
                            (class, None) => default_error_action(class),
                        };
                        prop_assert_eq!(r.error_action(&cm, &err), expected);
                    }
                }
            }
        }
    }

    #[test]
    fn client_go_delays_match_the_workqueue_sequence(late in proptest::collection::vec(0u64..=5_000_000_000, 40)) {
        let (r, inner, time) = manual(BackoffConfig::client_go());
        let cm = object("u", Some(1));
        for (n, late) in late.into_iter().enumerate() {
            inner.then(Step::Fail(ErrorClass::Transient));
            let Outcome::Failed(err) = block_on(run(&r, &cm)) else { panic!("expected a failure") };
            // client-go: min(1000 s, 5 ms * 2^n), computed here in integers.
            let expected = (5_000_000u128 << n).min(1_000_000_000_000);
            let expected = Duration::from_nanos(u64::try_from(expected).unwrap());
            prop_assert_eq!(r.error_action(&cm, &err), Action::requeue(expected), "failure {}", n);
            time.advance(expected + Duration::from_nanos(late));
        }
    }

    #[test]
    fn a_success_resets_to_the_first_delay(config in any_config(), failures in 1usize..40) {
        let policy = config.clone().resolve().unwrap().policy;
        let (r, inner, time) = manual(config);
        let cm = object("u", Some(1));
        for _ in 0..failures {
            inner.then(Step::Fail(ErrorClass::Transient));
            block_on(run(&r, &cm));
            time.advance(r.handle().remaining("u").unwrap());
        }
        prop_assert!(matches!(block_on(run(&r, &cm)), Outcome::Done(_)));
        prop_assert!(r.handle().is_empty());
        inner.then(Step::Fail(ErrorClass::Transient));
        block_on(run(&r, &cm));
        let first = r.handle().remaining("u").unwrap();
        prop_assert_eq!(r.handle().attempts("u"), 1);
        match policy.jitter {
            Jitter::None => prop_assert_eq!(first, policy.base),
            _ => prop_assert!(first <= policy.base),
        }
    }

    #[test]
    fn early_retriggers_never_raise_the_exponent(
        config in any_config(),
        ops in proptest::collection::vec((0usize..4, any_class(), 0u32..=1500), 1..80),
    ) {
        let cap = config.clone().resolve().unwrap().policy.cap;
        let time = ManualClock::new();
        let backoff = BackoffHandle::<&str>::new(config.clock(time.clock())).unwrap();
        let clock = backoff.clock().clone();
        // Attempts taken while the key was due, with the time they really started,
        // reported later and out of order.
        let mut attempts: Vec<(Attempt, Nanos)> = Vec::new();
        for (pick, class, permille) in ops {
            if let Ok(attempt) = backoff.check(&"k") {
                attempts.push((attempt, clock.now()));
            }
            if let Some((attempt, started)) = attempts.get(pick).copied() {
                let before = backoff.peek(&"k");
                backoff.record_failure(&"k", attempt, class);
                let after = backoff.attempts(&"k");
                let failures = before.map_or(0, |e| e.failures);
                // The property: an attempt that really started before the pending delay
                // ended never raises the exponent.
                let early = before.is_some_and(|e| e.failures > 0 && started < e.not_before);
                if early {
                    prop_assert!(after <= failures, "early {class} raised {failures} to {after}");
                }
                // And the exact rule (an attempt of an untracked key counts as early).
                let counted_early = before.is_some_and(|e| {
                    e.failures > 0 && attempt.started().is_none_or(|s| s < e.not_before)
                });
                let expected = match class {
                    ErrorClass::Terminal => 0,
                    ErrorClass::Conflict => failures,
                    _ if counted_early => failures,
                    _ => failures.saturating_add(1),
                };
                prop_assert_eq!(after, expected, "early: {}, class: {}", counted_early, class);
            }
            time.advance(cap.mul_f64(f64::from(permille) / 1000.0));
        }
    }

    #[test]
    fn a_generation_change_bypasses_the_gate_and_resets(
        config in any_config(),
        failures in 1usize..30,
        bump in 1i64..1000,
        succeed in any::<bool>(),
    ) {
        let policy = config.clone().resolve().unwrap().policy;
        let (r, inner, time) = manual(config.jitter(Jitter::None));
        for _ in 0..failures {
            inner.then(Step::Fail(ErrorClass::Transient));
            block_on(run(&r, &object("u", Some(7))));
            time.advance(r.handle().remaining("u").unwrap());
        }
        inner.then(Step::Fail(ErrorClass::Transient));
        block_on(run(&r, &object("u", Some(7))));
        let calls = inner.calls();
        let pending = r.handle().remaining("u").unwrap();
        if !pending.is_zero() {
            prop_assert!(matches!(block_on(run(&r, &object("u", Some(7)))), Outcome::Deferred(_)));
        }
        prop_assert_eq!(inner.calls(), calls);

        inner.then(if succeed { Step::Succeed } else { Step::Fail(ErrorClass::Transient) });
        block_on(run(&r, &object("u", Some(7 + bump))));
        prop_assert_eq!(inner.calls(), calls + 1, "a new generation runs at once");
        if succeed {
            prop_assert!(r.handle().is_empty());
        } else {
            prop_assert_eq!(r.handle().attempts("u"), 1);
            prop_assert_eq!(r.handle().remaining("u"), Some(policy.base));
        }
    }
}
