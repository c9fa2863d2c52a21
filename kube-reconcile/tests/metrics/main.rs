//! Metrics after scripted runs of a real `Controller` on the embedded API server:
//! successes, transient and terminal failures, an open breaker, a rate limit and a phase
//! machine; and the `/metrics` endpoint scraped over HTTP.

#![allow(
    clippy::float_cmp,
    reason = "metric values here are counts or whole seconds, exact in f64"
)]

use std::{collections::HashMap, num::NonZeroU32, sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::{
    api::core::v1::ConfigMap,
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, CustomResource, CustomResourceExt, ResourceExt,
    api::PostParams,
    runtime::{Controller, controller::Action, watcher},
};
use kube_reconcile::{
    Classify, ControllerExt, ErrorClass, Reconciler, ReconcilerExt,
    metrics::Metrics,
    middleware::{
        backoff::{BackoffConfig, Jitter},
        circuit_breaker::{BreakerConfig, CircuitBreakerLayer},
        rate_limit::{Quota, RateLimitLayer},
    },
    phase::{
        HasPhaseStatus, PhaseConfig, PhaseEngine, PhaseMachine, PhaseStatus, Step, Transition,
        Transitions,
    },
};
use kube_reconcile_testing::ApiServer;
use prometheus_client::{encoding::text::encode, registry::Registry};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod endpoint;
mod phases;

/// The samples of an `OpenMetrics` text exposition, by name and sorted labels.
struct Scrape(HashMap<(String, Vec<(String, String)>), f64>);

impl Scrape {
    fn parse(text: &str) -> Self {
        let mut samples = HashMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, labels(rest.strip_suffix('}').expect("closed"))),
                None => (series, Vec::new()),
            };
            samples.insert((name.to_owned(), labels), value.parse().expect("a number"));
        }
        Scrape(samples)
    }

    fn of(registry: &Registry) -> Self {
        let mut text = String::new();
        encode(&mut text, registry).expect("encodes");
        Self::parse(&text)
    }

    /// The value of `name` with exactly `labels`, if that series exists.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        labels.sort();
        self.0.get(&(name.to_owned(), labels)).copied()
    }

    /// Like [`get`](Self::get), 0 for a series never created.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }
}

fn labels(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let (value, after) = after.split_once('"').expect("a closing quote");
        pairs.push((key.to_owned(), value.to_owned()));
        rest = after.strip_prefix(',').unwrap_or(after);
    }
    pairs.sort();
    pairs
}

#[derive(Debug, thiserror::Error)]
#[error("scripted failure ({0:?})")]
struct Scripted(ErrorClass);

impl Classify for Scripted {
    fn class(&self) -> ErrorClass {
        self.0
    }
}

/// Failures so far per object name.
#[derive(Default)]
struct Ctx {
    failures: std::sync::Mutex<HashMap<String, u32>>,
}

/// `ok` succeeds; `flaky` fails twice (transient) then succeeds; `bad` fails terminally;
/// `down-*` always fail (transient): their dependency is down.
async fn reconcile(cm: Arc<ConfigMap>, ctx: Arc<Ctx>) -> Result<Action, Scripted> {
    let name = cm.name_any();
    let failures = {
        let mut failures = ctx.failures.lock().expect("not poisoned");
        let n = failures.entry(name.clone()).or_default();
        *n += 1;
        *n
    };
    match name.as_str() {
        "flaky" if failures <= 2 => Err(Scripted(ErrorClass::Transient)),
        "bad" => Err(Scripted(ErrorClass::Terminal)),
        n if n.starts_with("down-") => Err(Scripted(ErrorClass::Transient)),
        _ => Ok(Action::await_change()),
    }
}

async fn create_configmaps(cms: &Api<ConfigMap>, names: &[&str]) {
    for name in names {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some((*name).to_owned());
        cms.create(&PostParams::default(), &cm)
            .await
            .expect("created");
    }
}

fn registry_of(metrics: &Metrics) -> Registry {
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    registry
}

