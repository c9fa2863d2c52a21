//! The errors of this module.

use crate::error::{Classify, ErrorClass};

use super::unavailable::Unavailable;

/// An [`IdempotencyKey`](super::IdempotencyKey) could not be derived.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The object has no UID, so it has no stable identity to derive a key from.
    #[error("object {name} has no metadata.uid: it was never stored by an api server")]
    MissingUid {
        /// The object's name (empty if it has none either).
        name: String,
    },
    /// The prefix would not make a key that is a DNS label.
    #[error("invalid idempotency key prefix {prefix:?}: {why}")]
    InvalidPrefix {
        /// The prefix given.
        prefix: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// A key error is a bug in the caller (an unsaved object or a bad prefix): retrying
/// cannot help.
impl Classify for KeyError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Terminal
    }
}

/// The error of [`ExternalResource::ensure`](super::ExternalResource::ensure) and
/// [`ExternalResource::delete`](super::ExternalResource::delete): `E` is the external
/// client's error, `J` the journal's.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExternalError<E, J = kube::Error> {
    /// No idempotency key for the object.
    #[error("no idempotency key for the object")]
    Key(#[source] KeyError),
    /// A call to the external system failed.
    #[error(transparent)]
    Client(E),
    /// Recording the key or the external id on the object failed.
    #[error("recording the external resource on the object failed")]
    Journal(#[source] J),
    /// The dependency the calls go through held a call back; it was not made.
    #[error("{0}")]
    Unavailable(Box<Unavailable>),
}

impl<E, J> ExternalError<E, J> {
    /// The external client's error, if that is what failed.
    pub fn into_client(self) -> Option<E> {
        match self {
            ExternalError::Client(e) => Some(e),
            _ => None,
        }
    }
}

/// Each variant keeps the class of its cause; a key error is
/// [`Terminal`](ErrorClass::Terminal).
impl<E: Classify, J: Classify> Classify for ExternalError<E, J> {
    fn class(&self) -> ErrorClass {
        match self {
            ExternalError::Key(e) => e.class(),
            ExternalError::Client(e) => e.class(),
            ExternalError::Journal(e) => e.class(),
            ExternalError::Unavailable(u) => ErrorClass::Throttled {
                retry_after: Some(u.retry_after),
            },
        }
    }

    fn is_timeout(&self) -> bool {
        match self {
            ExternalError::Key(_) | ExternalError::Unavailable(_) => false,
            ExternalError::Client(e) => e.is_timeout(),
            ExternalError::Journal(e) => e.is_timeout(),
        }
    }
}

/// The error of [`ExternalDependency::call`](super::ExternalDependency::call).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GateError<E> {
    /// The gate did not let the call through; it was not made.
    #[error("{0}")]
    Unavailable(Box<Unavailable>),
    /// The call was made and failed.
    #[error(transparent)]
    Call(E),
}

impl<E> GateError<E> {
    /// The call's own error, if it was made and failed.
    pub fn into_call(self) -> Option<E> {
        match self {
            GateError::Call(e) => Some(e),
            GateError::Unavailable(_) => None,
        }
    }

    /// The unavailability, if the gate held the call back.
    pub fn unavailable(&self) -> Option<&Unavailable> {
        match self {
            GateError::Unavailable(u) => Some(u),
            GateError::Call(_) => None,
        }
    }
}

/// A held-back call is [`Throttled`](ErrorClass::Throttled) with the time to wait; a
/// failed call keeps its own class.
impl<E: Classify> Classify for GateError<E> {
    fn class(&self) -> ErrorClass {
        match self {
            GateError::Unavailable(u) => ErrorClass::Throttled {
                retry_after: Some(u.retry_after),
            },
            GateError::Call(e) => e.class(),
        }
    }

    fn is_timeout(&self) -> bool {
        match self {
            GateError::Unavailable(_) => false,
            GateError::Call(e) => e.is_timeout(),
        }
    }
}
