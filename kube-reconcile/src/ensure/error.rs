//! Errors of [`Children`](super::Children).

use crate::error::{Classify, ErrorClass};

/// Why a [`Children`](super::Children) call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnsureError {
    /// An object lacks a field the call needs (the owner's `metadata.uid`, the child's
    /// `metadata.name`, the namespace of a namespaced child of a cluster-scoped owner).
    #[error("{object} has no {field}")]
    MissingField {
        /// Which object: `owner Database/prod`, `desired ConfigMap`.
        object: String,
        /// The missing field (`metadata.uid`).
        field: &'static str,
    },
    /// An object of that name exists and is not ours; it is left untouched.
    ///
    /// An object is ours when its controller owner reference names our owner's uid, or
    /// when it has no controller at all and our field manager wrote it before (or
    /// adoption is enabled, see [`EnsureConfig::adopt`](super::EnsureConfig::adopt)).
    #[error("{kind} {name} exists and is not ours: {}", describe_owner(.owner.as_deref()))]
    NotOwned {
        /// The child's kind (`ConfigMap`).
        kind: String,
        /// The child's `namespace/name` (or `name` when cluster-scoped).
        name: String,
        /// The controller it has (`Database/other`), or `None` when it has no controller.
        owner: Option<String>,
    },
    /// The object changed under us again after a re-read and one retry (HTTP 409).
    #[error("{kind} {name} kept changing under us (conflict after a retry)")]
    Conflict {
        /// The child's kind.
        kind: String,
        /// The child's `namespace/name`.
        name: String,
        /// The second conflict.
        #[source]
        source: Box<kube::Error>,
    },
    /// A request to the API server failed.
    #[error("{action} {kind} {name} failed")]
    Api {
        /// What was being done: `getting`, `applying`, `creating`, `patching`, `deleting`, `listing`, `serializing`.
        action: &'static str,
        /// The child's kind.
        kind: String,
        /// The child's `namespace/name` (empty for a list).
        name: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
    /// A setting of [`EnsureConfig`](super::EnsureConfig) is not valid.
    #[error("invalid ensure config: {message}")]
    InvalidConfig {
        /// What is wrong and how to fix it.
        message: String,
    },
}

fn describe_owner(owner: Option<&str>) -> String {
    match owner {
        Some(o) => format!("it is controlled by {o}"),
        None => "it has no controller and was not written by our field manager".to_string(),
    }
}

/// | Error | Class |
/// |---|---|
/// | `Conflict` | `Conflict` |
/// | `Api` | the class of the `kube::Error` |
/// | `NotOwned`, `MissingField`, `InvalidConfig` | `Terminal` |
///
/// Reasons: `ChildNotOwned`, `ChildConflict`, `KubernetesError` (`Api`), `ChildInvalid`
/// (`MissingField`) and `InvalidConfig`.
impl Classify for EnsureError {
    fn class(&self) -> ErrorClass {
        match self {
            EnsureError::Conflict { .. } => ErrorClass::Conflict,
            EnsureError::Api { source, .. } => source.class(),
            EnsureError::MissingField { .. }
            | EnsureError::NotOwned { .. }
            | EnsureError::InvalidConfig { .. } => ErrorClass::Terminal,
        }
    }

    fn reason(&self) -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed(match self {
            EnsureError::NotOwned { .. } => "ChildNotOwned",
            EnsureError::Conflict { .. } => "ChildConflict",
            EnsureError::Api { .. } => "KubernetesError",
            EnsureError::MissingField { .. } => "ChildInvalid",
            EnsureError::InvalidConfig { .. } => "InvalidConfig",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_owned_says_who_owns_it() {
        let err = EnsureError::NotOwned {
            kind: "ConfigMap".into(),
            name: "default/settings".into(),
            owner: Some("Database/other".into()),
        };
        assert_eq!(
            err.to_string(),
            "ConfigMap default/settings exists and is not ours: it is controlled by Database/other"
        );
        assert_eq!(err.class(), ErrorClass::Terminal);
        let err = EnsureError::NotOwned {
            kind: "Secret".into(),
            name: "default/pw".into(),
            owner: None,
        };
        assert!(
            err.to_string()
                .ends_with("has no controller and was not written by our field manager")
        );
    }

    #[test]
    fn api_errors_keep_their_class() {
        let status = kube::core::Status::failure("slow down", "TooManyRequests").with_code(429);
        let err = EnsureError::Api {
            action: "applying",
            kind: "ConfigMap".into(),
            name: "default/x".into(),
            source: Box::new(kube::Error::Api(status.boxed())),
        };
        assert!(matches!(err.class(), ErrorClass::Throttled { .. }));
        assert_eq!(err.to_string(), "applying ConfigMap default/x failed");
    }
}
