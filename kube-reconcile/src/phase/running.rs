//! [`Running`]: an operator on its tokio task, and what it keeps per object.

use std::{fmt, time::Duration};

/// What a running operator keeps in memory per object besides its caches, counted
/// after forgetting what is no longer needed. All three return to zero once every
/// object has converged and its limits refilled (or been deleted): anything else is
/// state that grows with the objects ever seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Tracked {
    /// Objects with a backoff: failed recently, or not yet idle for the backoff's TTL.
    pub backing_off: usize,
    /// Objects whose per-object rate limit is not full
    /// ([`OperatorBuilder::rate_limit`](super::OperatorBuilder::rate_limit)).
    pub rate_limited: usize,
    /// Objects with a pace kept in memory
    /// ([`Transition::paced`](super::Transition::paced)), for the phase they are in.
    pub paced: usize,
}

/// An operator running on a tokio task, from [`Operator::spawn`](super::Operator::spawn).
/// Dropping the handle leaves the operator running, as dropping a `JoinHandle` leaves
/// its task.
#[must_use = "keep the handle to shut the operator down"]
pub struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    tracked: Box<dyn Fn() -> Tracked + Send + Sync>,
}

impl Running {
    pub(super) fn new(
        stop: tokio::sync::oneshot::Sender<()>,
        task: tokio::task::JoinHandle<()>,
        tracked: Box<dyn Fn() -> Tracked + Send + Sync>,
    ) -> Running {
        Running {
            stop,
            task,
            tracked,
        }
    }

    /// Stops taking new work, lets the reconciles in flight finish for up to `deadline`
    /// and hands the leader and shard Leases over; returns whether all of that finished
    /// in time. Reconciles still running at
    /// the deadline are cut; either way the operator has let go of everything it held
    /// when this returns.
    pub async fn shut_down(self, deadline: Duration) -> bool {
        let Running { stop, mut task, .. } = self;
        let _ = stop.send(());
        if tokio::time::timeout(deadline, &mut task).await.is_ok() {
            true
        } else {
            task.abort();
            let _ = task.await;
            false
        }
    }

    /// Stops the operator at once, reconciles in flight included, as a crash would: its
    /// Leases are not released and expire. For tests that play a crash; an operator stops
    /// with [`shut_down`](Self::shut_down).
    #[doc(hidden)]
    pub fn abort(&self) {
        self.task.abort();
    }

    /// The per-object state the operator keeps now, after forgetting what is idle (the
    /// layers also forget it by themselves, as new objects arrive).
    pub fn tracked(&self) -> Tracked {
        (self.tracked)()
    }
}

impl fmt::Debug for Running {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Running")
            .field("finished", &self.task.is_finished())
            .finish_non_exhaustive()
    }
}
