//! The embedded API server.

mod admission;
mod body;
mod bootstrap;
mod crd;
mod defaults;
mod discovery;
mod error;
mod faults;
mod fieldpath;
mod handler;
mod http_server;
mod lifecycle;
mod meta;
mod openapi;
mod patch;
mod request;
mod resources;
mod schema;
mod selectors;
mod snapshot;
mod ssa;
mod stats;
mod store;
mod strict;
mod table;
mod tokens;
mod view;
mod watch;

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::BodyExt as _;

pub use self::{
    body::Body,
    error::ApiError,
    faults::{Fault, FaultAction, Faults},
    http_server::HttpServer,
    request::Verb,
    stats::RequestCounts,
};

/// Settings of an [`ApiServer`].
///
/// # Default
///
/// 10 000 changes of watch history, fault seed 0, a bookmark every 60 s on watches that
/// allow them.
#[derive(Clone, Debug)]
pub struct ApiServerBuilder {
    history: usize,
    seed: u64,
    bookmark_every: Duration,
}

impl Default for ApiServerBuilder {
    fn default() -> Self {
        ApiServerBuilder {
            history: 10_000,
            seed: 0,
            bookmark_every: Duration::from_secs(60),
        }
    }
}

impl ApiServerBuilder {
    /// How many changes the server keeps for watches to resume from; older versions get 410 Expired.
    #[must_use]
    pub fn history(mut self, changes: usize) -> Self {
        self.history = changes.max(1);
        self
    }

    /// Seed of the fault injector's random choices.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// How often a watch that allows bookmarks gets one.
    #[must_use]
    pub fn bookmark_every(mut self, every: Duration) -> Self {
        self.bookmark_every = every.max(Duration::from_millis(1));
        self
    }

    /// Starts the server (in memory; nothing listens until [`ApiServer::serve`]).
    pub fn build(self) -> ApiServer {
        ApiServer {
            inner: Arc::new(Inner {
                state: Mutex::new(store::State::new(self.history)),
                counter: stats::Counter::default(),
                faults: Faults::new(self.seed),
                config: self.clone(),
            }),
        }
    }
}

/// An in-process Kubernetes API server.
///
/// It keeps objects of any kind in memory and models what operators rely on: cluster-wide
/// resource versions, conflicts, generation, the status subresource, finalizers, owner
/// reference garbage collection, namespaces, selectors, pagination, watches (bookmarks,
/// resume, 410, streaming lists), every patch type including server-side apply, CRDs with
/// schema validation and defaults, discovery and Table output. See the module docs for the
/// full list and the deliberate differences from a real kube-apiserver.
///
/// # Examples
///
/// ```
/// use k8s_openapi::api::core::v1::ConfigMap;
/// use kube::{Api, api::PostParams};
/// use kube_reconcile_testing::{ApiServer, Verb};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), kube::Error> {
/// let server = ApiServer::new();
/// let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
/// let mut cm = ConfigMap::default();
/// cm.metadata.name = Some("settings".into());
/// let created = cms.create(&PostParams::default(), &cm).await?;
/// assert!(created.metadata.uid.is_some());
/// assert_eq!(server.requests().get(Verb::Create, "configmaps"), 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ApiServer {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    state: Mutex<store::State>,
    counter: stats::Counter,
    faults: Faults,
    config: ApiServerBuilder,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, store::State> {
        // A panic while holding the lock would be a bug in the server; the state is
        // still consistent at every await-free step, so keep serving.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("resource_version", &self.inner.lock().rv)
            .finish_non_exhaustive()
    }
}

impl Default for ApiServer {
    fn default() -> Self {
        ApiServer::new()
    }
}

impl ApiServer {
    /// A server with default settings.
    pub fn new() -> Self {
        ApiServerBuilder::default().build()
    }

    /// Settings for a server.
    pub fn builder() -> ApiServerBuilder {
        ApiServerBuilder::default()
    }

    /// A `kube::Client` that talks to this server in process (no sockets), default namespace `default`.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, as `kube::Client::new` does.
    pub fn client(&self) -> kube::Client {
        kube::Client::new(self.clone(), "default")
    }

    /// Requests answered so far, by verb and resource.
    pub fn requests(&self) -> RequestCounts {
        self.inner.counter.snapshot()
    }

    /// Zeroes the request counters.
    pub fn reset_requests(&self) {
        self.inner.counter.reset();
    }

    /// The fault injector.
    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    /// The current cluster-wide resource version.
    pub fn resource_version(&self) -> u64 {
        self.inner.lock().rv
    }

    /// Forgets the change history up to the current resource version, as etcd compaction
    /// does: watches and continue tokens from older versions then get 410 Expired, and so
    /// do lists at an older exact version. Returns the version compacted to.
    pub fn compact(&self) -> u64 {
        self.inner.lock().compact()
    }

    /// How many objects the server holds, of every kind.
    pub fn object_count(&self) -> usize {
        self.inner
            .lock()
            .objects
            .values()
            .map(std::collections::BTreeMap::len)
            .sum()
    }

    /// Serves one HTTP request.
    pub async fn call(&self, request: http::Request<Bytes>) -> http::Response<Body> {
        let (parts, body) = request.into_parts();
        self.inner
            .handle(&parts.method, &parts.uri, &parts.headers, body)
            .await
    }

    /// Serves the API on `127.0.0.1` (a free port) over TLS, to holders of a random bearer
    /// token, for `kubectl` and other processes: see [`HttpServer`] and its kubeconfig.
    ///
    /// # Errors
    ///
    /// The listener could not be bound.
    pub async fn serve(&self) -> std::io::Result<HttpServer> {
        HttpServer::start(self.clone(), "127.0.0.1:0").await
    }
}

impl tower_service::Service<http::Request<kube::client::Body>> for ApiServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<kube::client::Body>) -> Self::Future {
        let server = self.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let bytes = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) => {
                    return Ok(handler::error_response(&ApiError::bad_request(format!(
                        "reading the request body: {e}"
                    ))));
                }
            };
            Ok(server
                .inner
                .handle(&parts.method, &parts.uri, &parts.headers, bytes)
                .await)
        })
    }
}
