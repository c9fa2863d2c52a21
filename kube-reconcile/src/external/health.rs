//! [`Health`]: what a dependency's health check says, and the shared cache of its answer.

use std::{
    fmt,
    future::Future,
    num::NonZeroU32,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crate::{
    clock::{Clock, Nanos},
    error::{Classify, ErrorClass},
};

/// What a health check says about an external dependency.
///
/// A check returns `Health` or anything that converts into it: a `Result` is
/// `Available` when `Ok` and `Unavailable` with the error's message when `Err` (a
/// [`Throttled`](ErrorClass::Throttled) error's `retry_after` becomes the time of the
/// next check).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use kube_reconcile::{ErrorClass, external::Health};
///
/// assert!(matches!(Health::from(Ok::<(), ErrorClass>(())), Health::Available));
/// let down = Health::unavailable("maintenance window").retry_after(Duration::from_secs(600));
/// assert!(matches!(&down, Health::Unavailable { message, .. } if message == "maintenance window"));
/// assert_eq!(
///     Health::from(Err::<(), _>(ErrorClass::Throttled { retry_after: Some(Duration::from_secs(9)) })),
///     Health::unavailable("throttled (retry after 9s)").retry_after(Duration::from_secs(9)),
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Health {
    /// The dependency answers.
    Available,
    /// The dependency is down, in maintenance, or its health check failed.
    Unavailable {
        /// Why, for the condition's message.
        message: String,
        /// When to check again, if the dependency said; else after the health interval.
        retry_after: Option<Duration>,
    },
}

impl Health {
    /// Unavailable because of `message`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Health::Unavailable {
            message: message.into(),
            retry_after: None,
        }
    }

    /// This answer with the time of the next check; no effect on `Available`.
    #[must_use]
    pub fn retry_after(self, after: Duration) -> Self {
        match self {
            Health::Unavailable { message, .. } => Health::Unavailable {
                message,
                retry_after: Some(after),
            },
            Health::Available => Health::Available,
        }
    }

    /// Whether the dependency is available.
    pub(crate) const fn is_available(&self) -> bool {
        matches!(self, Health::Available)
    }
}

impl<T, E: fmt::Display + Classify> From<Result<T, E>> for Health {
    fn from(result: Result<T, E>) -> Self {
        match result {
            Ok(_) => Health::Available,
            Err(e) => Health::Unavailable {
                message: e.to_string(),
                retry_after: match e.class() {
                    ErrorClass::Throttled { retry_after } => retry_after,
                    _ => None,
                },
            },
        }
    }
}

type ProbeFuture = Pin<Box<dyn Future<Output = Health> + Send>>;

/// A type-erased health check.
#[derive(Clone)]
pub(super) struct Probe(Arc<dyn Fn() -> ProbeFuture + Send + Sync>);

impl Probe {
    pub(super) fn new<F, Fut>(check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: Into<Health>,
    {
        Probe(Arc::new(move || {
            let fut = check();
            Box::pin(async move { fut.await.into() })
        }))
    }
}

impl fmt::Debug for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Probe")
    }
}

/// One answer of the health check and how long it stands.
#[derive(Clone, Debug)]
pub(super) struct Observation {
    pub(super) health: Health,
    pub(super) valid_until: Nanos,
    /// While unavailable: the first check of this outage that found it down.
    pub(super) down_since: Option<Nanos>,
}

/// The cached answer, and the run of answers behind it (kept when the answer is
/// forgotten after a failed call, so the outage keeps its start and the run its count).
#[derive(Debug, Default)]
struct Cached {
    observation: Option<Observation>,
    /// While unavailable: the first failed check of the outage.
    down_since: Option<Nanos>,
    /// The dependency's standing: unknown before the first check.
    available: Option<bool>,
    /// Checks in a row that said the opposite of the standing, and when the first of
    /// them failed (for a run of failures).
    run: u32,
    run_since: Option<Nanos>,
    /// The last answer that said unavailable, while the standing is unavailable.
    last_down: Option<Health>,
}

