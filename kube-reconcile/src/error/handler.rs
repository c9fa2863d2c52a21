//! [`HandlerError`]: the error a phase handler returns without writing one.

use std::{borrow::Cow, error::Error as StdError, fmt};

use super::{Classify, ErrorClass};

/// The error a handler returns when it needs no error type of its own.
///
/// `?` turns the library's errors into it ([`EnsureError`](crate::EnsureError),
/// [`ExternalError`](crate::external::ExternalError), `kube::Error`), each keeping its
/// class and its reason; [`new`](Self::new) takes any other classified error and
/// [`other`](Self::other) one that is not. It is transparent: its message and its
/// `source()` are those of the error inside.
///
/// # Examples
///
/// ```
/// use kube_reconcile::{Classify, ErrorClass, HandlerError};
///
/// fn seed() -> Result<u64, HandlerError> {
///     let bytes = std::fs::read("/nonexistent/seed")
///         .map_err(|e| HandlerError::other(ErrorClass::Transient, "NoSeed", e))?;
///     Ok(bytes.len() as u64)
/// }
///
/// let error = seed().unwrap_err();
/// assert_eq!(error.class(), ErrorClass::Transient);
/// assert_eq!(error.reason(), "NoSeed");
/// ```
#[derive(Debug)]
pub struct HandlerError {
    class: ErrorClass,
    timeout: bool,
    reason: Cow<'static, str>,
    source: Box<dyn StdError + Send + Sync>,
}

impl HandlerError {
    /// Wraps a classified error, keeping its class, reason and timeout flag.
    pub fn new<E: Classify + StdError + Send + Sync + 'static>(error: E) -> Self {
        HandlerError {
            class: error.class(),
            timeout: error.is_timeout(),
            reason: error.reason(),
            source: Box::new(error),
        }
    }

    /// Wraps any error with the class and the `CamelCase` reason given.
    pub fn other(
        class: ErrorClass,
        reason: impl Into<Cow<'static, str>>,
        error: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        HandlerError {
            class,
            timeout: false,
            reason: reason.into(),
            source: error.into(),
        }
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)
    }
}

impl StdError for HandlerError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.source()
    }
}

impl Classify for HandlerError {
    fn class(&self) -> ErrorClass {
        self.class
    }

    fn is_timeout(&self) -> bool {
        self.timeout
    }

    fn reason(&self) -> Cow<'static, str> {
        self.reason.clone()
    }
}

impl From<crate::EnsureError> for HandlerError {
    fn from(error: crate::EnsureError) -> Self {
        HandlerError::new(error)
    }
}

impl<E: Classify + StdError + Send + Sync + 'static> From<crate::external::ExternalError<E>>
    for HandlerError
{
    fn from(error: crate::external::ExternalError<E>) -> Self {
        HandlerError::new(error)
    }
}

impl From<kube::Error> for HandlerError {
    fn from(error: kube::Error) -> Self {
        HandlerError::new(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EnsureError, external::ExternalError};

    #[derive(Debug, thiserror::Error)]
    #[error("dbaas answered 503")]
    struct Dbaas(#[source] std::io::Error);

    impl Classify for Dbaas {
        fn class(&self) -> ErrorClass {
            ErrorClass::Throttled { retry_after: None }
        }

        fn is_timeout(&self) -> bool {
            true
        }

        fn reason(&self) -> Cow<'static, str> {
            "DbaasError".into()
        }
    }

    #[test]
    fn a_wrapped_error_keeps_its_class_reason_message_and_causes() {
        let io = std::io::Error::other("connection reset");
        let error = HandlerError::from(ExternalError::Call(Dbaas(io)));
        assert_eq!(error.class(), ErrorClass::Throttled { retry_after: None });
        assert!(error.is_timeout());
        assert_eq!(error.reason(), "DbaasError");
        assert_eq!(
            error.to_string(),
            "dbaas answered 503",
            "transparent: no words of its own"
        );
        assert_eq!(
            error.source().map(ToString::to_string).as_deref(),
            Some("connection reset")
        );
    }

    #[test]
    fn the_library_errors_bring_their_reasons() {
        let not_owned = HandlerError::from(EnsureError::NotOwned {
            kind: "ConfigMap".into(),
            name: "default/settings".into(),
            owner: None,
        });
        assert_eq!(not_owned.reason(), "ChildNotOwned");
        assert_eq!(not_owned.class(), ErrorClass::Terminal);
        let missing = HandlerError::from(ExternalError::<Dbaas>::MissingUid { name: "db".into() });
        assert_eq!(missing.reason(), "MissingUid");
        let other = HandlerError::other(ErrorClass::Transient, "NoRandomness", "no entropy");
        assert_eq!(
            (other.reason(), other.class()),
            ("NoRandomness".into(), ErrorClass::Transient)
        );
        assert_eq!(other.to_string(), "no entropy");
    }
}
