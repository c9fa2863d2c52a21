//! [`BackoffLayer`]: wraps reconcilers in [`Backoff`] that share one per-object state.

use tower_layer::Layer;

use super::{Backoff, BackoffConfig, BackoffHandle};

/// Builds [`Backoff`] reconcilers; every reconciler it wraps shares one per-object state.
///
/// Objects are keyed by UID, so one layer may serve reconcilers of several kinds.
///
/// # Examples
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use k8s_openapi::api::core::v1::ConfigMap;
/// use kube::runtime::controller::Action;
/// use kube_reconcile::{ReconcilerExt, middleware::backoff::{BackoffConfig, BackoffLayer}};
///
/// async fn reconcile(_: Arc<ConfigMap>, _: Arc<()>) -> Result<Action, kube::Error> {
///     Ok(Action::await_change())
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let layer = BackoffConfig::operator().cap(Duration::from_secs(60)).build()?;
/// let handle = layer.handle();
/// let reconciler = reconcile.with(layer);
/// assert_eq!(handle.sweep(), 0, "no object tracked yet");
/// # let _ = reconciler;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct BackoffLayer {
    handle: BackoffHandle,
}

impl BackoffLayer {
    /// A layer with the schedule of `config`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`](crate::ConfigError) if a value in `config` cannot work.
    pub(crate) fn new(config: BackoffConfig) -> Result<Self, crate::ConfigError> {
        Ok(BackoffLayer {
            handle: BackoffHandle::new(config)?,
        })
    }

    /// A layer with the recommended schedule, [`BackoffConfig::operator`]: 1 s doubling
    /// to 300 s, full jitter.
    ///
    /// Reads tokio's clock from now on; create it inside the runtime it should follow.
    pub fn operator() -> Self {
        Self::from_preset(BackoffConfig::operator())
    }

    /// A layer with client-go's schedule, [`BackoffConfig::client_go`]: 5 ms doubling to
    /// 1000 s, no jitter.
    #[cfg(test)]
    pub(crate) fn client_go() -> Self {
        Self::from_preset(BackoffConfig::client_go())
    }

    fn from_preset(preset: BackoffConfig) -> Self {
        BackoffLayer {
            handle: BackoffHandle::from_resolved(preset.resolve_unchecked()),
        }
    }

    /// A handle on the per-object state of every reconciler this layer wraps.
    #[doc(hidden)]
    pub fn handle(&self) -> BackoffHandle {
        self.handle.clone()
    }
}

impl<R> Layer<R> for BackoffLayer {
    type Service = Backoff<R>;

    fn layer(&self, inner: R) -> Backoff<R> {
        Backoff::new(inner, self.handle.clone())
    }
}
