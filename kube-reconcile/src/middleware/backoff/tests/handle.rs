//! The handle on its own: per-key backoff around any call.

use super::*;

#[test]
fn seeded_jitter_is_deterministic() {
    let delays = |seed| {
        let backoff = BackoffHandle::<u32>::new(
            BackoffConfig::operator()
                .seed(seed)
                .clock(ManualClock::new().clock()),
        )
        .unwrap();
        (0..20u32)
            .map(|key| {
                backoff.record_failure(&key, backoff.check(&key).unwrap(), ErrorClass::Transient)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(delays(42), delays(42));
    assert_ne!(delays(42), delays(43));
}

#[test]
fn bad_config_is_a_typed_error() {
    let err = BackoffLayer::new(BackoffConfig::operator().factor(0.5)).unwrap_err();
    assert_eq!(
        err.backoff(),
        BackoffConfigError::InvalidFactor { factor: 0.5 }
    );
    let err = BackoffHandle::<String>::new(BackoffConfig::operator().cap(ms(10))).unwrap_err();
    assert!(matches!(
        err.backoff(),
        BackoffConfigError::BaseAboveCap { .. }
    ));
}

#[test]
fn an_attempt_started_before_the_delay_ended_does_not_escalate() {
    let time = ManualClock::new();
    let backoff =
        BackoffHandle::<&str>::new(BackoffConfig::client_go().clock(time.clock())).unwrap();
    let (early, overlapping) = (backoff.check(&"k").unwrap(), backoff.check(&"k").unwrap());
    assert_eq!(
        backoff.record_failure(&"k", early, ErrorClass::Transient),
        Some(ms(5))
    );
    time.advance(ms(1));
    assert_eq!(
        backoff.record_failure(&"k", overlapping, ErrorClass::Transient),
        Some(ms(5))
    );
    assert_eq!(backoff.attempts(&"k"), 1);
    time.advance(ms(5));
    let on_time = backoff.check(&"k").unwrap();
    assert_eq!(
        backoff.record_failure(&"k", on_time, ErrorClass::Transient),
        Some(ms(10))
    );
    assert_eq!(backoff.attempts(&"k"), 2);
}

#[tokio::test]
async fn call_backs_off_any_async_call_per_key() {
    let time = ManualClock::new();
    let backoff =
        BackoffHandle::<String>::new(BackoffConfig::client_go().clock(time.clock())).unwrap();
    let failed = backoff
        .call("eu", async { Err::<(), _>(ErrorClass::Transient) })
        .await
        .unwrap_err();
    assert_eq!(failed.retry_after(), Some(ms(5)));
    assert_eq!(failed.class(), ErrorClass::Transient);
    let held = backoff
        .call("eu", async { Ok::<_, ErrorClass>(1) })
        .await
        .unwrap_err();
    assert!(matches!(held, BackoffError::BackingOff { retry_after } if retry_after == ms(5)));
    assert_eq!(
        backoff
            .call("us", async { Ok::<_, ErrorClass>(2) })
            .await
            .unwrap(),
        2
    );
    time.advance(ms(5));
    assert_eq!(
        backoff
            .call("eu", async { Ok::<_, ErrorClass>(3) })
            .await
            .unwrap(),
        3
    );
    assert!(backoff.is_empty());
}

#[tokio::test(start_paused = true)]
async fn next_attempt_is_when_the_delay_ends() {
    let time = ManualClock::new();
    let backoff =
        BackoffHandle::<&str>::new(BackoffConfig::client_go().clock(time.clock())).unwrap();
    assert_eq!(backoff.next_attempt(&"k"), None);
    backoff.record_failure(&"k", backoff.check(&"k").unwrap(), ErrorClass::Transient);
    assert_eq!(
        backoff.next_attempt(&"k"),
        Some(tokio::time::Instant::now() + ms(5))
    );
}
