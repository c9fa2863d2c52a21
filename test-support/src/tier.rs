//! Run one test body against both servers: the embedded `ApiServer` and a real
//! kube-apiserver (the envtest tier).
//!
//! ```text
//! both_tiers! {
//!     async fn configmaps_round_trip(cx: Tier) {
//!         let cms: Api<ConfigMap> = cx.api();
//!         // ...
//!     }
//! }
//! ```
//! emits `configmaps_round_trip::embedded` and `configmaps_round_trip::real`. The real
//! test skips with a printed reason when no binaries are found, and fails instead when
//! `KUBE_RECONCILE_REQUIRE_ENVTEST=1`. All real tests of one test binary share one control
//! plane (started by the first, stopped when the binary exits — the harness's supervisors
//! see to that), each test in a namespace of its own; the embedded tests get a fresh
//! server each.

use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::{
    api::core::v1::Namespace,
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{Api, Client, Resource, api::PostParams};
use kube_reconcile_testing::{ApiServer, Assets, ControlPlane};

/// Runs each `async fn name(cx: Tier) { .. }` on both tiers, as `name::embedded` and
/// `name::real`.
#[macro_export]
macro_rules! both_tiers {
    ($( $(#[$meta:meta])* async fn $name:ident($cx:ident : Tier) $body:block )*) => {$(
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                let $cx = $crate::tier::Tier::embedded(stringify!($name)).await;
                $body
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn real() {
                let Some($cx) = $crate::tier::Tier::real(stringify!($name)).await else {
                    return;
                };
                $body
            }
        }
    )*};
}

/// Which server a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The in-process `ApiServer`.
    Embedded,
    /// `kube-apiserver` + `etcd`.
    Real,
}

/// One server, a client for it and a namespace of the test's own.
pub struct Tier {
    kind: Kind,
    client: Client,
    namespace: String,
    embedded: Option<ApiServer>,
    real: Option<&'static ControlPlane>,
}

impl std::fmt::Debug for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tier")
            .field("kind", &self.kind)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Tier {
    /// A fresh embedded server with the test's namespace created.
    pub async fn embedded(test: &str) -> Tier {
        let server = ApiServer::new();
        let tier = Tier {
            kind: Kind::Embedded,
            client: server.client(),
            namespace: unique_namespace(test),
            embedded: Some(server),
            real: None,
        };
        tier.create_namespace().await;
        tier
    }

    /// The binary's shared real server with a new namespace for the test, or `None`
    /// (after printing why) when no binaries are found.
    ///
    /// # Panics
    ///
    /// When the binaries are missing and `KUBE_RECONCILE_REQUIRE_ENVTEST=1`, or the
    /// control plane does not start.
    pub async fn real(test: &str) -> Option<Tier> {
        let real = RealTier::shared_or_skip(test).await?;
        let tier = Tier {
            kind: Kind::Real,
            client: real.client(),
            namespace: unique_namespace(test),
            embedded: None,
            real: Some(real.control_plane()),
        };
        tier.create_namespace().await;
        Some(tier)
    }

    async fn create_namespace(&self) {
        let mut ns = Namespace::default();
        ns.metadata.name = Some(self.namespace.clone());
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create the test's namespace");
    }

    /// Which server this is.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Whether this is the real kube-apiserver.
    pub fn is_real(&self) -> bool {
        self.kind == Kind::Real
    }

    /// `embedded` or `real`, for messages.
    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::Embedded => "embedded",
            Kind::Real => "real",
        }
    }

    /// Whether owner-reference garbage collection runs (only the embedded server has it;
    /// a bare kube-apiserver runs no controllers).
    pub fn collects_garbage(&self) -> bool {
        self.kind == Kind::Embedded
    }

    /// A client of the server.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The test's own namespace (created).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// An `Api` in the test's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// GET `path` with an `Accept` header: the status code, the content type and the
    /// body as JSON (`Null` when it is not JSON).
    ///
    /// # Panics
    ///
    /// When the request cannot be sent or its body read.
    pub async fn get_json(&self, path: &str, accept: &str) -> (u16, String, serde_json::Value) {
        let request = http::Request::get(path)
            .header(http::header::ACCEPT, accept)
            .body(kube::client::Body::empty())
            .expect("request");
        let response = self.client.send(request).await.expect("send");
        let code = response.status().as_u16();
        let content_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .expect("body")
            .to_bytes();
        let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        (code, content_type, json)
    }

    /// The embedded server, for counters and faults (`None` on the real tier).
    pub fn embedded_server(&self) -> Option<&ApiServer> {
        self.embedded.as_ref()
    }

    /// The real control plane (`None` on the embedded tier).
    pub fn control_plane(&self) -> Option<&'static ControlPlane> {
        self.real
    }

    /// Compacts the server's history to now (etcd compaction on the real tier): older
    /// resource versions then get 410 Expired — on the real tier only beyond what the
    /// watch cache still holds.
    pub async fn compact(&self) {
        match (&self.embedded, self.real) {
            (Some(server), _) => {
                server.compact();
            }
            (None, Some(real)) => {
                real.compact().await.expect("compact etcd");
            }
            (None, None) => unreachable!("a tier is embedded or real"),
        }
    }

    /// Creates `crd` unless it exists (real tests share one cluster) and waits until it is
    /// Established.
    pub async fn install_crd(&self, crd: &CustomResourceDefinition) {
        kube_reconcile_testing::install_crd(&self.client, crd)
            .await
            .unwrap_or_else(|e| panic!("install the CRD: {e}"));
    }
}

