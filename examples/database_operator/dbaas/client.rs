//! [`DbaasClient`]: the operator's HTTP client for the DBaaS API.

mod error;
mod reply;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{
    Method, Request, StatusCode, Uri,
    header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue, USER_AGENT},
};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;

pub use self::error::DbaasError;
use self::reply::{AbortOnDrop, Reply};
use super::api::{
    IDEMPOTENCY_KEY, Instance, InstanceHealth, InstanceList, InstancePatch, InstanceSpec,
    percent_encode,
};

/// The `User-Agent` a client sends unless told otherwise.
const AGENT: &str = concat!("database-operator/", env!("CARGO_PKG_VERSION"));

/// A client of the DBaaS API: one HTTP/1.1 connection per call, each call bounded by a timeout.
///
/// Every error is a [`DbaasError`], which implements [`Classify`](kube_reconcile::Classify),
/// so the reconcile middleware knows which failures to back off from, which to wait out
/// (429 with `Retry-After`) and which not to retry.
#[derive(Clone, Debug)]
pub struct DbaasClient {
    /// `host:port`.
    authority: String,
    /// `Bearer <token>`, marked sensitive (`Debug` shows `Sensitive`).
    authorization: HeaderValue,
    timeout: Duration,
    /// The `User-Agent` sent, which names this client to the service.
    agent: HeaderValue,
}

/// What [`DbaasClient::delete`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deletion {
    /// The instance is being deleted; ask again later.
    InProgress,
    /// The instance no longer exists.
    Gone,
}

impl DbaasClient {
    /// A client of the service at `url` (`http://host:port`) that presents `token` (what
    /// the DBaaS printed or wrote to its token file), with a 5 s timeout per call.
    ///
    /// # Errors
    ///
    /// [`DbaasError::InvalidUrl`] if `url` is not `http://host[:port][/]`;
    /// [`DbaasError::InvalidToken`] if `token` is empty or not visible ASCII.
    pub fn new(url: &str, token: &str) -> Result<Self, DbaasError> {
        let invalid = || DbaasError::InvalidUrl(url.to_owned());
        let uri: Uri = url.parse().map_err(|_| invalid())?;
        let authority = uri.authority().ok_or_else(invalid)?;
        if uri.scheme_str() != Some("http")
            || !matches!(uri.path(), "" | "/")
            || uri.query().is_some()
        {
            return Err(invalid());
        }
        Ok(DbaasClient {
            authority: format!(
                "{}:{}",
                authority.host(),
                authority.port_u16().unwrap_or(80)
            ),
            authorization: bearer(token).ok_or(DbaasError::InvalidToken)?,
            timeout: Duration::from_secs(5),
            agent: HeaderValue::from_static(AGENT),
        })
    }

    /// A client of the simulated DBaaS at `addr` (its own token, so never invalid).
    pub(super) fn local(addr: std::net::SocketAddr, token: &str) -> Self {
        DbaasClient {
            authority: addr.to_string(),
            authorization: bearer(token).unwrap_or_else(|| HeaderValue::from_static("")),
            timeout: Duration::from_secs(5),
            agent: HeaderValue::from_static(AGENT),
        }
    }

    /// The same client with another bound on each call: connecting, sending and reading the answer.
    ///
    /// # Default
    ///
    /// 5 seconds.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same client, naming itself `agent` in its `User-Agent` header (a replica's
    /// name, say, so the service can tell replicas apart); a value that is not visible
    /// ASCII keeps the default.
    ///
    /// # Default
    ///
    /// `database-operator/<version>`.
    #[must_use]
    pub fn agent(mut self, agent: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(agent) {
            self.agent = value;
        }
        self
    }

    /// Which clients (by `User-Agent`) handled each instance, by instance name: one entry
    /// per run of successful calls by the same client, in order. An audit endpoint of the
    /// simulated DBaaS.
    ///
    /// # Errors
    ///
    /// As on [`DbaasError`].
    pub async fn callers(
        &self,
    ) -> Result<std::collections::BTreeMap<String, Vec<String>>, DbaasError> {
        let reply = self.call(Method::GET, "/v1/callers", None, None).await?;
        decode(&reply.ok()?)
    }

    /// Creates an instance, or returns the one `key` already created.
    ///
    /// The key is the whole idempotency contract: retry with the same key after any failure,
    /// and at most one instance ever exists for it. A replay returns the instance as it is now,
    /// whatever `spec` says; change it with [`update`](Self::update).
    ///
    /// # Errors
    ///
    /// [`DbaasError::Rejected`] for a spec the service does not offer, or a key whose
    /// instance has been deleted (code `idempotency_key_consumed`); else as on [`DbaasError`].
    pub async fn create(&self, key: &str, spec: &InstanceSpec) -> Result<Instance, DbaasError> {
        let body = serde_json::to_vec(spec).expect("an instance spec serializes to JSON");
        let reply = self
            .call(Method::POST, "/v1/instances", Some(key), Some(body))
            .await?;
        decode(&reply.ok()?)
    }

    /// The live instance that `key` created, if any: how a client adopts after a crash.
    ///
    /// # Errors
    ///
    /// As on [`DbaasError`].
    pub async fn find_by_key(&self, key: &str) -> Result<Option<Instance>, DbaasError> {
        let path = format!("/v1/instances?idempotencyKey={}", percent_encode(key));
        Ok(self.list_at(&path).await?.into_iter().next())
    }

