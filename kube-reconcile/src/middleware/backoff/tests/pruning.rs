//! State never outlives its use: success, deletion, idle TTL, a full store, cancellation.

use super::*;

#[tokio::test]
async fn no_keys_are_tracked_after_successes() {
    let (r, inner, time) = manual(BackoffConfig::client_go());
    for i in 0..50 {
        inner.then(Step::Fail(ErrorClass::Transient));
        run(&r, &object(&i.to_string(), Some(1))).await;
    }
    assert_eq!(r.handle().len(), 50);
    time.advance(ms(5));
    for i in 0..50 {
        assert!(matches!(
            run(&r, &object(&i.to_string(), Some(1))).await,
            Outcome::Done(_)
        ));
    }
    assert!(r.handle().is_empty());
}

#[tokio::test]
async fn a_deleted_object_is_forgotten_once_its_last_reconcile_succeeds() {
    let (r, inner, _time) = manual(BackoffConfig::operator());
    inner.then(Step::Fail(ErrorClass::Transient));
    run(&r, &object("u1", Some(1))).await;
    assert_eq!(r.handle().len(), 1);

    // Deletion sets deletionTimestamp and bumps the generation, so cleanup runs at once.
    let mut deleting = (*object("u1", Some(2))).clone();
    deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
    assert!(matches!(
        run(&r, &Arc::new(deleting)).await,
        Outcome::Done(_)
    ));
    assert!(r.handle().is_empty());
}

#[tokio::test]
async fn idle_keys_are_swept_after_the_ttl() {
    let config = BackoffConfig::client_go().idle_ttl(Duration::from_secs(30));
    let (r, inner, time) = manual(config);
    for uid in ["a", "b"] {
        inner.then(Step::Fail(ErrorClass::Transient));
        run(&r, &object(uid, None)).await;
    }
    time.advance(Duration::from_secs(30));
    assert_eq!(
        r.handle().sweep(),
        2,
        "due 5 ms ago, idle for less than the ttl"
    );
    time.advance(Duration::from_secs(31));
    // A new key arriving after the sweep interval sweeps idle keys by itself.
    inner.then(Step::Fail(ErrorClass::Transient));
    run(&r, &object("c", None)).await;
    assert_eq!(r.handle().len(), 1);
    assert_eq!(r.handle().attempts("a"), 0);
    time.advance(Duration::from_secs(31));
    assert_eq!(r.handle().sweep(), 0);
    assert!(r.handle().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_dropped_call_records_nothing() {
    async fn slow_failure(_: Arc<ConfigMap>, _: Arc<()>) -> Result<Action, ErrorClass> {
        tokio::time::sleep(Duration::from_secs(10)).await;
        Err(ErrorClass::Transient)
    }
    let r = slow_failure.with(BackoffLayer::client_go());
    let cancelled = tokio::time::timeout(
        Duration::from_secs(1),
        r.call(object("u1", None), Arc::new(())),
    )
    .await;
    assert!(cancelled.is_err());
    assert!(r.handle().is_empty());
}

#[tokio::test]
async fn error_action_falls_back_when_the_store_is_full() {
    let config = BackoffConfig::client_go().max_keys(NonZeroUsize::MIN);
    let (r, inner, _time) = manual(config);
    let (first, second) = (object("u1", None), object("u2", None));
    inner
        .then(Step::Fail(ErrorClass::Transient))
        .then(Step::Fail(ErrorClass::Transient));
    run(&r, &first).await;
    let Outcome::Failed(err) = run(&r, &second).await else {
        panic!("expected a failure")
    };
    assert_eq!(r.handle().len(), 1);
    assert_eq!(r.error_action(&first, &err), Action::requeue(ms(5)));
    assert_eq!(
        r.error_action(&second, &err),
        default_error_action(ErrorClass::Transient)
    );
}
