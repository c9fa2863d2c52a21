//! The recipe (`phase::Operator`) on both tiers: children read from the operator's watch
//! caches (an unchanged child costs no request at all, and a child is never read from a
//! cache older than the operator's own last write to it), and a graceful shutdown that
//! hands the leader Lease over at once; what a running operator keeps per object.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, CustomResource, CustomResourceExt, ResourceExt,
    api::{ObjectMeta, Patch, PatchParams, PostParams},
};
use kube_reconcile::{
    ErrorClass, HandlerError, LeaderHandle, LeaseConfig,
    ensure::Ensure,
    middleware::rate_limit::{Quota, RateLimitLayer},
    phase::{
        HasPhaseStatus, Operator, PhaseConfig, PhaseMachine, PhaseStatus, Step, Tracked,
        Transition, Transitions,
    },
};
use kube_reconcile_test_support::{both_tiers, recorder::Recorder};
use kube_reconcile_testing::Verb;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A owner with a label, kept in a ConfigMap.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "test.kube-reconcile.dev",
    version = "v1",
    kind = "Shelf",
    namespaced,
    status = "ShelfStatus"
)]
struct ShelfSpec {
    label: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
struct ShelfStatus {
    #[serde(flatten)]
    machine: PhaseStatus,
}

impl HasPhaseStatus for Shelf {
    fn phase_status(&self) -> Option<&PhaseStatus> {
        self.status.as_ref().map(|s| &s.machine)
    }
}

kube_reconcile::phases! { enum ShelfPhase { Pending, Ready, Failed } }

/// The owner's label as a ConfigMap.
struct Label;

impl Ensure<Shelf> for Label {
    type Child = ConfigMap;

    fn desired(&self, owner: &Shelf) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(format!("{}-label", owner.name_any())),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(
                "label".to_owned(),
                owner.spec.label.clone(),
            )])),
            ..ConfigMap::default()
        }
    }
}

/// Ensures the label in every phase; Ready checks it every 100 ms. The label `fail`
/// fails every pass, as a transient error.
struct Shelves {
    table: Transitions<ShelfPhase>,
}

impl PhaseMachine<Shelf, ()> for Shelves {
    type Phase = ShelfPhase;
    type Error = HandlerError;

    fn transitions(&self) -> &Transitions<ShelfPhase> {
        &self.table
    }

    async fn handle(
        &self,
        phase: ShelfPhase,
        owner: &Shelf,
        step: &Step<'_, ShelfPhase, ()>,
    ) -> Result<Transition<ShelfPhase>, HandlerError> {
        if owner.spec.label == "fail" {
            return Err(HandlerError::other(
                ErrorClass::Transient,
                "LabelRefused",
                "the label `fail` fails",
            ));
        }
        step.ensure(owner, &Label).await?;
        Ok(match phase {
            ShelfPhase::Pending => Transition::to(ShelfPhase::Ready),
            _ => Transition::stay(Duration::from_millis(100)),
        })
    }
}

fn shelves() -> Shelves {
    use ShelfPhase::*;
    let table = Transitions::builder(Pending)
        .path([Pending, Ready])
        .edge(Failed, Pending)
        .ready(Ready)
        .failed(Failed)
        .build()
        .unwrap();
    Shelves { table }
}

/// Creates the Shelf `s1` labelled `one` and waits until the operator wrote that label.
async fn shelve_one(api: &Api<Shelf>, maps: &Api<ConfigMap>) {
    api.create(
        &PostParams::default(),
        &Shelf::new(
            "s1",
            ShelfSpec {
                label: "one".into(),
            },
        ),
    )
    .await
    .unwrap();
    until_labelled(maps, "one").await;
}

/// Waits (at most 30 s) until the label ConfigMap of `s1` says `label`.
async fn until_labelled(maps: &Api<ConfigMap>, label: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let found = maps.get_opt("s1-label").await.unwrap();
        if found
            .and_then(|m| m.data)
            .and_then(|d| d.get("label").cloned())
            .as_deref()
            == Some(label)
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the label never became {label}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

both_tiers! {
    /// The cache of a kind starts at the first read of one of its children.
    async fn children_are_read_from_the_cache_and_never_older_than_our_writes(cx: Tier) {
        cx.install_crd(&Shelf::crd()).await;
        let recorder = Recorder::new(&cx.client());
        let operator = Operator::builder(shelves(), recorder.client())
            .config(PhaseConfig::default().finalizer("test.kube-reconcile.dev/owner"))
            .build()
            .unwrap();
        let api: Api<Shelf> = cx.api();
        let controller = operator.spawn(api.clone(), Arc::new(()));
        api.create(
            &PostParams::default(),
            &Shelf::new("s1", ShelfSpec { label: "one".into() }),
        )
        .await
        .unwrap();
        let maps: Api<ConfigMap> = cx.api();
        until_labelled(&maps, "one").await;

        // Steady state: ten or so checks a second, every read from the cache.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let ((), calls) = recorder.during(tokio::time::sleep(Duration::from_secs(1))).await;
        assert_eq!(calls.get(Verb::Get, "configmaps"), 0, "{calls}");
        assert_eq!(calls.writes(), 0, "{calls}");

        // A new label: written, then read back (never the stale cached "one", which
        // would write again or report it unchanged), and from the cache again once it
        // has caught up.
        api.patch(
            "s1",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "label": "two" } })),
        )
        .await
        .unwrap();
        until_labelled(&maps, "two").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let ((), calls) = recorder.during(tokio::time::sleep(Duration::from_secs(1))).await;
        assert_eq!(calls.get(Verb::Get, "configmaps"), 0, "{calls}");
        assert_eq!(calls.writes(), 0, "{calls}");
        let writes = recorder.calls().get(Verb::Patch, "configmaps");
        assert_eq!(writes, 2, "one apply per label: {}", recorder.calls());
        controller.abort();
    }
}

