//! Deterministic fault injection: errors, latency and expired watches, by verb and resource.

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use super::{error::ApiError, request::Verb};

/// What an injected fault does to a matching request.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum FaultAction {
    /// Answer with this HTTP status (500, 409, 429, 503, ...) instead of serving the request.
    Error {
        /// The HTTP status code.
        code: u16,
        /// `Retry-After` seconds (sent as a header and as `details.retryAfterSeconds`).
        retry_after: Option<u32>,
    },
    /// Serve the request after this delay (tokio time, so paused tests stay deterministic).
    Latency(Duration),
    /// Answer a list or watch with 410 Expired.
    Expired,
    /// End a watch stream this long after it starts (the client has to resume it).
    DropWatch(Duration),
}

/// When a fault fires among the requests it matches.
#[derive(Clone, Debug, PartialEq)]
enum Trigger {
    Always,
    /// Each matching request with this probability, from the server's seeded generator.
    Rate(f64),
    /// The first n matching requests.
    Times(u64),
    /// Exactly these matching requests (1-based).
    Nth(Vec<u64>),
}

/// A fault to inject: which requests, when, and what happens.
///
/// # Examples
///
/// ```
/// use kube_reconcile_testing::{Fault, Verb};
///
/// // Every third-or-so PATCH of a Database fails with 500.
/// let flaky = Fault::error(500).verb(Verb::Patch).resource("databases.example.dev").rate(0.3);
/// // The first two LISTs of ConfigMaps are throttled.
/// let throttled = Fault::error(429).retry_after(2).verb(Verb::List).resource("configmaps").times(2);
/// # let _ = (flaky, throttled);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    verb: Option<Verb>,
    resource: Option<String>,
    name: Option<String>,
    trigger: Trigger,
    action: FaultAction,
}

impl Fault {
    fn new(action: FaultAction) -> Self {
        Fault {
            verb: None,
            resource: None,
            name: None,
            trigger: Trigger::Always,
            action,
        }
    }

    /// Answer with an HTTP error status.
    pub fn error(code: u16) -> Self {
        Fault::new(FaultAction::Error {
            code,
            retry_after: None,
        })
    }

    /// Delay matching requests.
    pub fn latency(delay: Duration) -> Self {
        Fault::new(FaultAction::Latency(delay))
    }

    /// Answer matching lists and watches with 410 Expired.
    pub fn expired() -> Self {
        Fault::new(FaultAction::Expired)
    }

    /// End matching watch streams `after` they start.
    pub fn drop_watch(after: Duration) -> Self {
        Fault::new(FaultAction::DropWatch(after)).verb(Verb::Watch)
    }

    /// Adds a `Retry-After` to an error fault.
    #[must_use]
    pub fn retry_after(mut self, seconds: u32) -> Self {
        if let FaultAction::Error { retry_after, .. } = &mut self.action {
            *retry_after = Some(seconds);
        }
        self
    }

    /// Only requests with this verb.
    #[must_use]
    pub fn verb(mut self, verb: Verb) -> Self {
        self.verb = Some(verb);
        self
    }

    /// Only requests on this resource (`configmaps`, `databases.example.dev`, `databases.example.dev/status`).
    #[must_use]
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// Only requests for the object with this name.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Fire on each matching request with probability `p` (clamped to 0..=1), seeded.
    #[must_use]
    pub fn rate(mut self, p: f64) -> Self {
        self.trigger = Trigger::Rate(if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) });
        self
    }

    /// Fire on the first `n` matching requests only.
    #[must_use]
    pub fn times(mut self, n: u64) -> Self {
        self.trigger = Trigger::Times(n);
        self
    }

    /// Fire on exactly these matching requests (1-based: `&[2, 5]` is the 2nd and 5th).
    #[must_use]
    pub fn nth(mut self, which: &[u64]) -> Self {
        self.trigger = Trigger::Nth(which.to_vec());
        self
    }

    fn matches(&self, verb: Verb, resource: &str, name: Option<&str>) -> bool {
        self.verb.is_none_or(|v| v == verb)
            && self.resource.as_deref().is_none_or(|r| r == resource)
            && self.name.as_deref().is_none_or(|n| Some(n) == name)
    }
}

struct Rule {
    fault: Fault,
    seen: AtomicU64,
    fired: AtomicU64,
}

/// The fault injector of one server. Cheap to clone; clones share rules.
#[derive(Clone)]
pub struct Faults {
    rules: Arc<Mutex<Vec<Arc<Rule>>>>,
    rng: Arc<Mutex<fastrand::Rng>>,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self
            .rules
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("Faults")
            .field("rules", &n)
            .finish_non_exhaustive()
    }
}

impl Faults {
    pub(crate) fn new(seed: u64) -> Self {
        Faults {
            rules: Arc::default(),
            rng: Arc::new(Mutex::new(fastrand::Rng::with_seed(seed))),
        }
    }

    /// Adds a fault; rules are checked in the order they were added.
    pub fn inject(&self, fault: Fault) {
        let rule = Arc::new(Rule {
            fault,
            seen: AtomicU64::new(0),
            fired: AtomicU64::new(0),
        });
        self.rules
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(rule);
    }

    /// Removes every fault.
    pub fn clear(&self) {
        self.rules
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// How many times faults have fired in total.
    pub fn fired(&self) -> u64 {
        self.rules
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|r| r.fired.load(Ordering::Relaxed))
            .sum()
    }

    /// Applies the faults for a request: waits out latency, and returns the error to answer
    /// with, or for a watch how soon to drop it.
    pub(crate) async fn before(
        &self,
        verb: Verb,
        resource: &str,
        name: Option<&str>,
    ) -> Result<Option<Duration>, ApiError> {
        let mut drop_after = None;
        let rules: Vec<Arc<Rule>> = self
            .rules
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for rule in rules {
            if !rule.fault.matches(verb, resource, name) {
                continue;
            }
            let n = rule.seen.fetch_add(1, Ordering::Relaxed) + 1;
            let fire = match &rule.fault.trigger {
                Trigger::Always => true,
                Trigger::Rate(p) => {
                    self.rng
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .f64()
                        < *p
                }
                Trigger::Times(k) => n <= *k,
                Trigger::Nth(which) => which.contains(&n),
            };
            if !fire {
                continue;
            }
            rule.fired.fetch_add(1, Ordering::Relaxed);
            match &rule.fault.action {
                FaultAction::Latency(d) => tokio::time::sleep(*d).await,
                FaultAction::Error { code, retry_after } => {
                    let reason = match code {
                        409 => "Conflict",
                        429 => "TooManyRequests",
                        503 => "ServiceUnavailable",
                        504 => "Timeout",
                        404 => "NotFound",
                        _ => "InternalError",
                    };
                    let mut err =
                        ApiError::new(*code, reason, format!("injected fault: {reason} ({code})"));
                    err.retry_after = *retry_after;
                    return Err(err);
                }
                FaultAction::Expired => {
                    return Err(ApiError::gone("injected fault: too old resource version"));
                }
                FaultAction::DropWatch(after) => drop_after = Some(*after),
            }
        }
        Ok(drop_after)
    }
}
