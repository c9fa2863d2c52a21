//! [`KeyedLimiter`]: one GCRA cell per key, in a bounded, self-pruning map.

use std::{
    borrow::Borrow,
    fmt,
    hash::Hash,
    num::{NonZeroU32, NonZeroUsize},
    time::Duration,
};

use dashmap::mapref::one::Ref;

use super::{
    error::{CheckError, RateLimited},
    gcra::{Gcra, Reservation},
    limiter::{fits, limited},
    quota::Quota,
};
use crate::{
    clock::{Clock, Nanos},
    keyed::{Expiring, KeyedStore},
};

/// A rate limiter with one GCRA cell per key, in a bounded, self-pruning map.
///
/// A key's cell is dropped once it is full again (its theoretical arrival time has
/// passed), which is indistinguishable from never having seen the key, so pruning
/// changes no decision. Pruning is amortised over the arrival of new keys (at most once
/// per refill time, between one second and one minute apart); [`sweep`](Self::sweep)
/// runs it on demand. At most `max_keys` keys are tracked; a new key beyond that is
/// refused ([`RateLimited`]) until cells expire.
///
/// Checking an existing key does not allocate: look it up by any borrowed form
/// (`&str` for `String` keys).
///
/// # Examples
///
/// ```
/// use std::num::NonZeroU32;
/// use kube_reconcile::{testing::ManualClock, middleware::rate_limit::{KeyedLimiter, Quota}};
///
/// let manual = ManualClock::new();
/// let _entered = manual.enter();
/// let limiter = KeyedLimiter::<String>::new(Quota::per_minute(NonZeroU32::new(1).unwrap()));
/// assert!(limiter.check_key("tenant-a").is_ok());
/// assert!(limiter.check_key("tenant-a").is_err());
/// assert!(limiter.check_key("tenant-b").is_ok());
/// assert_eq!(limiter.len(), 2);
///
/// manual.advance(std::time::Duration::from_secs(60));
/// assert_eq!(limiter.sweep(), 0);
/// ```
#[doc(hidden)]
pub struct KeyedLimiter<Key> {
    quota: Quota,
    clock: Clock,
    max_keys: usize,
    store: KeyedStore<Key, Gcra>,
}

/// The default bound on keys tracked by a [`KeyedLimiter`].
pub(super) const DEFAULT_MAX_KEYS: NonZeroUsize =
    NonZeroUsize::new(100_000).expect("100 000 is not zero");

impl Expiring for Gcra {
    fn expired(&self, now: Nanos) -> bool {
        self.is_full(now)
    }
}

impl<Key: Hash + Eq> KeyedLimiter<Key> {
    /// An empty limiter giving each key `quota`, reading the tokio clock.
    pub fn new(quota: Quota) -> Self {
        KeyedLimiter {
            quota,
            clock: Clock::default(),
            max_keys: DEFAULT_MAX_KEYS.get(),
            store: KeyedStore::new(DEFAULT_MAX_KEYS.get(), sweep_every(&quota)),
        }
    }

    /// The same limiter reading `clock`.
    ///
    /// # Default
    ///
    /// [`Clock::tokio`], taken when the limiter is created.
    #[must_use]
    pub(crate) fn clock(self, clock: Clock) -> Self {
        KeyedLimiter { clock, ..self }
    }

    /// An empty limiter like this one that tracks at most `max_keys` keys.
    ///
    /// Keys tracked so far are forgotten; set this when building the limiter.
    ///
    /// # Default
    ///
    /// 100 000 keys.
    #[must_use]
    pub fn max_keys(self, max_keys: NonZeroUsize) -> Self {
        KeyedLimiter {
            max_keys: max_keys.get(),
            store: KeyedStore::new(max_keys.get(), sweep_every(&self.quota)),
            ..self
        }
    }

    /// Takes one cell from `key`'s limit.
    ///
    /// # Errors
    ///
    /// [`RateLimited`] with the exact wait; nothing is taken. A new key finds no room
    /// while [`max_keys`](Self::max_keys) live keys are tracked: it waits until they
    /// have all refilled (one refill time).
    pub fn check_key<Q>(&self, key: &Q) -> Result<(), RateLimited>
    where
        Key: Borrow<Q>,
        Q: Hash + Eq + ToOwned + ?Sized,
        Q::Owned: Into<Key>,
    {
        // One cell always fits a burst, so every refusal has a wait.
        self.check_key_n(key, NonZeroU32::MIN)
            .map_err(|e| RateLimited::new(e.retry_after().unwrap_or_default()))
    }

