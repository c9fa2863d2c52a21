//! The gate and the failure bookkeeping behind [`BackoffHandle`] and [`Backoff`](super::Backoff).

use std::{borrow::Borrow, fmt, hash::Hash, time::Duration};

use crate::{clock::Nanos, error::ErrorClass};

use super::{
    handle::{BackoffHandle, Shared},
    state::{Entry, Failure},
};

impl<Key: Eq + Hash> BackoffHandle<Key> {
    /// The current time on the clock.
    pub(super) fn now(&self) -> Nanos {
        self.shared.clock.now()
    }

    /// Lets an attempt for `key` at generation `observed` start, returning its start time
    /// (`None` if `key` is untracked: the clock is then not read), or the remaining wait.
    pub(super) fn gate<Q>(&self, key: &Q, observed: Option<i64>) -> Result<Option<Nanos>, Duration>
    where
        Key: Borrow<Q>,
        Q: ?Sized + Hash + Eq,
    {
        let Some(entry) = self.shared.store.get(key).map(|entry| *entry) else {
            return Ok(None);
        };
        let now = self.now();
        entry.wait(observed, now).map_or(Ok(Some(now)), Err)
    }

    /// The remaining wait recorded for `key` (zero if due); `None` if not tracked.
    pub(super) fn remaining<Q>(&self, key: &Q) -> Option<Duration>
    where
        Key: Borrow<Q>,
        Q: ?Sized + Hash + Eq,
    {
        let not_before = self.shared.store.get(key)?.not_before;
        Some(not_before.saturating_since(self.now()))
    }

    /// When the next attempt for `key` may start, on the handle's clock; `None` if not
    /// tracked.
    pub(crate) fn not_before<Q>(&self, key: &Q) -> Option<Nanos>
    where
        Key: Borrow<Q>,
        Q: ?Sized + Hash + Eq,
    {
        Some(self.shared.store.get(key)?.not_before)
    }

    /// Records a failure of the attempt for `key` that started at `started` (see
    /// [`Entry::record_failure`]); `to_key` builds the owned key only when it is new.
    pub(super) fn fail<Q>(
        &self,
        key: &Q,
        to_key: impl FnOnce() -> Key,
        class: ErrorClass,
        observed: Option<i64>,
        started: Option<Nanos>,
        label: &dyn fmt::Display,
    ) -> Option<Duration>
    where
        Key: Borrow<Q>,
        Q: ?Sized + Hash + Eq,
    {
        let Shared {
            store, policy, rng, ..
        } = &*self.shared;
        let Some(failure) = Failure::of(class) else {
            store.remove(key);
            tracing::debug!(object = %label, class = %class, "terminal failure, backoff state reset");
            return None;
        };
        let now = self.now();
        let record = |entry: &mut Entry| {
            let delay = entry.record_failure(policy, rng, failure, observed, started, now);
            (entry.failures, delay)
        };
        let (failures, delay) = if let Some(mut entry) = store.get_mut(key) {
            record(&mut entry)
        } else if let Ok(mut entry) =
            store.get_or_insert_with(to_key(), policy.horizon(now), || Entry::fresh(observed))
        {
            record(&mut entry)
        } else {
            tracing::warn!(object = %label, len = store.len(), "backoff store is full, failure not tracked");
            record(&mut Entry::fresh(observed))
        };
        tracing::debug!(object = %label, failures, delay = ?delay, class = %class, "failed, backing off");
        Some(delay)
    }

    /// A copy of `key`'s state, for tests.
    #[cfg(test)]
    pub(super) fn peek<Q>(&self, key: &Q) -> Option<Entry>
    where
        Key: Borrow<Q>,
        Q: ?Sized + Hash + Eq,
    {
        self.shared.store.get(key).map(|entry| *entry)
    }
}
