//! The budget's calls, refusals and turns, on a manual clock.

use super::*;
use crate::{
    clock::ManualClock,
    error::{Classify, ErrorClass},
};
use std::time::Duration;

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("test values are not zero")
}

#[tokio::test]
async fn a_refused_call_is_not_made_and_is_throttled_for_backoff() {
    let manual = ManualClock::new();
    let budget = RateBudget::from_limiter(
        "dbaas",
        RateLimiter::new(Quota::per_second(nz(2)).burst(nz(1))).clock(manual.clock()),
    );
    let mut made = 0;
    budget
        .call(async {
            made += 1;
            Ok::<_, ErrorClass>(())
        })
        .await
        .expect("first call admitted");
    let refused = budget
        .call(async {
            made += 1;
            Ok::<_, ErrorClass>(())
        })
        .await
        .expect_err("burst is one");
    assert_eq!(made, 1);
    assert_eq!(
        refused.class(),
        ErrorClass::Throttled {
            retry_after: Some(Duration::from_millis(500))
        }
    );
    assert_eq!(refused.to_string(), "rate limited, retry after 500ms");
}

#[tokio::test]
async fn a_failed_call_keeps_its_class_and_its_cell() {
    let budget = RateBudget::new("dbaas", Quota::per_minute(nz(1)));
    let failed = budget
        .call(async { Err::<(), _>(ErrorClass::Conflict) })
        .await
        .expect_err("the call fails");
    assert_eq!(failed.class(), ErrorClass::Conflict);
    assert!(matches!(failed, RateLimitError::Call(ErrorClass::Conflict)));
    assert_eq!(budget.capacity().remaining(), 0);
}

#[test]
fn a_call_future_dropped_before_polling_takes_nothing() {
    let budget = RateBudget::new("dbaas", Quota::per_minute(nz(1)));
    drop(budget.call(async { Ok::<_, ErrorClass>(()) }));
    assert!(budget.capacity().is_full());
}

#[test]
fn refused_callers_get_turns_one_emission_interval_apart() {
    let manual = ManualClock::new();
    let budget = RateBudget::from_limiter(
        "dbaas",
        RateLimiter::new(Quota::per_second(nz(5)).burst(nz(1))).clock(manual.clock()),
    );
    budget.check().expect("the one cell");
    let wait = budget.check().expect_err("spent").retry_after;
    assert_eq!(wait, Duration::from_millis(200));
    // A hundred callers refused at once: each its own turn, 200 ms apart (400 ms
    // for a caller of two cells), instead of all at the exact wait.
    let turns: Vec<_> = (0..100).map(|_| budget.turn(nz(1), wait)).collect();
    for (i, turn) in turns.iter().enumerate() {
        assert_eq!(
            *turn,
            Duration::from_millis(200) * (u32::try_from(i).unwrap() + 1)
        );
    }
    assert_eq!(
        budget.turn(nz(2), wait),
        Duration::from_secs(20) + Duration::from_millis(200)
    );
    assert_eq!(
        budget.turn(nz(1), wait),
        Duration::from_secs(20) + Duration::from_millis(600)
    );
    // Each turn finds its cell: callers coming back in turn order are all admitted.
    let mut elapsed = Duration::ZERO;
    for turn in &turns {
        manual.advance(turn.saturating_sub(elapsed));
        elapsed = *turn;
        budget.check().expect("a cell at the caller's turn");
    }
    // Once the queue has drained, a refused caller waits only the exact wait.
    manual.advance(Duration::from_secs(60));
    budget.check().expect("full again");
    let wait = budget.check().expect_err("spent").retry_after;
    assert_eq!(budget.turn(nz(1), wait), wait);
}

#[test]
fn callers_further_along_take_their_turns_first() {
    let manual = ManualClock::new();
    let budget = RateBudget::from_limiter(
        "dbaas",
        RateLimiter::new(Quota::per_second(nz(5))).clock(manual.clock()),
    );
    let ms = Duration::from_millis;
    let wait = ms(200);
    // Three callers starting objects queue first come, first served.
    let starting: Vec<_> = (0..3).map(|_| budget.turn_at(0, nz(1), wait)).collect();
    assert_eq!(starting, [ms(200), ms(400), ms(600)]);
    // A caller finishing an object goes before all of them, the next one after it,
    // and the queue of starting callers moves back by their turns.
    assert_eq!(budget.turn_at(4, nz(1), wait), ms(200));
    assert_eq!(budget.turn_at(4, nz(1), wait), ms(400));
    assert_eq!(budget.turn_at(0, nz(1), wait), ms(1_200));
    // In between: behind the finishing callers, ahead of the starting ones.
    assert_eq!(budget.turn_at(2, nz(1), wait), ms(600));
    assert_eq!(budget.turn_at(0, nz(1), wait), ms(1_600));
    // Once every turn is in the past, the queue is empty again.
    manual.advance(ms(2_000));
    assert_eq!(budget.turn_at(0, nz(1), wait), wait);
}

#[test]
fn clones_share_one_budget() {
    let a = RateBudget::new("dbaas", Quota::per_minute(nz(2)));
    let b = a.clone();
    a.check().expect("first cell");
    b.check().expect("second cell");
    assert!(a.check().is_err());
    assert!(Arc::ptr_eq(&a.inner, &b.inner));
    assert!(!Arc::ptr_eq(
        &a.inner,
        &RateBudget::new("dbaas", Quota::per_minute(nz(2))).inner
    ));
    assert_eq!(b.name(), "dbaas");
}
