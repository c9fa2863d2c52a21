//! The `database_operator` example's binary: flags, logs, and the run (see the library
//! for the operator itself).

use std::process::ExitCode;

use database_operator::{
    cli::{self, Options},
    run,
};

#[tokio::main]
async fn main() -> ExitCode {
    // `--help`, `--version` and bad flags print and exit here (2 for bad flags).
    let options = <Options as clap::Parser>::parse();
    init_logs(options.log_format == cli::LogFormat::Json);
    match run(options).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("database_operator: {error}");
            let mut source = error.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

/// Logs on stderr (the narrative is on stdout): readable by default, JSON with
/// `--log-format json`; `RUST_LOG` sets the level (default `warn`).
fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        logs.json().init();
    } else {
        logs.init();
    }
}
