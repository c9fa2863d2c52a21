//! What the phase engine fails with.

use crate::error::{Classify, ErrorClass};

/// Why a phase-machine reconcile failed.
///
/// Handler and cleanup errors keep their class, so the backoff layer treats them as the
/// handler meant; a refused transition or a malformed object is `Terminal`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PhaseError<E> {
    /// The handler of a phase failed with a retryable error; the phase is kept.
    #[error("the {phase} handler failed")]
    Handler {
        /// The phase.
        phase: &'static str,
        /// The handler's error.
        #[source]
        source: E,
    },
    /// The cleanup of a deleted object failed; the finalizer stays.
    #[error("cleanup failed; the finalizer stays until it succeeds")]
    Cleanup {
        /// The cleanup's error.
        #[source]
        source: E,
    },
    /// A handler asked for an edge the table does not declare; nothing moved.
    #[error("the {from} handler asked for {to}, which the transition table does not declare")]
    UndeclaredTransition {
        /// The current phase.
        from: &'static str,
        /// The phase asked for.
        to: &'static str,
    },
    /// Reading or writing the object failed.
    #[error("{action} failed")]
    Kube {
        /// What the engine was doing.
        action: &'static str,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The object lacks a field the engine needs.
    #[error("the object has no {0}")]
    MissingField(&'static str),
    /// A handler's extra status fields could not be used.
    #[error("the status fields of a transition are unusable: {0}")]
    StatusFields(String),
}

impl<E: Classify> Classify for PhaseError<E> {
    fn class(&self) -> ErrorClass {
        match self {
            PhaseError::Handler { source, .. } | PhaseError::Cleanup { source } => source.class(),
            PhaseError::Kube { source, .. } => source.class(),
            PhaseError::UndeclaredTransition { .. }
            | PhaseError::MissingField(_)
            | PhaseError::StatusFields(_) => ErrorClass::Terminal,
        }
    }

    fn is_timeout(&self) -> bool {
        match self {
            PhaseError::Handler { source, .. } | PhaseError::Cleanup { source } => {
                source.is_timeout()
            }
            PhaseError::Kube { source, .. } => source.is_timeout(),
            _ => false,
        }
    }
}
