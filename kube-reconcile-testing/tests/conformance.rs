//! One conformance suite, run against both servers: every API behaviour the library relies
//! on (DESIGN §3), each test as `<behaviour>::embedded` and `<behaviour>::real`.
//!
//! The real half needs `kube-apiserver` and `etcd` (`tools/envtest/build.sh`, or
//! `KUBEBUILDER_ASSETS`); without them it skips with a printed reason, and fails instead
//! when `KUBE_RECONCILE_REQUIRE_ENVTEST=1`. Where the servers differ on purpose (garbage
//! collection, namespace termination), the test asserts each server's own behaviour and
//! the difference is listed in the `kube_reconcile_testing` docs.

#[path = "conformance/crd.rs"]
mod crd;
#[path = "conformance/differences.rs"]
mod differences;
#[path = "conformance/discovery.rs"]
mod discovery;
#[path = "conformance/lifecycle.rs"]
mod lifecycle;
#[path = "conformance/objects.rs"]
mod objects;
#[path = "conformance/patch.rs"]
mod patch;
#[path = "conformance/pods.rs"]
mod pods;
#[path = "conformance/queries.rs"]
mod queries;
#[path = "conformance/subresources.rs"]
mod subresources;
#[path = "conformance/validation.rs"]
mod validation;
#[path = "conformance/watch.rs"]
mod watch;

use k8s_openapi::api::core::v1::ConfigMap;

use kube_reconcile_test_support::widget::{widget, widgets};

/// A ConfigMap named `name` with `k: v`.
fn cm(name: &str) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.into());
    cm.data = Some([("k".to_string(), "v".to_string())].into());
    cm
}

/// The `metav1.Status` of an API error, as the server sent it.
fn status(err: &kube::Error) -> &kube::core::Status {
    match err {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// `resourceVersion` as a number (both servers use etcd-style integers).
fn rv_of(meta: &kube::core::ObjectMeta) -> u64 {
    meta.resource_version
        .as_deref()
        .expect("resourceVersion")
        .parse()
        .expect("numeric resourceVersion")
}
