//! One clock for every timing decision in the crate.
//!
//! Every layer, budget, breaker, lease and phase deadline reads tokio's time
//! ([`tokio::time::Instant`]), so a test that pauses it (`#[tokio::test(start_paused =
//! true)]`) and calls `tokio::time::advance()` drives them all, with no setting to pass.
//! Where tokio's time cannot be paused (a test against a real API server), a
//! [`ManualClock`], [entered](ManualClock::enter) while the layers are built, moves only
//! when told to.
//!
//! # How the tokio clock is read
//!
//! Reading `tokio::time::Instant::now()` costs a system clock read
//! (`clock_gettime`, 20–30 ns on common virtual machines), which is most of a rate
//! limiter check. tokio time can only differ from the system's monotonic clock on a
//! thread that has entered a `current_thread` runtime: pausing is refused on every
//! other runtime flavor, and outside a runtime tokio reads the system clock. So
//! [`Clock::now`] asks which runtime the calling thread is in (a thread-local lookup,
//! a few nanoseconds) and
//!
//! - in a `current_thread` runtime (the one `#[tokio::test]` builds, paused or not),
//!   or any flavor tokio may add later, reads tokio's clock, exactly as
//!   `tokio::time::Instant::now()` would;
//! - in a multi-thread runtime or outside any runtime, reads the CPU's time-stamp
//!   counter through [`quanta`] (the clock governor uses), anchored to the system
//!   clock when the [`Clock`] is created, so it reads what tokio's clock would.
//!
//! The check happens on every read, not once at construction, because a runtime can
//! be paused after the clock was made, and one clock can be read from several
//! runtimes.

use std::{
    cell::RefCell,
    fmt,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    runtime::{Handle, RuntimeFlavor},
    time::Instant,
};

/// A point on a [`Clock`]'s time line: nanoseconds since the clock's epoch.
///
/// Eight bytes, so middleware can keep it in an atomic and per-key state stays small.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[doc(hidden)]
pub struct Nanos(u64);

impl Nanos {
    /// The clock's epoch.
    pub const ZERO: Nanos = Nanos(0);

    /// Builds a point from raw nanoseconds since the epoch.
    pub const fn from_raw(nanos: u64) -> Self {
        Nanos(nanos)
    }

    /// Raw nanoseconds since the epoch.
    pub const fn as_raw(self) -> u64 {
        self.0
    }

    /// This point moved later by `d`, saturating at the end of time.
    #[must_use]
    pub fn saturating_add(self, d: Duration) -> Self {
        Nanos(self.0.saturating_add(duration_to_nanos(d)))
    }

    /// Time from `earlier` to `self`, or zero if `earlier` is later.
    pub const fn saturating_since(self, earlier: Nanos) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

/// Converts a duration to whole nanoseconds, saturating at `u64::MAX` (about 584 years).
pub(crate) fn duration_to_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The time source that middleware reads.
///
/// Cloning is cheap; clones share the same time line.
///
/// # Default
///
/// The clock [entered](ManualClock::enter) on this thread, else [`Clock::tokio`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use kube_reconcile::clock::{Clock, ManualClock};
///
/// let manual = ManualClock::new();
/// let clock: Clock = manual.clock();
/// let start = clock.now();
/// manual.advance(Duration::from_secs(3));
/// assert_eq!(clock.now().saturating_since(start), Duration::from_secs(3));
/// ```
#[derive(Clone)]
#[doc(hidden)]
pub struct Clock {
    source: Source,
}

#[derive(Clone)]
enum Source {
    Tokio(TokioSource),
    Manual(Arc<AtomicU64>),
}

/// tokio's time line since `epoch`, and a cheaper reading of it where tokio time
/// cannot be paused.
#[derive(Clone, Copy)]
struct TokioSource {
    epoch: Instant,
    /// The time-stamp counter, read as nanoseconds since `counter_at`.
    counter: &'static quanta::Clock,
    /// A raw counter reading taken when the clock was created.
    counter_at: u64,
    /// The system clock at `counter_at` minus `epoch`, whichever way it points
    /// (the epoch is ahead of the system clock when taken in advanced paused time).
    system_after_epoch: u64,
    system_before_epoch: u64,
}

/// The process-wide counter clock, calibrated against the system clock once (under a
/// millisecond to a few milliseconds, at the first [`Clock::tokio`]).
fn counter() -> &'static quanta::Clock {
    static COUNTER: OnceLock<quanta::Clock> = OnceLock::new();
    COUNTER.get_or_init(quanta::Clock::new)
}

/// Whether tokio's clock may differ from the system clock on this thread: the thread
/// is in a runtime whose time can be paused. Only `current_thread` runtimes allow
/// `pause()`; a flavor this crate does not know is treated as pausable.
#[inline]
fn tokio_time_may_be_paused() -> bool {
    match Handle::try_current() {
        Ok(handle) => handle.runtime_flavor() != RuntimeFlavor::MultiThread,
        // Outside a runtime tokio reads the system clock.
        Err(_) => false,
    }
}

impl TokioSource {
    fn new() -> Self {
        let counter = counter();
        let epoch = Instant::now();
        let system = std::time::Instant::now();
        let counter_at = counter.raw();
        TokioSource {
            epoch,
            counter,
            counter_at,
            system_after_epoch: duration_to_nanos(
                system.saturating_duration_since(epoch.into_std()),
            ),
            system_before_epoch: duration_to_nanos(
                epoch.into_std().saturating_duration_since(system),
            ),
        }
    }

    /// `tokio::time::Instant::now() - epoch`, through tokio.
    fn read_tokio(&self) -> u64 {
        duration_to_nanos(Instant::now().saturating_duration_since(self.epoch))
    }