/// `<test>-<n>`: a DNS label unique within the process (each process has its own servers).
pub fn unique_namespace(test: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut base: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    base.truncate(40);
    let base = base.trim_matches('-');
    format!("{base}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Whether a missing real tier is a failure (CI) rather than a skip.
pub fn envtest_required() -> bool {
    std::env::var("KUBE_RECONCILE_REQUIRE_ENVTEST").as_deref() == Ok("1")
}

/// Whether kube-apiserver and etcd are found; when not, prints why `test` skips its
/// real-tier part, or panics when the tier is required.
pub fn real_tier_available(test: &str) -> bool {
    let assets = Assets::default();
    match assets
        .find("kube-apiserver")
        .and_then(|_| assets.find("etcd"))
    {
        Ok(_) => true,
        Err(e) => {
            assert!(
                !envtest_required(),
                "{test}: KUBE_RECONCILE_REQUIRE_ENVTEST=1 but the real tier is unavailable: {e}"
            );
            eprintln!("SKIPPED {test} on the real tier: {e}");
            false
        }
    }
}

/// The control plane shared by the real-tier tests of one test binary.
#[derive(Debug)]
pub struct RealTier(&'static ControlPlane);

static SHARED: tokio::sync::OnceCell<Result<ControlPlane, String>> =
    tokio::sync::OnceCell::const_new();

impl RealTier {
    /// Starts the shared control plane on first use; `None` when skipping.
    ///
    /// # Panics
    ///
    /// When the control plane failed to start (every real test then fails with the
    /// same message), or the tier is required and missing.
    pub async fn shared_or_skip(test: &str) -> Option<RealTier> {
        if !real_tier_available(test) {
            return None;
        }
        let started = SHARED
            .get_or_init(|| async {
                let started = std::time::Instant::now();
                let result = ControlPlane::start().await.map_err(|e| e.to_string());
                if let Ok(cluster) = &result {
                    eprintln!(
                        "real tier: kube-apiserver {} at {} ready in {:.1?}",
                        cluster.version(),
                        cluster.url(),
                        started.elapsed()
                    );
                }
                result
            })
            .await;
        match started {
            Ok(cluster) => Some(RealTier(cluster)),
            Err(e) => panic!("{test}: the real control plane did not start: {e}"),
        }
    }

    /// An admin client of the shared control plane.
    pub fn client(&self) -> Client {
        self.0.client()
    }

    /// The shared control plane.
    pub fn control_plane(&self) -> &'static ControlPlane {
        self.0
    }

    /// A new namespace (created) for `test`.
    pub async fn namespace(&self, test: &str) -> String {
        let name = unique_namespace(test);
        let mut ns = Namespace::default();
        ns.metadata.name = Some(name.clone());
        Api::<Namespace>::all(self.client())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        name
    }
}
