//! The instances the simulated DBaaS holds, and their asynchronous life.
//!
//! Nothing runs in the background: every record carries the instant its transitional state
//! ends, and every read first [settles](Store::settle) the records whose time has come. The
//! outcome is the same as timers would give, costs no tasks, and follows paused tokio time.

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, SystemTime},
};

use tokio::time::Instant;

use super::super::api::{Instance, InstancePatch, InstanceSpec, InstanceState};
use super::{Rejection, offer::validate, rfc3339::rfc3339};

/// How long the asynchronous transitions take.
#[derive(Clone, Copy, Debug)]
pub(super) struct Timing {
    pub(super) provision: Duration,
    pub(super) update: Duration,
    pub(super) delete: Duration,
    /// Each transition takes up to this much longer, uniformly.
    pub(super) jitter: Duration,
}

#[derive(Debug)]
struct Record {
    instance: Instance,
    /// The endpoint it will have once ready.
    endpoint: String,
    /// When the current transitional state ends.
    settles_at: Option<Instant>,
}

/// What the idempotency key was used for.
#[derive(Debug)]
enum KeyUse {
    Live(String),
    Deleted(String),
}

/// Instances by id, idempotency keys, and the lifetime counters.
#[derive(Debug)]
pub(super) struct Store {
    instances: BTreeMap<String, Record>,
    keys: HashMap<String, KeyUse>,
    timing: Timing,
    rng: fastrand::Rng,
    pub(super) created: u64,
    pub(super) deleted: u64,
}

impl Store {
    pub(super) fn new(timing: Timing, seed: u64) -> Self {
        Store {
            instances: BTreeMap::new(),
            keys: HashMap::new(),
            timing,
            rng: fastrand::Rng::with_seed(seed),
            created: 0,
            deleted: 0,
        }
    }

    /// Ends every transition due by `now`: creating and updating become ready, deleting goes.
    pub(super) fn settle(&mut self, now: Instant) {
        let mut gone = Vec::new();
        for (id, record) in &mut self.instances {
            if record.settles_at.is_none_or(|at| at > now) {
                continue;
            }
            record.settles_at = None;
            match record.instance.state {
                InstanceState::Creating | InstanceState::Updating => {
                    record.instance.state = InstanceState::Ready;
                    record.instance.endpoint = Some(record.endpoint.clone());
                }
                InstanceState::Deleting => gone.push(id.clone()),
                InstanceState::Ready => {}
            }
        }
        for id in gone {
            if let Some(record) = self.instances.remove(&id) {
                self.keys
                    .insert(record.instance.idempotency_key, KeyUse::Deleted(id));
                self.deleted += 1;
            }
        }
    }

    /// Creates an instance for `key`, or returns the one `key` already created (`false`).
    pub(super) fn create(
        &mut self,
        key: &str,
        spec: InstanceSpec,
        now: Instant,
    ) -> Result<(Instance, bool), Rejection> {
        match self.keys.get(key) {
            Some(KeyUse::Live(id)) => {
                let record = self
                    .instances
                    .get(id)
                    .expect("a live key names a stored instance");
                return Ok((record.instance.clone(), false));
            }
            Some(KeyUse::Deleted(id)) => {
                return Err(Rejection::new(
                    422,
                    "idempotency_key_consumed",
                    format!(
                        "idempotency key {key:?} created instance {id}, which has been deleted; use a new key"
                    ),
                ));
            }
            None => {}
        }
        let port = validate(&spec)?;
        let id = loop {
            let id = format!("db-{:012x}", self.rng.u64(..) >> 16);
            if !self.instances.contains_key(&id) && !self.keys.values().any(|used| used.id() == id)
            {
                break id;
            }
        };
        let instance = Instance {
            endpoint: None,
            state: InstanceState::Creating,
            created_at: rfc3339(SystemTime::now()),
            idempotency_key: key.to_owned(),
            id: id.clone(),
            name: spec.name,
            engine: spec.engine,
            version: spec.version,
            storage_gi: spec.storage_gi,
            replicas: spec.replicas,
        };
        let record = Record {
            endpoint: format!("{}-{}.dbaas.internal:{port}", instance.name, &id[3..9]),
            settles_at: Some(now + self.delay(self.timing.provision)),
            instance: instance.clone(),
        };
        self.instances.insert(id.clone(), record);
        self.keys.insert(key.to_owned(), KeyUse::Live(id));
        self.created += 1;
        Ok((instance, true))
    }

