//! What the run prints: each phase transition as it happens, and a summary.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Instant,
};

use futures::TryStreamExt;
use kube::{
    Api, ResourceExt,
    api::ListParams,
    runtime::{WatchStreamExt, watcher},
};
use kube_reconcile::{
    middleware::circuit_breaker::Breaker,
    phase::{HasPhaseStatus, PhaseRecord},
};
use kube_reconcile_testing::ApiServer;

use super::{Operator, crd::Database, dbaas::RunningDbaas};

/// What a Database went through: seconds since start, and the record.
type Timeline = Vec<(f64, PhaseRecord)>;

/// The run's output.
#[derive(Clone, Debug)]
pub struct Report {
    started: Instant,
    breaker: Arc<Mutex<Vec<String>>>,
    timelines: Arc<Mutex<BTreeMap<String, Timeline>>>,
}

impl Default for Report {
    fn default() -> Self {
        Report::new()
    }
}

impl Report {
    /// A report whose clock starts now.
    pub fn new() -> Self {
        Report {
            started: Instant::now(),
            breaker: Arc::default(),
            timelines: Arc::default(),
        }
    }

    fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// A line of narration, with the time since start.
    pub fn say(&self, line: &str) {
        println!("{:>6.2}s  {line}", self.elapsed());
    }

    /// Records (and prints) every state change of the DBaaS breaker.
    pub fn watch_breaker(&self, breaker: &Breaker) {
        let this = self.clone();
        breaker.on_transition(move |t| {
            let line = format!(
                "breaker {}: {:?} -> {:?} ({:?})",
                t.dependency, t.from, t.to, t.reason
            );
            this.say(&line);
            this.breaker
                .lock()
                .expect("report lock")
                .push(format!("{:>6.2}s  {line}", this.elapsed()));
        });
    }

    /// Prints each new phase transition of every Database as the API server reports it.
    pub fn print_transitions(&self, api: Api<Database>) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            // The last record printed per Database: history is bounded and its times are
            // whole seconds, so new entries are those after the last one printed.
            let mut last: HashMap<String, PhaseRecord> = HashMap::new();
            let stream = watcher(api, watcher::Config::default()).applied_objects();
            let mut stream = std::pin::pin!(stream);
            while let Ok(Some(db)) = stream.try_next().await {
                let name = db.name_any();
                let Some(status) = db.phase_status() else {
                    continue;
                };
                let history = &status.phase_history;
                let start = last
                    .get(&name)
                    .and_then(|seen| history.iter().rposition(|r| r == seen))
                    .map_or(0, |i| i + 1);
                for record in &history[start..] {
                    let from = record.from.as_deref().unwrap_or("-");
                    let why = if record.message.is_empty() {
                        record.reason.clone()
                    } else {
                        format!("{}: {}", record.reason, record.message)
                    };
                    this.say(&format!(
                        "{name:<12} {from:>12} -> {:<12} {why}",
                        record.phase
                    ));
                    this.timelines
                        .lock()
                        .expect("report lock")
                        .entry(name.clone())
                        .or_default()
                        .push((this.elapsed(), record.clone()));
                }
                if let Some(newest) = history.last() {
                    last.insert(name, newest.clone());
                }
            }
        })
    }

    /// The closing summary.
    pub async fn summary(
        &self,
        operator: &Operator,
        server: Option<&ApiServer>,
        dbaas: Option<&RunningDbaas>,
    ) {
        println!("\n== summary after {:.2}s ==", self.elapsed());
        let list = operator
            .api
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        println!("\nDatabases:");
        for db in &list {
            let status = db.phase_status();
            let retries = status
                .and_then(|s| s.retry.as_ref())
                .map_or(0, |r| r.attempts);
            let failures = self
                .timelines
                .lock()
                .expect("report lock")
                .get(&db.name_any())
                .map_or(0, |t| t.iter().filter(|(_, r)| r.phase == "Failed").count());
            println!(
                "  {:<12} {:<10} endpoint {:<28} failures {failures}, retries pending {retries}",
                db.name_any(),
                db.phase().unwrap_or("-"),
                db.status
                    .as_ref()
                    .and_then(|s| s.endpoint.as_deref())
                    .unwrap_or("-"),
            );
        }
        println!("\nTimeline per Database (seconds since start):");
        for (name, timeline) in self.timelines.lock().expect("report lock").iter() {
            let steps: Vec<String> = timeline
                .iter()
                .map(|(t, r)| format!("{} {t:.2}", r.phase))
                .collect();
            println!("  {name:<12} {}", steps.join(" → "));
        }
        if let Some(server) = server {
            println!(
                "\nAPI requests by verb and resource:\n{}",
                server.requests()
            );
        }
        let breaker = self.breaker.lock().expect("report lock");
        println!(
            "\nBreaker 'dbaas': now {:?}; {} state change(s)",
            operator.dbaas.breaker().state(),
            breaker.len()
        );
        for line in breaker.iter() {
            println!("  {line}");
        }
        let tracked = operator.controller.tracked();
        println!(
            "\nPer-object state: {} Database(s) backing off, {} with a rate limit in use, {} with time paced for the DBaaS budget in memory",
            tracked.backing_off, tracked.rate_limited, tracked.paced
        );
        println!(
            "DBaaS budget: {:.0} calls a second now",
            operator.dbaas.budget().map_or(
                0.0,
                kube_reconcile::middleware::rate_limit::RateBudget::rate
            )
        );
        if let Some(dbaas) = dbaas {
            println!("\nDBaaS: {}", dbaas.stats());
        }
    }
}
