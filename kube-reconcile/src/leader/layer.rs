//! [`LeaderLayer`]: reconcile only while leading.

use std::{sync::Arc, time::Duration};

use kube::runtime::controller::Action;
use tower_layer::Layer;

use super::LeaderHandle;
use crate::reconciler::{DeferReason, Deferral, Outcome, Reconciler};

/// Wraps reconcilers so they run only while this process leads; see [`Leader`].
///
/// # Examples
///
/// ```
/// # use std::sync::Arc;
/// # use k8s_openapi::api::core::v1::ConfigMap;
/// # use kube::runtime::controller::Action;
/// use kube_reconcile::{ReconcilerExt, leader::{LeaderHandle, LeaseConfig}};
/// use kube_reconcile_testing::ApiServer;
/// # async fn reconcile(_: Arc<ConfigMap>, _: Arc<()>) -> Result<Action, kube::Error> { Ok(Action::await_change()) }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let client = ApiServer::new().client();
/// let leader = LeaderHandle::spawn(client, LeaseConfig::new("default", "my-operator")).unwrap();
/// let reconciler = reconcile.with(leader.layer());
/// # let _ = reconciler;
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct LeaderLayer {
    handle: LeaderHandle,
    defer: Duration,
}

impl LeaderLayer {
    /// A layer for the election behind `handle`; followers defer by its retry period.
    pub fn new(handle: LeaderHandle) -> Self {
        let defer = handle.shared.config.retry_period;
        LeaderLayer { handle, defer }
    }

    /// How long a follower defers each object before asking again.
    ///
    /// Shorter means a new leader starts on every object sooner after it takes over;
    /// longer means fewer idle wake-ups while following.
    ///
    /// # Default
    ///
    /// The election's retry period (2 s unless configured).
    #[must_use]
    pub const fn defer(mut self, d: Duration) -> Self {
        self.defer = d;
        self
    }
}

impl<R> Layer<R> for LeaderLayer {
    type Service = Leader<R>;

    fn layer(&self, inner: R) -> Leader<R> {
        Leader {
            inner,
            handle: self.handle.clone(),
            defer: self.defer,
        }
    }
}

/// A reconciler that runs only while its process leads the election.
///
/// A call while following returns a deferral (`Action::requeue(defer)`, reason
/// [`DeferReason::NotLeader`]) without calling the inner reconciler. A call while
/// leading is admitted under the current term and counted (see
/// [`LeaderHandle::in_flight`]).
///
/// # Guarantees
///
/// - An admitted reconcile is polled only while its term lasts: it is dropped (it must
///   be cancel-safe, as every kube-runtime reconcile already is) when the term ends —
///   at the renew deadline of the last successful renewal by this process's clock,
///   or at once when the elector sees another holder or is dropped — and the call
///   returns a deferral. This check does not rely on the elector task being
///   scheduled: the reconcile's own timer fires at the deadline.
/// - The elector releases the lease only after every admitted reconcile has finished
///   (a graceful release lets them finish until the term's deadline) and contends
///   again only after those of a lost term are gone.
/// - Another candidate takes over no earlier than `lease_duration` after it last saw
///   the lease change, which is after this process's last successful renewal was
///   sent. So with clocks that run at the same rate, this process has stopped
///   reconciling `lease_duration - renew_deadline` before anyone else starts.
///
/// # Caveats
///
/// - There is no fencing: the API server does not reject writes from a former leader.
///   A process that is paused (stop-the-world, a frozen VM, a blocking call inside a
///   reconcile that never yields) past its lease can still act when it resumes,
///   before it notices its deadline. Writes made with `resourceVersion` preconditions
///   or server-side apply conflicts still protect individual objects.
/// - Deleting a held Lease lets a candidate create a new one at once, up to one retry
///   period before the leader notices on its next renewal.
/// - Clocks whose rates differ by more than the margin above can overlap (as in
///   client-go); skew between wall clocks does not matter.
#[derive(Clone, Debug)]
pub struct Leader<R> {
    inner: R,
    handle: LeaderHandle,
    defer: Duration,
}

impl<R> Leader<R> {
    /// Unwraps the reconciler.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The election this reconciler follows.
    pub const fn handle(&self) -> &LeaderHandle {
        &self.handle
    }

    fn deferred(&self) -> Deferral {
        Deferral {
            retry_after: self.defer,
            reason: DeferReason::NotLeader {
                lease: format!("{}/{}", self.handle.namespace(), self.handle.name()).into(),
            },
        }
    }
}

impl<K, Ctx, R> Reconciler<K, Ctx> for Leader<R>
where
    R: Reconciler<K, Ctx>,
    K: Send + Sync,
    Ctx: Send + Sync,
{
    type Error = R::Error;

    async fn reconcile(&self, obj: Arc<K>, ctx: Arc<Ctx>) -> Result<Action, Self::Error> {
        self.call(obj, ctx).await.into_result()
    }

    async fn call(&self, obj: Arc<K>, ctx: Arc<Ctx>) -> Outcome<Self::Error> {
        let Some(admission) = self.handle.shared.admit() else {
            return Outcome::Deferred(self.deferred());
        };
        let shared = Arc::clone(admission.shared());
        let finished = {
            let mut changes = shared.subscribe();
            let mut watching = true;
            let inner = self.inner.call(obj, ctx);
            tokio::pin!(inner);
            loop {
                // Re-read the term's end: renewals move it, losing the lease ends it.
                let Some(end) = shared.term_end(admission.term) else {
                    break None;
                };
                if shared.now() >= end {
                    break None;
                }
                tokio::select! {
                    biased;
                    () = tokio::time::sleep_until(shared.config.clock.instant_at(end)) => {}
                    seen = changes.changed(), if watching => watching = seen.is_ok(),
                    outcome = &mut inner => break Some(outcome),
                }
            }
            // The inner future is dropped here, before the admission is given back.
        };
        drop(admission);
        finished.unwrap_or_else(|| {
            tracing::warn!(
                lease = %format_args!("{}/{}", self.handle.namespace(), self.handle.name()),
                "leadership ended during a reconcile; cancelled it"
            );
            Outcome::Deferred(self.deferred())
        })
    }

    fn error_action(&self, obj: &K, error: &Self::Error) -> Action {
        self.inner.error_action(obj, error)
    }
}
