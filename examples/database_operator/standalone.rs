//! The DBaaS the operator talks to: the simulated one in this process (the default), one
//! in another process (`--dbaas-url` and `--dbaas-token-file`), or this process as that
//! other one (`--dbaas-only`).

use std::{num::NonZeroU32, path::Path, time::Duration};

use kube_reconcile::middleware::rate_limit::Quota;

use crate::{
    cli::Options,
    dbaas::{DbaasClient, DbaasServer, RunningDbaas},
    report::Report,
    scenario,
};

/// Starts the simulated DBaaS with the example's settings: 400 ms to provision, 50 calls a
/// second.
///
/// # Errors
///
/// The listener could not be bound, or no token could be drawn.
pub async fn simulated() -> std::io::Result<RunningDbaas> {
    DbaasServer::builder()
        .provision_delay(Duration::from_millis(400))
        .rate_limit(Quota::per_second(
            NonZeroU32::new(50).unwrap_or(NonZeroU32::MIN),
        ))
        .start()
        .await
}

/// The DBaaS for this run: simulated here unless `--dbaas-url` (whose token is read from
/// `--dbaas-token-file`), and a client of it.
///
/// # Errors
///
/// The simulated DBaaS could not start, or the token file cannot be read, or the URL or
/// token is invalid.
pub async fn dbaas_for(
    options: &Options,
    report: &Report,
) -> Result<(Option<RunningDbaas>, DbaasClient), Box<dyn std::error::Error>> {
    if let (Some(url), Some(token_file)) = (&options.dbaas_url, &options.dbaas_token_file) {
        let token = std::fs::read_to_string(token_file).map_err(|e| {
            format!(
                "cannot read the DBaaS token file {}: {e}",
                token_file.display()
            )
        })?;
        // Named by host, so a DBaaS shared by several replicas can tell them apart.
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".to_owned());
        let client = DbaasClient::new(url, token.trim())?.agent(&format!(
            "database-operator/{} ({host})",
            env!("CARGO_PKG_VERSION")
        ));
        report.say(&format!("DBaaS at {url}"));
        return Ok((None, client));
    }
    let running = simulated().await?;
    report.say(&format!("DBaaS at {} (simulated)", running.url()));
    let client = running.client();
    Ok((Some(running), client))
}

/// `--dbaas-only`: the simulated DBaaS in this process until Ctrl-C or SIGTERM, its token
/// in a file only this user can read, deleted on the way out.
///
/// # Errors
///
/// The DBaaS could not start, the token file could not be written (it must not exist
/// yet), or the signal handlers could not be installed.
pub async fn dbaas_only(
    options: &Options,
    report: &Report,
) -> Result<(), Box<dyn std::error::Error>> {
    let running = simulated().await?;
    let path = options.dbaas_token_file.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "database-operator-dbaas-{}.token",
            std::process::id()
        ))
    });
    write_private(&path, running.token())?;
    report.say(&format!(
        "DBaaS at {} (simulated); its token is in {}",
        running.url(),
        path.display()
    ));
    println!(
        "\n  cargo run --example database_operator -- --cluster --operator-only --dbaas-url {} --dbaas-token-file {}\n",
        running.url(),
        path.display()
    );
    let stopped = scenario::stopped().await;
    let removed = std::fs::remove_file(&path);
    running.shutdown().await;
    report.say("DBaaS stopped; token file removed");
    stopped?;
    removed?;
    Ok(())
}

/// Writes `text` to a new file at `path` that only this user can read (0600 on Unix);
/// refuses to overwrite an existing file.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}
