//! The world the operator's end-to-end tests run in: a server of either tier with the
//! `Database` CRD, a simulated DBaaS and the workload simulator, and what the tests ask of it.

#![allow(dead_code, reason = "each test binary uses a different part")]

use std::{collections::BTreeMap, time::Duration};

use database_operator::{
    self as example,
    crd::{Database, DatabaseSpec, Engine},
    dbaas::{DbaasServer, RunningDbaas},
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
    world_with(cx, true).await
}

/// [`world`], with the workload simulator giving StatefulSets their Pods or not (a test of
/// thousands of Databases leaves them out, so its server serves the operators).
pub(crate) async fn world_with(cx: &Tier, pods: bool) -> World {
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
        .owned_pods(pods)
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
        self.operator_with(|operator| operator)
    }

    /// The operator, wrapped as `wrap` says (leader election, sharding, metrics...).
    pub(crate) fn operator_with(
        &self,
        wrap: impl FnOnce(example::Builder) -> example::Builder,
    ) -> example::Operator {
        start(&self.client, &self.namespace, self.dbaas.client(), wrap)
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

    /// Every child of kind `C` the operator manages: the Database it belongs to
    /// (`app.kubernetes.io/instance`) and the shard label it carries, if any.
    pub(crate) async fn all_children<C>(&self) -> Vec<(String, Option<String>)>
    where
        C: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<C> = Api::namespaced(self.client.clone(), &self.namespace);
        let managed =
            ListParams::default().labels("app.kubernetes.io/managed-by=database-operator");
        api.list(&managed)
            .await
            .unwrap()
            .items
            .iter()
            .map(|child| {
                let labels = child.labels();
                (
                    labels
                        .get("app.kubernetes.io/instance")
                        .cloned()
                        .unwrap_or_default(),
                    labels.get("shard.kube-reconcile.dev/databases").cloned(),
                )
            })
            .collect()
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

/// What each member of the ring `databases` should cache: its Databases, and the children
/// labelled for it.
pub(crate) struct ShardCaches {
    databases: BTreeMap<String, f64>,
    children: BTreeMap<(String, &'static str), f64>,
}

/// The child kinds the example caches.
const CACHED: [&str; 4] = ["ConfigMap", "Secret", "Service", "StatefulSet"];

impl World {
    /// Who owns what in `list` (the Databases, all labelled), after checking that every
    /// child carries its Database's shard label.
    pub(crate) async fn shard_caches(&self, list: &[Database]) -> ShardCaches {
        let (caches, strays) = self.children_by_shard(list).await;
        assert!(
            strays.is_empty(),
            "children not labelled like their Database: {strays:?}"
        );
        caches
    }

    /// Waits until every child the operator ensures when Ready carries its Database's
    /// shard label (the children of a Database that moved follow it in its new owner's
    /// next pass), and returns the Databases then.
    pub(crate) async fn children_follow_their_databases(&self) -> Vec<Database> {
        for _ in 0..300 {
            let list = self.api.list(&ListParams::default()).await.unwrap().items;
            if self.children_by_shard(&list).await.1.is_empty() {
                return list;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let list = self.api.list(&ListParams::default()).await.unwrap().items;
        let strays = self.children_by_shard(&list).await.1;
        panic!("children not labelled like their Database after 30 s: {strays:?}");
    }

    /// What each member should cache, and the children whose shard label is not their
    /// Database's.
    async fn children_by_shard(&self, list: &[Database]) -> (ShardCaches, Vec<String>) {
        let mut databases = BTreeMap::new();
        let mut owner_of = BTreeMap::new();
        for db in list {
            let member = db.labels().get(SHARD).cloned().unwrap_or_default();
            *databases.entry(member.clone()).or_default() += 1.0;
            owner_of.insert(db.name_any(), member);
        }
        let mut children = BTreeMap::new();
        let mut strays = Vec::new();
        let kinds = [
            self.all_children::<k8s_openapi::api::core::v1::ConfigMap>()
                .await,
            self.all_children::<Secret>().await,
            self.all_children::<k8s_openapi::api::core::v1::Service>()
                .await,
            self.all_children::<k8s_openapi::api::apps::v1::StatefulSet>()
                .await,
        ];
        for (kind, labelled) in CACHED.into_iter().zip(kinds) {
            for (instance, member) in labelled {
                // The credentials Secret is written once, in Provisioning: a Database that
                // moves later leaves it labelled for its first owner (see the shard
                // module's caveats); every other child is ensured again when Ready.
                let follows = kind != "Secret";
                if follows && member.as_ref() != owner_of.get(&instance) {
                    strays.push(format!("{kind} of {instance}: {member:?}"));
                }
                *children
                    .entry((member.unwrap_or_default(), kind))
                    .or_default() += 1.0;
            }
        }
        (
            ShardCaches {
                databases,
                children,
            },
            strays,
        )
    }
}

impl ShardCaches {
    /// Checks that a scrape of `member`'s metrics shows its caches holding its share
    /// exactly; else says what differs.
    pub(crate) fn check(&self, scrape: &str, member: &str) -> Result<(), String> {
        let databases =
            format!(r#"kube_reconcile_shard_objects{{ring="databases",member="{member}"}}"#);
        let mut expected = vec![(databases, self.databases.get(member).copied())];
        for kind in CACHED {
            let children = format!(
                r#"kube_reconcile_cached_children{{controller="databases",kind="{kind}"}}"#
            );
            expected.push((
                children,
                self.children.get(&(member.to_owned(), kind)).copied(),
            ));
        }
        for (name, want) in expected {
            if want.is_none() {
                return Err(format!("{member} owns nothing for {name}"));
            }
            let got = series(scrape, &name);
            if got != want {
                return Err(format!("{member}: {name} is {got:?}, not {want:?}"));
            }
        }
        Ok(())
    }
}

/// The shard label the example's replicas write on the Databases (and their children).
pub(crate) const SHARD: &str = "shard.kube-reconcile.dev/databases";

/// `GET http://addr/metrics`, as text.
pub(crate) async fn scrape(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// The value of the series `name{labels}` in a scrape.
pub(crate) fn series(scrape: &str, name_and_labels: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
}

/// The example's operator on the Databases of `namespace`, with the lesson's deadlines
/// and resync, wrapped as `wrap` says.
pub(crate) fn start(
    client: &Client,
    namespace: &str,
    dbaas: example::dbaas::DbaasClient,
    wrap: impl FnOnce(example::Builder) -> example::Builder,
) -> example::Operator {
    let dbaas = example::dbaas(dbaas).unwrap().build();
    let machine =
        example::operator::DatabaseMachine::new(Duration::ZERO, example::operator::READY_RESYNC)
            .unwrap();
    let operator = example::operator(client.clone(), machine).unwrap();
    example::start(
        wrap(operator),
        Api::namespaced(client.clone(), namespace),
        dbaas,
    )
    .unwrap()
}
