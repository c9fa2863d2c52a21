use super::*;

#[tokio::test(start_paused = true)]
async fn tokio_clock_follows_paused_time() {
    let clock = Clock::tokio();
    let t0 = clock.now();
    tokio::time::advance(Duration::from_millis(1500)).await;
    assert_eq!(
        clock.now().saturating_since(t0),
        Duration::from_millis(1500)
    );
}

#[test]
fn a_clock_made_outside_any_runtime_follows_a_runtime_paused_later() {
    let clock = Clock::tokio();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        tokio::time::pause();
        let t0 = clock.now();
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(clock.now().saturating_since(t0), Duration::from_secs(90));
    });
}

#[tokio::test]
async fn a_clock_follows_a_pause_that_comes_after_it_was_made() {
    let clock = Clock::tokio();
    tokio::time::pause();
    let t0 = clock.now();
    tokio::time::advance(Duration::from_millis(250)).await;
    assert_eq!(clock.now().saturating_since(t0), Duration::from_millis(250));
}

#[tokio::test(start_paused = true)]
async fn blocking_threads_of_a_paused_runtime_read_paused_time() {
    let clock = Clock::tokio();
    let t0 = clock.now();
    tokio::time::advance(Duration::from_secs(5)).await;
    let reader = clock.clone();
    let read = tokio::task::spawn_blocking(move || reader.now())
        .await
        .expect("the read does not panic");
    assert_eq!(read.saturating_since(t0), Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn time_advanced_before_a_resume_stays_on_the_clock() {
    let clock = Clock::tokio();
    let t0 = clock.now();
    tokio::time::advance(Duration::from_secs(3600)).await;
    tokio::time::resume();
    // tokio's resumed clock keeps the hour it skipped; so must ours.
    assert!(clock.now().saturating_since(t0) >= Duration::from_secs(3600));
}

#[test]
fn only_current_thread_runtimes_count_as_pausable() {
    assert!(!tokio_time_may_be_paused(), "outside any runtime");
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .expect("a runtime");
    multi.block_on(async {
        assert!(!tokio_time_may_be_paused(), "multi-thread block_on");
        let in_task = tokio::spawn(async { tokio_time_may_be_paused() })
            .await
            .expect("the task does not panic");
        assert!(!in_task, "multi-thread task");
    });
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    current.block_on(async {
        assert!(tokio_time_may_be_paused(), "current_thread block_on");
        let blocking = tokio::task::spawn_blocking(tokio_time_may_be_paused)
            .await
            .expect("the closure does not panic");
        assert!(blocking, "current_thread blocking thread");
    });
}

/// Where the counter is read, it agrees with tokio's clock. The bound is loose: the
/// reads bracket each other, so only calibration error could break it, and that is
/// far below a millisecond over a test's lifetime.
#[test]
fn the_counter_reads_what_tokio_would_where_time_cannot_pause() {
    let clock = Clock::tokio();
    let Source::Tokio(source) = &clock.source else {
        panic!("Clock::tokio reads tokio");
    };
    let slack = duration_to_nanos(Duration::from_millis(1));
    let check = |context: &str| {
        for _ in 0..1000 {
            let before = source.read_tokio();
            let read = clock.now().as_raw();
            let after = source.read_tokio();
            assert!(
                before <= read + slack && read <= after + slack,
                "{context}: {before} <= {read} <= {after}"
            );
        }
    };
    check("outside a runtime");
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .expect("a runtime");
    let _entered = multi.enter();
    check("in a multi-thread runtime");
}

#[test]
fn a_clock_made_in_advanced_paused_time_reads_zero_where_tokio_would() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    let clock = rt.block_on(async {
        tokio::time::advance(Duration::from_secs(3600)).await;
        Clock::tokio()
    });
    // Off the paused runtime tokio reads the system clock, an hour behind the
    // epoch; both readings saturate at the epoch.
    let elsewhere = std::thread::spawn(move || clock.now())
        .join()
        .expect("the read does not panic");
    assert_eq!(elsewhere, Nanos::ZERO);
}

#[test]
fn manual_clock_moves_only_when_advanced() {
    let manual = ManualClock::new();
    let clock = manual.clock();
    assert_eq!(clock.now(), Nanos::ZERO);
    manual.advance(Duration::from_nanos(7));
    assert_eq!(clock.now(), Nanos::from_raw(7));
}

#[test]
fn nanos_arithmetic_saturates() {
    assert_eq!(
        Nanos::from_raw(5).saturating_since(Nanos::from_raw(9)),
        Duration::ZERO
    );
    assert_eq!(
        Nanos::from_raw(u64::MAX).saturating_add(Duration::from_secs(1)),
        Nanos::from_raw(u64::MAX)
    );
}

#[test]
fn an_entered_manual_clock_is_the_default_until_its_guard_drops() {
    let outer = ManualClock::new();
    let inner = ManualClock::new();
    outer.advance(Duration::from_secs(5));
    let outer_guard = outer.enter();
    {
        let _inner_guard = inner.enter();
        assert_eq!(Clock::default().now(), Nanos::ZERO, "the inner clock");
    }
    assert_eq!(
        Clock::default().now(),
        Nanos::from_raw(5_000_000_000),
        "the outer clock is back once the inner guard drops"
    );
    let built = Clock::default();
    drop(outer_guard);
    outer.advance(Duration::from_secs(1));
    assert_eq!(
        built.now(),
        Nanos::from_raw(6_000_000_000),
        "a clock taken while entered keeps reading the manual clock"
    );
    assert!(
        matches!(Clock::default().source, Source::Tokio(_)),
        "tokio's again after the last guard"
    );
}

#[test]
fn an_entered_clock_stays_on_its_thread() {
    let manual = ManualClock::new();
    let _entered = manual.enter();
    let elsewhere = std::thread::spawn(|| matches!(Clock::default().source, Source::Tokio(_)))
        .join()
        .expect("the thread ends");
    assert!(elsewhere, "another thread builds on tokio's clock");
}
