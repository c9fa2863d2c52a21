//! The `Deferred` condition: the middleware's retry state in status. It appears while the
//! rate limit, the backoff or an open breaker holds an object back, says which and until
//! when, writes nothing when a deferral repeats, and clears once a reconcile runs.

use kube_reconcile::{
    DeferReason, Deferral, Outcome, ReconcilerExt,
    clock::ManualClock,
    conditions::Condition,
    middleware::{
        backoff::BackoffConfig,
        circuit_breaker::{Breaker, CircuitBreakerLayer},
        rate_limit::{Quota, RateLimitLayer},
    },
    phase::DeferralStatusLayer,
};
use kube_reconcile_test_support::both_tiers;

use super::*;

fn deferred(obj: &Pipeline) -> Option<Condition> {
    machine(obj).conditions.find("Deferred").cloned()
}

/// The `Deferred` condition of `obj`, checked to give `reason` and a message that starts
/// with `prefix`.
fn shows(obj: &Pipeline, reason: &str, prefix: &str) -> Condition {
    let c = deferred(obj).expect("a Deferred condition");
    assert_eq!(
        (c.status, c.reason.as_str()),
        (ConditionStatus::True, reason)
    );
    assert!(c.message.starts_with(prefix), "{}", c.message);
    c
}

/// The time a `Deferred` message names.
fn next_attempt(c: &Condition) -> k8s_openapi::jiff::Timestamp {
    let (_, at) = c.message.rsplit_once("next attempt at ").expect("a time");
    at.parse().expect("an RFC 3339 time")
}

fn version(obj: &Pipeline) -> String {
    obj.resource_version().unwrap_or_default()
}

both_tiers! {
    async fn a_rate_limited_object_shows_until_when_and_clears_after_it_runs(cx: Tier) {
        cx.install_crd(&Pipeline::crd()).await;
        let env = Env::new(cx.client(), cx.namespace(), PhaseConfig::default(), None);
        env.create("db", 3, "").await;
        env.until_phase_by_hand("db", "Provisioning").await;
        // The middleware on a manual clock: the test decides when the limit lets go.
        // (Its wall-clock anchor is taken now; real time passing later does not move it.)
        let start = k8s_openapi::jiff::Timestamp::now();
        let manual = ManualClock::new();
        let entered = manual.enter();
        let limit = RateLimitLayer::builder()
            .per_object(Quota::with_period(Duration::from_secs(30)).unwrap())
            .jitter(Duration::ZERO)
            .build()
            .unwrap();
        let stack = env
            .engine
            .clone()
            .with(limit)
            .with(DeferralStatusLayer::new(env.client()));
        drop(entered);

        // The first pass runs (Provisioning → Configuring); the second is held back.
        let first = stack.call(Arc::new(env.get("db").await), env.ctx.clone()).await;
        assert!(matches!(first, Outcome::Done(_)), "{first:?}");
        let held = stack.call(Arc::new(env.get("db").await), env.ctx.clone()).await;
        let Outcome::Deferred(deferral) = held else { panic!("{held:?}") };
        assert!(matches!(deferral.reason, DeferReason::RateLimited { .. }));

        let obj = env.get("db").await;
        let c = shows(&obj, "RateLimited", "rate limited by the per-object limit; next attempt at ");
        let until = next_attempt(&c);
        // 30 s after the first pass on the manual clock, rounded up to a whole second.
        let ahead = until.duration_since(start).as_secs_f64();
        assert!((30.0..=31.5).contains(&ahead), "next attempt {ahead} s ahead");
        assert_eq!(c.observed_generation, Some(1));
        assert_eq!(phase_of(&obj), Some("Configuring"), "the phase machine's status is kept");

        // Held back again before that time: nothing to write.
        manual.advance(Duration::from_secs(10));
        let again = stack.call(Arc::new(obj.clone()), env.ctx.clone()).await;
        assert!(matches!(again, Outcome::Deferred(_)), "{again:?}");
        assert_eq!(version(&env.get("db").await), version(&obj), "a repeated deferral wrote");

        // Its time comes: the pass runs and the condition goes; the engine's own write
        // in between kept it.
        manual.advance(Duration::from_secs(21));
        let ran = stack.call(Arc::new(env.get("db").await), env.ctx.clone()).await;
        assert!(matches!(ran, Outcome::Done(_)), "{ran:?}");
        let obj = env.get("db").await;
        assert_eq!(deferred(&obj), None, "{:?}", machine(&obj).conditions);
        assert_eq!(phase_of(&obj), Some("Deploying"));
    }
}

impl Env {
    /// Runs the bare engine on `name` until it is in `phase` (at most 10 passes).
    async fn until_phase_by_hand(&self, name: &str, phase: &str) {
        for _ in 0..10 {
            if phase_of(&self.get(name).await) == Some(phase) {
                return;
            }
            self.reconcile(name).await.unwrap();
        }
        panic!("{name} never reached {phase}");
    }
}