    /// Takes `n` cells from `key`'s limit at once, or none.
    ///
    /// # Errors
    ///
    /// [`CheckError::RateLimited`] with the exact wait, [`CheckError::TooManyKeys`] for a
    /// new key when the limiter is full of live keys, or
    /// [`CheckError::InsufficientCapacity`] if `n` exceeds the burst.
    pub(crate) fn check_key_n<Q>(&self, key: &Q, n: NonZeroU32) -> Result<(), CheckError>
    where
        Key: Borrow<Q>,
        Q: Hash + Eq + ToOwned + ?Sized,
        Q::Owned: Into<Key>,
    {
        fits(&self.quota, n)?;
        self.reserve_with(key, || key.to_owned().into(), n, self.clock.now())
            .map(drop)
    }

    /// The free capacity of `key` now (a key not tracked is full).
    #[cfg(test)]
    pub(crate) fn capacity<Q>(&self, key: &Q) -> super::gcra::Capacity
    where
        Key: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = self.clock.now();
        match self.store.get(key) {
            Some(cell) => cell.capacity(&self.quota, now),
            None => Gcra::default().capacity(&self.quota, now),
        }
    }

    /// How many keys are tracked, including full ones not yet pruned.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every key whose limit is full again; returns how many are left.
    pub fn sweep(&self) -> usize {
        self.store.sweep(self.clock.now())
    }

    /// The quota each key gets.
    pub(crate) const fn quota(&self) -> Quota {
        self.quota
    }

    /// Reserves `n` cells of `key` at `now` (read from this limiter's clock), inserting
    /// the key with `make` if new; the reservation keeps the key's shard read-locked
    /// until it is dropped or rolled back.
    pub(super) fn reserve_with<Q>(
        &self,
        key: &Q,
        make: impl FnOnce() -> Key,
        n: NonZeroU32,
        now: Nanos,
    ) -> Result<KeyedReservation<'_, Key>, CheckError>
    where
        Key: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let cell = match self.store.get(key) {
            Some(cell) => cell,
            None => match self.store.get_or_insert_with(make(), now, Gcra::default) {
                Ok(cell) => cell.downgrade(),
                Err(_full) => {
                    return Err(CheckError::TooManyKeys {
                        max_keys: self.max_keys,
                        retry_after: self.quota.refill_time(),
                    });
                }
            },
        };
        match cell.reserve(&self.quota, n, now) {
            Ok(reservation) => Ok(KeyedReservation {
                cell,
                reservation,
                clock: &self.clock,
            }),
            Err(wait) => Err(limited(wait)),
        }
    }

    /// How long until `n` cells of `key` would fit, without taking them.
    pub(super) fn wait<Q>(&self, key: &Q, n: NonZeroU32) -> Duration
    where
        Key: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.store.get(key).map_or(Duration::ZERO, |cell| {
            cell.wait(&self.quota, n, self.clock.now())
        })
    }
}

/// Cells taken from one key of a [`KeyedLimiter`]; kept unless rolled back.
pub(super) struct KeyedReservation<'a, Key> {
    cell: Ref<'a, Key, Gcra>,
    reservation: Reservation,
    clock: &'a Clock,
}

impl<Key: Hash + Eq> KeyedReservation<'_, Key> {
    /// Returns the cells (see the rollback rule in `gcra`).
    pub(super) fn rollback(self) {
        self.cell.rollback(self.reservation, self.clock.now());
    }
}

impl<Key: Hash + Eq> fmt::Debug for KeyedLimiter<Key> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLimiter")
            .field("quota", &self.quota)
            .field("clock", &self.clock)
            .field("keys", &self.store.len())
            .field("max_keys", &self.max_keys)
            .finish()
    }
}

/// Sweep no more often than once per refill time, within [1 s, 60 s].
fn sweep_every(quota: &Quota) -> Duration {
    quota
        .refill_time()
        .clamp(Duration::from_secs(1), Duration::from_secs(60))
}
