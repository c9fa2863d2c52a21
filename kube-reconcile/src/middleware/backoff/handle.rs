//! [`BackoffHandle`]: per-key backoff state, shared by a layer's clones, usable around any call.

#[cfg(test)]
use std::future::Future;

#[cfg(test)]
use super::error::BackoffError;
#[cfg(test)]
use crate::error::Classify;
use std::{borrow::Borrow, fmt, hash::Hash, sync::Arc, time::Duration};

use tokio::time::Instant;

use crate::{
    clock::{Clock, Nanos},
    error::ErrorClass,
    keyed::KeyedStore,
    reconciler::{DeferReason, Deferral, ObjectKey},
    rng::Rng,
};

use super::{
    config::{BackoffConfig, Resolved},
    state::{Entry, Policy},
};

/// The longest interval between two amortised sweeps of idle keys.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Per-key backoff state: the gate, the failure count and the next due time of each key.
///
/// Every clone shares the same state. A [`BackoffLayer`](super::BackoffLayer) hands one
/// out ([`handle`](super::BackoffLayer::handle)) to inspect the objects it tracks.
///
/// Keys are forgotten on success, on a terminal error, and once idle for the configured TTL after their next attempt was due, so the map
/// never grows without bound.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use kube_reconcile::{ErrorClass, testing::ManualClock};
/// use kube_reconcile::middleware::backoff::{BackoffConfig, BackoffHandle};
///
/// let time = ManualClock::new();
/// let _entered = time.enter();
/// let backoff: BackoffHandle<String> = BackoffHandle::new(BackoffConfig::client_go())?;
///
/// let attempt = backoff.check("db-1").expect("nothing is pending yet");
/// let wait = backoff.record_failure("db-1", attempt, ErrorClass::Transient);
/// assert_eq!(wait, Some(Duration::from_millis(5)));
/// assert_eq!(backoff.attempts("db-1"), 1);
///
/// // Until the delay is over, the key is held back.
/// let deferral = backoff.check("db-1").unwrap_err();
/// assert_eq!(deferral.retry_after, Duration::from_millis(5));
///
/// time.advance(Duration::from_millis(5));
/// let attempt = backoff.check("db-1").expect("the delay is over");
/// assert_eq!(backoff.record_failure("db-1", attempt, ErrorClass::Transient), Some(Duration::from_millis(10)));
///
/// backoff.record_success("db-1");
/// assert_eq!(backoff.attempts("db-1"), 0);
/// # Ok::<(), kube_reconcile::ConfigError>(())
/// ```
#[doc(hidden)] // Read by the deferral status, the benches and tests; users see `Running::tracked`.
pub struct BackoffHandle<Key = ObjectKey> {
    pub(super) shared: Arc<Shared<Key>>,
}

/// What the clones of a handle share.
pub(super) struct Shared<Key> {
    pub(super) store: KeyedStore<Key, Entry>,
    pub(super) policy: Policy,
    pub(super) rng: Rng,
    pub(super) clock: Clock,
}

/// An attempt that [`BackoffHandle::check`] let through, to report with
/// [`record_failure`](BackoffHandle::record_failure).
///
/// It remembers when the attempt started, so that a failure of an attempt that started
/// while a delay was still pending does not raise the exponent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[doc(hidden)]
pub struct Attempt {
    /// When it started, or `None` if the key was not tracked then (which is earlier
    /// than any delay recorded since, and saves reading the clock).
    started: Option<Nanos>,
}

impl Attempt {
    /// When the attempt started; `None` if its key was not tracked then.
    #[cfg(test)]
    pub(super) const fn started(self) -> Option<Nanos> {
        self.started
    }
}

impl<Key: Eq + Hash> BackoffHandle<Key> {
    /// Empty backoff state with the schedule of `config`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`](crate::ConfigError) if a value in `config` cannot work.
    #[doc(hidden)]
    pub fn new(config: BackoffConfig) -> Result<Self, crate::ConfigError> {
        Ok(Self::from_resolved(config.resolve()?))
    }

    /// Empty backoff state from a checked configuration.
    pub(super) fn from_resolved(resolved: Resolved) -> Self {
        let Resolved {
            policy,
            seed,
            max_keys,
            clock,
        } = resolved;
        let sweep_every = policy.idle_ttl.min(SWEEP_EVERY);
        BackoffHandle {
            shared: Arc::new(Shared {
                store: KeyedStore::new(max_keys.get(), sweep_every),
                policy,
                rng: Rng::new(seed),
                clock,
            }),
        }
    }

    /// Lets an attempt for `key` start now, or says how long it must still wait.
    ///
    /// # Errors
    ///
    /// A [`Deferral`] with the remaining wait while `key` is backing off.
    #[doc(hidden)]
    pub fn check<Q>(&self, key: &Q) -> Result<Attempt, Deferral>
    where
        Key: Borrow<Q>,
        Q: ?Sized + Hash + Eq,
    {
        match self.gate(key, None) {
            Ok(started) => Ok(Attempt { started }),
            Err(retry_after) => Err(Deferral {
                retry_after,
                reason: DeferReason::BackingOff,
            }),
        }
    }

    /// Records that an attempt for `key` succeeded: its state is reset.
    #[doc(hidden)]
    pub fn record_success<Q>(&self, key: &Q)
    where
        Key: Borrow<Q>,
        Q: ?Sized + Hash + Eq,
    {
        self.forget(key);
    }

