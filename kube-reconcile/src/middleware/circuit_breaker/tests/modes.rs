//! Manual states, transition reports, and configuration checks.

use super::*;

#[test]
fn forced_open_refuses_every_call_until_reset() {
    let clock = ManualClock::new();
    let breaker = config(&clock).build("dbaas").unwrap();
    breaker.force_open();
    clock.advance(Duration::from_secs(3600));
    let rejected = breaker.try_acquire().unwrap_err();
    assert_eq!(rejected.state, State::ForcedOpen);
    assert!(rejected.retry_after >= Duration::from_secs(30));
    assert_eq!(breaker.state(), State::ForcedOpen);
    breaker.reset();
    assert_eq!(breaker.state(), State::Closed);
    assert!(!breaker.try_acquire().unwrap().is_probe());
}

#[test]
fn disabled_admits_every_call_and_records_nothing() {
    let clock = ManualClock::new();
    let breaker = config(&clock)
        .consecutive_failures(1)
        .build("dbaas")
        .unwrap();
    breaker.disable();
    for _ in 0..100 {
        fail(&breaker);
    }
    assert_eq!(breaker.state(), State::Disabled);
    let snapshot = breaker.snapshot();
    assert_eq!((snapshot.calls, snapshot.consecutive_failures), (0, 0));
}

#[test]
fn metrics_only_admits_every_call_but_records_and_reports_the_circuit() {
    let clock = ManualClock::new();
    let breaker = config(&clock)
        .permitted_probes(nz(1))
        .build("dbaas")
        .unwrap();
    let seen = transitions(&breaker);
    breaker.metrics_only();
    for _ in 0..4 {
        fail(&breaker);
    }
    // An enforcing breaker would be open now; this one admits and says so.
    assert_eq!(breaker.state(), State::MetricsOnly);
    assert_eq!(breaker.snapshot().circuit, State::Open);
    assert!(!breaker.try_acquire().unwrap().is_probe());
    clock.advance(Duration::from_secs(30));
    let probe = breaker.try_acquire().unwrap();
    assert!(probe.is_probe());
    assert!(
        breaker.try_acquire().is_ok(),
        "calls beyond the probes are admitted too"
    );
    probe.success();
    assert_eq!(breaker.snapshot().circuit, State::Closed);
    let seen = seen.lock().unwrap();
    let reported: Vec<_> = seen.iter().map(|t| (t.from, t.to, t.enforced)).collect();
    assert_eq!(
        reported,
        [
            (State::Closed, State::MetricsOnly, false),
            (State::Closed, State::Open, false),
            (State::Open, State::HalfOpen, false),
            (State::HalfOpen, State::Closed, false),
        ]
    );
}

#[test]
fn transition_callbacks_fire_once_per_transition_in_order() {
    let clock = ManualClock::new();
    let breaker = config(&clock)
        .permitted_probes(nz(1))
        .build("dbaas")
        .unwrap();
    let seen = transitions(&breaker);
    let open_for = trip(&breaker);
    assert!(breaker.try_acquire().is_err());
    clock.advance(open_for);
    breaker.try_acquire().unwrap().success();
    breaker.reset(); // already closed: no transition
    breaker.force_open();
    breaker.force_open();
    breaker.disable();
    breaker.reset();
    assert_eq!(
        edges(&seen),
        [
            (State::Closed, State::Open),
            (State::Open, State::HalfOpen),
            (State::HalfOpen, State::Closed),
            (State::Closed, State::ForcedOpen),
            (State::ForcedOpen, State::Disabled),
            (State::Disabled, State::Closed),
        ]
    );
    let seen = seen.lock().unwrap();
    assert!(seen.iter().all(|t| &*t.dependency == "dbaas" && t.enforced));
    assert_eq!(
        seen[1].at,
        crate::clock::Nanos::ZERO.saturating_add(open_for)
    );
}

#[test]
fn a_callback_may_call_back_into_the_breaker() {
    let clock = ManualClock::new();
    let breaker = config(&clock).build("dbaas").unwrap();
    let seen = transitions(&breaker);
    let handle = breaker.clone();
    breaker.on_transition(move |t| {
        if t.to == State::Open {
            handle.force_open(); // escalate: an operator isolates the dependency
        }
        let _ = handle.snapshot();
    });
    for _ in 0..4 {
        fail(&breaker);
    }
    assert_eq!(breaker.state(), State::ForcedOpen);
    assert_eq!(
        edges(&seen),
        [
            (State::Closed, State::Open),
            (State::Open, State::ForcedOpen)
        ]
    );
}

