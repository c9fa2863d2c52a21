//! The default run: sample Databases that walk every edge of the state diagram.

use std::time::{Duration, Instant};

use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use kube_reconcile_testing::{ApiServer, Fault, Verb};
use serde_json::json;

use super::{
    Operator,
    cli::Options,
    crd::{Database, DatabaseSpec, Engine},
    dbaas::RunningDbaas,
    report::Report,
};

fn sample(name: &str, engine: Engine, version: &str, replicas: i32, storage: &str) -> Database {
    Database::new(
        name,
        DatabaseSpec {
            engine,
            version: version.to_owned(),
            replicas,
            storage: storage.to_owned(),
            retain_on_delete: false,
        },
    )
}

/// The samples: `orders` gets a spec change once ready, `analytics` fails its first
/// health check, `legacy` asks for a version the DBaaS does not offer and is fixed, and
/// `broken` is refused by the API server's schema.
fn samples(count: usize) -> Vec<Database> {
    let mut all = vec![
        sample("orders", Engine::Postgres, "16", 3, "10Gi"),
        sample("inventory", Engine::Mysql, "8.4", 1, "5Gi"),
        sample("analytics", Engine::Postgres, "17", 1, "20Gi"),
        sample("legacy", Engine::Postgres, "9.6", 1, "1Gi"),
    ];
    all.extend(
        (1..=count).map(|i| sample(&format!("db-{i:03}"), Engine::Postgres, "16", 1, "1Gi")),
    );
    all
}

/// What the run still waits for.
#[derive(Debug, Default)]
struct Progress {
    resized: bool,
    fixed: bool,
}

/// Creates the samples, drives the scenario and checks the end state; `Ok(true)` when
/// every valid sample reached Ready and every edge was walked.
pub async fn run(
    options: &Options,
    operator: &Operator,
    dbaas: Option<&RunningDbaas>,
    server: Option<&ApiServer>,
    report: &Report,
) -> Result<bool, Box<dyn std::error::Error>> {
    let api = &operator.api;
    if let Some(dbaas) = dbaas {
        dbaas.faults().fail_health("analytics", 1);
    }
    if options.chaos {
        chaos(server, dbaas, report);
    }
    // Bad input the schema can express: refused by the API server, nothing is created.
    match api
        .create(
            &PostParams::default(),
            &sample("broken", Engine::Postgres, "16", 0, "1Gi"),
        )
        .await
    {
        Err(kube::Error::Api(status)) => report.say(&format!(
            "broken       refused by the API server ({}): {}",
            status.code, status.message
        )),
        Ok(_) => report.say("broken       unexpectedly accepted by the API server"),
        Err(e) => return Err(e.into()),
    }
    let samples = samples(options.count);
    for db in &samples {
        create_with_retry(api, db).await?;
    }
    report.say(&format!(
        "created {} Databases; watching them converge",
        samples.len()
    ));

    if !converge(api, options, samples.len(), report).await? {
        return Ok(false);
    }
    report.say(&format!("all {} Databases Ready", samples.len()));
    if let Some(server) = server {
        server.faults().clear();
    }

    delete_one(api, dbaas, report).await
}

