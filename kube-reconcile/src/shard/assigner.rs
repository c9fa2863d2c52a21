//! The assigner: the member elected on the ring's Lease labels every object with its
//! owner, drains objects off a live owner before moving them, and moves the objects of
//! an owner whose Lease expired.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use futures_util::{StreamExt as _, stream};
use k8s_openapi::api::coordination::v1::Lease;
use kube::{
    Api, Client,
    core::{ApiResource, DynamicObject, PartialObjectMeta},
    runtime::{WatchStreamExt as _, reflector, watcher},
};
use serde_json::{Value, json};

/// The metadata of an object of the ring's kind: all the assigner keeps of it.
type Meta = PartialObjectMeta<DynamicObject>;

use super::{
    ShardConfig,
    handle::{ShardEvent, Shared},
    labels::relabel,
    ring::Ring,
};
use crate::leader::record::{self, Observation};

/// What the assigner does to one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Move {
    /// Label it with this owner (and clear any drain request).
    Assign(String),
    /// Ask its live owner to hand it over.
    Drain,
    /// Its owner is right after all: withdraw the drain request.
    Keep,
}

/// An object as the assigner sees it: its key, its owner label and whether a drain
/// was asked for.
#[derive(Clone, Debug)]
pub(crate) struct Seen<'a> {
    pub(crate) key: &'a str,
    pub(crate) owner: Option<&'a str>,
    pub(crate) draining: bool,
}

/// What to do to `object` given the `live` members and their `ring`.
pub(crate) fn plan(object: &Seen<'_>, live: &BTreeSet<String>, ring: &Ring) -> Option<Move> {
    let wanted = ring.owner(object.key)?;
    match object.owner {
        Some(owner) if owner == wanted => object.draining.then_some(Move::Keep),
        // Not labelled yet, or labelled for a member whose Lease ran out (or was released):
        // that member reconciles nothing any more, so the object moves at once.
        None => Some(Move::Assign(wanted.to_owned())),
        Some(owner) if !live.contains(owner) => Some(Move::Assign(wanted.to_owned())),
        // A live owner first hands the object over (it drops its labels), then it moves.
        Some(_) => (!object.draining).then_some(Move::Drain),
    }
}

/// The live members: holders of the ring's Leases whose records changed within their
/// lease duration by the local clock (as a candidate judges a leader).
struct Members {
    seen: BTreeMap<String, Observation>,
    fallback: Duration,
}

impl Members {
    /// Notes a version of a member's Lease, seen now.
    fn see(&mut self, lease: &Lease, now: crate::clock::Nanos) {
        if let Some(name) = &lease.metadata.name {
            self.seen.entry(name.clone()).or_default().see(lease, now);
        }
    }

    fn live(&mut self, leases: &[Arc<Lease>], now: crate::clock::Nanos) -> BTreeSet<String> {
        let mut live = BTreeSet::new();
        let mut present = BTreeSet::new();
        for lease in leases {
            let Some(name) = lease.metadata.name.clone() else {
                continue;
            };
            let seen = self.seen.entry(name.clone()).or_default();
            seen.see(lease, now);
            present.insert(name);
            if let Some(holder) = record::holder(lease)
                && now < seen.expiry(lease, self.fallback)
            {
                live.insert(holder.to_owned());
            }
        }
        self.seen.retain(|name, _| present.contains(name));
        live
    }
}

/// Runs the assigner whenever this process leads the ring's election, until the
/// handle's last clone is gone.
///
/// Every member watches the ring's Leases all the time, not only while it assigns:
/// a member that takes over as the assigner (after the previous one died) then knows
/// how long each Lease has gone unchanged, instead of waiting a lease duration more.
pub(super) async fn run(client: Client, shared: Arc<Shared>, resource: ApiResource) {
    let config = &shared.config;
    let (leases, leases_writer) = reflector::store::<Lease>();
    let selector = format!("{}={}", ShardConfig::RING_LABEL, config.ring());
    let lease_api: Api<Lease> = Api::namespaced(client.clone(), config.namespace());
    let members = Mutex::new(Members {
        seen: BTreeMap::new(),
        fallback: config.lease.lease_duration,
    });
    let leases_watch = reflector(
        leases_writer,
        watcher(lease_api, watcher::Config::default().labels(&selector)),
    )
    .default_backoff()
    .applied_objects()
    .for_each(|lease| {
        if let Ok(lease) = lease {
            let now = config.lease.clock.now();
            lock(&members).see(&lease, now);
        }
        async {}
    });
    let assign = async {
        loop {
            shared.assigner.leading().await;
            tracing::info!(
                ring = config.ring(),
                "assigning objects to the ring's members"
            );
            let _ = leases.wait_until_ready().await;
            assign_while_leading(&client, &shared, &resource, &leases, &members).await;
            tracing::info!(ring = config.ring(), "no longer assigning objects");
        }
    };
    // The member's own count, also between its reconciles (after a hand-over, a delete).
    let recount = async {
        loop {
            tokio::time::sleep(config.lease.retry_period / 4).await;
            shared.recount();
        }
    };
    tokio::select! {
        () = leases_watch => {}
        () = assign => {}
        () = recount => {}
    }
}

fn lock(members: &Mutex<Members>) -> MutexGuard<'_, Members> {
    // Every critical section leaves the map consistent.
    members.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How long a round waits after a change to the objects, for the changes that come with
/// it (objects created in a burst), before it assigns them.
const BATCH: std::time::Duration = std::time::Duration::from_millis(20);

