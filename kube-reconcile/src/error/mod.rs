//! Error classification: how middleware decides what a failure means.
//!
//! Every error that reaches the middleware has an [`ErrorClass`]. The class, not the
//! error's type, drives what happens next:
//!
//! | Class | Backoff | Circuit breaker |
//! |---|---|---|
//! | [`Transient`](ErrorClass::Transient) | exponential delay, exponent grows | counted as a failure |
//! | [`Throttled`](ErrorClass::Throttled) | `max(delay, retry_after)` | counted; open time honours `retry_after` |
//! | [`Conflict`](ErrorClass::Conflict) | quick requeue, exponent unchanged | not counted |
//! | [`Terminal`](ErrorClass::Terminal) | state reset, await a change | not counted |
//!
//! [`kube::Error`] is classified out of the box (see its [`Classify`] impl). Implement
//! [`Classify`] for your own error type, or wrap a value with [`terminal`] to mark it
//! as not worth retrying.

mod handler;

use std::{borrow::Cow, error::Error as StdError, fmt, sync::Arc, time::Duration};

pub use self::handler::HandlerError;

/// What a failure means for retries and breakers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// May succeed if retried later: network errors, timeouts, 5xx.
    Transient,
    /// The other side asked us to slow down (429, 503, 504), possibly saying for how long.
    Throttled {
        /// How long the server asked us to wait (`Retry-After`), if it said.
        retry_after: Option<Duration>,
    },
    /// An optimistic-concurrency conflict (409): re-read and retry soon.
    Conflict,
    /// Retrying the same input will not help: bad spec, validation error, not found.
    Terminal,
}

impl ErrorClass {
    /// The wait the other side asked for, if any.
    pub(crate) const fn retry_after(self) -> Option<Duration> {
        match self {
            ErrorClass::Throttled { retry_after } => retry_after,
            _ => None,
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorClass::Transient => f.write_str("transient"),
            ErrorClass::Throttled { retry_after: None } => f.write_str("throttled"),
            ErrorClass::Throttled {
                retry_after: Some(d),
            } => write!(f, "throttled (retry after {d:?})"),
            ErrorClass::Conflict => f.write_str("conflict"),
            ErrorClass::Terminal => f.write_str("terminal"),
        }
    }
}

/// Classifies an error for the middleware.
///
/// # Examples
///
/// ```
/// use kube_reconcile::{Classify, ErrorClass};
///
/// #[derive(Debug, thiserror::Error)]
/// enum Error {
///     #[error("invalid spec: {0}")]
///     InvalidSpec(String),
///     #[error("kubernetes api call failed")]
///     Kube(#[source] kube::Error),
/// }
///
/// impl Classify for Error {
///     fn class(&self) -> ErrorClass {
///         match self {
///             Error::InvalidSpec(_) => ErrorClass::Terminal,
///             Error::Kube(e) => e.class(),
///         }
///     }
/// }
///
/// assert_eq!(Error::InvalidSpec("replicas".into()).class(), ErrorClass::Terminal);
/// ```
pub trait Classify {
    /// This error's class.
    fn class(&self) -> ErrorClass;

    /// Whether this error is a timeout that elapsed; a circuit breaker counts it as a
    /// slow call too. Defaults to `false`.
    fn is_timeout(&self) -> bool {
        false
    }

    /// The `CamelCase` reason the phase engine records for this error (on the `Ready`
    /// condition and the `Warning` Event). Defaults to `ReconcileError`.
    fn reason(&self) -> Cow<'static, str> {
        Cow::Borrowed("ReconcileError")
    }
}

impl<E: Classify + ?Sized> Classify for &E {
    fn class(&self) -> ErrorClass {
        (**self).class()
    }

    fn is_timeout(&self) -> bool {
        (**self).is_timeout()
    }

    fn reason(&self) -> Cow<'static, str> {
        (**self).reason()
    }
}

impl<E: Classify + ?Sized> Classify for Box<E> {
    fn class(&self) -> ErrorClass {
        (**self).class()
    }

    fn is_timeout(&self) -> bool {
        (**self).is_timeout()
    }