#[tokio::test(start_paused = true)]
async fn successes_and_failures_are_counted_under_controller_runtime_names() {
    let server = ApiServer::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let metrics = Metrics::default();
    let registry = registry_of(&metrics);
    let backoff = BackoffConfig::operator()
        .jitter(Jitter::None)
        .build()
        .expect("valid");
    let reconciler = reconcile
        .with(backoff)
        .with(metrics.layer("configmaps").max_concurrent_reconciles(2));
    let controller = Controller::new(cms.clone(), watcher::Config::default())
        .run_reconciler(reconciler, Arc::new(Ctx::default()));
    tokio::spawn(controller.for_each(|_| async {}));
    create_configmaps(&cms, &["ok", "flaky", "bad"]).await;
    tokio::time::sleep(Duration::from_secs(30)).await;

    let m = Scrape::of(&registry);
    let c = ("controller", "configmaps");
    let result = |r| m.value("controller_runtime_reconcile_total", &[c, ("result", r)]);
    assert_eq!(result("success"), 2.0, "ok once, flaky on its third try");
    assert_eq!(result("error"), 3.0, "flaky twice, bad once");
    assert_eq!(result("requeue_after"), 0.0);
    assert_eq!(
        m.get(
            "controller_runtime_reconcile_total",
            &[c, ("result", "requeue")]
        ),
        Some(0.0)
    );
    assert_eq!(
        m.value("controller_runtime_reconcile_errors_total", &[c]),
        3.0
    );
    assert_eq!(
        m.value("controller_runtime_terminal_reconcile_errors_total", &[c]),
        1.0
    );
    assert_eq!(
        m.value("controller_runtime_reconcile_time_seconds_count", &[c]),
        5.0
    );
    assert_eq!(m.value("controller_runtime_active_workers", &[c]), 0.0);
    assert_eq!(
        m.value("controller_runtime_max_concurrent_reconciles", &[c]),
        2.0
    );
    let class = |k| m.value("kube_reconcile_errors_total", &[c, ("class", k)]);
    assert_eq!((class("transient"), class("terminal")), (2.0, 1.0));
    // flaky's two failures were requeued by the backoff; bad's terminal error waits.
    assert_eq!(m.value("kube_reconcile_backoff_retries_total", &[c]), 2.0);
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_shows_in_its_state_and_in_the_deferrals() {
    let server = ApiServer::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let metrics = Metrics::default();
    let registry = registry_of(&metrics);
    let breaker = BreakerConfig::default()
        .consecutive_failures(2)
        .build("dbaas")
        .expect("valid");
    metrics.observe_breaker(&breaker);
    let backoff = BackoffConfig::operator()
        .jitter(Jitter::None)
        .build()
        .expect("valid");
    let reconciler = reconcile
        .with(CircuitBreakerLayer::from(breaker.clone()))
        .with(backoff)
        .with(metrics.layer("configmaps"));
    let controller = Controller::new(cms.clone(), watcher::Config::default())
        .run_reconciler(reconciler, Arc::new(Ctx::default()));
    create_configmaps(&cms, &["down-0", "down-1", "down-2"]).await;
    tokio::spawn(controller.for_each(|_| async {}));
    // Two failures open the breaker (for 27..30 s); stop well before it half-opens.
    tokio::time::sleep(Duration::from_secs(10)).await;

    let m = Scrape::of(&registry);
    let c = ("controller", "configmaps");
    let dbaas = ("dependency", "dbaas");
    assert_eq!(
        m.value("kube_reconcile_breaker_state", &[dbaas, ("state", "open")]),
        1.0
    );
    assert_eq!(
        m.get(
            "kube_reconcile_breaker_state",
            &[dbaas, ("state", "closed")]
        ),
        Some(0.0)
    );
    assert_eq!(
        m.value(
            "kube_reconcile_breaker_transitions_total",
            &[dbaas, ("from", "closed"), ("to", "open")]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "controller_runtime_reconcile_total",
            &[c, ("result", "error")]
        ),
        2.0
    );
    // The third object, then the two backoff retries after 1 s: all held back.
    let deferred = m.value(
        "kube_reconcile_deferrals_total",
        &[c, ("reason", "circuit_open")],
    );
    assert_eq!(deferred, 3.0);
    assert_eq!(
        m.value(
            "controller_runtime_reconcile_total",
            &[c, ("result", "requeue_after")]
        ),
        deferred,
        "a deferral is a requeue_after to controller-runtime's eyes"
    );
    let waits = m.value(
        "kube_reconcile_deferral_wait_seconds_count",
        &[c, ("reason", "circuit_open")],
    );
    assert_eq!(waits, 3.0);
    let short_waits = m.value(
        "kube_reconcile_deferral_wait_seconds_bucket",
        &[c, ("reason", "circuit_open"), ("le", "10.0")],
    );
    assert_eq!(
        short_waits, 0.0,
        "each waits for the half-open time, 17 s or more"
    );
    assert_eq!(
        m.value("controller_runtime_reconcile_errors_total", &[c]),
        2.0
    );
}

#[tokio::test(start_paused = true)]
async fn rate_limit_rejections_are_counted_by_budget_with_their_waits() {
    let server = ApiServer::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let metrics = Metrics::default();
    let registry = registry_of(&metrics);
    let one_a_minute = Quota::per_minute(NonZeroU32::new(1).expect("non-zero"));
    let reconciler = reconcile
        .with(
            RateLimitLayer::builder()
                .global(one_a_minute)
                .build()
                .unwrap(),
        )
        .with(metrics.layer("configmaps"));
    let controller = Controller::new(cms.clone(), watcher::Config::default())
        .run_reconciler(reconciler, Arc::new(Ctx::default()));
    create_configmaps(&cms, &["ok-0", "ok-1", "ok-2"]).await;
    tokio::spawn(controller.for_each(|_| async {}));
    tokio::time::sleep(Duration::from_secs(10)).await;

    let m = Scrape::of(&registry);
    let c = ("controller", "configmaps");
    let result = |r| m.value("controller_runtime_reconcile_total", &[c, ("result", r)]);
    assert_eq!(result("success"), 1.0, "one token in the first minute");
    assert_eq!(result("requeue_after"), 2.0);
    assert_eq!(
        m.value(
            "kube_reconcile_rate_limit_rejections_total",
            &[c, ("budget", "global")]
        ),
        2.0
    );
    let limited = [c, ("reason", "rate_limited")];
    assert_eq!(m.value("kube_reconcile_deferrals_total", &limited), 2.0);
    let bucket = |le| {
        let mut labels = limited.to_vec();
        labels.push(("le", le));
        m.value("kube_reconcile_deferral_wait_seconds_bucket", &labels)
    };
    assert_eq!(
        bucket("30.0"),
        0.0,
        "each waits for the next token, about a minute"
    );
    assert_eq!(bucket("120.0"), 2.0);
}