async fn assign_while_leading(
    client: &Client,
    shared: &Arc<Shared>,
    resource: &ApiResource,
    leases: &reflector::Store<Lease>,
    members: &Mutex<Members>,
) {
    let config = &shared.config;
    let objects_writer = reflector::store::Writer::<Meta>::new(resource.clone());
    let objects = objects_writer.as_reader();
    let metas: Api<Meta> = match config.objects_namespace.as_deref() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    };
    // A change to the objects (a new one, an owner's label written) starts a round soon,
    // instead of at the next period: a new object waits for its owner for about
    // `BATCH`, not half a period on average.
    let changed = tokio::sync::Notify::new();
    let objects_watch = reflector(objects_writer, watcher(metas, watcher::Config::default()))
        .default_backoff()
        .for_each(|_| {
            changed.notify_one();
            async {}
        });
    let rounds = async {
        let _ = objects.wait_until_ready().await;
        let mut ring = Ring::default();
        let period = config.lease.retry_period / 4;
        while shared.assigner.is_leader() {
            let live = lock(members).live(&leases.state(), config.lease.clock.now());
            if ring.members().iter().ne(live.iter()) {
                tracing::info!(ring = config.ring(), members = ?live, "ring membership changed");
                ring = Ring::new(live.iter().map(String::as_str), config.virtual_nodes.get());
            }
            let moves = round(&objects.state(), &live, &ring, config);
            stream::iter(moves)
                .for_each_concurrent(16, |(object, step)| async move {
                    if !shared.assigner.is_leader() {
                        return;
                    }
                    let written = apply(client, resource, &object, &step, config).await;
                    if written && matches!(step, Move::Assign(_)) {
                        shared.record(ShardEvent::Assigned);
                    }
                })
                .await;
            let clock = &config.lease.clock;
            tokio::select! {
                () = tokio::time::sleep_until(clock.instant_at(clock.now().saturating_add(period))) => {}
                () = changed.notified() => {
                    // Let the objects created together arrive, to label them in one round.
                    tokio::time::sleep_until(clock.instant_at(clock.now().saturating_add(BATCH))).await;
                }
            }
        }
    };
    tokio::select! {
        () = objects_watch => {}
        () = rounds => {}
    }
}

/// The moves of one pass over every object.
fn round(
    objects: &[Arc<Meta>],
    live: &BTreeSet<String>,
    ring: &Ring,
    config: &ShardConfig,
) -> Vec<(Arc<Meta>, Move)> {
    let (shard, drain) = (config.shard_label(), config.drain_label());
    let mut out = Vec::new();
    for object in objects {
        let meta = &object.metadata;
        let key = format!(
            "{}/{}",
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default()
        );
        let labels = meta.labels.as_ref();
        let seen = Seen {
            key: &key,
            owner: labels.and_then(|l| l.get(&shard)).map(String::as_str),
            draining: labels.is_some_and(|l| l.contains_key(&drain)),
        };
        if let Some(step) = plan(&seen, live, ring) {
            out.push((Arc::clone(object), step));
        }
    }
    out
}

/// Writes one move, conditional on the version the assigner saw; whether it was written.
async fn apply(
    client: &Client,
    resource: &ApiResource,
    object: &Meta,
    step: &Move,
    config: &ShardConfig,
) -> bool {
    let (shard, drain) = (config.shard_label(), config.drain_label());
    let labels: Value = match step {
        Move::Assign(owner) => json!({ shard: owner, drain: null }),
        Move::Drain => json!({ drain: "true" }),
        Move::Keep => json!({ drain: null }),
    };
    let name = object.metadata.name.as_deref().unwrap_or_default();
    match relabel(client, resource, &object.metadata, labels).await {
        Ok(()) => {
            tracing::debug!(object = name, ?step, "shard label written");
            true
        }
        // Changed or gone since the assigner saw it: the next pass sees the new version.
        Err(kube::Error::Api(e)) if matches!(e.code, 404 | 409) => false,
        Err(error) => {
            tracing::warn!(object = name, ?step, %error, "writing the shard label failed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(members: &[&str]) -> BTreeSet<String> {
        members.iter().map(|m| (*m).to_owned()).collect()
    }

    fn seen<'a>(key: &'a str, owner: Option<&'a str>, draining: bool) -> Seen<'a> {
        Seen {
            key,
            owner,
            draining,
        }
    }

    #[test]
    fn unlabelled_objects_and_those_of_expired_members_move_at_once() {
        let members = live(&["a", "b"]);
        let ring = Ring::new(["a", "b"], 64);
        let wanted = ring.owner("ns/x").unwrap().to_owned();
        assert_eq!(
            plan(&seen("ns/x", None, false), &members, &ring),
            Some(Move::Assign(wanted.clone()))
        );
        assert_eq!(
            plan(&seen("ns/x", Some("gone"), true), &members, &ring),
            Some(Move::Assign(wanted))
        );
    }

    #[test]
    fn an_object_of_a_live_member_is_drained_before_it_moves() {
        let members = live(&["a", "b"]);
        let ring = Ring::new(["a", "b"], 64);
        let wanted = ring.owner("ns/x").unwrap();
        let other = if wanted == "a" { "b" } else { "a" };
        assert_eq!(
            plan(&seen("ns/x", Some(other), false), &members, &ring),
            Some(Move::Drain)
        );
        assert_eq!(
            plan(&seen("ns/x", Some(other), true), &members, &ring),
            None,
            "waits for the hand-over"
        );
        assert_eq!(
            plan(&seen("ns/x", Some(wanted), false), &members, &ring),
            None
        );
        assert_eq!(
            plan(&seen("ns/x", Some(wanted), true), &members, &ring),
            Some(Move::Keep)
        );
    }

    #[test]
    fn without_members_nothing_moves() {
        assert_eq!(
            plan(
                &seen("ns/x", Some("a"), false),
                &live(&[]),
                &Ring::default()
            ),
            None
        );
    }
}
