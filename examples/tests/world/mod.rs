//! The world the operator's end-to-end tests run in: a server of either tier with the
//! `Database` CRD, a simulated DBaaS and the workload simulator, and what the tests ask of it.

#![allow(dead_code, reason = "each test binary uses a different part")]

use std::{collections::BTreeMap, time::Duration};

use database_operator::{
    self as example,
    crd::{Database, DatabaseSpec, Engine},
    dbaas::{DbaasServer, RunningDbaas},
    report::Report,
};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client, CustomResourceExt, ResourceExt,
    api::{ListParams, PostParams},
};
use kube_reconcile::phase::HasPhaseStatus;
use kube_reconcile_test_support::tier::Tier;
use kube_reconcile_testing::WorkloadSimulator;

/// A server of either tier with the CRD, a simulated DBaaS and the workload simulator.
pub(crate) struct World {
    pub(crate) client: Client,
    pub(crate) namespace: String,
    pub(crate) dbaas: RunningDbaas,
    pub(crate) api: Api<Database>,
    _simulator: kube_reconcile_testing::RunningSimulator,
}

pub(crate) async fn world(cx: &Tier) -> World {
    let client = cx.client();
    cx.install_crd(&Database::crd()).await;
    let dbaas = DbaasServer::builder()
        .provision_delay(Duration::from_millis(200))
        .start()
        .await
        .unwrap();
    let simulator = WorkloadSimulator::new(client.clone())
        .ready_after(Duration::from_millis(100))
        .namespace(cx.namespace())
        .start();
    World {
        api: Api::namespaced(client.clone(), cx.namespace()),
        namespace: cx.namespace().to_owned(),
        client,
        dbaas,
        _simulator: simulator,
    }
}

impl World {
    pub(crate) fn operator(&self) -> example::Operator {
        example::start(
            self.client.clone(),
            &self.namespace,
            self.dbaas.client(),
            &Report::new(),
        )
        .unwrap()
    }

    pub(crate) async fn create(&self, name: &str, version: &str, replicas: i32) {
        let db = Database::new(
            name,
            DatabaseSpec {
                engine: Engine::Postgres,
                version: version.to_owned(),
                replicas,
                storage: "1Gi".to_owned(),
                retain_on_delete: false,
            },
        );
        self.api.create(&PostParams::default(), &db).await.unwrap();
    }

    pub(crate) async fn until(
        &self,
        what: &str,
        done: impl Fn(&[Database]) -> bool,
    ) -> Vec<Database> {
        for _ in 0..600 {
            let list = self.api.list(&ListParams::default()).await.unwrap().items;
            if done(&list) {
                return list;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let list = self.api.list(&ListParams::default()).await.unwrap().items;
        let phases: Vec<_> = list
            .iter()
            .map(|d| (d.name_any(), d.phase().map(str::to_owned)))
            .collect();
        panic!("never {what}: {phases:?}");
    }

    pub(crate) async fn all_ready(&self, n: usize) -> Vec<Database> {
        self.until("all Ready", |list| {
            list.len() == n
                && list.iter().all(|d| {
                    d.phase() == Some("Ready")
                        && d.phase_status().and_then(|s| s.observed_generation)
                            == d.metadata.generation
                })
        })
        .await
    }

    pub(crate) async fn passwords(&self) -> BTreeMap<String, Vec<u8>> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        secrets
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|s| {
                let password = s
                    .data
                    .unwrap_or_default()
                    .remove("password")
                    .map(|b| b.0)
                    .unwrap_or_default();
                (s.metadata.name.unwrap_or_default(), password)
            })
            .collect()
    }
}