    fn reason(&self) -> Cow<'static, str> {
        (**self).reason()
    }
}

impl<E: Classify + ?Sized> Classify for Arc<E> {
    fn class(&self) -> ErrorClass {
        (**self).class()
    }

    fn is_timeout(&self) -> bool {
        (**self).is_timeout()
    }

    fn reason(&self) -> Cow<'static, str> {
        (**self).reason()
    }
}

impl Classify for ErrorClass {
    fn class(&self) -> ErrorClass {
        *self
    }
}

impl Classify for std::convert::Infallible {
    fn class(&self) -> ErrorClass {
        match *self {}
    }
}

/// Default rules for errors from the Kubernetes API.
///
/// | Error | Class |
/// |---|---|
/// | 409 Conflict | `Conflict` |
/// | 429, 503, 504 | `Throttled`, with `retry_after` from `details.retryAfterSeconds` |
/// | other 5xx with `retryAfterSeconds` | `Throttled` |
/// | 400, 404, 405, 406, 413, 415, 422 | `Terminal` |
/// | other 4xx (401, 403, 410, ...) and other 5xx | `Transient` |
/// | connection, TLS, timeout and stream errors | `Transient` |
/// | response that does not deserialize, request that cannot be built | `Terminal` |
impl Classify for kube::Error {
    fn class(&self) -> ErrorClass {
        match self {
            kube::Error::Api(status) => {
                let retry_after = status
                    .details
                    .as_ref()
                    .map(|d| d.retry_after_seconds)
                    .filter(|s| *s > 0)
                    .map(|s| Duration::from_secs(u64::from(s)));
                classify_status(status.code, retry_after)
            }
            kube::Error::SerdeError(_) | kube::Error::BuildRequest(_) => ErrorClass::Terminal,
            _ => ErrorClass::Transient,
        }
    }

    /// `KubernetesError`.
    fn reason(&self) -> Cow<'static, str> {
        Cow::Borrowed("KubernetesError")
    }
}

/// Classifies an HTTP status code from the Kubernetes API (or any HTTP API that uses the
/// same conventions), with the `Retry-After` the response carried.
pub(crate) fn classify_status(code: u16, retry_after: Option<Duration>) -> ErrorClass {
    match code {
        409 => ErrorClass::Conflict,
        429 | 503 | 504 => ErrorClass::Throttled { retry_after },
        500..=599 if retry_after.is_some() => ErrorClass::Throttled { retry_after },
        400 | 404 | 405 | 406 | 413 | 415 | 422 => ErrorClass::Terminal,
        _ => ErrorClass::Transient,
    }
}

/// An error that must not be retried, like controller-runtime's `TerminalError`.
///
/// It is logged and counted, it resets per-object backoff, it never opens a circuit
/// breaker, and the reconcile waits for the object to change.
///
/// # Examples
///
/// ```
/// use kube_reconcile::{Classify, ErrorClass, terminal};
///
/// let err = terminal(std::io::Error::other("spec.replicas must be positive"));
/// assert_eq!(err.class(), ErrorClass::Terminal);
/// assert_eq!(err.to_string(), "terminal error");
/// ```
#[derive(Debug)]
pub struct Terminal<E>(pub E);

/// Marks `error` as terminal: see [`Terminal`].
pub fn terminal<E>(error: E) -> Terminal<E> {
    Terminal(error)
}

impl<E> Classify for Terminal<E> {
    fn class(&self) -> ErrorClass {
        ErrorClass::Terminal
    }
}

impl<E: StdError + 'static> fmt::Display for Terminal<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("terminal error")
    }
}

impl<E: StdError + 'static> StdError for Terminal<E> {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.0)
    }
}

/// A setting that cannot work, from any builder of the crate (backoff, circuit breaker,
/// rate limit, quota, transition table, phase engine); the message names the setting and
/// what is wrong with it (`backoff base delay 2s is longer than the cap 1s`).
///
/// Returned when a configuration is turned into the thing it configures, never later: a
/// value that passed `build` works.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ConfigError(pub(crate) ConfigProblem);

