//! One reconcile: read the phase, handle the special cases, run the handler, apply its
//! decision.

use std::{sync::Arc, time::Duration};

use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt, runtime::controller::Action};

use super::{
    Phase, PhaseError, PhaseMachine, PhaseStatus, Step, Transition,
    engine::{Inner, Object, later, until},
    messages::{chain, humantime, transition_note},
    next_status::{self, At, Observe, Why},
    noted::noted,
    transition::Kind,
    write::{Note, Target},
};
use crate::{
    conditions::Condition,
    error::{Classify, ErrorClass},
    reconciler::ObjectKey,
};

/// What one step knows besides the object: where to write, the status as read, when.
#[derive(Clone, Copy)]
pub(super) struct Here<'a, P> {
    pub(super) api: &'a Target,
    pub(super) status: &'a PhaseStatus,
    pub(super) phase: P,
    pub(super) at: At,
}

impl<P: Copy> Here<'_, P> {
    /// The status with `conditions` set, if there are any.
    fn with_conditions(&self, conditions: &[Condition]) -> Option<PhaseStatus> {
        if conditions.is_empty() {
            return None;
        }
        let mut status = self.status.clone();
        next_status::set_extra_conditions(&mut status, conditions, self.at.now);
        Some(status)
    }
}

impl<M> Inner<M> {
    /// Writes the status of a move (with `note` as its event) and runs the next step at
    /// once.
    pub(super) async fn moved<K: Object, E>(
        &self,
        api: &Target,
        obj: &K,
        next: &PhaseStatus,
        extra: Option<&serde_json::Value>,
        note: Note,
    ) -> Result<Action, PhaseError<E>> {
        let now = Action::requeue(Duration::ZERO);
        self.write_then(api, obj, next, extra, Some(note), now)
            .await
    }

    pub(super) fn at(&self) -> At {
        At {
            now: self.wall.now(),
            history: self.config.history.get(),
        }
    }

    pub(super) fn has_finalizer<K: Resource>(&self, obj: &K) -> bool {
        obj.finalizers().contains(&self.config.finalizer)
    }

