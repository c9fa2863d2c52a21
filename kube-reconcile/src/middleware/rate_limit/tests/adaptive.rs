//! The adaptive budget against a simulated dependency that serves a fixed number of calls
//! a second and answers the rest with 429, on paused time: it settles near the capacity
//! with few refusals, and two budgets sharing the dependency settle at about equal shares.

use std::time::Duration;

use super::*;

/// A dependency that serves `capacity` calls a second (a burst of 10) and refuses the rest.
struct Dependency {
    limit: RateLimiter,
}

impl Dependency {
    fn new(capacity: u32) -> Self {
        Dependency {
            limit: RateLimiter::new(Quota::per_second(nz(capacity)).burst(nz(10))),
        }
    }
}

/// What one budget's callers got.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    served: u32,
    refused: u32,
}

/// Callers behind each budget that always have work: every millisecond for `seconds`,
/// each budget's callers call while it admits them (the budgets taking turns at going
/// first). Returns the tallies of the last
/// `measured` seconds.
async fn run(
    budgets: &[RateBudget],
    dependency: &Dependency,
    seconds: u64,
    measured: u64,
) -> Vec<Tally> {
    let mut tallies = vec![Tally::default(); budgets.len()];
    for ms in 0..seconds * 1_000 {
        let counted = ms >= (seconds - measured) * 1_000;
        // Take turns at who calls first, as processes racing for a dependency do.
        let mut order: Vec<_> = budgets.iter().zip(&mut tallies).collect();
        if ms % 2 == 1 {
            order.reverse();
        }
        for (budget, tally) in order {
            while budget.check().is_ok() {
                if dependency.limit.check().is_ok() {
                    budget.answered();
                    tally.served += u32::from(counted);
                } else {
                    budget.throttled();
                    tally.refused += u32::from(counted);
                }
            }
        }
        tokio::time::advance(Duration::from_millis(1)).await;
    }
    tallies
}

#[tokio::test(start_paused = true)]
async fn one_budget_settles_near_the_dependency_s_capacity_with_few_refusals() {
    let dependency = Dependency::new(200);
    let budget = RateBudget::adaptive("dbaas", Quota::per_second(nz(1_000)));
    assert!((budget.rate() - 62.5).abs() < 0.1, "{}", budget.rate());
    let [tally] = run(std::slice::from_ref(&budget), &dependency, 40, 20).await[..] else {
        unreachable!("one budget, one tally")
    };
    eprintln!(
        "one budget, last 20 s: {tally:?}, rate now {:.0}/s",
        budget.rate()
    );
    // 20 s at 200 a second is 4,000 calls; AIMD's sawtooth runs between 70 % and 100 %.
    assert!(tally.served >= 3_000, "{tally:?}");
    assert!(tally.refused * 20 <= tally.served, "{tally:?}");
    assert!(budget.rate() <= 1_000.0);
}

#[tokio::test(start_paused = true)]
async fn two_budgets_sharing_one_dependency_settle_at_about_equal_shares() {
    let dependency = Dependency::new(200);
    let ceiling = Quota::per_second(nz(1_000));
    let a = RateBudget::adaptive("a", ceiling);
    let b = RateBudget::adaptive("b", ceiling);
    // `b` starts late, when `a` already has the whole dependency.
    run(std::slice::from_ref(&a), &dependency, 10, 0).await;
    let tallies = run(&[a, b], &dependency, 60, 20).await;
    let (a, b) = (tallies[0], tallies[1]);
    let both = a.served + b.served;
    eprintln!("two budgets, last 20 s: {a:?} and {b:?}");
    assert!(both >= 3_000, "{tallies:?}");
    for share in [a.served, b.served] {
        assert!(
            share * 10 >= both * 4 && share * 10 <= both * 6,
            "{tallies:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_fixed_budget_does_not_adapt() {
    let budget = RateBudget::new("dbaas", Quota::per_second(nz(40)));
    budget.throttled();
    budget.answered();
    assert!((budget.rate() - 40.0).abs() < 1e-9);
}