#[test]
fn bad_configurations_are_typed_errors() {
    let build = |c: BreakerConfig| c.build("dbaas").unwrap_err().breaker();
    let base = BreakerConfig::default;
    for bad in [0.0, -0.5, 1.5, f64::NAN, f64::INFINITY] {
        assert!(
            matches!(
                build(base().failure_rate_threshold(bad)),
                ConfigError::FailureRateThreshold(_)
            ),
            "{bad}"
        );
        assert!(
            matches!(
                build(base().slow_call_rate_threshold(bad)),
                ConfigError::SlowCallRateThreshold(_)
            ),
            "{bad}"
        );
    }
    assert!(base().failure_rate_threshold(1.0).build("dbaas").is_ok());
    assert_eq!(
        build(base().min_calls(nz(51))),
        ConfigError::MinCallsExceedWindow {
            min_calls: 51,
            window: 50
        }
    );
    assert!(
        base()
            .min_calls(nz(51))
            .window(Window::time(Duration::from_secs(60)))
            .build("dbaas")
            .is_ok()
    );
    assert!(matches!(
        build(base().window(Window::count(nz(Window::MAX_CALLS + 1)))),
        ConfigError::WindowTooLarge { .. }
    ));
    assert!(matches!(
        build(base().window(Window::time(Duration::from_millis(5)))),
        ConfigError::TimeWindow { .. }
    ));
    assert_eq!(
        build(base().open_duration(Duration::ZERO)),
        ConfigError::ZeroOpenDuration
    );
    assert!(matches!(
        build(base().max_open_duration(Duration::from_secs(1))),
        ConfigError::MaxOpenDuration { .. }
    ));
    assert_eq!(
        build(base().open_duration_growth(0.5)),
        ConfigError::OpenDurationGrowth(0.5)
    );
    assert!(matches!(
        build(base().open_duration_growth(f64::NAN)),
        ConfigError::OpenDurationGrowth(_)
    ));
    assert_eq!(
        build(base().open_duration_jitter(1.5)),
        ConfigError::OpenDurationJitter(1.5)
    );
    assert_eq!(
        build(base().spread(Duration::ZERO)),
        ConfigError::ZeroSpread
    );
    assert_eq!(
        build(base().probe_timeout(Duration::ZERO)),
        ConfigError::ZeroProbeTimeout
    );
    assert_eq!(
        build(base().slow_call_duration(Duration::ZERO)),
        ConfigError::ZeroSlowCallDuration
    );
    assert_eq!(
        build(base().failure_rate_threshold(2.0)).to_string(),
        "failure rate threshold must be in (0, 1], got 2"
    );
}

#[test]
fn open_duration_jitter_only_shortens_the_open_period() {
    let clock = ManualClock::new();
    for seed in 0..20 {
        let breaker = config(&clock)
            .open_duration_jitter(0.5)
            .seed(seed)
            .build("dbaas")
            .unwrap();
        let open_for = trip(&breaker);
        assert!(
            open_for > Duration::from_secs(15) && open_for <= Duration::from_secs(30),
            "{open_for:?}"
        );
    }
}

/// Keeps the fields of every event emitted on this thread while `f` runs, as
/// `name=value` strings.
///
/// A scoped subscriber (`with_default`) is not enough in a multi-threaded test
/// binary: while it is the only dispatcher, tracing computes a callsite's
/// interest from the *registering thread's* default, so a test on another
/// thread that reaches a breaker callsite first caches "never" for it (and can
/// lower the global max level to OFF). Instead one global subscriber, installed
/// once and interested in everything, routes events to a thread-local sink.
fn capture_events(f: impl FnOnce()) -> Vec<Vec<String>> {
    use std::cell::RefCell;
    use std::sync::Once;

    thread_local! {
        static SINK: RefCell<Option<Vec<Vec<String>>>> = const { RefCell::new(None) };
    }

    struct Router;
    impl tracing::Subscriber for Router {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            struct Visit<'a>(&'a mut Vec<String>);
            impl tracing::field::Visit for Visit<'_> {
                fn record_debug(
                    &mut self,
                    field: &tracing::field::Field,
                    value: &dyn std::fmt::Debug,
                ) {
                    self.0.push(format!("{}={value:?}", field.name()));
                }
                fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                    self.0.push(format!("{}={value}", field.name()));
                }
            }
            SINK.with(|sink| {
                if let Some(events) = sink.borrow_mut().as_mut() {
                    let mut fields = Vec::new();
                    event.record(&mut Visit(&mut fields));
                    events.push(fields);
                }
            });
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        tracing::subscriber::set_global_default(Router)
            .expect("no other test in this binary installs a global subscriber");
    });
    SINK.with(|sink| *sink.borrow_mut() = Some(Vec::new()));
    f();
    SINK.with(|sink| sink.borrow_mut().take().unwrap_or_default())
}

#[test]
fn every_transition_is_a_tracing_event_naming_the_dependency() {
    let clock = ManualClock::new();
    let breaker = config(&clock).build("dbaas").unwrap();
    let events = capture_events(|| {
        trip(&breaker);
        breaker.reset();
    });
    assert_eq!(events.len(), 2, "{events:?}");
    for (fields, (from, to)) in events.iter().zip([("closed", "open"), ("open", "closed")]) {
        assert!(
            fields.contains(&"dependency=dbaas".to_owned()),
            "{fields:?}"
        );
        assert!(fields.contains(&format!("from={from}")), "{fields:?}");
        assert!(fields.contains(&format!("to={to}")), "{fields:?}");
    }
    assert!(
        events[0].contains(&"open_for=Some(30s)".to_owned()),
        "{:?}",
        events[0]
    );
}
