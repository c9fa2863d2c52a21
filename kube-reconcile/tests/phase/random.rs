//! Random handler outcomes against the real engine on the embedded server.

use super::*;
use kube_reconcile::phase::Phase;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Outcome {
    To(usize),
    Stay,
    Done,
    Fail,
    FailTerminal,
    Error(ErrorClass),
}

#[derive(Clone, Debug)]
enum Event {
    Reconcile(Outcome),
    SpecChange,
    Advance(u64),
}

#[derive(Default)]
struct Script(Mutex<Option<Outcome>>);

struct Scripted2 {
    table: Transitions<P>,
}

impl PhaseMachine<Pipeline, Script> for Scripted2 {
    type Phase = P;
    type Error = Scripted;

    fn transitions(&self) -> &Transitions<P> {
        &self.table
    }

    async fn handle(
        &self,
        _: P,
        _: &Pipeline,
        step: &Step<'_, P, Script>,
    ) -> Result<Transition<P>, Scripted> {
        let outcome = step.ctx().0.lock().unwrap().take().unwrap_or(Outcome::Done);
        Ok(match outcome {
            Outcome::To(i) => Transition::to(P::all()[i % P::all().len()]),
            Outcome::Stay => Transition::stay(Duration::from_secs(10)).because("Busy", "working"),
            Outcome::Done => Transition::done(),
            Outcome::Fail => Transition::fail("Broke", "it broke"),
            Outcome::FailTerminal => Transition::fail_terminal("Invalid", "bad spec"),
            Outcome::Error(class) => return Err(Scripted(class)),
        })
    }
}

fn event() -> impl Strategy<Value = Event> {
    let outcome = prop_oneof![
        4 => (0usize..8).prop_map(Outcome::To),
        1 => Just(Outcome::Stay),
        1 => Just(Outcome::Done),
        1 => Just(Outcome::Fail),
        1 => Just(Outcome::FailTerminal),
        1 => prop::sample::select(vec![ErrorClass::Transient, ErrorClass::Terminal, ErrorClass::Conflict])
            .prop_map(Outcome::Error),
    ];
    prop_oneof![
        8 => outcome.prop_map(Event::Reconcile),
        1 => Just(Event::SpecChange),
        1 => (1u64..400).prop_map(Event::Advance),
    ]
}

/// What a step is expected to leave as the last error, if it failed.
fn failure_reason(outcome: &Outcome, undeclared: bool) -> Option<&'static str> {
    match outcome {
        _ if undeclared => Some("UndeclaredTransition"),
        Outcome::To(i) if P::all()[i % P::all().len()] == P::Failed => Some("Failed"),
        Outcome::Fail => Some("Broke"),
        Outcome::FailTerminal => Some("Invalid"),
        Outcome::Error(ErrorClass::Terminal) => Some("ScriptedTerminal"),
        Outcome::Error(_) => Some("ReconcileError"),
        _ => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_outcomes_keep_every_invariant(events in prop::collection::vec(event(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async move {
            let server = ApiServer::new();
            let client = server.client();
            let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
            crds.create(&PostParams::default(), &Pipeline::crd()).await.unwrap();
            let api: Api<Pipeline> = Api::namespaced(client.clone(), "default");
            api.create(&PostParams::default(), &Pipeline::new("db", PipelineSpec { size: 1, script: String::new() }))
                .await
                .unwrap();
            let table = table();
            let engine = PhaseEngine::with_config(
                Scripted2 { table: table.clone() },
                client,
                PhaseConfig::default().events(false),
            )
            .unwrap();
            let script = Arc::new(Script::default());
            let mut before = api.get("db").await.unwrap();
            let mut size = 1;
            for event in events {
                let outcome = match event {
                    Event::SpecChange => {
                        size += 1;
                        api.patch("db", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "size": size } })))
                            .await
                            .unwrap();
                        before = api.get("db").await.unwrap();
                        continue;
                    }
                    Event::Advance(secs) => {
                        tokio::time::advance(Duration::from_secs(secs)).await;
                        continue;
                    }
                    Event::Reconcile(outcome) => outcome,
                };
                *script.0.lock().unwrap() = Some(outcome.clone());
                let result = engine.reconcile(Arc::new(before.clone()), script.clone()).await;
                let handler_ran = script.0.lock().unwrap().is_none();
                let after = api.get("db").await.unwrap();
                let (old, new) = (machine(&before), machine(&after));

                // 1. Only declared moves (failing is always declared).
                if let (Some(from), Some(to)) = (old.phase.as_deref(), new.phase.as_deref())
                    && from != to
                {
                    let from = P::from_name(from).unwrap();
                    let to = P::from_name(to).unwrap();
                    prop_assert!(table.allows(from, to), "{from:?} -> {to:?}");
                }
                for pair in new.phase_history.windows(2) {
                    let from = P::from_name(pair[0].phase.as_str()).unwrap();
                    let to = P::from_name(pair[1].phase.as_str()).unwrap();
                    prop_assert!(table.allows(from, to), "history {from:?} -> {to:?}");
                }
                // 2. The last error is never lost, and a failure is recorded.
                let undeclared = matches!(result, Err(PhaseError::UndeclaredTransition { .. }));
                // Entering Ready clears it.
                let ready = new.phase.as_deref() == Some("Ready") && old.phase != new.phase;
                if old.last_error.is_some() && !ready {
                    prop_assert!(new.last_error.is_some(), "the last error was lost");
                }
                match (handler_ran, failure_reason(&outcome, undeclared)) {
                    (true, Some(reason)) => prop_assert_eq!(
                        new.last_error.as_ref().map(|e| e.reason.as_str()),
                        Some(reason)
                    ),
                    (true, None) if ready => prop_assert_eq!(&new.last_error, &None),
                    (true, None) => prop_assert_eq!(&new.last_error, &old.last_error),
                    // The engine's own failure: a deadline.
                    (false, _) if new.last_error != old.last_error => prop_assert_eq!(
                        new.last_error.as_ref().map(|e| e.reason.as_str()),
                        Some("PhaseTimeout")
                    ),
                    (false, _) => {}
                }
                // 3. lastTransitionTime moves only with the condition's status.
                for c in &new.conditions {
                    if let Some(prev) = old.conditions.find(&c.type_)
                        && prev.status == c.status
                    {
                        prop_assert_eq!(&prev.last_transition_time, &c.last_transition_time, "{}", c.type_);
                    }
                }
                before = after;
            }
            Ok(())
        })?;
    }
}
