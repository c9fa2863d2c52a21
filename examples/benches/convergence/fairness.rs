//! Fairness without coordination: three adaptive DBaaS budgets, as three operator
//! replicas would hold them (nothing shared but the DBaaS), each with more callers than
//! its share admits, against one DBaaS with a limit of its own. Each budget finds its
//! share from the DBaaS's answers alone; the bench prints each one's rate and answered
//! calls, and Jain's fairness index of the answered calls (1.0: equal shares; 1/3: one
//! takes all). Run twice: with the DBaaS's rate-limit headers, which the budgets read as
//! a congestion mark before any 429, and without, learning from 429s alone.

use std::{
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use kube_reconcile::{
    external::{Dependency, ExternalError},
    middleware::rate_limit::{Quota, RateBudget},
};

use super::example::dbaas::{DbaasClient, DbaasServer};

/// The DBaaS's own limit in this run, calls a second.
const LIMIT: u32 = 100;
/// Replicas, and callers per replica (each keeps one call in flight).
const REPLICAS: usize = 3;
const CALLERS: usize = 16;
/// How long the run lasts, and the part at the start left out of the means.
const RUN: Duration = Duration::from_secs(20);
const WARM_UP: Duration = Duration::from_secs(5);

/// What the run measured.
pub(crate) struct Fairness {
    /// Each replica's mean budget rate after the warm-up, calls a second.
    pub(crate) rates: Vec<f64>,
    /// Calls each replica got answered (not refused) after the warm-up.
    pub(crate) answered: Vec<u64>,
    /// Calls the DBaaS received, and refused with 429, over the whole run.
    pub(crate) calls: u64,
    pub(crate) throttled: u64,
    /// The same after the warm-up (the slow start left out).
    pub(crate) calls_after_warm_up: u64,
    pub(crate) throttled_after_warm_up: u64,
}

impl Fairness {
    /// The share of the DBaaS's calls it refused with 429, in percent.
    #[allow(clippy::cast_precision_loss, reason = "call counts far below 2^52")]
    pub(crate) fn throttled_percent(&self) -> f64 {
        100.0 * self.throttled as f64 / self.calls.max(1) as f64
    }

    /// The same after the warm-up.
    #[allow(clippy::cast_precision_loss, reason = "call counts far below 2^52")]
    pub(crate) fn throttled_percent_after_warm_up(&self) -> f64 {
        100.0 * self.throttled_after_warm_up as f64 / self.calls_after_warm_up.max(1) as f64
    }

    /// Jain's index of `values`: (Σx)² / (n·Σx²).
    pub(crate) fn jain(values: &[f64]) -> f64 {
        let sum: f64 = values.iter().sum();
        let squares: f64 = values.iter().map(|v| v * v).sum();
        let n = f64::from(u32::try_from(values.len()).unwrap_or(u32::MAX));
        if squares == 0.0 {
            0.0
        } else {
            sum * sum / (n * squares)
        }
    }
}

/// Runs the three budgets against one DBaaS for [`RUN`]; the DBaaS sends its rate-limit
/// headers if `headers`.
pub(crate) async fn run(headers: bool) -> Fairness {
    let dbaas = DbaasServer::builder()
        .rate_limit(Quota::per_second(NonZeroU32::new(LIMIT).expect("non-zero")))
        .rate_limit_headers(headers)
        .seed(7)
        .start()
        .await
        .unwrap_or_else(|e| panic!("the DBaaS did not start: {e}"));
    let started = Instant::now();
    let mut replicas = Vec::new();
    for i in 0..REPLICAS {
        let budget = RateBudget::adaptive(
            "dbaas",
            Quota::per_second(NonZeroU32::new(500).expect("non-zero")),
        );
        let client = dbaas.client().agent(&format!("fairness-{i}"));
        let dependency = Dependency::builder(client).budget(budget.clone()).build();
        let answered = Arc::new(AtomicU64::new(0));
        let callers: Vec<_> = (0..CALLERS)
            .map(|_| tokio::spawn(caller(dependency.clone(), Arc::clone(&answered), started)))
            .collect();
        replicas.push((budget, answered, callers));
    }
    let mut sums = [0.0; REPLICAS];
    let mut samples = 0_u32;
    let mut at_warm_up = None;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    while started.elapsed() < RUN {
        tick.tick().await;
        if started.elapsed() >= WARM_UP {
            at_warm_up.get_or_insert_with(|| dbaas.stats());
            for (sum, (budget, _, _)) in sums.iter_mut().zip(&replicas) {
                *sum += budget.rate();
            }
            samples += 1;
        }
    }
    let stats = dbaas.stats();
    let warm = at_warm_up.unwrap_or_default();
    let mut answered = Vec::new();
    for (_, count, callers) in replicas {
        for caller in callers {
            caller.abort();
        }
        answered.push(count.load(Ordering::Relaxed));
    }
    Fairness {
        rates: sums.iter().map(|s| s / f64::from(samples.max(1))).collect(),
        answered,
        calls: stats.total_calls(),
        throttled: stats.throttled,
        calls_after_warm_up: stats.total_calls() - warm.total_calls(),
        throttled_after_warm_up: stats.throttled - warm.throttled,
    }
}

/// One caller: calls the DBaaS through `dependency` as fast as it lets it, waiting out
/// every deferral; counts answered calls after the warm-up.
async fn caller(dependency: Dependency<DbaasClient>, answered: Arc<AtomicU64>, started: Instant) {
    loop {
        match dependency.call(DbaasClient::list).await {
            Ok(_) => {
                if started.elapsed() >= WARM_UP {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(ExternalError::Unavailable(held)) => tokio::time::sleep(held.retry_after).await,
            // A 429 (the budget already heard it) or another failure: try again shortly.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}