    /// Records that `attempt` for `key` failed with an error of `class`; returns the wait
    /// before the next attempt, or `None` for a terminal error (do not retry).
    ///
    /// Transient and throttled failures raise the exponent, unless `attempt` started
    /// while a delay was still pending; throttled ones wait at least their
    /// `retry_after` (up to the cap). A conflict waits the conflict delay and leaves the
    /// exponent alone. A terminal error forgets the key.
    #[doc(hidden)]
    pub fn record_failure<Q>(
        &self,
        key: &Q,
        attempt: Attempt,
        class: ErrorClass,
    ) -> Option<Duration>
    where
        Key: Borrow<Q>,
        Q: ?Sized + Hash + Eq + ToOwned + fmt::Debug,
        Q::Owned: Into<Key>,
    {
        let to_key = || key.to_owned().into();
        self.fail(
            key,
            to_key,
            class,
            None,
            attempt.started,
            &format_args!("{key:?}"),
        )
    }

    /// Runs `fut`, a fallible call for `key`, unless `key` is backing off, and records
    /// how it went.
    ///
    /// The call is not started while `key` is backing off. If the returned future is
    /// dropped before `fut` finishes, nothing is recorded.
    ///
    /// # Errors
    ///
    /// [`BackoffError::BackingOff`] with the remaining wait, or [`BackoffError::Failed`]
    /// with the call's error and the wait before the next attempt.
    ///
    /// # Examples
    ///
    /// ```
    /// use kube_reconcile::{ErrorClass, testing::ManualClock};
    /// use kube_reconcile::middleware::backoff::{BackoffConfig, BackoffError, BackoffHandle};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let time = ManualClock::new();
    /// let _entered = time.enter();
    /// let per_region = BackoffHandle::<&str>::new(BackoffConfig::operator())?;
    ///
    /// let first = per_region.call(&"eu-1", async { Err::<(), _>(ErrorClass::Transient) }).await;
    /// assert!(matches!(first, Err(BackoffError::Failed { retry_after: Some(_), .. })));
    ///
    /// let held = per_region.call(&"eu-1", async { Ok::<_, ErrorClass>(()) }).await;
    /// assert!(matches!(held, Err(BackoffError::BackingOff { .. })));
    /// # Ok(()) }
    /// ```
    #[cfg(test)]
    pub(crate) async fn call<Q, T, E, F>(&self, key: &Q, fut: F) -> Result<T, BackoffError<E>>
    where
        Key: Borrow<Q>,
        Q: ?Sized + Hash + Eq + ToOwned + fmt::Debug,
        Q::Owned: Into<Key>,
        E: Classify,
        F: Future<Output = Result<T, E>>,
    {
        let attempt = self
            .check(key)
            .map_err(|deferral| BackoffError::BackingOff {
                retry_after: deferral.retry_after,
            })?;
        match fut.await {
            Ok(value) => {
                self.record_success(key);
                Ok(value)
            }
            Err(source) => {
                let retry_after = self.record_failure(key, attempt, source.class());
                Err(BackoffError::Failed {
                    source,
                    retry_after,
                })
            }
        }
    }

    /// How many failures raised `key`'s exponent since its last reset (0 if untracked),
    /// like client-go's `NumRequeues`.
    pub fn attempts<Q>(&self, key: &Q) -> u32
    where
        Key: Borrow<Q>,
        Q: ?Sized + Hash + Eq,
    {
        self.shared.store.get(key).map_or(0, |entry| entry.failures)
    }

    /// When the next attempt for `key` may start; `None` if `key` is not tracked.
    ///
    /// The instant may be in the past: the delay is over, the state is kept until the
    /// next outcome (or the idle TTL).
    pub fn next_attempt<Q>(&self, key: &Q) -> Option<Instant>
    where
        Key: Borrow<Q>,
        Q: ?Sized + Hash + Eq,
    {
        let not_before = self.shared.store.get(key)?.not_before;
        Some(self.shared.clock.instant_at(not_before))
    }

    /// Stops tracking `key`; returns whether it was tracked.
    pub(crate) fn forget<Q>(&self, key: &Q) -> bool
    where
        Key: Borrow<Q>,
        Q: ?Sized + Hash + Eq,
    {
        self.shared.store.remove(key).is_some()
    }

    /// Drops the keys that have been idle for the TTL after their next attempt was due;
    /// returns how many keys are left.
    ///
    /// Sweeps also run by themselves (at most once a minute, when a new key is tracked).
    /// An operator's count is [`Running::tracked`](crate::phase::Running::tracked).
    #[doc(hidden)]
    pub fn sweep(&self) -> usize {
        self.shared
            .store
            .sweep(self.shared.policy.horizon(self.now()))
    }

    /// How many keys are tracked, counting idle ones not yet swept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shared.store.len()
    }

    /// Whether no key is tracked.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The clock this state reads.
    pub(crate) fn clock(&self) -> &Clock {
        &self.shared.clock
    }
}

impl<Key> Clone for BackoffHandle<Key> {
    fn clone(&self) -> Self {
        BackoffHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<Key: Eq + Hash> fmt::Debug for BackoffHandle<Key> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackoffHandle")
            .field("policy", &self.shared.policy)
            .field("store", &self.shared.store)
            .field("clock", &self.shared.clock)
            .finish_non_exhaustive()
    }
}