/// Which builder refused, with its own detailed reason.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigProblem {
    #[error(transparent)]
    Backoff(crate::middleware::backoff::BackoffConfigError),
    #[error(transparent)]
    Breaker(crate::middleware::circuit_breaker::ConfigError),
    #[error(transparent)]
    Quota(crate::middleware::rate_limit::QuotaError),
    #[error(transparent)]
    RateLimit(crate::middleware::rate_limit::RateLimitConfigError),
    #[error(transparent)]
    Phase(crate::phase::PhaseConfigError),
    #[error(transparent)]
    Table(crate::phase::TableError),
}

macro_rules! config_problem {
    ($($variant:ident($ty:ty)),* $(,)?) => {$(
        impl From<$ty> for ConfigError {
            fn from(e: $ty) -> Self {
                ConfigError(ConfigProblem::$variant(e))
            }
        }
    )*};
}

config_problem! {
    Backoff(crate::middleware::backoff::BackoffConfigError),
    Breaker(crate::middleware::circuit_breaker::ConfigError),
    Quota(crate::middleware::rate_limit::QuotaError),
    RateLimit(crate::middleware::rate_limit::RateLimitConfigError),
    Phase(crate::phase::PhaseConfigError),
    Table(crate::phase::TableError),
}

#[cfg(test)]
macro_rules! config_problem_accessors {
    ($($name:ident: $variant:ident($ty:ty)),* $(,)?) => {
        impl ConfigError {
            $(
                /// The refusal of one builder, for the unit tests that check its reasons.
                pub(crate) fn $name(self) -> $ty {
                    match self.0 {
                        ConfigProblem::$variant(e) => e,
                        other => panic!("not a {} error: {other}", stringify!($name)),
                    }
                }
            )*
        }
    };
}

#[cfg(test)]
config_problem_accessors! {
    backoff: Backoff(crate::middleware::backoff::BackoffConfigError),
    breaker: Breaker(crate::middleware::circuit_breaker::ConfigError),
    quota: Quota(crate::middleware::rate_limit::QuotaError),
    rate_limit: RateLimit(crate::middleware::rate_limit::RateLimitConfigError),
    table: Table(crate::phase::TableError),
}

/// A bad configuration is a bug in the caller: retrying cannot help.
impl Classify for ConfigError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Terminal
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::{Status, response::StatusDetails};

    fn api_error(code: u16, retry_after_seconds: u32) -> kube::Error {
        let mut status = Status::failure("boom", "Reason").with_code(code);
        if retry_after_seconds > 0 {
            status = status.with_details(StatusDetails {
                name: String::new(),
                group: String::new(),
                kind: String::new(),
                uid: String::new(),
                causes: Vec::new(),
                retry_after_seconds,
            });
        }
        kube::Error::Api(status.boxed())
    }

    #[test]
    fn kube_conflict_is_conflict() {
        assert_eq!(api_error(409, 0).class(), ErrorClass::Conflict);
    }

    #[test]
    fn kube_429_honours_retry_after_seconds() {
        assert_eq!(
            api_error(429, 7).class(),
            ErrorClass::Throttled {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert_eq!(
            api_error(503, 0).class(),
            ErrorClass::Throttled { retry_after: None }
        );
    }

    #[test]
    fn kube_validation_and_not_found_are_terminal() {
        for code in [400, 404, 422] {
            assert_eq!(api_error(code, 0).class(), ErrorClass::Terminal, "{code}");
        }
    }

    #[test]
    fn kube_server_errors_and_forbidden_are_transient() {
        for code in [500, 502, 401, 403, 410] {
            assert_eq!(api_error(code, 0).class(), ErrorClass::Transient, "{code}");
        }
    }

    #[test]
    fn kube_connection_errors_are_transient() {
        let err = kube::Error::Service("connection refused".into());
        assert_eq!(err.class(), ErrorClass::Transient);
    }

    #[test]
    fn terminal_wrapper_keeps_its_source() {
        let err = terminal(std::io::Error::other("bad spec"));
        assert_eq!(err.class(), ErrorClass::Terminal);
        assert_eq!(
            StdError::source(&err).map(ToString::to_string).as_deref(),
            Some("bad spec")
        );
    }
}