both_tiers! {
    async fn a_gracefully_stopped_operator_hands_its_lease_over_at_once(cx: Tier) {
        cx.install_crd(&Shelf::crd()).await;
        let lease = LeaseConfig::new(cx.namespace(), "shelves").identity("replica-a");
        let leader = LeaderHandle::spawn(cx.client(), lease).unwrap();
        tokio::time::timeout(Duration::from_secs(10), leader.leading())
            .await
            .expect("the only candidate leads");
        let operator = Operator::builder(shelves(), cx.client())
            .config(
                PhaseConfig::default()
                    .finalizer("test.kube-reconcile.dev/owner")
                    .controller("shelf-operator"),
            )
            .leader(Some(leader.clone()))
            .build()
            .unwrap();
        let api: Api<Shelf> = cx.api();
        let running = operator.spawn(api.clone(), Arc::new(()));
        shelve_one(&api, &cx.api()).await;
        // The controller's name is the children's field manager too.
        let child = cx.api::<ConfigMap>().get("s1-label").await.unwrap();
        assert_eq!(
            child.labels().get("app.kubernetes.io/managed-by").map(String::as_str),
            Some("shelf-operator")
        );
        let managers: Vec<_> = child
            .managed_fields()
            .iter()
            .filter_map(|m| m.manager.as_deref())
            .collect();
        assert!(managers.contains(&"shelf-operator"), "{managers:?}");

        assert!(
            running.shut_down(Duration::from_secs(15)).await,
            "the reconciles in flight finished and the Lease was handed over in time"
        );
        // Released, not left to expire: no holder, and this replica no longer leads.
        let held = cx.api::<Lease>().get("shelves").await.unwrap();
        let holder = held.spec.and_then(|s| s.holder_identity).unwrap_or_default();
        assert_eq!(holder, "", "the Lease is free for the next replica");
        assert!(!leader.is_leader());
    }
}

both_tiers! {
    /// The handle of a spawned operator is not its lifeline: dropped, the operator keeps
    /// reconciling, as a dropped `JoinHandle` leaves its task.
    async fn a_dropped_running_handle_leaves_the_operator_running(cx: Tier) {
        cx.install_crd(&Shelf::crd()).await;
        let operator = Operator::builder(shelves(), cx.client())
            .config(PhaseConfig::default().finalizer("test.kube-reconcile.dev/owner"))
            .build()
            .unwrap();
        let api: Api<Shelf> = cx.api();
        drop(operator.spawn(api.clone(), Arc::new(())));
        shelve_one(&api, &cx.api()).await;
    }
}

both_tiers! {
    /// `Running::tracked` counts an object while the backoff holds it, and every count
    /// falls back to zero once it converged and its per-object rate limit refilled.
    async fn running_tracked_counts_what_the_operator_holds_per_object(cx: Tier) {
        cx.install_crd(&Shelf::crd()).await;
        let per_object = Quota::per_second(std::num::NonZeroU32::new(50).unwrap());
        let operator = Operator::builder(shelves(), cx.client())
            .config(PhaseConfig::default().finalizer("test.kube-reconcile.dev/owner"))
            .rate_limit(RateLimitLayer::per_object(per_object))
            .build()
            .unwrap();
        let api: Api<Shelf> = cx.api();
        let running = operator.spawn(api.clone(), Arc::new(()));
        assert_eq!(running.tracked(), Tracked::default(), "no object seen yet");
        api.create(
            &PostParams::default(),
            &Shelf::new("s1", ShelfSpec { label: "fail".into() }),
        )
        .await
        .unwrap();
        let until = |want: fn(&Tracked) -> bool, what: &'static str| {
            let running = &running;
            async move {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
                loop {
                    let tracked = running.tracked();
                    if want(&tracked) {
                        return;
                    }
                    assert!(tokio::time::Instant::now() < deadline, "never {what}: {tracked:?}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        until(|t| t.backing_off == 1, "one object backing off").await;
        api.patch("s1", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "label": "one" } })))
            .await
            .unwrap();
        until_labelled(&cx.api(), "one").await;
        // Forgotten on success; the limit is full again 20 ms after a reconcile, and
        // Ready reconciles every 100 ms.
        until(|t| *t == Tracked::default(), "back to zero").await;
        assert!(running.shut_down(Duration::from_secs(10)).await);
    }
}
