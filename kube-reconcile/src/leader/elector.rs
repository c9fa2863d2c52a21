//! [`LeaderElector`]: the campaign, renewal and release loop.

use std::{future::pending, sync::Arc};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::{
    LeaderError, LeaderHandle, LeaseConfig,
    record::Observation,
    shared::{ReleaseRequest, Shared},
};
use crate::{clock::Nanos, rng::Rng};

/// Contends for a `coordination.k8s.io/v1` Lease and keeps it while it can.
///
/// Users start one with [`LeaderHandle::spawn`]; tests drive [`run`](LeaderElector::run)
/// themselves, to cut it as a crash would. See the [module docs](super) for the protocol
/// and its guarantees.
#[doc(hidden)]
pub struct LeaderElector {
    api: Api<Lease>,
    shared: Arc<Shared>,
    releases: mpsc::UnboundedReceiver<ReleaseRequest>,
}

impl std::fmt::Debug for LeaderElector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderElector")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl LeaderElector {
    /// An elector for the Lease in `config`, talking to the API server through `client`.
    ///
    /// # Errors
    ///
    /// A [`LeaderError`] naming the setting when the timings do not nest or the identity is empty.
    pub fn new(client: Client, config: LeaseConfig) -> Result<Self, LeaderError> {
        config.validate()?;
        let api = Api::namespaced(client, &config.namespace);
        let (shared, releases) = Shared::new(config);
        Ok(LeaderElector {
            api,
            shared,
            releases,
        })
    }

    /// A handle on this election; valid before and after the elector runs.
    #[doc(hidden)]
    pub fn handle(&self) -> LeaderHandle {
        LeaderHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Runs the elector on a tokio task until [`LeaderHandle::release`].
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (as `tokio::spawn` does).
    pub fn spawn(self) -> LeaderHandle {
        let handle = self.handle();
        tokio::spawn(self.run());
        handle
    }

    /// Campaigns for the lease, leads while renewals succeed, campaigns again after
    /// stepping down, and returns after [`LeaderHandle::release`] was handled.
    ///
    /// Dropping the future (or aborting its task) steps down at once without
    /// clearing the Lease: other candidates take over when it expires, as after a
    /// crash.
    #[doc(hidden)]
    pub async fn run(self) {
        let LeaderElector {
            api,
            shared,
            mut releases,
        } = self;
        let span = tracing::info_span!(
            "leader_election",
            lease = %format_args!("{}/{}", shared.config.namespace, shared.config.name),
            identity = %shared.config.identity,
        );
        let mut run = Run {
            api,
            _stop: StepDownOnDrop(Arc::clone(&shared)),
            shared,
            seen: Observation::default(),
            lease: None,
            rng: Rng::default(),
        };
        async move {
            loop {
                let release = match run.campaign(&mut releases).await {
                    Campaign::Won { valid_until } => run.lead(valid_until, &mut releases).await,
                    Campaign::Release(reply) => Some(reply),
                };
                if let Some(reply) = release {
                    let released = run.release().await;
                    let _ = reply.send(released);
                    return;
                }
                // Lost the lease: reconciles admitted under it were cancelled; let them
                // finish before contending again.
                if let Err(in_flight) = run.shared.drain(run.config().renew_deadline).await {
                    tracing::warn!(in_flight, "reconciles of the lost term still running");
                }
            }
        }
        .instrument(span)
        .await;
    }
}

/// What a campaign came to.
enum Campaign {
    Won { valid_until: Nanos },
    Release(ReleaseRequest),
}

/// What one acquisition attempt came to.
pub(super) enum Attempt {
    Acquired {
        valid_until: Nanos,
    },
    /// Someone else holds the lease until `expiry` by the local clock.
    Held {
        expiry: Nanos,
    },
    Failed,
}

/// What one renewal came to.
pub(super) enum Renewal {
    Renewed {
        sent: Nanos,
    },
    /// The Lease names another holder, or is gone.
    Lost {
        holder: Option<String>,
    },
    Failed(kube::Error),
}

/// Steps down when the elector stops for any reason, including being dropped.
struct StepDownOnDrop(Arc<Shared>);

impl Drop for StepDownOnDrop {
    fn drop(&mut self) {
        if self.0.step_down() {
            tracing::warn!("leader election stopped; stepped down without releasing the lease");
        }
    }
}

