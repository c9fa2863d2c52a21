//! The error of this module: [`ExternalError`].

use crate::error::{Classify, ErrorClass};

use super::unavailable::Unavailable;

/// Why no idempotency key could be derived (inside the crate; users see it as an
/// [`ExternalError`] variant).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KeyError {
    MissingUid { name: String },
    InvalidPrefix { prefix: String, why: &'static str },
}

/// The error of a call through a [`Dependency`](super::Dependency): `E` is the client's
/// own error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExternalError<E> {
    /// The call was made and failed.
    #[error(transparent)]
    Call(E),
    /// The dependency held the call back (own budget, outage, open circuit); it was not
    /// made. Inside a phase handler or cleanup, `?` on it is all the handling it needs.
    #[error("{0}")]
    Unavailable(Box<Unavailable>),
    /// The object has no UID, so it has no stable identity to derive an idempotency
    /// key from.
    #[error("object {name} has no metadata.uid: it was never stored by an api server")]
    MissingUid {
        /// The object's name (empty if it has none either).
        name: String,
    },
    /// The dependency's [key prefix](super::ExactlyOnce::key_prefix) would not make a key
    /// that is a DNS label.
    #[error("invalid idempotency key prefix {prefix:?}: {why}")]
    InvalidPrefix {
        /// The prefix given.
        prefix: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

impl<E> ExternalError<E> {
    /// The unavailability, if the dependency held the call back.
    #[cfg(test)]
    pub(crate) fn unavailable(&self) -> Option<&Unavailable> {
        match self {
            ExternalError::Unavailable(u) => Some(u),
            _ => None,
        }
    }
}

impl<E> From<KeyError> for ExternalError<E> {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::MissingUid { name } => ExternalError::MissingUid { name },
            KeyError::InvalidPrefix { prefix, why } => ExternalError::InvalidPrefix { prefix, why },
        }
    }
}

/// A held-back call is [`Throttled`](ErrorClass::Throttled) with the time to wait; a
/// failed call keeps its own class; a missing UID or a bad prefix is a bug in the caller
/// ([`Terminal`](ErrorClass::Terminal)). The reason of a failed call is the client
/// error's own; a held-back call's is `DependencyUnavailable`; a missing UID's
/// `MissingUid`; a bad prefix's `InvalidConfig`.
impl<E: Classify> Classify for ExternalError<E> {
    fn class(&self) -> ErrorClass {
        match self {
            ExternalError::Call(e) => e.class(),
            ExternalError::Unavailable(u) => ErrorClass::Throttled {
                retry_after: Some(u.retry_after),
            },
            ExternalError::MissingUid { .. } | ExternalError::InvalidPrefix { .. } => {
                ErrorClass::Terminal
            }
        }
    }

    fn is_timeout(&self) -> bool {
        match self {
            ExternalError::Call(e) => e.is_timeout(),
            _ => false,
        }
    }

    fn reason(&self) -> std::borrow::Cow<'static, str> {
        match self {
            ExternalError::Call(e) => e.reason(),
            ExternalError::Unavailable(_) => "DependencyUnavailable".into(),
            ExternalError::MissingUid { .. } => "MissingUid".into(),
            ExternalError::InvalidPrefix { .. } => "InvalidConfig".into(),
        }
    }
}
