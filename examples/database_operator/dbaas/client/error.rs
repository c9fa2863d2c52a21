//! [`DbaasError`]: what a DBaaS call can fail with, and what each failure means for retries.

use std::{io, time::Duration};

use kube_reconcile::{Classify, ErrorClass};

/// A failed DBaaS call.
///
/// | Failure | Variant | Class |
/// |---|---|---|
/// | 429 | [`Throttled`](Self::Throttled) | `Throttled`, with `Retry-After` |
/// | 5xx, refused connection, broken exchange, timeout, malformed body | [`Unavailable`](Self::Unavailable), [`Connect`](Self::Connect), [`Http`](Self::Http), [`Timeout`](Self::Timeout), [`Malformed`](Self::Malformed) | `Transient` |
/// | 404 | [`NotFound`](Self::NotFound) | `Terminal` (the caller decides what a missing instance means) |
/// | 409 (the instance is being deleted) | [`Conflict`](Self::Conflict) | `Conflict` |
/// | other 4xx (401: a wrong token), a request that cannot be built | [`Rejected`](Self::Rejected), [`Request`](Self::Request), [`InvalidUrl`](Self::InvalidUrl), [`InvalidToken`](Self::InvalidToken) | `Terminal` |
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbaasError {
    /// The service's rate limit refused the call (429).
    #[error("dbaas rate limit exceeded")]
    Throttled {
        /// The wait the service asked for (`Retry-After`), if it sent one.
        retry_after: Option<Duration>,
    },
    /// The service failed or is down (5xx).
    #[error("dbaas unavailable ({status} {code}): {message}")]
    Unavailable {
        /// The HTTP status.
        status: u16,
        /// The service's error code.
        code: String,
        /// The service's message.
        message: String,
    },
    /// No such instance (404).
    #[error("dbaas instance not found: {message}")]
    NotFound {
        /// The service's message.
        message: String,
    },
    /// The request conflicts with the instance's state (409); retry once it has settled.
    #[error("dbaas conflict ({code}): {message}")]
    Conflict {
        /// The service's error code.
        code: String,
        /// The service's message.
        message: String,
    },
    /// The service refused the request as it is (4xx); resending it will not help.
    #[error("dbaas rejected the request ({status} {code}): {message}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The service's error code, such as `unsupported_engine`.
        code: String,
        /// The service's message, naming what to change.
        message: String,
    },
    /// The service did not answer within the client's timeout.
    #[error("dbaas did not answer within {0:?}")]
    Timeout(Duration),
    /// No connection could be made.
    #[error("cannot connect to the dbaas")]
    Connect(#[source] io::Error),
    /// The HTTP exchange broke off.
    #[error("dbaas http exchange failed")]
    Http(#[source] hyper::Error),
    /// The answer was not the JSON expected.
    #[error("malformed dbaas response")]
    Malformed(#[source] serde_json::Error),
    /// The request could not be built (an idempotency key that is not a valid header value).
    #[error("invalid dbaas request")]
    Request(#[source] hyper::http::Error),
    /// The base URL is not `http://host:port`.
    #[error("invalid dbaas url {0:?}, expected http://host:port")]
    InvalidUrl(String),
    /// The access token is empty or has characters a header cannot carry (the token itself
    /// is never part of the message).
    #[error("invalid dbaas token: expected the printable token the DBaaS wrote to its token file")]
    InvalidToken,
}

impl DbaasError {
    /// Whether the instance does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, DbaasError::NotFound { .. })
    }
}

impl Classify for DbaasError {
    fn class(&self) -> ErrorClass {
        match self {
            DbaasError::Throttled { retry_after } => ErrorClass::Throttled {
                retry_after: *retry_after,
            },
            DbaasError::Unavailable { .. }
            | DbaasError::Timeout(_)
            | DbaasError::Connect(_)
            | DbaasError::Http(_)
            | DbaasError::Malformed(_) => ErrorClass::Transient,
            DbaasError::Conflict { .. } => ErrorClass::Conflict,
            DbaasError::NotFound { .. }
            | DbaasError::Rejected { .. }
            | DbaasError::Request(_)
            | DbaasError::InvalidUrl(_)
            | DbaasError::InvalidToken => ErrorClass::Terminal,
        }
    }

    fn is_timeout(&self) -> bool {
        matches!(self, DbaasError::Timeout(_))
    }

    fn reason(&self) -> std::borrow::Cow<'static, str> {
        "DbaasError".into()
    }
}
