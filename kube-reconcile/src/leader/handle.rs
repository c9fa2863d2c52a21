//! [`LeaderHandle`]: what the rest of the process sees of the election.

use std::{fmt, sync::Arc};

use tokio::sync::{oneshot, watch};

use super::{LeaderError, LeaseConfig, layer::LeaderLayer, shared::Shared};

/// The election as this candidate last saw it.
///
/// Published on [`LeaderHandle::subscribe`] whenever leadership or the observed
/// holder changes (not on every renewal).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Leadership {
    pub(super) leading: bool,
    pub(super) term: u64,
    pub(super) holder: Option<Arc<str>>,
}

impl Leadership {
    /// Whether this candidate leads, as the elector last decided.
    ///
    /// [`LeaderHandle::is_leader`] also checks the renew deadline against the clock,
    /// which matters when the elector task is starved.
    pub const fn is_leader(&self) -> bool {
        self.leading
    }

    /// How many times this candidate has acquired the lease; each acquisition starts a
    /// new term.
    pub const fn term(&self) -> u64 {
        self.term
    }

    /// The holder recorded in the Lease when last read (`None` when free).
    pub fn holder(&self) -> Option<&str> {
        self.holder.as_deref()
    }
}

/// The process's view of one election: leadership, changes, the layer, release.
///
/// Cheap to clone; clones share state. [`LeaderHandle::spawn`] starts the election.
#[derive(Clone)]
pub struct LeaderHandle {
    pub(super) shared: Arc<Shared>,
}

impl LeaderHandle {
    /// Starts contending for the Lease in `config` on a tokio task, talking to the API
    /// server through `client`; the task runs until [`release`](Self::release).
    ///
    /// # Errors
    ///
    /// A [`LeaderError`] naming the setting when the timings do not nest or the identity
    /// is empty.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (as `tokio::spawn` does).
    pub fn spawn(client: kube::Client, config: LeaseConfig) -> Result<LeaderHandle, LeaderError> {
        Ok(super::LeaderElector::new(client, config)?.spawn())
    }

    /// Whether this candidate leads now: the elector holds the lease and the renew
    /// deadline of the last successful renewal has not passed on the clock.
    pub fn is_leader(&self) -> bool {
        let now = self.shared.now();
        let state = self.shared.lock();
        state.leading && now < state.valid_until
    }

    /// A channel that sees every change of leadership or of the observed holder.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(handle: kube_reconcile::leader::LeaderHandle) {
    /// let mut changes = handle.subscribe();
    /// while changes.changed().await.is_ok() {
    ///     let now = changes.borrow_and_update().clone();
    ///     println!("leading: {}, holder: {:?}", now.is_leader(), now.holder());
    /// }
    /// # }
    /// ```
    pub fn subscribe(&self) -> watch::Receiver<Leadership> {
        self.shared.subscribe()
    }

    /// Waits until this candidate leads.
    pub async fn leading(&self) {
        let mut changes = self.subscribe();
        // The sender lives in `self.shared`, so the channel cannot close here.
        let _ = changes.wait_for(Leadership::is_leader).await;
    }

    /// This candidate's identity (`spec.holderIdentity` while it leads).
    pub fn identity(&self) -> &str {
        &self.shared.config.identity
    }

    /// The Lease's namespace.
    pub(crate) fn namespace(&self) -> &str {
        &self.shared.config.namespace
    }

    /// The Lease's name.
    pub(crate) fn name(&self) -> &str {
        &self.shared.config.name
    }

    /// A reconciler layer that runs reconciles only while this candidate leads.
    pub fn layer(&self) -> LeaderLayer {
        LeaderLayer::new(self.clone())
    }

    /// Stops the elector and, if leading, gives the lease up so the next candidate
    /// takes over at once.
    ///
    /// In order: stop admitting reconciles and cancel admitted ones (see
    /// [layer](Self::layer)); wait up to the renew deadline for them to finish; clear
    /// `spec.holderIdentity` with an optimistic update (a Lease someone else took in
    /// the meantime is left alone). Returns once the elector task has ended; when no
    /// elector runs (never started, or already released) it returns `Ok(())` at once.
    ///
    /// # Errors
    ///
    /// [`LeaderError::StillReconciling`] when admitted reconciles did not finish in
    /// time (the lease is then left to expire, not cleared);
    /// [`LeaderError::Api`] when clearing the holder failed (the lease expires).
    pub async fn release(&self) -> Result<(), LeaderError> {
        let (reply, answer) = oneshot::channel();
        if self.shared.releases.send(reply).is_err() {
            return Ok(());
        }
        answer.await.unwrap_or(Ok(()))
    }
}

impl fmt::Debug for LeaderHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("LeaderHandle")
            .field(
                "lease",
                &format_args!("{}/{}", self.namespace(), self.name()),
            )
            .field("identity", &self.identity())
            .field("leading", &state.leading)
            .field("term", &state.term)
            .field("in_flight", &state.in_flight)
            .finish()
    }
}
