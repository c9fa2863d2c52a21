//! [`BreakerConfig`] and [`Window`]: when a breaker trips, for how long, and how it recovers.

use std::{num::NonZeroU32, sync::Arc, time::Duration};

use crate::{clock::Clock, error::ErrorClass};

use super::{Breaker, settings::Settings};

/// The calls a failure rate is computed over.
///
/// # Examples
///
/// ```
/// use std::{num::NonZeroU32, time::Duration};
/// use kube_reconcile::middleware::circuit_breaker::Window;
///
/// let last_50_calls = Window::count(NonZeroU32::new(50).unwrap());
/// let last_minute = Window::time(Duration::from_secs(60));
/// assert_ne!(last_50_calls, last_minute);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window(pub(super) WindowKind);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum WindowKind {
    Count(NonZeroU32),
    Time {
        duration: Duration,
        buckets: NonZeroU32,
    },
}

impl Window {
    /// The longest count window, in calls.
    pub(crate) const MAX_CALLS: u32 = 1 << 20;

    /// The last `calls` counted calls. Needs no clock read and no lock on the hot path.
    pub const fn count(calls: NonZeroU32) -> Self {
        Window(WindowKind::Count(calls))
    }

    /// The calls of the last `duration`, in 10 buckets (the oldest bucket leaves whole).
    pub const fn time(duration: Duration) -> Self {
        Self::time_buckets(duration, NonZeroU32::MIN.saturating_add(9))
    }

    /// The calls of the last `duration`, in `buckets` buckets of `duration / buckets`.
    pub(crate) const fn time_buckets(duration: Duration, buckets: NonZeroU32) -> Self {
        Window(WindowKind::Time { duration, buckets })
    }
}

/// Error classes, as bits. Terminal and Conflict are always excluded.
const TRANSIENT: u8 = 1;
const THROTTLED: u8 = 2;
const CONFLICT: u8 = 4;
const TERMINAL: u8 = 8;

pub(super) const fn class_bit(class: ErrorClass) -> u8 {
    match class {
        ErrorClass::Transient => TRANSIENT,
        ErrorClass::Throttled { .. } => THROTTLED,
        ErrorClass::Conflict => CONFLICT,
        ErrorClass::Terminal => TERMINAL,
    }
}

/// How a [`Breaker`] trips, how long it stays open, and how it closes again.
///
/// Build a breaker with [`build`](BreakerConfig::build); every setting is checked there.
///
/// # Default
///
/// Tuned for operators, where one reconcile is a handful of API calls and traffic is
/// bursty (a resync sends every object at once) rather than steady:
///
/// | Setting | Default | Why |
/// |---|---|---|
/// | [`failure_rate_threshold`](Self::failure_rate_threshold) | 0.5 | resilience4j and Hystrix |
/// | [`window`](Self::window) | last 50 calls | a resync of a few dozen objects is judged as one |
/// | [`min_calls`](Self::min_calls) | 20 | Hystrix; resilience4j's and Polly's 100 is never reached by a small operator |
/// | [`consecutive_failures`](Self::consecutive_failures) | 10 | catches a dead dependency when traffic is too thin for `min_calls` |
/// | [`open_duration`](Self::open_duration) | 30 s | |
/// | open duration growth (fixed) | ×2 per reopening | a long outage is probed less and less often |
/// | longest open duration (fixed) | 5 min | the longest a recovered dependency waits to be noticed |
/// | [`open_duration_jitter`](Self::open_duration_jitter) | 0.1 | each open period is up to 10% shorter, at random |
/// | [`permitted_probes`](Self::permitted_probes) | 3 | one flaky probe does not decide alone |
/// | successful probes to close (fixed) | as many as `permitted_probes` | |
/// | probe timeout (fixed) | 60 s | a hung probe cannot pin the circuit half-open |
/// | classes never counted (fixed) | Terminal and Conflict | not-found, validation and conflicts say nothing about the dependency's health |
/// | [`spread`](Self::spread) | 5 s | refused reconciles come back spread over 5 s, not all at once |
///
/// # Examples
///
/// ```
/// use std::{num::NonZeroU32, time::Duration};
/// use kube_reconcile::{ConfigError, middleware::circuit_breaker::{BreakerConfig, State, Window}};
///
/// let breaker = BreakerConfig::default()
///     .failure_rate_threshold(0.25)
///     .window(Window::time(Duration::from_secs(60)))
///     .open_duration(Duration::from_secs(10))
///     .build("dbaas")?;
/// assert_eq!(breaker.state(), State::Closed);
///
/// let bad = BreakerConfig::default().failure_rate_threshold(1.5).build("dbaas");
/// assert_eq!(bad.unwrap_err().to_string(), "failure rate threshold must be in (0, 1], got 1.5");
/// # Ok::<(), ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct BreakerConfig {
    pub(super) failure_rate_threshold: f64,
    pub(super) window: Window,
    pub(super) min_calls: NonZeroU32,
    pub(super) consecutive_failures: u32,
    pub(super) slow_call_duration: Option<Duration>,
    pub(super) slow_call_rate_threshold: f64,
    pub(super) open_duration: Duration,
    pub(super) open_duration_growth: f64,
    pub(super) max_open_duration: Duration,
    pub(super) open_duration_jitter: f64,
    pub(super) permitted_probes: NonZeroU32,
    pub(super) probes_to_close: Option<NonZeroU32>,
    pub(super) probe_timeout: Duration,
    pub(super) excluded: u8,
    pub(super) spread: Duration,
    pub(super) seed: Option<u64>,
    pub(super) clock: Option<Clock>,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        const fn nz(n: u32) -> NonZeroU32 {
            NonZeroU32::new(n).expect("default counts are not zero")
        }
        BreakerConfig {
            failure_rate_threshold: 0.5,
            window: Window::count(nz(50)),
            min_calls: nz(20),
            consecutive_failures: 10,
            slow_call_duration: None,
            slow_call_rate_threshold: 0.8,
            open_duration: Duration::from_secs(30),
            open_duration_growth: 2.0,
            max_open_duration: Duration::from_secs(300),
            open_duration_jitter: 0.1,
            permitted_probes: nz(3),
            probes_to_close: None,
            probe_timeout: Duration::from_secs(60),
            excluded: CONFLICT | TERMINAL,
            spread: Duration::from_secs(5),
            seed: None,
            clock: None,
        }
    }
}

