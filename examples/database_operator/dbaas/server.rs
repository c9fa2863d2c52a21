//! [`DbaasServer`]: a simulated managed-database service, over real HTTP on 127.0.0.1.

mod faults;
mod offer;
mod rfc3339;
mod routes;
mod stats;
mod store;

use std::{
    collections::BTreeMap,
    io,
    net::SocketAddr,
    num::NonZeroU32,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use hyper::{header::HeaderValue, service::service_fn};
use hyper_util::rt::TokioIo;
// The same limiter the library's budgets are built on (hidden from its docs: operators
// take a `RateBudget`); a server needs its free cells for the headers.
use kube_reconcile::middleware::rate_limit::{Quota, RateLimiter};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
    task::{JoinHandle, JoinSet},
    time::Instant,
};

use self::store::{Store, Timing};
pub use self::{
    faults::DbaasFaults,
    stats::{DbaasStats, Endpoint},
};
use super::{DbaasClient, api::Instance};

/// A simulated DBaaS: provisions database instances asynchronously behind a JSON API.
///
/// Start one with [`DbaasServer::builder`]; see the [module docs](super) for the API.
#[derive(Debug)]
pub struct DbaasServer;

impl DbaasServer {
    /// A builder with the defaults listed on [`DbaasServerBuilder`].
    pub fn builder() -> DbaasServerBuilder {
        DbaasServerBuilder::default()
    }
}

/// How a [`DbaasServer`] behaves: transition delays, rate limit and seed.
///
/// # Default
///
/// Provisioning 300 ms, updates 200 ms, deletion 150 ms, each plus up to 100 ms of jitter;
/// 20 requests per second with a burst of 20, announced in rate-limit headers; seed
/// `0xDBAA5`.
#[derive(Clone, Debug)]
pub struct DbaasServerBuilder {
    timing: Timing,
    rate_limit: Quota,
    rate_limit_headers: bool,
    seed: u64,
}

impl Default for DbaasServerBuilder {
    fn default() -> Self {
        DbaasServerBuilder {
            timing: Timing {
                provision: Duration::from_millis(300),
                update: Duration::from_millis(200),
                delete: Duration::from_millis(150),
                jitter: Duration::from_millis(100),
            },
            rate_limit: Quota::per_second(NonZeroU32::new(20).expect("20 is not zero")),
            rate_limit_headers: true,
            seed: 0xD_BAA5,
        }
    }
}

impl DbaasServerBuilder {
    /// How long an instance stays `creating` (before jitter).
    #[must_use]
    pub fn provision_delay(mut self, delay: Duration) -> Self {
        self.timing.provision = delay;
        self
    }

    /// How long an instance stays `updating` after a change (before jitter).
    #[must_use]
    pub fn update_delay(mut self, delay: Duration) -> Self {
        self.timing.update = delay;
        self
    }

    /// How long an instance stays `deleting` before it is gone (before jitter).
    #[must_use]
    pub fn delete_delay(mut self, delay: Duration) -> Self {
        self.timing.delete = delay;
        self
    }

    /// Each transition takes up to this much longer, drawn uniformly from the seeded RNG.
    #[must_use]
    pub fn jitter(mut self, jitter: Duration) -> Self {
        self.timing.jitter = jitter;
        self
    }

    /// The request budget of the instance API (GCRA); calls over it get 429 with `Retry-After`.
    #[must_use]
    pub fn rate_limit(mut self, quota: Quota) -> Self {
        self.rate_limit = quota;
        self
    }

    /// Whether answers of the instance API say how much of the request budget is left,
    /// as many real APIs do: `RateLimit-Policy: "instances";q=<burst>` and
    /// `RateLimit: "instances";r=<calls left now>;t=<seconds until it is whole again>`
    /// (draft-ietf-httpapi-ratelimit-headers).
    /// Off, a client learns of the limit only from its 429s.
    #[must_use]
    pub const fn rate_limit_headers(mut self, send: bool) -> Self {
        self.rate_limit_headers = send;
        self
    }

    /// The seed of the RNGs behind ids, jitter and the error rate: the same seed and the same
    /// calls give the same answers.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Listens on `127.0.0.1` on a free port and serves until shut down or dropped.
    ///
    /// # Errors
    ///
    /// The listener could not be bound.
    pub async fn start(self) -> io::Result<RunningDbaas> {
        let token = access_token()?;
        let mut authorization =
            HeaderValue::from_str(&format!("Bearer {token}")).map_err(io::Error::other)?;
        authorization.set_sensitive(true);
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            authorization,
            state: Mutex::new(State {
                store: Store::new(self.timing, self.seed),
                stats: DbaasStats::default(),
                arrivals: Vec::new(),
                callers: BTreeMap::new(),
            }),
            faults: DbaasFaults::new(self.seed.rotate_left(32)),
            limiter: RateLimiter::new(self.rate_limit),
            rate_limit_headers: self.rate_limit_headers,
        });
        let (stop, stopped) = watch::channel(false);
        let accept = tokio::spawn(accept(listener, shared.clone(), stopped));
        tracing::info!(%addr, "dbaas listening");
        Ok(RunningDbaas {
            addr,
            token: Token(token),
            shared,
            stop,
            accept,
        })
    }
}

