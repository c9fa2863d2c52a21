//! Command-line flags, parsed with clap.

use std::net::SocketAddr;

use clap::{ArgGroup, Parser, ValueEnum};

/// A multi-phase Database operator on kube-reconcile.
///
/// With no flags it runs on an embedded Kubernetes API server with a simulated DBaaS,
/// creates sample Databases, walks every edge of the state diagram and prints a summary.
/// It never touches a real cluster unless you pass --cluster.
#[derive(Clone, Debug, Default, Parser)]
#[command(
    name = "database_operator",
    version,
    override_usage = "cargo run --example database_operator -- [OPTIONS]",
    group(ArgGroup::new("target").args(["cluster", "serve"]))
)]
#[allow(clippy::struct_excessive_bools, reason = "each is a command-line flag")]
pub struct Options {
    /// Inject API faults and DBaaS outages; everything must still converge
    #[arg(long)]
    pub chaos: bool,
    /// Also create N generated Databases
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub count: usize,
    /// Keep the embedded API server and the operator running afterwards and print kubectl
    /// commands to watch and edit the Databases (Ctrl-C stops)
    #[arg(long, conflicts_with = "cluster")]
    pub serve: bool,
    /// Use the current kube context instead of the embedded server
    #[arg(long)]
    pub cluster: bool,
    /// With --cluster: install the Database CRD first
    #[arg(long, requires = "cluster")]
    pub install_crd: bool,
    /// The namespace of the Databases (default: the kube context's)
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Use this DBaaS instead of the simulated one (with --dbaas-token-file)
    #[arg(long, value_name = "URL", requires = "dbaas_token_file")]
    pub dbaas_url: Option<String>,
    /// The DBaaS's access token: read from this file with --dbaas-url; with --dbaas-only,
    /// where to write it (created 0600, deleted on exit; default: a new file in the
    /// temporary directory)
    #[arg(long, value_name = "PATH")]
    pub dbaas_token_file: Option<std::path::PathBuf>,
    /// Run only the simulated DBaaS on 127.0.0.1, for operators in other processes: print
    /// its URL, write its token file, serve until Ctrl-C or SIGTERM
    #[arg(long, conflicts_with_all = ["cluster", "serve", "operator_only", "dbaas_url", "chaos", "leader_elect", "shard"])]
    pub dbaas_only: bool,
    /// Reconcile only while holding the Lease default/database-operator (run several
    /// copies: one leads, the others take over when it stops)
    #[arg(long)]
    pub leader_elect: bool,
    /// Share the Databases with the other copies started with --shard: each reconciles
    /// the ones labelled shard.kube-reconcile.dev/databases=<its identity>
    #[arg(long, conflicts_with = "leader_elect")]
    pub shard: bool,
    /// Reconcile at most this many Databases at once
    #[arg(long, value_name = "N", default_value = "16")]
    pub max_concurrent_reconciles: Option<std::num::NonZeroU16>,
    /// Where to serve Prometheus metrics.
    #[arg(
        long,
        value_name = "ADDR",
        help = "Serve Prometheus metrics on http://ADDR/metrics (e.g. 127.0.0.1:9090)"
    )]
    pub metrics_addr: Option<SocketAddr>,
    /// How logs are written.
    #[arg(
        long,
        value_enum,
        default_value_t = LogFormat::Text,
        help = "Logs on stderr as text or JSON; RUST_LOG sets the level"
    )]
    pub log_format: LogFormat,
    /// Run only the operator, the scripted demo left out: reconcile the Databases there
    /// are until Ctrl-C or SIGTERM, creating and deleting nothing it was not asked to, then
    /// stop gracefully (in-flight reconciles finish, the Lease is released). Needs --cluster,
    /// or --serve to keep the embedded server up for kubectl
    #[arg(long, requires = "target")]
    pub operator_only: bool,
    /// Give up after this many seconds
    #[arg(long = "timeout", value_name = "SECS", default_value_t = 60)]
    pub timeout_secs: u64,
}

/// How logs are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Options;

    fn parse(args: &[&str]) -> Result<Options, clap::Error> {
        Options::try_parse_from(std::iter::once("database_operator").chain(args.iter().copied()))
    }

    #[test]
    fn the_flags_are_consistent() {
        <Options as clap::CommandFactory>::command().debug_assert();
    }

    #[test]
    fn flags_parse_and_bad_ones_say_why() {
        use super::LogFormat;
        use clap::error::ErrorKind;

        let o = parse(&[
            "--chaos",
            "--count",
            "3",
            "--leader-elect",
            "--metrics-addr",
            "127.0.0.1:9090",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert!(o.chaos && o.leader_elect);
        assert_eq!(o.log_format, LogFormat::Json);
        assert_eq!(o.count, 3);
        assert_eq!(o.timeout_secs, 60);
        assert_eq!(o.metrics_addr, Some("127.0.0.1:9090".parse().unwrap()));
        assert_eq!(
            o.max_concurrent_reconciles.map(std::num::NonZeroU16::get),
            Some(16)
        );
        let zero = parse(&["--max-concurrent-reconciles", "0"]).unwrap_err();
        assert_eq!(zero.kind(), ErrorKind::ValueValidation);
        assert_eq!(
            parse(&["--help"]).unwrap_err().kind(),
            ErrorKind::DisplayHelp
        );
        let count = parse(&["--count", "x"]).unwrap_err();
        assert_eq!(count.kind(), ErrorKind::ValueValidation);
        assert!(count.to_string().contains("--count"), "{count}");
        assert_eq!(
            parse(&["--log-format", "xml"]).unwrap_err().kind(),
            ErrorKind::InvalidValue
        );
        assert_eq!(
            parse(&["--install-crd"]).unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            parse(&["--serve", "--cluster"]).unwrap_err().kind(),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            parse(&["--nope"]).unwrap_err().kind(),
            ErrorKind::UnknownArgument
        );
        assert_eq!(
            parse(&["--operator-only"]).unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument
        );
        assert!(
            parse(&["--operator-only", "--serve"])
                .unwrap()
                .operator_only
        );
        assert!(
            parse(&["--operator-only", "--cluster"])
                .unwrap()
                .operator_only
        );
        // An external DBaaS needs its token; the standalone one runs alone.
        assert_eq!(
            parse(&["--dbaas-url", "http://127.0.0.1:1"])
                .unwrap_err()
                .kind(),
            ErrorKind::MissingRequiredArgument
        );
        assert!(
            parse(&[
                "--dbaas-url",
                "http://127.0.0.1:1",
                "--dbaas-token-file",
                "t"
            ])
            .is_ok()
        );
        assert!(parse(&["--dbaas-only"]).unwrap().dbaas_only);
        assert_eq!(
            parse(&["--dbaas-only", "--cluster"]).unwrap_err().kind(),
            ErrorKind::ArgumentConflict
        );
    }
}