/// How many answers in a row change the standing, as Kubernetes probes count them.
#[derive(Clone, Copy, Debug)]
pub(super) struct Thresholds {
    /// Failed checks in a row that make an available dependency unavailable.
    pub(super) failure: NonZeroU32,
    /// Successful checks in a row that make an unavailable dependency available.
    pub(super) success: NonZeroU32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            failure: NonZeroU32::new(3).expect("three is not zero"),
            success: NonZeroU32::MIN,
        }
    }
}

impl Cached {
    /// Takes a fresh answer into the run and returns the standing's answer: what the
    /// callers are told until the next check.
    fn take(&mut self, health: Health, thresholds: Thresholds, now: Nanos) -> Health {
        let up = health.is_available();
        if !up {
            self.run_since.get_or_insert(now);
        }
        let flips = match self.available {
            // Nothing known yet: the first answer stands.
            None => true,
            Some(standing) if standing == up => {
                self.run = 0;
                false
            }
            Some(_) => {
                self.run = self.run.saturating_add(1);
                let needed = if up {
                    thresholds.success
                } else {
                    thresholds.failure
                };
                self.run >= needed.get()
            }
        };
        if up {
            self.run_since = None;
        }
        if flips {
            self.available = Some(up);
            self.run = 0;
            self.down_since = if up { None } else { self.run_since };
        }
        if !up && self.available == Some(false) {
            self.last_down = Some(health.clone());
        }
        match self.available {
            Some(false) => self.last_down.clone().unwrap_or(health),
            _ => Health::Available,
        }
    }
}

/// The health check of one dependency with its cached answer, shared by every caller.
///
/// At most one check runs at a time (single flight): callers that find the answer
/// stale while a check is running wait for it and share its answer.
#[derive(Debug)]
pub(super) struct HealthCache {
    probe: Option<Probe>,
    interval: Duration,
    timeout: Duration,
    thresholds: Thresholds,
    last: tokio::sync::Mutex<Cached>,
    stale: AtomicBool,
}

impl HealthCache {
    pub(super) fn new(
        probe: Option<Probe>,
        interval: Duration,
        timeout: Duration,
        thresholds: Thresholds,
    ) -> Self {
        HealthCache {
            probe,
            interval,
            timeout,
            thresholds,
            last: tokio::sync::Mutex::new(Cached::default()),
            stale: AtomicBool::new(false),
        }
    }

    /// The current answer: cached while it stands, else from a fresh check. `None`
    /// when no health check is configured.
    pub(super) async fn check(&self, clock: &Clock) -> Option<Observation> {
        let probe = self.probe.as_ref()?;
        let mut last = self.last.lock().await;
        if self.stale.swap(false, Ordering::AcqRel) {
            // Forget the answer before probing, so a check cancelled half-way leaves
            // nothing stale behind.
            last.observation = None;
        }
        if let Some(observation) = &last.observation
            && clock.now() < observation.valid_until
        {
            return Some(observation.clone());
        }
        let health = match tokio::time::timeout(self.timeout, (probe.0)()).await {
            Ok(health) => health,
            Err(_) => {
                Health::unavailable(format!("health check timed out after {:?}", self.timeout))
            }
        };
        let valid_for = match &health {
            Health::Available => self.interval,
            Health::Unavailable { retry_after, .. } => retry_after.unwrap_or(self.interval),
        };
        tracing::debug!(
            available = health.is_available(),
            ?valid_for,
            "health checked"
        );
        let now = clock.now();
        let health = last.take(health, self.thresholds, now);
        let valid_for = if health.is_available() {
            // A failed answer that did not change the standing is not waited out.
            valid_for.min(self.interval)
        } else {
            valid_for
        };
        let observation = Observation {
            health,
            valid_until: clock.now().saturating_add(valid_for),
            down_since: last.down_since,
        };
        last.observation = Some(observation.clone());
        Some(observation)
    }

    /// Makes the next caller check again (a call just failed).
    pub(super) fn invalidate(&self) {
        self.stale.store(true, Ordering::Release);
    }
}
