//! Test any kube-rs controller in-process: an embedded Kubernetes API server with fault
//! injection and a workload simulator, and a harness for a real `kube-apiserver` + `etcd`
//! for the same tests.
//!
//! Two tiers, one API (`kube::Client`):
//!
//! - **Embedded**: [`ApiServer`] is an in-memory API server that a real `kube::Client`
//!   talks to in process ([`ApiServer::client`]) or over TLS on a local port, behind a
//!   bearer token ([`ApiServer::serve`], which also gives a kubeconfig for `kubectl`). It
//!   needs nothing but Rust and answers in microseconds.
//! - **Real**: [`ControlPlane`] starts `etcd` and `kube-apiserver` (found by [`Assets`]:
//!   `KUBEBUILDER_ASSETS` as with controller-runtime's envtest, or the directory
//!   `tools/envtest/build.sh` of the kube-reconcile repository fills) with free ports,
//!   fresh certificates and an admin in `system:masters`, and stops them on drop.
//!   Start-up takes a few seconds.
//!
//! [`install_crd`] creates a `CustomResourceDefinition` on either (or any cluster) and
//! waits until it is served.
//!
//! The crate depends on nothing of `kube-reconcile`; that library's tests, example and
//! benches run on it. Its conformance suite (`tests/conformance.rs` in this crate) runs
//! every behaviour below on both tiers, so the embedded server stays honest.
//!
//! # Test your kube-rs controller in-process
//!
//! Nothing of the rest of this crate is needed: any kube-rs `Controller` runs against an
//! [`ApiServer`] through [`ApiServer::client`], in the test's own process and runtime.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::{sync::Arc, time::Duration};
//! use futures::StreamExt;
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
//! use kube::runtime::{Controller, controller::Action, watcher};
//! use kube_reconcile_testing::ApiServer;
//!
//! // The controller under test, plain kube-rs: it labels every ConfigMap it sees.
//! async fn reconcile(cm: Arc<ConfigMap>, api: Arc<Api<ConfigMap>>) -> Result<Action, kube::Error> {
//!     let label = serde_json::json!({ "metadata": { "labels": { "seen": "yes" } } });
//!     let name = cm.metadata.name.clone().unwrap_or_default();
//!     api.patch(&name, &PatchParams::default(), &Patch::Merge(&label)).await?;
//!     Ok(Action::requeue(Duration::from_secs(3600)))
//! }
//! fn error_policy(_: Arc<ConfigMap>, _: &kube::Error, _: Arc<Api<ConfigMap>>) -> Action {
//!     Action::requeue(Duration::from_secs(5))
//! }
//!
//! let server = ApiServer::new();
//! let api = Api::<ConfigMap>::default_namespaced(server.client());
//! let controller = Controller::new(api.clone(), watcher::Config::default())
//!     .run(reconcile, error_policy, Arc::new(api.clone()))
//!     .for_each(|_| async {});
//! tokio::spawn(controller);
//!
//! let app = ConfigMap {
//!     metadata: ObjectMeta { name: Some("app".into()), ..Default::default() },
//!     ..Default::default()
//! };
//! api.create(&PostParams::default(), &app).await?;
//! // Paused time: a minute of polling costs no wall time.
//! let mut seen = false;
//! for _ in 0..60 {
//!     seen = api.get("app").await?.metadata.labels.unwrap_or_default().contains_key("seen");
//!     if seen {
//!         break;
//!     }
//!     tokio::time::sleep(Duration::from_secs(1)).await;
//! }
//! assert!(seen);
//! # Ok(()) }
//! ```
//!
//! ## A whole controller, deterministically
//!
//! Paused tokio time (`#[tokio::test(start_paused = true)]`) works with a `Controller` on
//! the embedded server: the server, its watches and the controller all run on the test's
//! runtime and read tokio's clock, so a requeue after an hour, a backoff or a watch
//! timeout fires as soon as every task is idle, and a test of minutes of controller time
//! takes milliseconds. Two things to keep in mind:
//!
//! - Keep everything on the test's runtime: a client of [`ApiServer::serve`]'s TCP
//!   listener, another process, or `spawn_blocking` work is real I/O that paused time
//!   does not wait for (auto-advance may jump past it). Use [`ApiServer::client`].
//! - Poll with `tokio::time::sleep` (as above), never a busy loop: auto-advance only moves
//!   the clock when every task waits.
//!
//! The real tier ([`ControlPlane`]) runs in other processes, so its tests use real time;
//! write them to wait on conditions, not durations.
//!
//! # What it models
//!
//! - Every resource and subresource a bare kube-apiserver 1.37 serves, with the same
//!   verbs, kinds, scopes, short names and categories in discovery (the `inventory` test
//!   diffs the two servers' discovery and start-up objects): the 72 built-in resources of
//!   22 API groups, from `ConfigMap` and Pod to `CertificateSigningRequest`,
//!   `ValidatingAdmissionPolicy` and `ResourceClaim`, each with k8s-openapi's schema where
//!   the k8s-openapi version you build with has the type; and custom resources, served as
//!   soon as their CRD is created (`Established`, schema pruning, defaults and validation
//!   with field paths in 422 answers — types, enums, bounds, lengths, `pattern`, `format`,
//!   `multipleOf`, property counts, `allOf`/`anyOf`/`oneOf`/`not`, list-type uniqueness —
//!   and printer columns in Tables).
//! - Field validation (`fieldValidation=Strict|Warn|Ignore`, `Warn` by default) on
//!   creates, updates and patches of every kind: unknown and duplicate fields fail with
//!   the real server's 400/422 under `Strict`, come back as `Warning` headers under
//!   `Warn`, and are dropped from what is stored. Server-side apply fails on unknown
//!   fields whatever the parameter (500 `field not declared in schema`, as for real).
//! - Strictly increasing cluster-wide `resourceVersion`, `uid`, `creationTimestamp`;
//!   `generation` bumped only by spec changes and by `deletionTimestamp`; 409 on stale
//!   writes and on creating an existing name; no-op writes do not bump anything.
//! - Subresources: `status`; `scale` of Deployments, `ReplicaSets`, `StatefulSets`,
//!   replication controllers and of CRDs that declare it (their `specReplicasPath`,
//!   `statusReplicasPath`, `labelSelectorPath`); `serviceaccounts/token` (a signed JSON Web
//!   Token that `tokenreviews` authenticates); `pods/binding` and `bindings`;
//!   `pods/eviction`; `pods/log` (empty for a Pod no kubelet ran); CSR `approval`;
//!   `ephemeralcontainers` and `resize`. Connections to a kubelet (`exec`, `attach`,
//!   `portforward`, `proxy`) get the error a bare kube-apiserver gives.
//! - Reviews answered, not stored: `selfsubjectreviews` (the `admin` user, as the real
//!   tier's), access reviews (always allowed), token reviews.
//! - The objects a cluster starts with: the `default`, `kube-system`, `kube-public` and
//!   `kube-node-lease` namespaces, the `kubernetes` Service and its `ServiceCIDR`, the two
//!   system priority classes, `cluster-admin`, `admin`, `edit` and `view`, and an
//!   `APIService` per built-in group version.
//! - Finalizers and `deletionTimestamp`; owner-reference garbage collection (background,
//!   foreground, orphan); namespace termination.
//! - Label and field selectors (unknown fields rejected with 400, as the real server
//!   does), pagination (`limit`/`continue`, every page a snapshot at the first page's
//!   version), lists at an exact older version, watches with bookmarks,
//!   `timeoutSeconds`, resume from a resource version, 410 Expired past the retained
//!   history, and streaming lists (`sendInitialEvents`).
//! - JSON patch (with `test`), merge patch, strategic merge patch for built-ins, and
//!   server-side apply with `managedFields` per manager and conflicts unless forced.
//! - Discovery (legacy and aggregated), `/version`, health endpoints, `OpenAPI` v3 with
//!   described schemas for built-ins and CRDs (`kubectl explain`, strict `kubectl apply`),
//!   `metav1.Status` errors everywhere.
//! - Deterministic fault injection ([`Fault`]) and request counters ([`RequestCounts`]).
//!
//! # Differences from a real kube-apiserver
//!
//! Checked by the conformance suite on both servers; a test of your own that relies on a
//! row below behaves differently on the two tiers.
//!
//! | Behaviour | Embedded server | Real kube-apiserver (envtest) |
//! |---|---|---|
//! | Garbage collection of dependents | immediate, in the same request | none: no kube-controller-manager runs |
//! | Namespace deletion | contents deleted, namespace removed when empty | stays `Terminating` (no namespace controller); creates in it get 403 |
//! | Authentication and authorization | none in process; a bearer token on the [served](ApiServer::serve) listener | client certificates and RBAC ([`ControlPlane`] gives an admin) |
//! | CEL rules (`x-kubernetes-validations`) in CRD schemas | not evaluated | evaluated |
//! | Watch from a compacted version | 410 Expired once [`ApiServer::compact`] ran or history rolled over | served from the watch cache while it holds the version; 410 after etcd compaction ([`ControlPlane::compact`]) only beyond the cache |
//! | `OpenAPI` v3 for built-ins | k8s-openapi's schemas, without the `x-kubernetes-patch-*` and list-type extensions | full schemas |
//! | `managedFields` of updates to built-ins | `"."` markers on free-form maps only (labels, annotations, data, selectors) | `"."` on every map or optional struct the update created |
//! | Watch bookmarks | every 60 s by default ([`ApiServerBuilder::bookmark_every`]) | about once a minute, and the `initial-events-end` bookmark |
//! | Admission | defaults and validation of the modelled kinds | all built-in admission plugins except `ServiceAccount` |
//! | Bootstrap RBAC policy, API priority and fairness | `cluster-admin`, `admin`, `edit`, `view`; no flow schemas | every `system:*` role and binding; the default flow schemas and priority levels |
//! | `autoscaling/v1` and `v2` `HorizontalPodAutoscalers` | one storage, not converted between versions | converted |
//! | Eviction | deletes the Pod; no `PodDisruptionBudget` is consulted | consults disruption budgets |

/// The README's code blocks, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod envtest;
mod install;
mod server;
mod simulator;
mod tls;

#[doc(inline)]
pub use self::envtest::{Assets, ControlPlane, ControlPlaneBuilder, EnvtestError};
#[doc(inline)]
pub use self::install::{InstallError, install_crd};
#[doc(inline)]
pub use self::server::{
    ApiError, ApiServer, ApiServerBuilder, Body, Fault, FaultAction, Faults, HttpServer,
    RequestCounts, Verb,
};
#[doc(inline)]
pub use self::simulator::{RunningSimulator, WorkloadSimulator};
