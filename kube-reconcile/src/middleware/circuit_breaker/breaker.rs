//! [`Breaker`]: one circuit breaker per dependency, shared by every caller.

use std::{
    fmt,
    future::Future,
    sync::{Arc, atomic::Ordering},
};

use crate::error::Classify;

use super::{
    config::BreakerConfig,
    error::{BreakerError, Rejected},
    permit::Permit,
    settings::Settings,
    shared::{Admit, Shared},
    state::{Snapshot, State, StateChange},
    state_word::{self, CLOSED, DISABLED, FORCED_OPEN, METRICS},
};

/// A circuit breaker for one named dependency (`"dbaas"`), shared by every object.
///
/// Clones share one state. Hand the same breaker to several
/// [`CircuitBreakerLayer`](super::CircuitBreakerLayer)s and to plain API clients
/// ([`call`](Breaker::call)) so they all see
/// one circuit.
///
/// # Guarantees
///
/// - **Closed**: admitting and recording a call is a few atomic operations: no lock, no
///   allocation, and no clock read unless the window is by
///   time. Trips on the failure rate once `min_calls` are in the
///   window, or on a run of consecutive failures.
/// - **Open**: calls are refused with [`Rejected::retry_after`] = time left + a random
///   share of the spread. The first call after the open duration half-opens the circuit
///   (transitions are lazy: no timer runs).
/// - **Half-open**: at most `permitted_probes` calls run at once; the slots are reserved
///   under a lock, so no two threads can take the last one. A probe that fails reopens
///   the circuit for longer; enough successful probes close it with a fresh window.
///   If every slot stays taken for 60 s (hung calls), the circuit reopens
///   rather than staying half-open forever.
/// - **Cancel-safe**: a call dropped before its outcome records nothing and gives its
///   probe slot back; a result that arrives after the breaker changed state
///   (an old call finishing after an opening or a reset) is ignored.
/// - Terminal and Conflict errors (not-found and validation are Terminal) are never counted.
///
/// # Examples
///
/// ```
/// use kube_reconcile::{ErrorClass, middleware::circuit_breaker::{Breaker, BreakerError, State}};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let breaker = Breaker::new("dbaas");
/// let ok = breaker.call(async { Ok::<_, ErrorClass>("instance-1") }).await;
/// assert_eq!(ok.unwrap(), "instance-1");
///
/// breaker.force_open();
/// let refused = breaker.call(async { Ok::<_, ErrorClass>("never runs") }).await;
/// assert!(matches!(refused, Err(BreakerError::Open { .. })));
/// assert_eq!(breaker.state(), State::ForcedOpen);
/// # }
/// ```
#[derive(Clone)]
pub struct Breaker {
    shared: Arc<Shared>,
}

/// A [`Breaker`] held without keeping it alive; from [`Breaker::downgrade`].
#[cfg(feature = "metrics")]
pub(crate) struct WeakBreaker(std::sync::Weak<Shared>);

#[cfg(feature = "metrics")]
impl WeakBreaker {
    /// Whether this is `breaker` (a clone of it), not merely one with the same name. The
    /// weak reference keeps the allocation, so no other breaker can have its address.
    pub(crate) fn is(&self, breaker: &Breaker) -> bool {
        std::ptr::eq(self.0.as_ptr(), Arc::as_ptr(&breaker.shared))
    }

    /// The breaker, if anything still holds it.
    pub(crate) fn upgrade(&self) -> Option<Breaker> {
        self.0.upgrade().map(|shared| Breaker { shared })
    }
}

impl Breaker {
    /// A breaker for `dependency` with the [default configuration](BreakerConfig#default).
    ///
    /// Its clock is tokio's, taken now: create it inside the runtime whose (possibly
    /// paused) clock it should follow. Use [`BreakerConfig::build`] for anything else.
    ///
    /// # Panics
    ///
    /// Never: the default configuration always builds.
    pub fn new(dependency: impl Into<Arc<str>>) -> Self {
        BreakerConfig::default()
            .build(dependency)
            .expect("the default configuration is valid")
    }

    pub(super) fn from_settings(dependency: Arc<str>, settings: Settings) -> Self {
        Breaker {
            shared: Arc::new(Shared::new(dependency, settings)),
        }
    }

    /// This breaker, held without keeping it alive (the metrics' list of what they export).
    #[cfg(feature = "metrics")]
    pub(crate) fn downgrade(&self) -> WeakBreaker {
        WeakBreaker(Arc::downgrade(&self.shared))
    }

    /// The dependency this breaker protects.
    pub(crate) fn dependency(&self) -> &str {
        &self.shared.name
    }

    pub(super) fn dependency_arc(&self) -> Arc<str> {
        Arc::clone(&self.shared.name)
    }

