//! Command-line flags.

/// The `--help` text.
pub(crate) const HELP: &str = "\
database_operator: a multi-phase Database operator on kube-reconcile

USAGE:
    cargo run --example database_operator -- [FLAGS]

With no flags it runs on an embedded Kubernetes API server with a simulated DBaaS,
creates sample Databases, walks every edge of the state diagram and prints a summary.
It never touches a real cluster unless you pass --cluster.

FLAGS:
    --chaos            inject API faults and DBaaS outages; everything must still converge
    --count N          also create N generated Databases (default 0)
    --serve            keep the embedded API server and the operator running afterwards and
                       print kubectl commands to watch and edit the Databases (Ctrl-C stops)
    --cluster          use the current kube context instead of the embedded server
    --install-crd      with --cluster: install the Database CRD first
    --dbaas-url URL    use this DBaaS instead of the simulated one
    --leader-elect     reconcile only while holding the Lease default/database-operator
                       (run several copies: one leads, the others take over when it stops)
    --metrics-addr A   serve Prometheus metrics on http://A/metrics (e.g. 127.0.0.1:9090)
    --log-format F     logs on stderr as `text` (default) or `json`; RUST_LOG sets the level
    --timeout SECS     give up after this long (default 60)
    -h, --help         this text";

/// What the user asked for.
#[derive(Clone, Debug, Default)]
#[allow(clippy::struct_excessive_bools, reason = "each is a command-line flag")]
pub(crate) struct Options {
    pub(crate) chaos: bool,
    pub(crate) count: usize,
    pub(crate) serve: bool,
    pub(crate) cluster: bool,
    pub(crate) install_crd: bool,
    pub(crate) dbaas_url: Option<String>,
    pub(crate) leader_elect: bool,
    pub(crate) metrics_addr: Option<std::net::SocketAddr>,
    pub(crate) json_logs: bool,
    pub(crate) timeout_secs: u64,
}

impl Options {
    /// Parses the flags; `Ok(None)` for `--help`.
    pub(crate) fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
        let mut options = Options {
            timeout_secs: 60,
            ..Options::default()
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let mut value = |flag: &str| args.next().ok_or_else(|| format!("{flag} needs a value"));
            match arg.as_str() {
                "-h" | "--help" => return Ok(None),
                "--chaos" => options.chaos = true,
                "--serve" => options.serve = true,
                "--cluster" => options.cluster = true,
                "--install-crd" => options.install_crd = true,
                "--count" => {
                    let v = value("--count")?;
                    options.count = v
                        .parse()
                        .map_err(|_| format!("--count wants a number, not {v:?}"))?;
                }
                "--timeout" => {
                    let v = value("--timeout")?;
                    options.timeout_secs = v
                        .parse()
                        .map_err(|_| format!("--timeout wants seconds, not {v:?}"))?;
                }
                "--dbaas-url" => options.dbaas_url = Some(value("--dbaas-url")?),
                "--leader-elect" => options.leader_elect = true,
                "--metrics-addr" => {
                    let v = value("--metrics-addr")?;
                    options.metrics_addr = Some(
                        v.parse()
                            .map_err(|_| format!("--metrics-addr wants host:port, not {v:?}"))?,
                    );
                }
                "--log-format" => match value("--log-format")?.as_str() {
                    "text" => options.json_logs = false,
                    "json" => options.json_logs = true,
                    other => return Err(format!("--log-format is text or json, not {other:?}")),
                },
                other => return Err(format!("unknown flag {other:?}")),
            }
        }
        if options.install_crd && !options.cluster {
            return Err("--install-crd goes with --cluster".to_owned());
        }
        if options.serve && options.cluster {
            return Err(
                "--serve keeps the embedded server up; it does not go with --cluster".to_owned(),
            );
        }
        Ok(Some(options))
    }
}

#[cfg(test)]
mod tests {
    use super::Options;

    fn parse(args: &[&str]) -> Result<Option<Options>, String> {
        Options::parse(args.iter().map(|a| (*a).to_owned()))
    }

    #[test]
    fn flags_parse_and_bad_ones_say_why() {
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
        .unwrap()
        .unwrap();
        assert!(o.chaos && o.leader_elect && o.json_logs);
        assert_eq!(o.count, 3);
        assert_eq!(o.metrics_addr, Some("127.0.0.1:9090".parse().unwrap()));
        assert!(parse(&["--help"]).unwrap().is_none());
        assert_eq!(
            parse(&["--count", "x"]).unwrap_err(),
            "--count wants a number, not \"x\""
        );
        assert_eq!(
            parse(&["--log-format", "xml"]).unwrap_err(),
            "--log-format is text or json, not \"xml\""
        );
        assert_eq!(
            parse(&["--install-crd"]).unwrap_err(),
            "--install-crd goes with --cluster"
        );
        assert_eq!(parse(&["--nope"]).unwrap_err(), "unknown flag \"--nope\"");
    }
}
