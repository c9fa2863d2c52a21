//! How a [`PhaseEngine`](super::PhaseEngine) is set up.

use std::{num::NonZeroUsize, sync::Arc};

use super::change::{Observers, PhaseChange};
use crate::{ensure::EnsureConfig, middleware::backoff::BackoffConfig};

/// Settings of a [`PhaseEngine`](super::PhaseEngine).
///
/// # Default
///
/// - finalizer `kube-reconcile.dev/cleanup`
/// - events reported as controller `kube-reconcile`
/// - 10 phase-history entries
/// - retries of the failed phase on [`BackoffConfig::operator`] (1 s doubling to 300 s,
///   full jitter)
/// - tokio's clock
/// - no [transition callbacks](PhaseConfig::on_transition)
/// - children written by [`Step::ensure`](super::Step::ensure) with the default
///   [`EnsureConfig`], under the [controller name](PhaseConfig::controller) as their
///   field manager (and `app.kubernetes.io/managed-by` label) unless
///   [`EnsureConfig::field_manager`] names another
#[derive(Clone, Debug)]
#[must_use]
pub struct PhaseConfig {
    pub(super) finalizer: String,
    pub(super) controller: String,
    pub(super) history: NonZeroUsize,
    pub(super) retry: BackoffConfig,
    pub(super) events: bool,
    pub(super) observers: Observers,
    pub(super) children: EnsureConfig,
    /// Where the dependencies the handlers call export themselves (the operator's metrics).
    pub(super) dependencies_observer: crate::scope::Observer,
}

impl Default for PhaseConfig {
    fn default() -> Self {
        PhaseConfig {
            finalizer: "kube-reconcile.dev/cleanup".to_owned(),
            controller: "kube-reconcile".to_owned(),
            history: NonZeroUsize::new(10).expect("10 is not zero"),
            retry: BackoffConfig::operator(),
            events: true,
            observers: Observers::default(),
            children: EnsureConfig::default(),
            dependencies_observer: crate::scope::Observer::default(),
        }
    }
}

impl PhaseConfig {
    /// The finalizer that holds a deleted object until its cleanup succeeded; a
    /// qualified name such as `example.com/cleanup`.
    pub fn finalizer(mut self, name: impl Into<String>) -> Self {
        self.finalizer = name.into();
        self
    }

    /// The controller name: events are reported under it, and children are written
    /// under it as their field manager unless [`children`](Self::children) names another.
    pub fn controller(mut self, name: impl Into<String>) -> Self {
        self.controller = name.into();
        self
    }

    /// How many phase changes the status keeps.
    pub const fn history(mut self, entries: NonZeroUsize) -> Self {
        self.history = entries;
        self
    }

    /// The schedule of retries out of the failed phase.
    pub fn retry(mut self, backoff: BackoffConfig) -> Self {
        self.retry = backoff;
        self
    }

    /// Whether to publish a Kubernetes Event per transition.
    pub const fn events(mut self, publish: bool) -> Self {
        self.events = publish;
        self
    }

    /// How [`Step::ensure`](super::Step::ensure) writes children: field manager,
    /// labels, owner references.
    pub fn children(mut self, config: EnsureConfig) -> Self {
        self.children = config;
        self
    }

    /// Adds a callback run after every phase change the engine wrote.
    ///
    /// Called once per move, after the status write that records it succeeded (a write
    /// refused with a conflict reports nothing; the retry that succeeds does), with the
    /// phases, the reason and the time spent in the phase left
    /// ([`PhaseChange`]). Callbacks run in the reconcile, in the order they were added:
    /// keep them short and non-blocking (count, log, send on a channel). Metrics plug in
    /// here (`Metrics::phase_observer` with feature `metrics`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, atomic::{AtomicUsize, Ordering}};
    /// use kube_reconcile::phase::PhaseConfig;
    ///
    /// let moves = Arc::new(AtomicUsize::new(0));
    /// let counter = Arc::clone(&moves);
    /// let config = PhaseConfig::default().on_transition(move |change| {
    ///     tracing::info!(from = ?change.from, to = change.to, "phase changed");
    ///     counter.fetch_add(1, Ordering::Relaxed);
    /// });
    /// # let _ = config;
    /// ```
    pub fn on_transition(
        mut self,
        callback: impl Fn(&PhaseChange<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.observers.0.push(Arc::new(callback));
        self
    }
}

/// What is wrong with a [`PhaseConfig`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum PhaseConfigError {
    /// The finalizer name is not a qualified name (`domain/name`).
    #[error("finalizer {0:?} must be a qualified name such as example.com/cleanup")]
    Finalizer(String),
    /// The controller name is empty.
    #[error("the controller name is empty")]
    Controller,
    /// The retry schedule is invalid.
    #[error("invalid retry schedule")]
    Retry(#[source] crate::middleware::backoff::BackoffConfigError),
    /// The settings for children are invalid.
    #[error("invalid settings for children")]
    Children(#[source] crate::ensure::EnsureError),
}

impl PhaseConfig {
    pub(super) fn check(&self) -> Result<(), PhaseConfigError> {
        let qualified = self
            .finalizer
            .split_once('/')
            .is_some_and(|(domain, name)| {
                !domain.is_empty()
                    && !name.is_empty()
                    && !name.contains('/')
                    && self.finalizer.len() <= 253
                    && self
                        .finalizer
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-._/".contains(c))
            });
        if !qualified {
            return Err(PhaseConfigError::Finalizer(self.finalizer.clone()));
        }
        if self.controller.is_empty() {
            return Err(PhaseConfigError::Controller);
        }
        self.children
            .validate()
            .map_err(PhaseConfigError::Children)?;
        self.retry.check().map_err(PhaseConfigError::Retry)
    }
}
