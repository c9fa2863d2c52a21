//! What can go wrong while starting a real control plane.

use std::{path::PathBuf, time::Duration};

/// Why a [`ControlPlane`](super::ControlPlane) could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvtestError {
    /// A binary was not found in any of the searched places.
    #[error(
        "{name} not found (searched: {searched}); build it with tools/envtest/build.sh or point KUBEBUILDER_ASSETS at a directory holding kube-apiserver, etcd and kubectl"
    )]
    BinaryNotFound {
        /// The binary's file name (`etcd`, `kube-apiserver`, `kubectl`).
        name: String,
        /// The places searched, in order, separated by `, `.
        searched: String,
    },

    /// A file-system or socket operation failed.
    #[error("{what}")]
    Io {
        /// What was being done, e.g. `creating the temporary directory /tmp/...`.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Generating a key or certificate failed.
    #[error("generating {what}")]
    Certificates {
        /// Which credential was being generated.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A process could not be started at all.
    #[error("starting {name} ({path})")]
    Spawn {
        /// The binary's file name.
        name: String,
        /// The path that was executed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A process exited before the control plane was ready.
    #[error("{name} exited during start-up ({status}); last lines of its log:\n{log_tail}")]
    Exited {
        /// The binary's file name.
        name: String,
        /// The exit status as the OS reports it.
        status: String,
        /// The end of the process's combined stdout and stderr.
        log_tail: String,
    },

    /// A process did not become ready in time.
    #[error(
        "{name} not ready after {after:?} (waiting for {waiting_for}); last lines of its log:\n{log_tail}"
    )]
    Timeout {
        /// The binary's file name.
        name: String,
        /// How long the harness waited.
        after: Duration,
        /// The condition that never held, e.g. `/readyz` answering `ok`.
        waiting_for: String,
        /// The end of the process's combined stdout and stderr.
        log_tail: String,
    },

    /// The generated kubeconfig was not accepted by kube (a bug in this harness).
    #[error("loading the generated kubeconfig")]
    Kubeconfig(#[source] kube::config::KubeconfigError),

    /// etcd refused or failed a maintenance call ([`ControlPlane::compact`](super::ControlPlane::compact)).
    #[error("etcd: {0}")]
    Etcd(String),

    /// The `kube::Client` for the started server could not be built.
    #[error("building a client for the control plane")]
    Client(#[source] kube::Error),
}

impl EnvtestError {
    pub(super) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        EnvtestError::Io {
            what: what.into(),
            source,
        }
    }

    pub(super) fn certificates(what: &'static str, source: rcgen::Error) -> Self {
        EnvtestError::Certificates {
            what,
            source: Box::new(source),
        }
    }
}
