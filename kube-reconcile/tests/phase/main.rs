//! `PhaseMachine` on the embedded API server with a real `Controller`: the happy path with
//! status and conditions checked at each step, a refused transition, Updating on a spec
//! change, Failed and retry with backoff, deadlines, deletion with cleanup, a failing
//! cleanup, zero writes in steady state, conflicts, corrupt phases; and a property test of
//! random handler outcomes. `tiers` runs the main flows in real time on both servers,
//! the embedded one and a real kube-apiserver.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Client, CustomResource, CustomResourceExt, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    runtime::{Controller, watcher},
};
use kube_reconcile::{
    Classify, ControllerExt, ErrorClass, Reconciler,
    conditions::ConditionStatus,
    phase::{
        Cleanup, HasPhaseStatus, PhaseConfig, PhaseEngine, PhaseError, PhaseMachine, PhaseStatus,
        Step, Transition, Transitions,
    },
};
use kube_reconcile_testing::{ApiServer, Fault, Verb};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

mod cleanup_and_writes;
mod deferred;
mod failures;
mod flows;
mod order;
mod random;
mod tiers;

/// A pipeline: something that goes through the lesson's phases.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "test.kube-reconcile.dev",
    version = "v1",
    kind = "Pipeline",
    namespaced
)]
#[kube(status = "PipelineStatus")]
#[kube(printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#)]
struct PipelineSpec {
    size: i32,
    /// What the handlers do: `fail-verify-once`, `terminal`, `illegal`, `stuck`, `flaky`.
    #[serde(default)]
    script: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct PipelineStatus {
    #[serde(flatten)]
    machine: PhaseStatus,
    endpoint: Option<String>,
}

impl HasPhaseStatus for Pipeline {
    fn phase_status(&self) -> Option<&PhaseStatus> {
        self.status.as_ref().map(|s| &s.machine)
    }
}

kube_reconcile::phases! {
    /// The lesson's phases.
    enum P { Pending, Provisioning, Configuring, Deploying, Verifying, Ready, Updating, Failed }
}

fn table() -> Transitions<P> {
    use P::*;
    Transitions::builder(Pending)
        .path([
            Pending,
            Provisioning,
            Configuring,
            Deploying,
            Verifying,
            Ready,
        ])
        .edge(Verifying, Failed)
        .edge(Failed, Provisioning)
        .path([Ready, Updating, Verifying])
        .ready(Ready)
        .updating(Updating)
        .failed(Failed)
        .deadline(Provisioning, Duration::from_secs(60))
        .build()
        .unwrap()
}

#[derive(Debug, thiserror::Error)]
#[error("scripted {0:?} error")]
struct Scripted(ErrorClass);

impl Classify for Scripted {
    fn class(&self) -> ErrorClass {
        self.0
    }

    /// Terminal errors name themselves; the others keep the default reason.
    fn reason(&self) -> std::borrow::Cow<'static, str> {
        match self.0 {
            ErrorClass::Terminal => "ScriptedTerminal".into(),
            _ => "ReconcileError".into(),
        }
    }
}

#[derive(Default)]
struct Ctx {
    /// Handler runs per (object, phase).
    runs: Mutex<HashMap<(String, P), u32>>,
    cleanups: AtomicU32,
    cleanup_fails: AtomicBool,
}

impl Ctx {
    fn runs(&self, name: &str, phase: P) -> u32 {
        self.runs
            .lock()
            .unwrap()
            .get(&(name.to_owned(), phase))
            .copied()
            .unwrap_or(0)
    }
}

struct Machine {
    table: Transitions<P>,
}

impl PhaseMachine<Pipeline, Ctx> for Machine {
    type Phase = P;
    type Error = Scripted;

    fn transitions(&self) -> &Transitions<P> {
        &self.table
    }