/// The stack `Deferred ∘ Backoff ∘ engine` on a fresh embedded server, with a backoff
/// of 10 s doubling.
async fn backoff_stack() -> (
    Env,
    impl Reconciler<Pipeline, Ctx, Error = PhaseError<Scripted>>,
) {
    let env = env().await;
    let backoff = BackoffConfig::operator()
        .base(Duration::from_secs(10))
        .jitter(kube_reconcile::middleware::backoff::Jitter::None)
        .build()
        .unwrap();
    let status = DeferralStatusLayer::new(env.client()).backoff(&backoff);
    let stack = env.engine.clone().with(backoff).with(status);
    (env, stack)
}

#[tokio::test(start_paused = true)]
async fn failures_show_their_count_error_and_next_attempt_and_success_clears_them() {
    let (env, stack) = backoff_stack().await;
    env.create("db", 3, "flaky").await;
    env.until_phase_by_hand("db", "Provisioning").await;
    let call = || async {
        stack
            .call(Arc::new(env.get("db").await), env.ctx.clone())
            .await
    };

    let failed = call().await;
    assert!(matches!(failed, Outcome::Failed(_)), "{failed:?}");
    let obj = env.get("db").await;
    let c = shows(
        &obj,
        "BackingOff",
        "reconcile failed once in a row: the Provisioning handler failed: scripted Transient error; next attempt at ",
    );
    let first_until = next_attempt(&c);

    // A watch event during the delay: the backoff defers, nothing is written.
    let waiting = call().await;
    assert!(
        matches!(
            waiting,
            Outcome::Deferred(Deferral {
                reason: DeferReason::BackingOff,
                ..
            })
        ),
        "{waiting:?}"
    );
    assert_eq!(version(&env.get("db").await), version(&obj));

    // The second failure doubles the delay and says so.
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(matches!(call().await, Outcome::Failed(_)));
    let c = deferred(&env.get("db").await).expect("still deferred");
    assert!(
        c.message.starts_with("reconcile failed 2 times in a row"),
        "{}",
        c.message
    );
    let second_until = next_attempt(&c);
    let gap = second_until.duration_since(first_until).as_secs();
    assert!((19..=21).contains(&gap), "the next attempt moved {gap} s");

    // Then it works: the condition is gone.
    tokio::time::advance(Duration::from_secs(20)).await;
    assert!(matches!(call().await, Outcome::Done(_)));
    let obj = env.get("db").await;
    assert_eq!(deferred(&obj), None);
    assert_eq!(phase_of(&obj), Some("Configuring"));
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_shows_its_dependency_and_short_waits_show_nothing() {
    let env = env().await;
    let handle = Breaker::new("billing");
    let breaker = CircuitBreakerLayer::from(handle.clone());
    let stack = env
        .engine
        .clone()
        .with(breaker)
        .with(DeferralStatusLayer::new(env.client()).min_wait(Duration::from_millis(1)));
    env.create("db", 3, "").await;
    let call = || async {
        stack
            .call(Arc::new(env.get("db").await), env.ctx.clone())
            .await
    };

    handle.force_open();
    assert!(matches!(call().await, Outcome::Deferred(_)));
    shows(
        &env.get("db").await,
        "CircuitOpen",
        "the circuit breaker for billing is open; next attempt at ",
    );
    handle.reset();
    assert!(matches!(call().await, Outcome::Done(_)));
    assert_eq!(deferred(&env.get("db").await), None);

    // The same stack with the default minimum: a sub-second wait is not written.
    let quick = env
        .engine
        .clone()
        .with(RateLimitLayer::per_object(
            Quota::with_period(Duration::from_millis(500)).unwrap(),
        ))
        .with(DeferralStatusLayer::new(env.client()));
    let before = env.server().requests();
    assert!(matches!(
        quick
            .call(Arc::new(env.get("db").await), env.ctx.clone())
            .await,
        Outcome::Done(_)
    ));
    let writes = env.server().requests().since(&before).writes();
    assert!(matches!(
        quick
            .call(Arc::new(env.get("db").await), env.ctx.clone())
            .await,
        Outcome::Deferred(_)
    ));
    assert_eq!(env.server().requests().since(&before).writes(), writes);
    assert_eq!(deferred(&env.get("db").await), None);
}

#[tokio::test(start_paused = true)]
async fn with_a_controller_the_condition_comes_and_goes_without_a_write_loop() {
    let (env, stack) = backoff_stack().await;
    let (seen, recorder) = env.record("db").await;
    let controller = tokio::spawn(
        Controller::new(env.api.clone(), watcher::Config::default())
            .run_reconciler(stack, env.ctx.clone())
            .for_each(|_| async {}),
    );
    let before = env.server().requests();
    env.create("db", 3, "flaky").await;
    let ready = env.until_phase("db", "Ready").await;
    assert_eq!(deferred(&ready), None);

    let versions = seen.lock().unwrap().clone();
    let reasons: Vec<String> = versions
        .iter()
        .filter_map(deferred)
        .map(|c| c.reason)
        .collect();
    assert!(
        reasons.iter().any(|r| r == "BackingOff"),
        "the condition never showed: {reasons:?}"
    );
    // Two failures and the passes through six phases: a loop would show as hundreds.
    let writes = env.server().requests().since(&before).writes();
    assert!(writes < 30, "{writes} writes");

    // At rest: an hour of resyncs writes nothing more.
    let at_rest = env.server().requests();
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert_eq!(env.server().requests().since(&at_rest).writes(), 0);
    controller.abort();
    recorder.abort();
}