    /// Asks to make one call.
    ///
    /// # Errors
    ///
    /// [`Rejected`] when the circuit is open or forced open, or when it is half-open and
    /// all probe slots are taken; nothing is reserved then.
    #[inline(always)]
    #[expect(
        clippy::inline_always,
        reason = "measured: returning the permit through memory costs ~18 ns of a ~10 ns call"
    )]
    #[doc(hidden)]
    pub fn try_acquire(&self) -> Result<Permit<'_>, Rejected> {
        let shared = &*self.shared;
        let word = shared.word();
        match state_word::phase(word) {
            CLOSED => Ok(Permit::counted(shared, word)),
            p if p == METRICS + CLOSED => Ok(Permit::counted(shared, word)),
            DISABLED => Ok(Permit::unrecorded(shared, word)),
            _ => match shared.acquire_slow(word)? {
                (word, Admit::Counted) => Ok(Permit::counted(shared, word)),
                (word, Admit::Probe) => Ok(Permit::probe(shared, word)),
                (word, Admit::Unrecorded) => Ok(Permit::unrecorded(shared, word)),
            },
        }
    }

    /// Runs `call` through the breaker: refuses it while open, records its result otherwise.
    ///
    /// `call` is not polled when refused. If the returned future is dropped before `call`
    /// finishes, nothing is recorded.
    ///
    /// # Errors
    ///
    /// [`BreakerError::Open`] if the breaker refused the call, or [`BreakerError::Inner`]
    /// with the call's own error.
    pub async fn call<T, E, F>(&self, call: F) -> Result<T, BreakerError<E>>
    where
        F: Future<Output = Result<T, E>>,
        E: Classify,
    {
        let permit = self.try_acquire().map_err(|rejected| BreakerError::Open {
            dependency: self.dependency_arc(),
            retry_after: rejected.retry_after,
        })?;
        let result = call.await;
        permit.record(&result);
        result.map_err(BreakerError::Inner)
    }

    /// Marks the breaker as an external dependency's: the dependency records each call
    /// itself, and a [`CircuitBreaker`](super::CircuitBreaker) layer sharing it only
    /// refuses while the circuit is open (see there).
    pub(crate) fn mark_gated(&self) {
        self.shared.gated.store(true, Ordering::Release);
    }

    /// Whether an external dependency records the calls through this breaker.
    pub(super) fn is_gated(&self) -> bool {
        self.shared.gated.load(Ordering::Acquire)
    }

    /// Whether a call would be refused now, reserving nothing.
    pub(super) fn peek(&self) -> Result<(), Rejected> {
        self.shared.peek()
    }

    /// The current state. An open circuit whose open duration has passed still reads
    /// `Open` until a call half-opens it.
    pub fn state(&self) -> State {
        self.shared.state()
    }

    /// Counters, rates and deadlines, for the metrics.
    #[doc(hidden)]
    pub fn snapshot(&self) -> Snapshot {
        self.shared.snapshot()
    }

    /// Calls `callback` after every state change, once per change and in order.
    ///
    /// Callbacks run on the thread that made the change, or on one that is already
    /// delivering earlier changes, after the breaker's lock is released; they may call
    /// back into the breaker. Keep them short: the call that caused the change waits.
    /// Every transition is also a `tracing` event (`warn` when opening, `info`
    /// otherwise) with the fields `dependency`, `from`, `to`, `reason` and `enforced`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use kube_reconcile::middleware::circuit_breaker::{Breaker, State};
    ///
    /// let breaker = Breaker::new("dbaas");
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let sink = Arc::clone(&seen);
    /// breaker.on_transition(move |t| sink.lock().unwrap().push((t.from, t.to)));
    /// breaker.force_open();
    /// breaker.reset();
    /// assert_eq!(
    ///     *seen.lock().unwrap(),
    ///     [(State::Closed, State::ForcedOpen), (State::ForcedOpen, State::Closed)]
    /// );
    /// ```
    pub fn on_transition(&self, callback: impl Fn(&StateChange) + Send + Sync + 'static) {
        self.shared.add_callback(Arc::new(callback));
    }

    /// Refuses every call until [`reset`](Breaker::reset) (an isolated dependency, a
    /// maintenance window).
    pub fn force_open(&self) {
        self.shared.set_manual(FORCED_OPEN);
    }

    /// Admits every call and records nothing, until [`reset`](Breaker::reset).
    #[cfg(test)]
    pub(crate) fn disable(&self) {
        self.shared.set_manual(DISABLED);
    }

    /// Admits every call while still recording outcomes and reporting the circuit's
    /// transitions, to try a configuration out before enforcing it. Starts with a fresh,
    /// closed circuit; [`reset`](Breaker::reset) enforces again.
    #[cfg(test)]
    pub(crate) fn metrics_only(&self) {
        self.shared.set_manual(METRICS + CLOSED);
    }

    /// Back to `Closed` with a fresh window, from any state.
    pub fn reset(&self) {
        self.shared.set_manual(CLOSED);
    }
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("dependency", &self.dependency())
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}