impl BreakerConfig {
    /// Trips when at least this share of the counted calls in the window failed; in `(0, 1]`.
    #[must_use]
    pub const fn failure_rate_threshold(mut self, threshold: f64) -> Self {
        self.failure_rate_threshold = threshold;
        self
    }

    /// The calls the failure and slow-call rates are computed over.
    #[must_use]
    pub const fn window(mut self, window: Window) -> Self {
        self.window = window;
        self
    }

    /// The rates are evaluated once the window holds this many counted calls (not only
    /// once a count window is full). At most the length of a count window.
    #[must_use]
    pub const fn min_calls(mut self, min_calls: NonZeroU32) -> Self {
        self.min_calls = min_calls;
        self
    }

    /// Trips after this many counted failures in a row, whatever the window says; `0`
    /// turns this off.
    #[must_use]
    pub const fn consecutive_failures(mut self, failures: u32) -> Self {
        self.consecutive_failures = failures;
        self
    }

    /// Tracks slow calls: a call that took at least `duration` is slow, and the breaker
    /// trips when the share of slow calls reaches the
    /// [`slow_call_rate_threshold`](Self::slow_call_rate_threshold). A timeout
    /// ([`Classify::is_timeout`](crate::Classify::is_timeout)) is always slow.
    #[cfg(test)]
    #[must_use]
    pub(crate) const fn slow_call_duration(mut self, duration: Duration) -> Self {
        self.slow_call_duration = Some(duration);
        self
    }

    /// The share of slow calls that trips the breaker, in `(0, 1]`; used only with
    /// [`slow_call_duration`](Self::slow_call_duration).
    #[cfg(test)]
    #[must_use]
    pub(crate) const fn slow_call_rate_threshold(mut self, threshold: f64) -> Self {
        self.slow_call_rate_threshold = threshold;
        self
    }

    /// How long the circuit stays open the first time.
    #[must_use]
    pub const fn open_duration(mut self, duration: Duration) -> Self {
        self.open_duration = duration;
        self
    }

    /// Each reopening without a close in between multiplies the open duration by
    /// `factor` (finite, at least 1; 1 keeps it constant).
    #[cfg(test)]
    #[must_use]
    pub(crate) const fn open_duration_growth(mut self, factor: f64) -> Self {
        self.open_duration_growth = factor;
        self
    }

    /// The longest open duration, jitter and growth included (a server's `Retry-After`
    /// can still ask for longer).
    #[cfg(test)]
    #[must_use]
    pub(crate) const fn max_open_duration(mut self, max: Duration) -> Self {
        self.max_open_duration = max;
        self
    }

    /// Shortens each open duration by a random share of up to `fraction`, in `[0, 1]`.
    #[must_use]
    pub const fn open_duration_jitter(mut self, fraction: f64) -> Self {
        self.open_duration_jitter = fraction;
        self
    }

    /// How many probe calls a half-open breaker lets run at once.
    #[must_use]
    pub const fn permitted_probes(mut self, probes: NonZeroU32) -> Self {
        self.permitted_probes = probes;
        self
    }

    /// How many probes must succeed to close the circuit (any failed probe reopens it).
    /// May exceed [`permitted_probes`](Self::permitted_probes): probes then run in turns.
    #[cfg(test)]
    #[must_use]
    pub(crate) const fn probes_to_close(mut self, probes: NonZeroU32) -> Self {
        self.probes_to_close = Some(probes);
        self
    }

    /// When every probe slot has been taken for this long without one coming back, the
    /// probes are presumed hung (or their permits leaked): the circuit reopens and their
    /// late outcomes are ignored. Keep it above the longest call, or put a
    /// [`Timeout`](crate::middleware::timeout::Timeout) inside the breaker.
    #[cfg(test)]
    #[must_use]
    pub(crate) const fn probe_timeout(mut self, timeout: Duration) -> Self {
        self.probe_timeout = timeout;
        self
    }

    /// Does not count errors of `class` (its `retry_after`, if any, is ignored here).
    /// [`Terminal`](ErrorClass::Terminal) and [`Conflict`](ErrorClass::Conflict) errors
    /// are never counted.
    #[cfg(test)]
    #[must_use]
    pub(crate) const fn exclude(mut self, class: ErrorClass) -> Self {
        self.excluded |= class_bit(class);
        self
    }

    /// Callers refused while open retry at the half-open time plus a random share of
    /// `spread`; while the half-open probes are all taken, after `spread/2..spread`.
    #[must_use]
    pub const fn spread(mut self, spread: Duration) -> Self {
        self.spread = spread;
        self
    }

    /// Seeds the jitter, for reproducible tests.
    #[cfg(test)]
    #[must_use]
    pub(crate) const fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The clock the breaker reads.
    #[cfg(test)]
    #[must_use]
    pub(crate) fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// A breaker named `dependency` with this configuration.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`](crate::ConfigError) naming the first setting that cannot work.
    pub fn build(self, dependency: impl Into<Arc<str>>) -> Result<Breaker, crate::ConfigError> {
        let settings = Settings::new(&self)?;
        Ok(Breaker::from_settings(dependency.into(), settings))
    }
}
