//! Sharding on the embedded API server with paused time: three members share the
//! objects of a kind, a member that joins takes its share only after the owners handed
//! it over, a released member's objects move at once and a crashed member's after its
//! lease expires; and no object is ever reconciled by two members at once.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::api::{coordination::v1::Lease, core::v1::ConfigMap};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, PostParams},
    runtime::{Controller, controller::Action, watcher},
};
use kube_reconcile::{
    ControllerExt, ReconcilerExt,
    leader::LeaseConfig,
    shard::{ShardConfig, ShardHandle},
};
use kube_reconcile_testing::ApiServer;
use tokio::{task::JoinHandle, time::Instant};

const LABEL: &str = "shard.kube-reconcile.dev/configmaps";
const DRAIN: &str = "drain.kube-reconcile.dev/configmaps";
const LEASE: Duration = Duration::from_secs(15);

/// Who reconciled what, and every moment two members reconciled one object at once.
#[derive(Debug, Default)]
struct Log {
    in_flight: HashMap<String, &'static str>,
    reconciled: HashMap<String, &'static str>,
    overlaps: Vec<String>,
}

type Shared = Arc<Mutex<Log>>;

struct Ctx {
    member: &'static str,
    log: Shared,
}

fn lock(log: &Shared) -> std::sync::MutexGuard<'_, Log> {
    log.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Marks a reconcile finished, also when it is cancelled (its member crashed).
struct InFlight<'a>(&'a Shared, String);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        lock(self.0).in_flight.remove(&self.1);
    }
}

/// Takes a while, so two members reconciling one object at once would be seen.
async fn reconcile(cm: Arc<ConfigMap>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    let name = cm.name_any();
    {
        let mut log = lock(&ctx.log);
        if let Some(other) = log.in_flight.insert(name.clone(), ctx.member) {
            let overlap = format!("{name}: {other} and {}", ctx.member);
            log.overlaps.push(overlap);
        }
        log.reconciled.insert(name.clone(), ctx.member);
    }
    let _running = InFlight(&ctx.log, name);
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(Action::requeue(Duration::from_secs(1)))
}

/// A member: its handle and its controller's task.
struct Member {
    shard: ShardHandle,
    controller: JoinHandle<()>,
}

async fn member(client: &Client, name: &'static str, log: &Shared) -> Member {
    let config = ShardConfig::new(LeaseConfig::new("default", "configmaps").identity(name))
        .objects_namespace("default");
    let shard = ShardHandle::join::<ConfigMap>(client.clone(), config)
        .await
        .expect("joins the ring");
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let ctx = Arc::new(Ctx {
        member: name,
        log: Arc::clone(log),
    });
    let controller = tokio::spawn(
        Controller::new(api, shard.watcher_config(watcher::Config::default()))
            .run_reconciler(reconcile.with(shard.layer(client.clone())), ctx)
            .for_each(|_| async {}),
    );
    Member { shard, controller }
}

/// Who holds the Lease `name`: the ring's (`configmaps`) names the assigner, a member's
/// (`configmaps-<member>`) the member while it is one.
async fn holder(client: &Client, name: &str) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let lease = leases.get(name).await.expect("the Lease");
    lease.spec.and_then(|spec| spec.holder_identity)
}

async fn create(client: &Client, n: usize) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..n {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(format!("cm-{i:04}"));
        api.create(&PostParams::default(), &cm)
            .await
            .expect("create");
    }
}

/// Owner label → objects, from the server.
async fn owners(client: &Client) -> BTreeMap<String, usize> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut out = BTreeMap::new();
    for cm in api.list(&ListParams::default()).await.expect("list").items {
        let owner = cm.labels().get(LABEL).cloned().unwrap_or_default();
        *out.entry(owner).or_default() += 1;
    }
    out
}