/// Waits until every sample is Ready at its current spec, changing `orders` once it is
/// Ready and fixing `legacy` once it failed, as a user would; prints progress.
async fn converge(
    api: &Api<Database>,
    options: &Options,
    samples: usize,
    report: &Report,
) -> Result<bool, Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(options.timeout_secs);
    let mut progress = Progress::default();
    let mut last_line = Instant::now();
    loop {
        let Ok(list) = api.list(&ListParams::default()).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let get = |name: &str| list.items.iter().find(|d| d.name_any() == name);
        if !progress.resized && get("orders").is_some_and(|d| d.phase() == Some("Ready")) {
            let patch = json!({ "spec": { "replicas": 5 } });
            retrying(async || {
                api.patch("orders", &PatchParams::default(), &Patch::Merge(&patch))
                    .await
            })
            .await?;
            report.say("orders       spec changed by the user: replicas 3 -> 5");
            progress.resized = true;
        }
        if !progress.fixed
            && let Some(legacy) = get("legacy")
            && legacy.phase() == Some("Failed")
        {
            let patch = json!({ "spec": { "version": "16" } });
            retrying(async || {
                api.patch("legacy", &PatchParams::default(), &Patch::Merge(&patch))
                    .await
            })
            .await?;
            report.say("legacy       spec fixed by the user: version 9.6 -> 16");
            progress.fixed = true;
        }
        let ready = list
            .items
            .iter()
            .filter(|d| is_ready_and_current(d))
            .count();
        if progress.resized && progress.fixed && ready == samples {
            break;
        }
        if Instant::now() > deadline {
            report.say(&format!(
                "gave up after {}s: {ready}/{} Ready",
                options.timeout_secs, samples
            ));
            return Ok(false);
        }
        if last_line.elapsed() > Duration::from_secs(2) {
            let waiting: Vec<String> = list
                .items
                .iter()
                .filter(|d| !is_ready_and_current(d))
                .map(|d| format!("{} {}", d.name_any(), d.phase().unwrap_or("-")))
                .collect();
            report.say(&format!(
                "… {ready}/{} Ready; waiting on {}",
                samples,
                waiting.join(", ")
            ));
            last_line = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(true)
}

/// Deletes `inventory`: its finalizer deprovisions the DBaaS instance, then it goes.
async fn delete_one(
    api: &Api<Database>,
    dbaas: Option<&RunningDbaas>,
    report: &Report,
) -> Result<bool, Box<dyn std::error::Error>> {
    retrying(async || api.delete("inventory", &DeleteParams::default()).await).await?;
    report.say("inventory    deleted by the user");
    let gone_by = Instant::now() + Duration::from_secs(20);
    while api.get_opt("inventory").await?.is_some() {
        if Instant::now() > gone_by {
            report.say("inventory    still there after 20s");
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    report.say("inventory    gone: the finalizer deprovisioned its DBaaS instance first");
    if let Some(dbaas) = dbaas {
        // The DBaaS deletes asynchronously; the instance goes a moment later.
        while dbaas.instances().iter().any(|i| i.name == "inventory") {
            if Instant::now() > gone_by {
                report.say("inventory    its DBaaS instance is still there");
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        report.say("inventory    DBaaS instance gone");
    }
    Ok(true)
}

/// Ready, and the ready status is about the current spec.
fn is_ready_and_current(db: &Database) -> bool {
    db.phase() == Some("Ready")
        && db
            .status
            .as_ref()
            .and_then(|s| s.machine.observed_generation)
            == db.metadata.generation
}

/// Runs a user's request again while the API server answers with the faults `--chaos`
/// injects (5xx, 409, 429), as `kubectl` users do.
async fn retrying<T>(
    mut request: impl AsyncFnMut() -> Result<T, kube::Error>,
) -> Result<T, kube::Error> {
    let mut attempt = 0;
    loop {
        match request().await {
            Err(kube::Error::Api(s))
                if (s.code >= 500 || s.code == 429 || s.code == 409) && attempt < 10 =>
            {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            }
            other => return other,
        }
    }
}

/// Creates `db`, retrying the faults `--chaos` injects.
async fn create_with_retry(api: &Api<Database>, db: &Database) -> Result<(), kube::Error> {
    let mut attempt = 0;
    loop {
        match api.create(&PostParams::default(), db).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s))
                if s.code == 409 && api.get_opt(&db.name_any()).await?.is_some() =>
            {
                return Ok(());
            }
            Err(kube::Error::Api(s))
                if (s.code >= 500 || s.code == 429 || s.code == 409) && attempt < 10 =>
            {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// `--chaos`: API faults on the embedded server, an outage and errors at the DBaaS.
fn chaos(server: Option<&ApiServer>, dbaas: Option<&RunningDbaas>, report: &Report) {
    if let Some(server) = server {
        let faults = server.faults();
        faults.inject(Fault::error(500).verb(Verb::Patch).rate(0.05));
        faults.inject(Fault::error(409).verb(Verb::Patch).rate(0.05));
        faults.inject(Fault::error(429).retry_after(1).verb(Verb::Get).rate(0.03));
        faults.inject(Fault::latency(Duration::from_millis(20)).rate(0.2));
        faults.inject(Fault::drop_watch(Duration::from_secs(3)).times(2));
        report.say("chaos: API server answers 5% of patches with 500, 5% with 409, 3% of GETs with 429; watches drop");
    }
    if let Some(dbaas) = dbaas {
        dbaas.faults().error_rate(0.1);
        let faults = dbaas.faults().clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(800)).await;
            faults.outage(Duration::from_secs(3));
        });
        report.say("chaos: DBaaS fails 10% of calls and goes down for 3s after 0.8s");
    }
}

/// A kubeconfig written for the embedded server's HTTP listener; removed with
/// [`remove`](Self::remove) (the file holds the listener's access token).
#[derive(Debug)]
pub struct Served {
    _http: kube_reconcile_testing::HttpServer,
    path: std::path::PathBuf,
}

impl Served {
    /// Deletes the kubeconfig.
    pub fn remove(self) -> std::io::Result<()> {
        std::fs::remove_file(&self.path)
    }
}

/// Serves the embedded API server over HTTP for `kubectl`, writes its kubeconfig (0600)
/// and prints how to use it.
pub async fn serve_for_kubectl(
    server: &ApiServer,
    namespace: &str,
) -> Result<Served, Box<dyn std::error::Error>> {
    let http = server.serve().await?;
    let path = std::env::temp_dir().join(format!(
        "database-operator-{}.kubeconfig",
        std::process::id()
    ));
    http.write_kubeconfig(&path)?;
    println!(
        "\nThe embedded API server is serving at {} for holders of its kubeconfig (Ctrl-C stops).",
        http.url()
    );
    println!("\n  export KUBECONFIG={}", path.display());
    println!("  kubectl get databases -n {namespace} -w");
    Ok(Served { _http: http, path })
}

/// Keeps the embedded server and the operator up for `kubectl` until Ctrl-C or SIGTERM.
pub async fn serve(
    server: &ApiServer,
    operator: &Operator,
) -> Result<(), Box<dyn std::error::Error>> {
    let ns = operator.api.namespace().unwrap_or_default().to_owned();
    let kubeconfig = serve_for_kubectl(server, &ns).await?;
    println!("  kubectl describe database orders -n {ns}");
    println!(
        "  kubectl patch database orders -n {ns} --type merge -p '{{\"spec\":{{\"replicas\":7}}}}'"
    );
    println!("  kubectl get database orders -n {ns} -o jsonpath='{{.status.phaseHistory}}'");
    println!("  kubectl delete database analytics -n {ns}");
    stopped().await?;
    kubeconfig.remove()?;
    Ok(())
}

/// Resolves on Ctrl-C, or on SIGTERM where there is one.
pub async fn stopped() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            stopped = tokio::signal::ctrl_c() => stopped,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await
}
