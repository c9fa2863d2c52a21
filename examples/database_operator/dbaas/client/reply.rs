//! Turning an HTTP answer into a result.

use std::time::Duration;

use bytes::Bytes;
use hyper::{HeaderMap, StatusCode, header::RETRY_AFTER};
use tokio::task::JoinHandle;

use kube_reconcile::external::RateLimitHint;

use super::{super::api::ApiError, DbaasError};

/// An answer, not yet judged.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

impl Reply {
    /// The body of a 2xx answer, or the error any other status stands for.
    pub(super) fn ok(self) -> Result<Bytes, DbaasError> {
        // How much of its budget the DBaaS says is left, for ours to slow down before a 429.
        if let Some(hint) = RateLimitHint::from_headers(&self.headers) {
            hint.report();
        }
        let status = self.status;
        if status.is_success() {
            return Ok(self.body);
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            let retry_after = self
                .headers
                .get(RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Err(DbaasError::Throttled { retry_after });
        }
        let ApiError { code, message, .. } =
            serde_json::from_slice(&self.body).unwrap_or_else(|_| ApiError {
                code: "unknown".into(),
                message: String::from_utf8_lossy(&self.body)
                    .chars()
                    .take(200)
                    .collect(),
                retry_after_seconds: None,
            });
        let status_code = status.as_u16();
        Err(match status {
            StatusCode::NOT_FOUND => DbaasError::NotFound { message },
            StatusCode::CONFLICT => DbaasError::Conflict { code, message },
            _ if status.is_client_error() => DbaasError::Rejected {
                status: status_code,
                code,
                message,
            },
            _ => DbaasError::Unavailable {
                status: status_code,
                code,
                message,
            },
        })
    }
}

/// Ends the connection task when the call is done or dropped (on timeout).
pub(super) struct AbortOnDrop(pub(super) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
