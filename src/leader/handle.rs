//! [`LeaderHandle`]: what the rest of the process sees of the election, and the
//! admission of reconciles under the lease.

use std::{
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use tokio::sync::{Notify, mpsc, oneshot, watch};

use super::{LeaderError, LeaderLayer, LeaseConfig};
use crate::clock::Nanos;

/// A release request: the elector answers on the sender when done.
pub(super) type ReleaseRequest = oneshot::Sender<Result<(), LeaderError>>;

/// The election as this candidate last saw it.
///
/// Published on [`LeaderHandle::subscribe`] whenever leadership or the observed
/// holder changes (not on every renewal).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Leadership {
    leading: bool,
    term: u64,
    holder: Option<Arc<str>>,
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

#[derive(Debug, Default)]
struct State {
    term: u64,
    leading: bool,
    /// Leadership ends here by the local clock unless a renewal extends it.
    valid_until: Nanos,
    /// Reconciles admitted and not yet finished or cancelled.
    in_flight: usize,
}

/// State shared by the elector, its handles and the layers.
pub(super) struct Shared {
    pub(super) config: LeaseConfig,
    state: Mutex<State>,
    changes: watch::Sender<Leadership>,
    drained: Notify,
    releases: mpsc::UnboundedSender<ReleaseRequest>,
}

impl Shared {
    pub(super) fn new(config: LeaseConfig) -> (Arc<Self>, mpsc::UnboundedReceiver<ReleaseRequest>) {
        let (releases, requests) = mpsc::unbounded_channel();
        let shared = Shared {
            config,
            state: Mutex::default(),
            changes: watch::Sender::new(Leadership::default()),
            drained: Notify::new(),
            releases,
        };
        (Arc::new(shared), requests)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent, so a poisoned lock
        // (a panic elsewhere while holding it) still guards valid state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn now(&self) -> Nanos {
        self.config.clock.now()
    }

    /// Starts a new term that lasts until `valid_until` unless extended.
    pub(super) fn begin_term(&self, valid_until: Nanos) -> u64 {
        let term = {
            let mut state = self.lock();
            state.term += 1;
            state.leading = true;
            state.valid_until = valid_until;
            state.term
        };
        self.changes.send_replace(Leadership {
            leading: true,
            term,
            holder: Some(Arc::clone(&self.config.identity)),
        });
        term
    }

    /// Moves the end of the current term to `valid_until`.
    pub(super) fn extend(&self, valid_until: Nanos) {
        let mut state = self.lock();
        if state.leading {
            state.valid_until = valid_until;
        }
    }

    /// Ends the current term at once: nothing new is admitted and admitted reconciles
    /// are told to stop. Returns whether this candidate was leading.
    pub(super) fn step_down(&self) -> bool {
        let was_leading = {
            let mut state = self.lock();
            let was = state.leading;
            state.leading = false;
            state.valid_until = Nanos::ZERO;
            was
        };
        self.changes.send_if_modified(|l| {
            let changed = l.leading;
            l.leading = false;
            changed
        });
        was_leading
    }

    /// Stops admitting reconciles but lets admitted ones run until the current term's
    /// deadline (a graceful release). Returns whether this candidate was leading.
    pub(super) fn stop_admitting(&self) -> bool {
        let was_leading = {
            let mut state = self.lock();
            std::mem::replace(&mut state.leading, false)
        };
        self.changes
            .send_if_modified(|l| std::mem::replace(&mut l.leading, false));
        was_leading
    }

    /// Records the holder last read from the Lease.
    pub(super) fn observe_holder(&self, holder: Option<&str>) {
        self.changes.send_if_modified(|l| {
            if l.holder.as_deref() == holder {
                return false;
            }
            l.holder = holder.map(Arc::from);
            true
        });
    }

    /// Admits a reconcile if this candidate leads and its term has not run out.
    pub(super) fn admit(self: &Arc<Self>) -> Option<Admission> {
        let now = self.now();
        let mut state = self.lock();
        if !state.leading || now >= state.valid_until {
            return None;
        }
        state.in_flight += 1;
        Some(Admission {
            shared: Arc::clone(self),
            term: state.term,
        })
    }

    /// Until when reconciles admitted in `term` may run, or `None` once it is over.
    pub(super) fn term_end(&self, term: u64) -> Option<Nanos> {
        let state = self.lock();
        (state.term == term && state.valid_until > Nanos::ZERO).then_some(state.valid_until)
    }

    pub(super) fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    /// Waits up to `limit` for every admitted reconcile to finish; `Err(count)` if
    /// some are still running.
    pub(super) async fn drain(&self, limit: Duration) -> Result<(), usize> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let in_flight = self.in_flight();
            if in_flight == 0 {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(self.in_flight());
            }
        }
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<Leadership> {
        self.changes.subscribe()
    }
}

/// One admitted reconcile; counted until dropped.
pub(super) struct Admission {
    shared: Arc<Shared>,
    pub(super) term: u64,
}

impl Admission {
    pub(super) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let drained = {
            let mut state = self.shared.lock();
            state.in_flight = state.in_flight.saturating_sub(1);
            state.in_flight == 0
        };
        if drained {
            self.shared.drained.notify_waiters();
        }
    }
}

/// The process's view of one election: leadership, changes, the layer, release.
///
/// Cheap to clone; clones share state. Get one from [`LeaderElector::handle`] or
/// [`LeaderElector::spawn`](super::LeaderElector::spawn).
///
/// [`LeaderElector::handle`]: super::LeaderElector::handle
#[derive(Clone)]
pub struct LeaderHandle {
    pub(super) shared: Arc<Shared>,
}

impl LeaderHandle {
    /// Whether this candidate leads now: the elector holds the lease and the renew
    /// deadline of the last successful renewal has not passed on the clock.
    pub fn is_leader(&self) -> bool {
        let now = self.shared.now();
        let state = self.shared.lock();
        state.leading && now < state.valid_until
    }

    /// The election as last seen.
    pub fn leadership(&self) -> Leadership {
        self.shared.changes.borrow().clone()
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
    pub fn namespace(&self) -> &str {
        &self.shared.config.namespace
    }

    /// The Lease's name.
    pub fn name(&self) -> &str {
        &self.shared.config.name
    }

    /// Reconciles admitted by a [`LeaderLayer`] of this election and still running.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight()
    }

    /// A reconciler layer that runs reconciles only while this candidate leads.
    pub fn layer(&self) -> LeaderLayer {
        LeaderLayer::new(self.clone())
    }

    /// Stops the elector and, if leading, gives the lease up so the next candidate
    /// takes over at once.
    ///
    /// In order: stop admitting reconciles and cancel admitted ones (see
    /// [`LeaderLayer`]); wait up to the renew deadline for them to finish; clear
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