    async fn handle(
        &self,
        phase: P,
        obj: &Pipeline,
        step: &Step<'_, P, Ctx>,
    ) -> Result<Transition<P>, Scripted> {
        let name = obj.name_any();
        let run = {
            let mut runs = step.ctx().runs.lock().unwrap();
            let n = runs.entry((name, phase)).or_default();
            *n += 1;
            *n
        };
        let script = obj.spec.script.as_str();
        Ok(match phase {
            P::Pending if obj.spec.size > 10 => Transition::fail_terminal(
                "InvalidSpec",
                format!("spec.size is {}; at most 10 fits", obj.spec.size),
            ),
            P::Pending if script == "illegal" => Transition::to(P::Ready),
            P::Pending => Transition::to(P::Provisioning),
            P::Provisioning if script == "stuck" => Transition::stay(Duration::from_secs(3600))
                .because("Waiting", "the instance is not there yet"),
            // Turns held back by the operator's own pacing (five, then one more between
            // two checks of slow work).
            P::Provisioning if script == "queued" && (run <= 5 || run == 7) => {
                Transition::paced(Duration::from_secs(30))
            }
            P::Provisioning if script == "queued" => Transition::stay(Duration::from_secs(10))
                .because("Creating", "the instance is being created"),
            P::Provisioning if script == "terminal" => return Err(Scripted(ErrorClass::Terminal)),
            P::Provisioning if script == "flaky" && run <= 2 => {
                return Err(Scripted(ErrorClass::Transient));
            }
            P::Provisioning => Transition::to(P::Configuring),
            P::Configuring => Transition::to(P::Deploying),
            P::Deploying | P::Updating => Transition::to(P::Verifying),
            P::Verifying if script == "fail-verify-once" && run == 1 => {
                Transition::fail("VerificationFailed", "health check answered 503")
            }
            P::Verifying => Transition::to(P::Ready)
                .because("Verified", "all checks passed")
                .with_status(json!({ "endpoint": format!("{}.svc:5432", obj.name_any()) })),
            // A child that cannot be read once while Ready.
            P::Ready if script == "flaky-ready" && run == 1 => {
                return Err(Scripted(ErrorClass::Transient));
            }
            P::Ready | P::Failed => Transition::done(),
        })
    }

    async fn cleanup(&self, _: &Pipeline, step: &Step<'_, P, Ctx>) -> Result<Cleanup, Scripted> {
        step.ctx().cleanups.fetch_add(1, Ordering::SeqCst);
        if step.ctx().cleanup_fails.load(Ordering::SeqCst) {
            return Err(Scripted(ErrorClass::Transient));
        }
        Ok(Cleanup::done())
    }
}

struct Env {
    /// The embedded server, for counters and faults (`None` on the real tier).
    server: Option<ApiServer>,
    client: Client,
    api: Api<Pipeline>,
    ctx: Arc<Ctx>,
    engine: PhaseEngine<Machine, Pipeline>,
}

/// The engine on a fresh embedded server, objects in `default`.
async fn env() -> Env {
    let server = ApiServer::new();
    let client = server.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Pipeline::crd())
        .await
        .unwrap();
    Env::new(client, "default", PhaseConfig::default(), Some(server))
}

impl Env {
    /// The engine (with `config` and the test finalizer) on `client`, objects in
    /// `namespace`; the Pipeline CRD must be installed.
    fn new(client: Client, namespace: &str, config: PhaseConfig, server: Option<ApiServer>) -> Env {
        let engine = PhaseEngine::with_config(
            Machine { table: table() },
            client.clone(),
            config.finalizer("test.kube-reconcile.dev/cleanup"),
        )
        .unwrap();
        Env {
            server,
            api: Api::namespaced(client.clone(), namespace),
            client,
            ctx: Arc::new(Ctx::default()),
            engine,
        }
    }

    fn client(&self) -> Client {
        self.client.clone()
    }

    /// The embedded server (tests of the embedded tier only).
    fn server(&self) -> &ApiServer {
        self.server.as_ref().expect("an embedded-tier test")
    }