    pub(super) async fn reconcile<K: Object, Ctx>(
        &self,
        obj: Arc<K>,
        ctx: &Arc<Ctx>,
    ) -> Result<Action, PhaseError<M::Error>>
    where
        M: PhaseMachine<K, Ctx>,
    {
        if self.own_writes.behind(&*obj) {
            // The cache has not shown this engine's latest write of the object yet: what
            // it holds is older, and any write computed from it would conflict.
            tracing::debug!(object = %obj.name_any(), "the cache is behind this engine's last write; waiting for it");
            return Ok(Action::requeue(super::own_writes::CACHE_BEHIND_RETRY));
        }
        let api = Target::of(&self.client, &*obj);
        let at = self.at();
        if obj.meta().deletion_timestamp.is_some() {
            return self.finalize(&api, &*obj, ctx, at).await;
        }
        let obj = if self.has_finalizer(&*obj) {
            obj
        } else {
            Arc::new(self.add_finalizer(&api, &*obj).await?)
        };
        let obj: &K = &obj;
        let table = self.machine.transitions();
        let mut status = obj.phase_status().cloned().unwrap_or_default();
        next_status::repair(&mut status, at.now);
        let status = status;
        let generation = obj.meta().generation;
        let restart = async |why: &Why<'_>, from: Option<&str>, note: Note| {
            let initial = table.initial();
            let observe = Observe::Generation(generation);
            let next = next_status::enter(table, &status, from, initial, why, observe, at);
            self.moved(&api, obj, &next, None, note).await
        };
        let Some(name) = status.phase.as_deref() else {
            let note = Note::normal("Created", format!("starting in {}", table.initial().name()));
            return restart(
                &Why {
                    reason: "Created",
                    message: "",
                },
                None,
                note,
            )
            .await;
        };
        let Some(phase) = M::Phase::from_name(name) else {
            let message = format!(
                "status.phase was {name:?}, which is not a phase of this machine; starting over from {}",
                table.initial().name()
            );
            let note = Note::warning("UnknownPhase", message.clone());
            return restart(
                &Why {
                    reason: "UnknownPhase",
                    message: &message,
                },
                Some(name),
                note,
            )
            .await;
        };
        tracing::Span::current().record("phase", phase.name());
        // An observed generation ahead of the object's is corrupt: a new pass, like a change.
        let spec_changed = generation.is_some() && generation != status.observed_generation;
        let here = Here {
            api: &api,
            status: &status,
            phase,
            at,
        };
        if status.conditions.find(next_status::READY).is_none() {
            return self.restore_conditions(&here, obj).await;
        }
        if phase == table.failed() {
            return self.failed(&here, obj, spec_changed).await;
        }
        if phase == table.ready() && spec_changed {
            return self.spec_changed(&here, obj, ctx).await;
        }
        self.run_handler(&here, obj, ctx).await
    }

    /// A ready object whose spec changed: to the updating phase, or the ready handler
    /// again when the table has none.
    async fn spec_changed<K: Object, Ctx>(
        &self,
        here: &Here<'_, M::Phase>,
        obj: &K,
        ctx: &Arc<Ctx>,
    ) -> Result<Action, PhaseError<M::Error>>
    where
        M: PhaseMachine<K, Ctx>,
    {
        let Here {
            api,
            status,
            phase,
            at,
        } = *here;
        let table = self.machine.transitions();
        let name = phase.name();
        let generation = obj.meta().generation;
        let message = format!(
            "metadata.generation {} is {} the observed {}",
            generation.unwrap_or_default(),
            if generation < status.observed_generation {
                "behind"
            } else {
                "past"
            },
            status
                .observed_generation
                .map_or_else(|| "none".to_owned(), |g| g.to_string()),
        );
        let why = Why {
            reason: "SpecChanged",
            message: &message,
        };
        if let Some(updating) = table.updating() {
            let next = next_status::enter(
                table,
                status,
                Some(name),
                updating,
                &why,
                Observe::Generation(generation),
                at,
            );
            let note = Note::normal(
                "SpecChanged",
                transition_note(name, updating.name(), &message),
            );
            return self.moved(api, obj, &next, None, note).await;
        }
        // No updating phase: the ready handler sees the new spec.
        let mut observed = status.clone();
        observed.observed_generation = generation;
        let here = Here {
            status: &observed,
            ..*here
        };
        self.run_handler(&here, obj, ctx).await
    }

    /// Enforces the deadline, runs the phase's handler and applies its decision.
    async fn run_handler<K: Object, Ctx>(
        &self,
        here: &Here<'_, M::Phase>,
        obj: &K,
        ctx: &Arc<Ctx>,
    ) -> Result<Action, PhaseError<M::Error>>
    where
        M: PhaseMachine<K, Ctx>,
    {
        let Here {
            status, phase, at, ..
        } = *here;
        let entered = next_status::entered_at(status);
        let key = ObjectKey::lookup(obj);
        // The deadline stops while the operator's own pacing holds the object back.
        let recorded = next_status::paced_for(status);
        let paced = self.pacing.held(&key, entered, recorded, at.now);
        let table = self.machine.transitions();
        let due = table
            .deadline(phase)
            .and_then(|limit| entered.map(|at| (limit, later(at, limit.saturating_add(paced)))));
        if let Some((limit, due)) = due
            && at.now >= due
        {
            let message = format!("{} took longer than {}", phase.name(), humantime(limit));
            let timed_out = next_status::with_paced(status, paced);
            let here = &Here {
                status: &timed_out,
                ..*here
            };
            let failed = Transition::fail("PhaseTimeout", message);
            let result = self.apply(here, obj, failed, None).await;
            if result.is_ok() {
                self.pacing.forget(&key);
            }
            return result;
        }
        let step = Step {
            ctx,
            client: &self.client,
            children: &self.config.children,
            cache: &self.cache,
            phase,
            entered_at: entered,
            now: at.now,
        };
        let decided = noted(
            priority(table, status, phase),
            &self.config,
            self.machine.handle(phase, obj, &step),
        )
        .await;
        let paced_for = match &decided {
            Ok(t) => match t.kind {
                Kind::Stay { after, paced: true } => Some(after.unwrap_or_default()),
                _ => None,
            },
            Err(_) => None,
        };
        let paced = if let Some(after) = paced_for {
            // Off the deadline's clock until the handler decides something else.
            self.pacing.begin(&key, entered, recorded, at.now, after);
            self.pacing.held(&key, entered, recorded, at.now)
        } else {
            self.pacing.close(&key, entered, at.now).unwrap_or(recorded)
        };
        // The phase's paced time goes along with whatever this decision writes; alone it
        // writes nothing.
        let with_paced = next_status::with_paced(status, paced);
        let here = &Here {
            status: &with_paced,
            ..*here
        };
        // Leaving the phase ends what there is to track, once that is written.
        let leaves = match &decided {
            Ok(t) => match t.kind {
                Kind::To(to) => to == table.failed() || table.allows(phase, to),
                Kind::Fail { .. } => true,
                Kind::Stay { .. } | Kind::Done => false,
            },
            Err(error) => error.class() == ErrorClass::Terminal,
        };
        let result = match decided {
            Ok(t) => self.apply(here, obj, t, due.map(|(_, due)| due)).await,
            Err(error) if error.class() == ErrorClass::Terminal => {
                let t = Transition::fail_terminal(error.reason(), chain(&error));
                self.apply(here, obj, t, None).await
            }
            Err(error) => Err(self.record_failure(here, obj, error).await),
        };
        if leaves && result.is_ok() {
            self.pacing.forget(&key);
        }
        result
    }

    /// Records a retryable handler error as the object's `lastError` (best effort) and
    /// returns it for the caller.
    async fn record_failure<K: Object, Ctx>(
        &self,
        here: &Here<'_, M::Phase>,
        obj: &K,
        error: M::Error,
    ) -> PhaseError<M::Error>
    where
        M: PhaseMachine<K, Ctx>,
    {
        let reason = error.reason();
        let message = chain(&error);
        let mut next = here.status.clone();
        next_status::record_error(
            &mut next,
            here.phase.name(),
            &Why {
                reason: &reason,
                message: &message,
            },
            here.at.now,
        );
        // Best effort: the handler's error is what the caller needs to see.
        if let Err(write) = self.write::<K, M::Error>(here.api, obj, &next, None).await {
            tracing::debug!(object = %obj.name_any(), error = %write, "recording the last error failed");
        }
        PhaseError::Handler {
            phase: here.phase.name(),
            source: error,
        }
    }

    /// Applies a handler's decision.
    async fn apply<K: Object, Ctx>(
        &self,
        here: &Here<'_, M::Phase>,
        obj: &K,
        t: Transition<M::Phase>,
        deadline: Option<Timestamp>,
    ) -> Result<Action, PhaseError<M::Error>>
    where
        M: PhaseMachine<K, Ctx>,
    {
        if let Some(problem) = t.status_error {
            return Err(PhaseError::StatusFields(problem));
        }
        // A handler's own conditions go into the same write as the engine's.
        let with_conditions = here.with_conditions(&t.conditions);
        let Here {
            api,
            status,
            phase,
            at,
        } = with_conditions
            .as_ref()
            .map_or(*here, |status| Here { status, ..*here });
        let table = self.machine.transitions();
        let from = phase.name();
        let reason = t.reason.as_deref().unwrap_or("");
        let message = t.message.as_deref().unwrap_or("");
        let extra = t.status.as_ref();
        match t.kind {
            Kind::Stay { after, paced } => {
                // Paced: off the deadline's clock, so the deadline does not cut it short.
                let deadline = deadline.filter(|_| !paced);
                let mut next = status.clone();
                clear_overcome_error(&mut next, table, phase);
                if t.reason.is_some() {
                    next_status::set_conditions(
                        &mut next,
                        next_status::standing_of(table, phase),
                        &Why { reason, message },
                        at.now,
                    );
                }
                let action = match (after, deadline.map(|due| until(at.now, due))) {
                    (Some(a), Some(b)) => Action::requeue(a.min(b)),
                    (Some(d), None) | (None, Some(d)) => Action::requeue(d),
                    (None, None) => Action::await_change(),
                };
                self.write_then(api, obj, &next, extra, None, action).await
            }

            Kind::Done => {
                let mut next = status.clone();
                clear_overcome_error(&mut next, table, phase);
                self.write_then(api, obj, &next, extra, None, Action::await_change())
                    .await
            }
            Kind::To(to) if to == table.failed() => {
                self.fail(
                    here,
                    obj,
                    &Why {
                        reason: if reason.is_empty() { "Failed" } else { reason },
                        message,
                    },
                    true,
                    extra,
                )
                .await
            }
            Kind::Fail { retry } => {
                self.fail(
                    here,
                    obj,
                    &Why {
                        reason: if reason.is_empty() { "Failed" } else { reason },
                        message,
                    },
                    retry,
                    extra,
                )
                .await
            }
            Kind::To(to) if !table.allows(phase, to) => self.refuse(here, obj, to).await,
            Kind::To(to) => {
                let reason = if reason.is_empty() { to.name() } else { reason };
                let next = next_status::enter(
                    table,
                    status,
                    Some(from),
                    to,
                    &Why { reason, message },
                    Observe::Keep,
                    at,
                );
                let note = Note::normal(reason, transition_note(from, to.name(), message));
                self.moved(api, obj, &next, extra, note).await
            }
        }
    }
}

/// A Ready object whose handler succeeded carries no `lastError`: an error it met while
/// Ready (a child it could not read) has been overcome.
fn clear_overcome_error<P: Phase>(
    status: &mut PhaseStatus,
    table: &super::Transitions<P>,
    phase: P,
) {
    if phase == table.ready() {
        status.last_error = None;
    }
}

/// How far along an object in `phase` is, for the turns at dependency budgets: the
/// phase's distance from the initial one, and whether its work in the phase is under way.
fn priority<P: Phase>(table: &super::Transitions<P>, status: &PhaseStatus, phase: P) -> u32 {
    table.rank(phase) * 2 + u32::from(next_status::under_way(status, phase.name()))
}