/// The state of one running elector.
pub(super) struct Run {
    pub(super) api: Api<Lease>,
    pub(super) shared: Arc<Shared>,
    _stop: StepDownOnDrop,
    /// When the record last changed, by the local clock.
    pub(super) seen: Observation,
    /// The record as this candidate last wrote it (or read it while holding it).
    pub(super) lease: Option<Lease>,
    rng: Rng,
}

async fn next_release(releases: &mut mpsc::UnboundedReceiver<ReleaseRequest>) -> ReleaseRequest {
    match releases.recv().await {
        Some(request) => request,
        // The sender lives in the shared state this loop holds, so this does not
        // happen; never busy-loop if it did.
        None => pending().await,
    }
}

impl Run {
    pub(super) fn config(&self) -> &LeaseConfig {
        &self.shared.config
    }

    pub(super) fn seconds(&self) -> i32 {
        // Validated in `LeaderElector::new`.
        self.config().lease_seconds().unwrap_or(i32::MAX)
    }

    async fn sleep_until(&self, at: Nanos) {
        tokio::time::sleep_until(self.config().clock.instant_at(at)).await;
    }

    /// Polls until the lease is ours or a release is asked for.
    async fn campaign(
        &mut self,
        releases: &mut mpsc::UnboundedReceiver<ReleaseRequest>,
    ) -> Campaign {
        loop {
            let limit = self.config().renew_deadline;
            let attempt = tokio::select! {
                biased;
                reply = next_release(releases) => return Campaign::Release(reply),
                attempt = tokio::time::timeout(limit, self.try_acquire()) => attempt.unwrap_or(Attempt::Failed),
            };
            let retry = self.config().retry_period;
            let mut next = self
                .shared
                .now()
                .saturating_add(retry + self.rng.up_to(retry / 5));
            match attempt {
                Attempt::Acquired { valid_until } => return Campaign::Won { valid_until },
                // Try again the moment the holder's lease runs out, not a poll later.
                Attempt::Held { expiry } => next = next.min(expiry),
                Attempt::Failed => {}
            }
            tokio::select! {
                biased;
                reply = next_release(releases) => return Campaign::Release(reply),
                () = self.sleep_until(next) => {}
            }
        }
    }

    /// Leads until the renew deadline passes, someone else holds the lease, or a
    /// release is asked for (then returns the request).
    async fn lead(
        &mut self,
        mut valid_until: Nanos,
        releases: &mut mpsc::UnboundedReceiver<ReleaseRequest>,
    ) -> Option<ReleaseRequest> {
        let term = self.shared.begin_term(valid_until);
        tracing::info!(term, "acquired the lease; leading");
        let retry = self.config().retry_period;
        let mut next = self.shared.now().saturating_add(retry);
        loop {
            tokio::select! {
                biased;
                reply = next_release(releases) => return Some(reply),
                () = self.sleep_until(next.min(valid_until)) => {}
            }
            let now = self.shared.now();
            if now >= valid_until {
                self.step_down(term, "no successful renewal within the renew deadline");
                return None;
            }
            next = now.saturating_add(retry);
            let deadline = tokio::time::sleep_until(self.config().clock.instant_at(valid_until));
            let renewal = tokio::select! {
                biased;
                reply = next_release(releases) => return Some(reply),
                () = deadline => None,
                renewal = self.renew() => Some(renewal),
            };
            let Some(renewal) = renewal else {
                self.step_down(term, "renewal still pending at the renew deadline");
                return None;
            };
            match renewal {
                Renewal::Renewed { sent } => {
                    valid_until = sent.saturating_add(self.config().renew_deadline);
                    self.shared.extend(valid_until);
                    tracing::trace!(term, "renewed the lease");
                }
                Renewal::Lost { holder } => {
                    tracing::warn!(term, holder, "the lease was taken or deleted");
                    self.step_down(term, "lost the lease");
                    return None;
                }
                Renewal::Failed(error) => {
                    let left = valid_until.saturating_since(self.shared.now());
                    tracing::warn!(term, %error, ?left, "renewing the lease failed");
                }
            }
        }
    }

    fn step_down(&self, term: u64, why: &'static str) {
        self.shared.step_down();
        tracing::warn!(term, why, "stepped down");
    }
}
