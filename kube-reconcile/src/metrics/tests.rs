//! The metrics' unit tests, and [`sample`]: one series' value, for the tests of the layers too.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::middleware::circuit_breaker::State;

/// The value of the sample `name` with exactly the labels `labels` (in any order) in
/// `metrics`' text exposition.
pub(crate) fn sample(metrics: &Metrics, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).ok()?;
    let mut want: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    want.sort();
    text.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (series_name, mut got) = match series.split_once('{') {
            Some((n, rest)) => (n, parse_labels(rest.strip_suffix('}')?)?),
            None => (series, Vec::new()),
        };
        got.sort();
        (series_name == name && got == want).then(|| value.parse().ok())?
    })
}

/// `a="x",b="y"` as pairs; values keep no escapes (the tests use none).
fn parse_labels(text: &str) -> Option<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let (value, after) = after.split_once('"')?;
        pairs.push((key.to_owned(), value.to_owned()));
        rest = after.strip_prefix(',').unwrap_or(after);
    }
    Some(pairs)
}

#[tokio::test(start_paused = true)]
async fn a_breaker_is_exported_once_and_not_kept_alive() {
    let metrics = Metrics::default();
    let breaker = Breaker::new("dbaas");
    metrics.observe_breaker(&breaker);
    metrics.observe_breaker(&breaker.clone());
    breaker.force_open();
    let labels = [
        ("dependency", "dbaas"),
        ("from", "closed"),
        ("to", "forced_open"),
    ];
    let moved = sample(
        &metrics,
        "kube_reconcile_breaker_transitions_total",
        &labels,
    );
    assert_eq!(moved, Some(1.0), "one export, one count");
    let weak = breaker.downgrade();
    drop(breaker);
    assert!(weak.upgrade().is_none(), "the metrics hold no breaker");
    // A new breaker of the name is exported (the old one is gone, no warning).
    metrics.observe_breaker(&Breaker::new("dbaas"));
    let closed = [("dependency", "dbaas"), ("state", "closed")];
    assert_eq!(
        sample(&metrics, "kube_reconcile_breaker_state", &closed),
        Some(1.0)
    );
}

#[tokio::test(start_paused = true)]
async fn breaker_moves_are_counted_and_the_state_follows() {
    let metrics = Metrics::default();
    let breaker = Breaker::new("dbaas");
    metrics.observe_breaker(&breaker);
    let state = |s: State| {
        let labels = [("dependency", "dbaas"), ("state", s.as_str())];
        sample(&metrics, "kube_reconcile_breaker_state", &labels)
    };
    assert_eq!(state(State::Closed), Some(1.0));
    breaker.force_open();
    assert_eq!(state(State::Closed), Some(0.0));
    assert_eq!(state(State::ForcedOpen), Some(1.0));
    breaker.reset();
    breaker.force_open();
    let moves = |from: &str, to: &str| {
        let labels = [("dependency", "dbaas"), ("from", from), ("to", to)];
        sample(
            &metrics,
            "kube_reconcile_breaker_transitions_total",
            &labels,
        )
    };
    assert_eq!(moves("closed", "forced_open"), Some(2.0));
    assert_eq!(moves("forced_open", "closed"), Some(1.0));
}

#[test]
fn phase_changes_count_edges_and_time_in_the_phase_left() {
    let metrics = Metrics::default();
    let observe = metrics.phase_observer("databases");
    let change = |from, to, spent| PhaseChange {
        namespace: Some("ns"),
        name: "db",
        from,
        to,
        reason: "Test",
        time_in_from: spent,
        at: Timestamp::UNIX_EPOCH,
    };
    observe(&change(None, "Pending", None));
    observe(&change(
        Some("Pending"),
        "Provisioning",
        Some(Duration::from_secs(3)),
    ));
    observe(&change(
        Some("Provisioning"),
        "Configuring",
        Some(Duration::from_secs(40)),
    ));
    let moves = |from: &str, to: &str| {
        let labels = [("controller", "databases"), ("from", from), ("to", to)];
        sample(&metrics, "kube_reconcile_phase_transitions_total", &labels)
    };
    assert_eq!(moves("", "Pending"), Some(1.0));
    assert_eq!(moves("Pending", "Provisioning"), Some(1.0));
    assert_eq!(moves("Provisioning", "Configuring"), Some(1.0));
    let phase = |suffix: &str, phase: &str, le: Option<&str>| {
        let mut labels = vec![("controller", "databases"), ("phase", phase)];
        labels.extend(le.map(|le| ("le", le)));
        let name = format!("kube_reconcile_phase_duration_seconds_{suffix}");
        sample(&metrics, &name, &labels)
    };
    assert_eq!(phase("sum", "Provisioning", None), Some(40.0));
    assert_eq!(phase("count", "Pending", None), Some(1.0));
    assert_eq!(phase("bucket", "Pending", Some("5.0")), Some(1.0));
    assert_eq!(phase("bucket", "Pending", Some("2.0")), Some(0.0));
    assert_eq!(
        phase("count", "Configuring", None),
        None,
        "a phase not left yet has no observation"
    );
}