/// Waits (up to a virtual minute) until every object is labelled for one of `members`
/// (each owning some, none being drained) and was last reconciled by its owner; returns
/// the owners.
async fn settled(
    client: &Client,
    log: &Shared,
    members: &[&str],
    n: usize,
) -> BTreeMap<String, usize> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for _ in 0..600 {
        let list = api.list(&ListParams::default()).await.expect("list").items;
        let holds = |m: &str| {
            list.iter()
                .any(|cm| cm.labels().get(LABEL).map(String::as_str) == Some(m))
        };
        let done = list.len() == n
            && members.iter().all(|m| holds(m))
            && list.iter().all(|cm| {
                let label = cm.labels().get(LABEL).map(String::as_str);
                label.is_some_and(|o| members.contains(&o))
                    && !cm.labels().contains_key(DRAIN)
                    && lock(log).reconciled.get(&cm.name_any()).copied() == label
            });
        if done {
            return owners(client).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never settled on {members:?}: {:?}", owners(client).await);
}

fn assert_share(owners: &BTreeMap<String, usize>, members: usize, n: usize) {
    let fair = n / members;
    for (member, owned) in owners {
        assert!(
            owned * 4 >= fair * 3 && owned * 4 <= fair * 5,
            "{member} owns {owned} of {n}, not within 25 % of {fair}: {owners:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn three_members_share_the_objects_and_never_reconcile_one_together() {
    let server = ApiServer::new();
    let client = server.client();
    let log = Shared::default();
    create(&client, 300).await;
    let _a = member(&client, "a", &log).await;
    let _b = member(&client, "b", &log).await;
    let _c = member(&client, "c", &log).await;
    let owners = settled(&client, &log, &["a", "b", "c"], 300).await;
    assert_eq!(owners.len(), 3, "{owners:?}");
    assert_share(&owners, 3, 300);
    // Keep reconciling for a while: every object is reconciled every second.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(lock(&log).overlaps, Vec::<String>::new());
}

#[tokio::test(start_paused = true)]
async fn a_joining_member_takes_its_share_only_after_the_owners_hand_it_over() {
    let server = ApiServer::new();
    let client = server.client();
    let log = Shared::default();
    create(&client, 300).await;
    let a = member(&client, "a", &log).await;
    let b = member(&client, "b", &log).await;
    settled(&client, &log, &["a", "b"], 300).await;
    let before = a.shard.handed_over() + b.shard.handed_over();
    let c = member(&client, "c", &log).await;
    let owners = settled(&client, &log, &["a", "b", "c"], 300).await;
    assert_share(&owners, 3, 300);
    let moved = owners["c"];
    assert_eq!(
        a.shard.handed_over() + b.shard.handed_over() - before,
        u64::try_from(moved).unwrap(),
        "every object c took was handed over by its owner first"
    );
    assert_eq!(c.shard.handed_over(), 0);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(lock(&log).overlaps, Vec::<String>::new());
}

#[tokio::test(start_paused = true)]
async fn a_released_member_leaves_at_once_and_a_crashed_one_after_its_lease() {
    let server = ApiServer::new();
    let client = server.client();
    let log = Shared::default();
    create(&client, 240).await;
    let _a = member(&client, "a", &log).await;
    let b = member(&client, "b", &log).await;
    let c = member(&client, "c", &log).await;
    settled(&client, &log, &["a", "b", "c"], 240).await;

    // Released: its objects move within a few polls, long before its lease would expire.
    let released = Instant::now();
    c.shard.release().await.expect("released");
    c.controller.abort();
    settled(&client, &log, &["a", "b"], 240).await;
    assert!(
        released.elapsed() < LEASE / 2,
        "moved after {:?}",
        released.elapsed()
    );

    // Crashed (handle dropped, controller gone, Lease not released): its objects move
    // once its Lease has gone unchanged for the lease duration, not before.
    let Member { shard, controller } = b;
    controller.abort();
    drop(shard);
    let crashed = Instant::now();
    settled(&client, &log, &["a"], 240).await;
    let took = crashed.elapsed();
    assert!(
        took + Duration::from_secs(2) >= LEASE,
        "moved after {took:?}, before the lease expired"
    );
    assert!(
        took <= LEASE + Duration::from_secs(5),
        "moved after {took:?}"
    );
    assert_eq!(
        holder(&client, "configmaps-a").await.as_deref(),
        Some("a"),
        "the member that kept renewing is still one"
    );
    assert_eq!(lock(&log).overlaps, Vec::<String>::new());
}

#[tokio::test(start_paused = true)]
async fn when_the_assigner_crashes_its_objects_move_after_one_lease_duration_not_two() {
    let server = ApiServer::new();
    let client = server.client();
    let log = Shared::default();
    create(&client, 240).await;
    let a = member(&client, "a", &log).await;
    a.shard.joined().await;
    let _b = member(&client, "b", &log).await;
    let _c = member(&client, "c", &log).await;
    settled(&client, &log, &["a", "b", "c"], 240).await;
    assert_eq!(
        holder(&client, "configmaps").await.as_deref(),
        Some("a"),
        "the first member to join assigns"
    );
    let Member { shard, controller } = a;
    controller.abort();
    drop(shard);
    let crashed = Instant::now();
    // Another member takes the ring's Lease a lease duration after the crash, and
    // already knows the crashed member's Lease went unchanged as long.
    settled(&client, &log, &["b", "c"], 240).await;
    let took = crashed.elapsed();
    assert!(
        took <= LEASE + Duration::from_secs(5),
        "moved after {took:?}"
    );
    assert_eq!(lock(&log).overlaps, Vec::<String>::new());
}

#[tokio::test(start_paused = true)]
async fn names_that_cannot_label_an_object_are_refused() {
    use kube_reconcile::leader::LeaderError;
    let server = ApiServer::new();
    for (config, field) in [
        (
            ShardConfig::new(LeaseConfig::new("default", "Config_Maps")),
            "ring",
        ),
        (
            ShardConfig::new(LeaseConfig::new("default", "configmaps").identity("pod.7")),
            "identity",
        ),
        (
            ShardConfig::new(LeaseConfig::new("default", "configmaps").identity("-a")),
            "identity",
        ),
    ] {
        let shown = format!("{config:?}");
        match ShardHandle::join::<ConfigMap>(server.client(), config).await {
            Err(LeaderError::InvalidName { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{shown}: {:?}", other.map(|_| "joined")),
        }
    }
    let joined = ShardHandle::join::<ConfigMap>(
        server.client(),
        ShardConfig::new(LeaseConfig::new("default", "configmaps")),
    )
    .await;
    assert!(joined.is_ok(), "the default identity is a valid label");
}
