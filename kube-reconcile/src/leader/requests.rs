//! The requests of one elector: acquire, renew, release, each an optimistic update.

use std::sync::Arc;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::PostParams;

use super::{
    LeaderError,
    elector::{Attempt, Renewal, Run},
    record,
};
use crate::clock::Nanos;

fn status_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

impl Run {
    pub(super) async fn try_acquire(&mut self) -> Attempt {
        let current = match self.api.get_opt(&self.config().name).await {
            Ok(current) => current,
            Err(error) => {
                tracing::warn!(%error, "reading the lease failed");
                return Attempt::Failed;
            }
        };
        let now = self.shared.now();
        let Some(mut lease) = current else {
            let config = self.config();
            let fresh = record::fresh(
                &config.namespace,
                &config.name,
                &config.identity,
                self.seconds(),
            );
            let sent = self.shared.now();
            return match self.api.create(&PostParams::default(), &fresh).await {
                Ok(created) => self.acquired(created, sent),
                Err(error) if status_code(&error) == Some(409) => {
                    tracing::debug!("another candidate created the lease first");
                    Attempt::Failed
                }
                Err(error) => {
                    tracing::warn!(%error, "creating the lease failed");
                    Attempt::Failed
                }
            };
        };
        self.seen.see(&lease, now);
        let holder = record::holder(&lease);
        self.shared.observe_holder(holder);
        if let Some(holder) = holder
            && holder != &*self.config().identity
        {
            let expiry = self.seen.expiry(&lease, self.config().lease_duration);
            if now < expiry {
                tracing::trace!(holder, "lease held by another candidate");
                return Attempt::Held { expiry };
            }
            tracing::info!(holder, "lease expired; taking it over");
        }
        let identity = Arc::clone(&self.config().identity);
        record::hold(&mut lease, &identity, self.seconds());
        let sent = self.shared.now();
        match self
            .api
            .replace(&self.config().name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => self.acquired(written, sent),
            Err(error) if status_code(&error) == Some(409) => {
                tracing::debug!("lost the race for the lease");
                Attempt::Failed
            }
            Err(error) => {
                tracing::warn!(%error, "taking the lease failed");
                Attempt::Failed
            }
        }
    }

    /// Records a successful write of the lease sent at `sent`: the term lasts until
    /// `sent + renew_deadline` unless renewed.
    fn acquired(&mut self, lease: Lease, sent: Nanos) -> Attempt {
        self.seen.see(&lease, self.shared.now());
        self.lease = Some(lease);
        Attempt::Acquired {
            valid_until: sent.saturating_add(self.config().renew_deadline),
        }
    }

    /// One renewal: an update with the last known `resourceVersion`, and on a conflict
    /// one re-read and retry if the record still names this candidate.
    pub(super) async fn renew(&mut self) -> Renewal {
        let Some(mut lease) = self.lease.clone() else {
            return Renewal::Lost { holder: None };
        };
        let identity = Arc::clone(&self.config().identity);
        let mut last_error = None;
        for _ in 0..2 {
            record::hold(&mut lease, &identity, self.seconds());
            let sent = self.shared.now();
            match self
                .api
                .replace(&self.config().name, &PostParams::default(), &lease)
                .await
            {
                Ok(written) => {
                    self.seen.see(&written, self.shared.now());
                    self.lease = Some(written);
                    return Renewal::Renewed { sent };
                }
                Err(error) if status_code(&error) == Some(404) => {
                    return Renewal::Lost { holder: None };
                }
                Err(error) if status_code(&error) == Some(409) => {
                    last_error = Some(error);
                    match self.api.get_opt(&self.config().name).await {
                        Ok(Some(current)) => {
                            self.seen.see(&current, self.shared.now());
                            let holder = record::holder(&current);
                            self.shared.observe_holder(holder);
                            if holder != Some(&*identity) {
                                return Renewal::Lost {
                                    holder: holder.map(str::to_owned),
                                };
                            }
                            // Still ours; something else touched the object.
                            lease = current;
                        }
                        Ok(None) => return Renewal::Lost { holder: None },
                        Err(error) => return Renewal::Failed(error),
                    }
                }
                Err(error) => return Renewal::Failed(error),
            }
        }
        match last_error {
            Some(error) => Renewal::Failed(error),
            None => Renewal::Lost { holder: None },
        }
    }

    /// Steps down, waits for admitted reconciles, then clears the holder if the record
    /// still names this candidate.
    pub(super) async fn release(&mut self) -> Result<(), LeaderError> {
        if self.shared.stop_admitting() {
            tracing::info!("stepping down to release the lease");
        }
        // Admitted reconciles end by their term's deadline, at most one renew deadline
        // away; a retry period more covers a reconcile woken right at it.
        let waited = self.config().renew_deadline + self.config().retry_period;
        let drained = self.shared.drain(waited).await;
        // Whatever is still running is cut off at its term's deadline anyway.
        self.shared.step_down();
        if let Err(in_flight) = drained {
            tracing::warn!(
                in_flight,
                ?waited,
                "reconciles still running; leaving the lease to expire"
            );
            return Err(LeaderError::StillReconciling { in_flight, waited });
        }
        // Without a record of our own (a release that interrupted an acquisition whose
        // write may have landed), read it: the holder is cleared only if it is us.
        let mut lease = match self.lease.take() {
            Some(lease) => lease,
            None => match self.api.get_opt(&self.config().name).await {
                Ok(Some(lease)) => lease,
                Ok(None) => return Ok(()),
                Err(error) => return Err(LeaderError::Api(error)),
            },
        };
        let identity = Arc::clone(&self.config().identity);
        let mut conflict = None;
        for _ in 0..2 {
            if record::holder(&lease) != Some(&*identity) {
                return Ok(());
            }
            record::clear(&mut lease);
            match self
                .api
                .replace(&self.config().name, &PostParams::default(), &lease)
                .await
            {
                Ok(_) => {
                    self.shared.observe_holder(None);
                    tracing::info!("released the lease");
                    return Ok(());
                }
                Err(error) if status_code(&error) == Some(404) => return Ok(()),
                Err(error) if status_code(&error) == Some(409) => {
                    match self.api.get_opt(&self.config().name).await {
                        Ok(Some(current)) => lease = current,
                        Ok(None) => return Ok(()),
                        Err(error) => return Err(LeaderError::Api(error)),
                    }
                    conflict = Some(error);
                }
                Err(error) => return Err(LeaderError::Api(error)),
            }
        }
        // Two conflicts in a row while the record still names us: give up and let the
        // lease expire.
        conflict.map_or(Ok(()), |error| Err(LeaderError::Api(error)))
    }
}