    /// The live instance `key` created, if any.
    pub(super) fn find_by_key(&self, key: &str) -> Option<Instance> {
        match self.keys.get(key)? {
            KeyUse::Live(id) => self.instances.get(id).map(|r| r.instance.clone()),
            KeyUse::Deleted(_) => None,
        }
    }

    /// Every instance, by id.
    pub(super) fn list(&self) -> Vec<Instance> {
        self.instances
            .values()
            .map(|r| r.instance.clone())
            .collect()
    }

    pub(super) fn len(&self) -> usize {
        self.instances.len()
    }

    pub(super) fn get(&self, id: &str) -> Result<Instance, Rejection> {
        self.instances
            .get(id)
            .map(|r| r.instance.clone())
            .ok_or_else(|| not_found(id))
    }

    /// Applies `patch`; returns the instance and whether anything changed.
    pub(super) fn update(
        &mut self,
        id: &str,
        patch: InstancePatch,
        now: Instant,
    ) -> Result<(Instance, bool), Rejection> {
        let delay = self.delay(self.timing.update);
        let record = self.instances.get_mut(id).ok_or_else(|| not_found(id))?;
        let current = &record.instance;
        if current.state == InstanceState::Deleting {
            return Err(Rejection::new(
                409,
                "instance_deleting",
                format!("instance {id} is being deleted"),
            ));
        }
        let mut next = current.spec();
        if let Some(engine) = patch.engine
            && engine != current.engine
        {
            return Err(Rejection::new(
                422,
                "engine_immutable",
                format!(
                    "the engine of instance {id} is {} and cannot change to {engine}",
                    current.engine
                ),
            ));
        }
        next.version = patch.version.unwrap_or(next.version);
        next.storage_gi = patch.storage_gi.unwrap_or(next.storage_gi);
        next.replicas = patch.replicas.unwrap_or(next.replicas);
        validate(&next)?;
        if next.storage_gi < current.storage_gi {
            return Err(Rejection::new(
                422,
                "storage_shrink",
                format!(
                    "storage can grow but not shrink ({} GiB to {} GiB)",
                    current.storage_gi, next.storage_gi
                ),
            ));
        }
        if next == current.spec() {
            return Ok((current.clone(), false));
        }
        let instance = &mut record.instance;
        instance.version = next.version;
        instance.storage_gi = next.storage_gi;
        instance.replicas = next.replicas;
        if instance.state != InstanceState::Creating {
            instance.state = InstanceState::Updating;
        }
        record.settles_at = Some(
            record
                .settles_at
                .map_or(now + delay, |at| at.max(now + delay)),
        );
        Ok((record.instance.clone(), true))
    }

    /// Starts deleting `id` (again, if already deleting).
    pub(super) fn delete(&mut self, id: &str, now: Instant) -> Result<Instance, Rejection> {
        let delay = self.delay(self.timing.delete);
        let record = self.instances.get_mut(id).ok_or_else(|| not_found(id))?;
        if record.instance.state != InstanceState::Deleting {
            record.instance.state = InstanceState::Deleting;
            record.settles_at = Some(now + delay);
        }
        Ok(record.instance.clone())
    }

    /// `base` plus up to the configured jitter.
    fn delay(&mut self, base: Duration) -> Duration {
        let jitter = u64::try_from(self.timing.jitter.as_nanos()).unwrap_or(u64::MAX);
        base + Duration::from_nanos(self.rng.u64(0..=jitter))
    }
}

impl KeyUse {
    fn id(&self) -> &str {
        match self {
            KeyUse::Live(id) | KeyUse::Deleted(id) => id,
        }
    }
}

fn not_found(id: &str) -> Rejection {
    Rejection::new(404, "not_found", format!("instance {id} does not exist"))
}