    /// Every instance the service holds.
    ///
    /// # Errors
    ///
    /// As on [`DbaasError`].
    pub async fn list(&self) -> Result<Vec<Instance>, DbaasError> {
        self.list_at("/v1/instances").await
    }

    async fn list_at(&self, path: &str) -> Result<Vec<Instance>, DbaasError> {
        let reply = self.call(Method::GET, path, None, None).await?;
        let list: InstanceList = decode(&reply.ok()?)?;
        Ok(list.items)
    }

    /// The instance `id`.
    ///
    /// # Errors
    ///
    /// [`DbaasError::NotFound`] if it does not exist; else as on [`DbaasError`].
    pub async fn get(&self, id: &str) -> Result<Instance, DbaasError> {
        let reply = self
            .call(Method::GET, &instance_path(id), None, None)
            .await?;
        decode(&reply.ok()?)
    }

    /// Brings instance `id` to `spec` (its name aside); the instance goes `updating`, then `ready`.
    ///
    /// # Errors
    ///
    /// [`DbaasError::Rejected`] for a change the service does not allow (another engine,
    /// less storage); [`DbaasError::Conflict`] while the instance is being deleted;
    /// [`DbaasError::NotFound`]; else as on [`DbaasError`].
    pub async fn update(&self, id: &str, spec: &InstanceSpec) -> Result<Instance, DbaasError> {
        let body = serde_json::to_vec(&InstancePatch::from(spec))
            .expect("an instance patch serializes to JSON");
        let reply = self
            .call(Method::PATCH, &instance_path(id), None, Some(body))
            .await?;
        decode(&reply.ok()?)
    }

    /// Deletes instance `id`. An instance that is already gone counts as deleted.
    ///
    /// # Errors
    ///
    /// As on [`DbaasError`]; never [`DbaasError::NotFound`].
    pub async fn delete(&self, id: &str) -> Result<Deletion, DbaasError> {
        let reply = self
            .call(Method::DELETE, &instance_path(id), None, None)
            .await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(Deletion::Gone);
        }
        reply.ok()?;
        Ok(Deletion::InProgress)
    }

    /// The health check of instance `id`: healthy only when it is ready and passes.
    ///
    /// An unhealthy instance is an answer (`healthy: false` with a reason), not an error.
    ///
    /// # Errors
    ///
    /// [`DbaasError::NotFound`]; an outage or other failure as on [`DbaasError`].
    pub async fn health(&self, id: &str) -> Result<InstanceHealth, DbaasError> {
        let path = format!("{}/health", instance_path(id));
        let reply = self.call(Method::GET, &path, None, None).await?;
        if reply.status == StatusCode::SERVICE_UNAVAILABLE
            && let Ok(health) = serde_json::from_slice::<InstanceHealth>(&reply.body)
        {
            return Ok(health);
        }
        decode(&reply.ok()?)
    }

    /// Whether the service is up (`GET /healthz` answers 200 rather than 503).
    ///
    /// # Errors
    ///
    /// The service could not be reached, or answered something else.
    pub async fn service_health(&self) -> Result<bool, DbaasError> {
        let reply = self.call(Method::GET, "/healthz", None, None).await?;
        match reply.status {
            StatusCode::SERVICE_UNAVAILABLE => Ok(false),
            _ => reply.ok().map(|_| true),
        }
    }

    /// One exchange, bounded by the timeout.
    async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<Reply, DbaasError> {
        let started = tokio::time::Instant::now();
        let exchange = self.exchange(method.clone(), path, key, body);
        let reply = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| DbaasError::Timeout(self.timeout))
            .flatten();
        let elapsed = started.elapsed();
        match &reply {
            Ok(reply) => {
                let status = reply.status.as_u16();
                tracing::debug!(%method, path, status, ?elapsed, "dbaas call");
            }
            Err(err) => tracing::debug!(%method, path, error = %err, ?elapsed, "dbaas call failed"),
        }
        reply
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<Reply, DbaasError> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, &self.authority)
            .header(AUTHORIZATION, self.authorization.clone())
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, self.agent.clone());
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        if let Some(key) = key {
            request = request.header(IDEMPOTENCY_KEY, key);
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(DbaasError::Request)?;

        let stream = TcpStream::connect(&self.authority)
            .await
            .map_err(DbaasError::Connect)?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(DbaasError::Http)?;
        let _connection = AbortOnDrop(tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "dbaas client connection ended with an error");
            }
        }));
        let response = sender
            .send_request(request)
            .await
            .map_err(DbaasError::Http)?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(DbaasError::Http)?.to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// `Bearer <token>` as a sensitive header value; `None` for an empty or non-visible-ASCII token.
fn bearer(token: &str) -> Option<HeaderValue> {
    let visible = !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic());
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .ok()
        .filter(|_| visible)?;
    value.set_sensitive(true);
    Some(value)
}

fn instance_path(id: &str) -> String {
    format!("/v1/instances/{}", percent_encode(id))
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, DbaasError> {
    serde_json::from_slice(body).map_err(DbaasError::Malformed)
}
