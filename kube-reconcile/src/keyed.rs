//! A bounded, self-pruning map of per-key middleware state.
//!
//! Backoff and rate limits keep state per object or per key. The map must never grow
//! without bound: entries leave when the caller removes them (success, deletion), and
//! a sweep drops entries whose state has expired (idle past the TTL, or equivalent to
//! fresh state). Sweeps are amortised: at most one per `sweep_every`, run by whichever
//! caller inserts a new key after that interval, so the hot path (an existing key)
//! never sweeps.

use std::{
    borrow::Borrow,
    fmt,
    hash::Hash,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use dashmap::{DashMap, mapref::one::Ref, mapref::one::RefMut};

use crate::clock::{Nanos, duration_to_nanos};

/// State that can tell when it no longer needs to be kept.
pub(crate) trait Expiring {
    /// Whether the entry can be dropped at `now` without changing any decision.
    fn expired(&self, now: Nanos) -> bool;
}

/// The store is full and no entry could be swept to make room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Full;

pub(crate) struct KeyedStore<K, V> {
    map: DashMap<K, V, foldhash::fast::RandomState>,
    max_keys: usize,
    sweep_every: u64,
    last_sweep: AtomicU64,
}

impl<K: Eq + Hash, V: Expiring> KeyedStore<K, V> {
    /// A store of at most `max_keys` entries, swept at most once per `sweep_every`.
    pub(crate) fn new(max_keys: usize, sweep_every: Duration) -> Self {
        KeyedStore {
            map: DashMap::with_hasher(foldhash::fast::RandomState::default()),
            max_keys,
            sweep_every: duration_to_nanos(sweep_every),
            last_sweep: AtomicU64::new(0),
        }
    }

    /// The entry for `key`, if tracked (shared access).
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<Ref<'_, K, V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(key)
    }

    /// The entry for `key`, if tracked (exclusive access).
    pub(crate) fn get_mut<Q>(&self, key: &Q) -> Option<RefMut<'_, K, V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get_mut(key)
    }

    /// The entry for `key`, inserted with `init` if absent.
    ///
    /// Inserting may first sweep expired entries. Fails only when the store is full of
    /// live entries.
    pub(crate) fn get_or_insert_with(
        &self,
        key: K,
        now: Nanos,
        init: impl FnOnce() -> V,
    ) -> Result<RefMut<'_, K, V>, Full> {
        if let Some(entry) = self.map.get_mut(&key) {
            return Ok(entry);
        }
        self.maybe_sweep(now);
        if self.map.len() >= self.max_keys {
            self.sweep(now);
            if self.map.len() >= self.max_keys {
                return Err(Full);
            }
        }
        Ok(self.map.entry(key).or_insert_with(init))
    }

    /// Stops tracking `key`; returns its state if it was tracked.
    pub(crate) fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.remove(key).map(|(_, v)| v)
    }

    /// Drops every entry that has expired at `now`; returns how many are left.
    pub(crate) fn sweep(&self, now: Nanos) -> usize {
        self.last_sweep.store(now.as_raw(), Ordering::Relaxed);
        self.map.retain(|_, v| !v.expired(now));
        self.map.len()
    }

    fn maybe_sweep(&self, now: Nanos) {
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now.as_raw().saturating_sub(last) >= self.sweep_every
            && self
                .last_sweep
                .compare_exchange(last, now.as_raw(), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.map.retain(|_, v| !v.expired(now));
        }
    }

    /// How many keys are tracked (including expired ones not yet swept).
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

impl<K: Eq + Hash, V> fmt::Debug for KeyedStore<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedStore")
            .field("len", &self.map.len())
            .field("max_keys", &self.max_keys)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Until(Nanos);
    impl Expiring for Until {
        fn expired(&self, now: Nanos) -> bool {
            now >= self.0
        }
    }

    #[test]
    fn expired_entries_are_swept_when_a_new_key_arrives_after_the_interval() {
        let store = KeyedStore::<String, Until>::new(100, Duration::from_secs(1));
        let at = |s| Nanos::ZERO.saturating_add(Duration::from_secs(s));
        drop(
            store
                .get_or_insert_with("a".into(), at(0), || Until(at(5)))
                .unwrap(),
        );
        drop(
            store
                .get_or_insert_with("b".into(), at(0), || Until(at(50)))
                .unwrap(),
        );
        drop(
            store
                .get_or_insert_with("c".into(), at(10), || Until(at(60)))
                .unwrap(),
        );
        assert!(store.get("a").is_none());
        assert_eq!(store.len(), 2);
        assert_eq!(store.sweep(at(100)), 0);
    }

    #[test]
    fn a_full_store_refuses_new_keys_but_keeps_live_ones() {
        let store = KeyedStore::<u32, Until>::new(2, Duration::from_secs(1));
        let later = Nanos::from_raw(u64::MAX);
        drop(
            store
                .get_or_insert_with(1, Nanos::ZERO, || Until(later))
                .unwrap(),
        );
        drop(
            store
                .get_or_insert_with(2, Nanos::ZERO, || Until(later))
                .unwrap(),
        );
        assert!(
            store
                .get_or_insert_with(3, Nanos::ZERO, || Until(later))
                .is_err()
        );
        assert!(
            store
                .get_or_insert_with(1, Nanos::ZERO, || Until(later))
                .is_ok()
        );
    }
}