    /// Patches `spec.size` of `name` (a new generation).
    async fn resize(&self, name: &str, size: i32) {
        self.api
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": { "size": size } })),
            )
            .await
            .unwrap();
    }

    /// Waits until `name` is Ready at `generation`.
    async fn until_ready_at(&self, name: &str, generation: i64) -> Pipeline {
        self.until(name, &format!("Ready at generation {generation}"), |o| {
            phase_of(o) == Some("Ready") && machine(o).observed_generation == Some(generation)
        })
        .await
    }

    /// Records every version of `name` the server hands out, from a watch that is
    /// established before this returns.
    async fn record(&self, name: &str) -> (Arc<Mutex<Vec<Pipeline>>>, tokio::task::JoinHandle<()>) {
        let seen = Arc::new(Mutex::new(Vec::<Pipeline>::new()));
        let (ready, listening) = tokio::sync::oneshot::channel();
        let stream = watcher(
            self.api.clone(),
            watcher::Config::default().fields(&format!("metadata.name={name}")),
        );
        let task = {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut stream = std::pin::pin!(stream);
                let mut ready = Some(ready);
                while let Ok(Some(event)) = stream.try_next().await {
                    match event {
                        watcher::Event::InitDone => {
                            if let Some(ready) = ready.take() {
                                let _ = ready.send(());
                            }
                        }
                        watcher::Event::Apply(obj) | watcher::Event::InitApply(obj) => {
                            seen.lock().unwrap().push(obj);
                        }
                        watcher::Event::Init | watcher::Event::Delete(_) => {}
                    }
                }
            })
        };
        listening.await.expect("the watch started");
        (seen, task)
    }

    /// The reasons of the events about `name`.
    async fn event_reasons(&self, name: &str) -> Vec<String> {
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client(), self.api.namespace().unwrap_or("default"));
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .filter_map(|e| e.reason)
            .collect()
    }

    fn run_controller(&self) -> tokio::task::JoinHandle<()> {
        let controller = Controller::new(self.api.clone(), watcher::Config::default())
            .run_reconciler(self.engine.clone(), self.ctx.clone())
            .for_each(|_| async {});
        tokio::spawn(controller)
    }

    async fn create(&self, name: &str, size: i32, script: &str) -> Pipeline {
        let obj = Pipeline::new(
            name,
            PipelineSpec {
                size,
                script: script.to_owned(),
            },
        );
        self.api.create(&PostParams::default(), &obj).await.unwrap()
    }

    async fn get(&self, name: &str) -> Pipeline {
        self.api.get(name).await.unwrap()
    }

    /// Waits (in paused time) until `name` satisfies `done`.
    async fn until(&self, name: &str, what: &str, done: impl Fn(&Pipeline) -> bool) -> Pipeline {
        for _ in 0..2000 {
            if let Some(obj) = self.api.get_opt(name).await.unwrap()
                && done(&obj)
            {
                return obj;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{name} never got {what}: {:#?}",
            self.api.get_opt(name).await.unwrap()
        );
    }

    async fn until_phase(&self, name: &str, phase: &str) -> Pipeline {
        self.until(name, phase, |o| phase_of(o) == Some(phase))
            .await
    }

    /// One reconcile of the current object, outside the controller.
    async fn reconcile(
        &self,
        name: &str,
    ) -> Result<kube::runtime::controller::Action, PhaseError<Scripted>> {
        let obj = Arc::new(self.get(name).await);
        self.engine.reconcile(obj, self.ctx.clone()).await
    }
}

fn machine(obj: &Pipeline) -> PhaseStatus {
    obj.phase_status().cloned().unwrap_or_default()
}

fn phase_of(obj: &Pipeline) -> Option<&str> {
    obj.phase_status().and_then(|s| s.phase.as_deref())
}

fn condition(obj: &Pipeline, type_: &str) -> Option<(ConditionStatus, String)> {
    machine(obj)
        .conditions
        .find(type_)
        .map(|c| (c.status, c.reason.clone()))
}

fn history(obj: &Pipeline) -> Vec<String> {
    machine(obj)
        .phase_history
        .iter()
        .map(|r| r.phase.clone())
        .collect()
}