    /// The same reading where tokio time is the system clock, from a raw counter value.
    #[inline]
    fn counter_nanos(&self, raw: u64) -> u64 {
        let elapsed = self.counter.delta_as_nanos(self.counter_at, raw);
        self.system_after_epoch
            .saturating_add(elapsed)
            .saturating_sub(self.system_before_epoch)
    }

    #[inline]
    fn now(&self) -> u64 {
        if tokio_time_may_be_paused() {
            self.read_tokio()
        } else {
            self.counter_nanos(self.counter.raw())
        }
    }
}

impl Clock {
    /// tokio's clock, which follows `tokio::time::pause()` and `advance()`.
    ///
    /// The epoch is taken now, so create middleware inside the runtime whose
    /// (possibly paused) clock it should follow.
    ///
    /// # Caveats
    ///
    /// Outside `current_thread` runtimes the clock reads the CPU's time-stamp
    /// counter (see the [module docs](self)). The first call in a process calibrates
    /// it against the system clock, which blocks for about a millisecond (at most
    /// 200 ms). Calibration matches the rates closely but not exactly (15 parts per
    /// million on a cloud VM, about 55 ms per hour). That error only shows when one
    /// clock is read both from a `current_thread` runtime and from elsewhere (a
    /// plain thread, a multi-thread runtime): the two kinds of reading drift apart
    /// by that much per hour since the clock was created, and a limiter read both
    /// ways admits that much time's worth of extra cells on the faster side. A clock
    /// read from one kind of context, the usual case, compares only counter
    /// readings or only tokio readings, and a rate off by 15 ppm is immaterial.
    ///
    /// Inside a runtime, each read clones the runtime handle to learn its flavor (as
    /// tokio's own timers do), which touches a reference count shared by the
    /// runtime's threads.
    pub fn tokio() -> Self {
        Clock {
            source: Source::Tokio(TokioSource::new()),
        }
    }

    /// The current time on this clock.
    #[inline]
    #[doc(hidden)]
    pub fn now(&self) -> Nanos {
        match &self.source {
            Source::Tokio(tokio) => Nanos(tokio.now()),
            Source::Manual(now) => Nanos(now.load(Ordering::Acquire)),
        }
    }

    /// The tokio instant that corresponds to `at` (for `sleep_until` and logs).
    pub(crate) fn instant_at(&self, at: Nanos) -> Instant {
        let now = self.now();
        let real_now = Instant::now();
        if at >= now {
            real_now + at.saturating_since(now)
        } else {
            real_now
                .checked_sub(now.saturating_since(at))
                .unwrap_or(real_now)
        }
    }
}

impl Default for Clock {
    /// The clock [entered](ManualClock::enter) on this thread, else [`Clock::tokio`].
    fn default() -> Self {
        ENTERED
            .with(|entered| entered.borrow().clone())
            .unwrap_or_else(Clock::tokio)
    }
}

thread_local! {
    /// The clock that layers and configs made on this thread read, while a
    /// [`ManualClock::enter`] guard lives.
    static ENTERED: RefCell<Option<Clock>> = const { RefCell::new(None) };
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::Tokio(_) => f.write_str("Clock::Tokio"),
            Source::Manual(now) => write!(f, "Clock::Manual({}ns)", now.load(Ordering::Relaxed)),
        }
    }
}

/// A clock that moves only when [`advance`](ManualClock::advance) is called: for tests
/// that cannot pause tokio's time, such as tests against a real API server (paused time
/// would fire the HTTP client's timeouts at once).
///
/// Every layer, budget, breaker and config built on this thread while the guard of
/// [`enter`](Self::enter) lives reads this clock instead of tokio's; what was built
/// before or elsewhere keeps tokio's. Wall-clock times in conditions and messages are
/// the wall time when a layer was built plus the time this clock has advanced since.
///
/// # Examples
///
/// ```
/// use std::{num::NonZeroU32, time::Duration};
/// use kube_reconcile::{testing::ManualClock, middleware::rate_limit::{Quota, RateLimiter}};
///
/// let time = ManualClock::new();
/// let limiter = {
///     let _entered = time.enter();
///     RateLimiter::new(Quota::per_minute(NonZeroU32::new(1).unwrap()))
/// };
/// assert!(limiter.check().is_ok());
/// assert!(limiter.check().is_err(), "one a minute");
/// time.advance(Duration::from_secs(60));
/// assert!(limiter.check().is_ok(), "the manual minute passed");
/// ```
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    now: Arc<AtomicU64>,
}

/// While it lives, what is built on this thread reads a [`ManualClock`]; see
/// [`ManualClock::enter`].
#[derive(Debug)]
#[must_use = "the manual clock is entered only while the guard lives"]
pub struct EnteredClock {
    previous: Option<Clock>,
}

impl Drop for EnteredClock {
    fn drop(&mut self) {
        let previous = self.previous.take();
        ENTERED.with(|entered| *entered.borrow_mut() = previous);
    }
}

impl ManualClock {
    /// A manual clock at its epoch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes this the clock of everything built on this thread until the guard drops
    /// (the clock entered before comes back then).
    pub fn enter(&self) -> EnteredClock {
        let clock = self.clock();
        let previous = ENTERED.with(|entered| entered.borrow_mut().replace(clock));
        EnteredClock { previous }
    }

    /// A [`Clock`] that reads this manual clock.
    #[doc(hidden)]
    pub fn clock(&self) -> Clock {
        Clock {
            source: Source::Manual(Arc::clone(&self.now)),
        }
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.now.fetch_add(duration_to_nanos(d), Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests;