/// A DBaaS serving on 127.0.0.1; stops serving when [shut down](Self::shutdown) or dropped.
#[derive(Debug)]
pub struct RunningDbaas {
    addr: SocketAddr,
    token: Token,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

impl RunningDbaas {
    /// The access token every request must present as `Authorization: Bearer <token>`:
    /// 32 bytes from the operating system's CSPRNG, hex-encoded, new for each server.
    pub fn token(&self) -> &str {
        &self.token.0
    }

    /// A client of this DBaaS, holding its token.
    pub fn client(&self) -> DbaasClient {
        DbaasClient::local(self.addr, &self.token.0)
    }

    /// `http://127.0.0.1:<port>`, the base URL for a [`DbaasClient`](super::DbaasClient).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it has seen so far.
    pub fn stats(&self) -> DbaasStats {
        let guard = self.shared.lock_settled();
        DbaasStats {
            instances_created: guard.store.created,
            instances_deleted: guard.store.deleted,
            live_instances: guard.store.len(),
            ..guard.stats.clone()
        }
    }

    /// When each call to the instance API (every endpoint but the two health checks)
    /// arrived, in order, on the tokio clock, whatever the answer: to check the rate the
    /// service saw over any window, or what reached it during an outage.
    pub fn instance_call_times(&self) -> Vec<Instant> {
        self.shared
            .lock()
            .arrivals
            .iter()
            .filter(|(_, endpoint)| !endpoint.is_health())
            .map(|(at, _)| *at)
            .collect()
    }

    /// A reader of how many calls the instance API has received so far, callable from
    /// anywhere (a breaker's transition callback, say), to tell which calls arrived in
    /// which period.
    pub fn instance_call_counter(&self) -> impl Fn() -> usize + Send + Sync + 'static {
        let shared = Arc::clone(&self.shared);
        move || {
            shared
                .lock()
                .arrivals
                .iter()
                .filter(|(_, endpoint)| !endpoint.is_health())
                .count()
        }
    }

    /// Its fault switches.
    pub fn faults(&self) -> &DbaasFaults {
        &self.shared.faults
    }

    /// The instances that exist now, by id.
    pub fn instances(&self) -> Vec<Instance> {
        self.shared.lock_settled().store.list()
    }

    /// Stops accepting connections, lets requests in flight finish, and waits for them.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Err(err) = (&mut self.accept).await {
            tracing::warn!(error = %err, "dbaas accept loop failed");
        }
        tracing::info!(addr = %self.addr, "dbaas stopped");
    }
}

impl Drop for RunningDbaas {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// A request the server turns down, with the status and error code it answers.
#[derive(Debug, PartialEq, Eq)]
struct Rejection {
    status: u16,
    code: &'static str,
    message: String,
}

impl Rejection {
    fn new(status: u16, code: &'static str, message: String) -> Self {
        Rejection {
            status,
            code,
            message,
        }
    }
}

/// What the connections share.
#[derive(Debug)]
struct Shared {
    /// `Bearer <token>`: every request must carry it (marked sensitive, so `Debug` hides it).
    authorization: HeaderValue,
    state: Mutex<State>,
    faults: DbaasFaults,
    limiter: RateLimiter,
    rate_limit_headers: bool,
}

#[derive(Debug)]
struct State {
    store: Store,
    /// Call counters; the instance counters come from the store.
    stats: DbaasStats,
    /// Every call received, in order, with when it arrived.
    arrivals: Vec<(Instant, Endpoint)>,
    /// Per instance name, the clients (their `User-Agent`) whose calls on it succeeded,
    /// one entry per run of calls by the same client: `[a, b]` means a's calls all came
    /// before b's.
    callers: BTreeMap<String, Vec<String>>,
}

impl State {
    /// Notes that `caller` handled the instance `name`.
    fn handled(&mut self, name: &str, caller: &str) {
        let runs = self.callers.entry(name.to_owned()).or_default();
        if runs.last().map(String::as_str) != Some(caller) {
            runs.push(caller.to_owned());
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state with every transition due by now applied.
    fn lock_settled(&self) -> MutexGuard<'_, State> {
        let mut state = self.lock();
        state.store.settle(Instant::now());
        state
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve(stream, shared.clone(), stopped.clone()));
                }
                Err(err) => {
                    tracing::warn!(error = %err, "dbaas cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

async fn serve(stream: TcpStream, shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let service = service_fn(move |request| {
        let shared = shared.clone();
        async move { Ok::<_, std::convert::Infallible>(routes::handle(&shared, request).await) }
    });
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        _ = stopped.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(err) = served {
        tracing::debug!(error = %err, "dbaas connection ended with an error");
    }
}

/// A fresh access token: 32 bytes from the operating system's CSPRNG, as hex.
fn access_token() -> io::Result<String> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(io::Error::other)?;
    Ok(bytes
        .iter()
        .flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]])
        .map(char::from)
        .collect())
}

/// The server's access token; `Debug` never shows it.
struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}
