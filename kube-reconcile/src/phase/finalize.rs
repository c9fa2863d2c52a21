//! Deletion: the cleanup behind the engine's finalizer.

use std::sync::Arc;

use kube::{ResourceExt, runtime::controller::Action};

use super::{
    Cleanup, Phase, PhaseError, PhaseMachine, Step,
    cleanup::CleanupKind,
    engine::{Inner, Object},
    messages::chain,
    next_status::{self, At, Standing, Why},
    noted::noted,
    write::{Note, Target},
};

impl<M> Inner<M> {
    /// Runs the cleanup while the engine's finalizer is on a deleted object, then removes
    /// the finalizer; a failing cleanup leaves `Ready=False, reason: CleanupFailed`.
    pub(super) async fn finalize<K: Object, Ctx>(
        &self,
        api: &Target,
        obj: &K,
        ctx: &Arc<Ctx>,
        at: At,
    ) -> Result<Action, PhaseError<M::Error>>
    where
        M: PhaseMachine<K, Ctx>,
    {
        // A deleted object waits for nothing any more.
        self.pacing
            .forget(&crate::reconciler::ObjectKey::lookup(obj));
        if !self.has_finalizer(obj) {
            return Ok(Action::await_change());
        }
        let status = obj.phase_status().cloned().unwrap_or_default();
        let phase = status
            .phase
            .as_deref()
            .and_then(M::Phase::from_name)
            .unwrap_or_else(|| self.machine.transitions().initial());
        let step = Step {
            ctx,
            client: &self.client,
            children: &self.config.children,
            cache: &self.cache,
            phase,
            entered_at: next_status::entered_at(&status),
            now: at.now,
        };
        // Deleting finishes an object: its calls go before any phase's.
        let decided = noted(u32::MAX, &self.config, self.machine.cleanup(obj, &step)).await;
        match decided {
            Ok(Cleanup {
                kind: CleanupKind::Paced(after),
                ..
            }) => Ok(Action::requeue(after)),
            Ok(Cleanup {
                kind: CleanupKind::Wait(after),
                reason,
                message,
                conditions,
            }) => {
                // Not failing: no event, no error, no backoff; status only says why.
                let mut next = status.clone();
                if let Some(reason) = &reason {
                    let why = Why {
                        reason,
                        message: message.as_deref().unwrap_or_default(),
                    };
                    next_status::set_conditions(&mut next, Standing::Progressing, &why, at.now);
                }
                next_status::set_extra_conditions(&mut next, &conditions, at.now);
                self.write_then::<K, M::Error>(api, obj, &next, None, None, Action::requeue(after))
                    .await
            }
            Ok(_) => {
                self.remove_finalizer::<K, M::Error>(api, obj).await?;
                let note = Note::normal("CleanedUp", "cleanup done; finalizer removed");
                self.publish(obj, note).await;
                Ok(Action::await_change())
            }
            Err(error) => {
                let message = format!(
                    "cleanup failed: {}; the finalizer {} stays until it succeeds",
                    chain(&error),
                    self.config.finalizer
                );
                let why = Why {
                    reason: "CleanupFailed",
                    message: &message,
                };
                let mut next = status.clone();
                next_status::set_conditions(&mut next, Standing::Retrying, &why, at.now);
                next_status::record_error(&mut next, phase.name(), &why, at.now);
                let note = Note::warning("CleanupFailed", message.clone());
                // Best effort: the cleanup's error is what the caller needs to see.
                if let Err(write) = self
                    .write_then::<K, M::Error>(
                        api,
                        obj,
                        &next,
                        None,
                        Some(note),
                        Action::await_change(),
                    )
                    .await
                {
                    tracing::debug!(object = %obj.name_any(), error = %write, "recording the cleanup failure failed");
                }
                Err(PhaseError::Cleanup { source: error })
            }
        }
    }
}
