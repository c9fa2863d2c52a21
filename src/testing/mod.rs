//! Test substrates for operators: an in-process Kubernetes API server with fault injection.
//!
//! Enabled by the `testing` feature. [`ApiServer`] is an in-memory API server that a
//! real `kube::Client` talks to in process ([`ApiServer::client`]) or over plain HTTP
//! ([`ApiServer::serve`], which also gives a kubeconfig for `kubectl`). It is the default
//! substrate of this crate's example and tests, and needs nothing but Rust.
//!
//! # What it models
//!
//! - Any group/version/kind: built-ins (core/v1 Namespace, `ConfigMap`, Secret, Service,
//!   Pod, Event, `PersistentVolumeClaim`, `ServiceAccount`; apps/v1 `StatefulSet`, Deployment;
//!   events.k8s.io/v1 Event, also readable as core/v1 Event; coordination.k8s.io/v1 Lease;
//!   apiextensions.k8s.io/v1 `CustomResourceDefinition`) and custom resources, served as
//!   soon as their CRD is created (`Established`, schema pruning, defaults and validation
//!   with field paths in 422 answers, printer columns in Tables).
//! - Strictly increasing cluster-wide `resourceVersion`, `uid`, `creationTimestamp`;
//!   `generation` bumped only by spec changes and by `deletionTimestamp`; 409 on stale
//!   writes and on creating an existing name; no-op writes do not bump anything.
//! - The status subresource; finalizers and `deletionTimestamp`; owner-reference garbage
//!   collection (background, foreground, orphan); namespaces (`default` exists) with
//!   termination.
//! - Label and field selectors, pagination (`limit`/`continue`), watches with bookmarks,
//!   `timeoutSeconds`, resume from a resource version, 410 Expired past the retained
//!   history, and streaming lists (`sendInitialEvents`).
//! - JSON patch (with `test`), merge patch, strategic merge patch for built-ins, and
//!   server-side apply with `managedFields` per manager and conflicts unless forced.
//! - Discovery (legacy and aggregated), `/version`, health endpoints, minimal `OpenAPI` v3,
//!   `metav1.Status` errors everywhere.
//! - Deterministic fault injection ([`Fault`]) and request counters ([`RequestCounts`]).
//!
//! # Differences from a real kube-apiserver
//!
//! | Behaviour | Embedded server | Real kube-apiserver (envtest) |
//! |---|---|---|
//! | Garbage collection of dependents | immediate, in the same request | none without kube-controller-manager |
//! | Namespace deletion | contents deleted, namespace removed when empty | stays `Terminating` without the namespace controller |
//! | Authentication and authorization | none | whatever the server was started with |
//! | List at an old `resourceVersion` | served from current state | served from the watch cache |
//! | `pattern` and `format` in CRD schemas | not checked | checked |

mod envtest;
mod server;
mod simulator;

#[doc(inline)]
pub use self::envtest::{Assets, ControlPlane, ControlPlaneBuilder, EnvtestError};
#[doc(inline)]
pub use self::server::{
    ApiError, ApiServer, ApiServerBuilder, Body, Fault, FaultAction, Faults, HttpServer,
    RequestCounts, Verb,
};
#[doc(inline)]
pub use self::simulator::{RunningSimulator, WorkloadSimulator};
