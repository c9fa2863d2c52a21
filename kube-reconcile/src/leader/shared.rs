//! State shared by an elector, its handles and its layers: the term, its deadline, and
//! the reconciles admitted under it.

use std::{
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use tokio::sync::{Notify, mpsc, oneshot, watch};

use super::{LeaderError, LeaseConfig, handle::Leadership};
use crate::clock::Nanos;

/// A release request: the elector answers on the sender when done.
pub(super) type ReleaseRequest = oneshot::Sender<Result<(), LeaderError>>;

#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) term: u64,
    pub(super) leading: bool,
    /// Leadership ends here by the local clock unless a renewal extends it.
    pub(super) valid_until: Nanos,
    /// Reconciles admitted and not yet finished or cancelled.
    pub(super) in_flight: usize,
}

/// State shared by the elector, its handles and the layers.
pub(super) struct Shared {
    pub(super) config: LeaseConfig,
    state: Mutex<State>,
    pub(super) changes: watch::Sender<Leadership>,
    drained: Notify,
    pub(super) releases: mpsc::UnboundedSender<ReleaseRequest>,
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

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
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
