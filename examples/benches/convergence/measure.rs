//! What the bench counts besides time and heap: the API requests one client makes, by verb
//! and resource.

use std::{
    collections::BTreeMap,
    fmt,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
};

use kube::client::Body;
use kube_reconcile_testing::ApiServer;

use super::heap::OnWorld;

/// The Kubernetes verbs, in the order the table prints them.
pub(crate) const VERBS: [&str; 8] = [
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

/// Whether `verb` changes something on the server.
pub(crate) fn is_write(verb: &str) -> bool {
    matches!(
        verb,
        "create" | "update" | "patch" | "delete" | "deletecollection"
    )
}

/// Requests one client made, by `(verb, resource)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Requests(BTreeMap<(&'static str, String), u64>);

impl Requests {
    /// Requests with `verb`, on any resource.
    pub(crate) fn verb(&self, verb: &str) -> u64 {
        self.0
            .iter()
            .filter(|((v, _), _)| *v == verb)
            .map(|(_, n)| n)
            .sum()
    }

    /// Write requests on any resource.
    pub(crate) fn writes(&self) -> u64 {
        self.0
            .iter()
            .filter(|((v, _), _)| is_write(v))
            .map(|(_, n)| n)
            .sum()
    }

    /// All requests.
    pub(crate) fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// What was made since `earlier`.
    pub(crate) fn since(&self, earlier: &Requests) -> Requests {
        let mut out = BTreeMap::new();
        for (key, n) in &self.0 {
            let d = n - earlier.0.get(key).copied().unwrap_or(0);
            if d > 0 {
                out.insert(key.clone(), d);
            }
        }
        Requests(out)
    }
}

impl fmt::Display for Requests {
    /// `verb resource count`, one per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for ((verb, resource), n) in &self.0 {
            writeln!(f, "    {verb:<8} {resource:<36} {n}")?;
        }
        Ok(())
    }
}

/// A counter of the requests that pass through a [`Counted`] client.
#[derive(Clone, Debug, Default)]
pub(crate) struct RequestCounter(Arc<Mutex<Requests>>);

impl RequestCounter {
    /// A `kube::Client` for `server` whose requests this counter counts (and the server
    /// serves on the world's side).
    pub(crate) fn client(&self, server: &ApiServer) -> kube::Client {
        kube::Client::new(
            Counted {
                inner: OnWorld(server.clone()),
                counter: self.clone(),
            },
            "default",
        )
    }

    /// The counts so far.
    pub(crate) fn snapshot(&self) -> Requests {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn add(&self, verb: &'static str, resource: String) {
        *self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .entry((verb, resource))
            .or_default() += 1;
    }
}

/// The API server as a tower service, counting each request by verb and resource.
#[derive(Clone)]
struct Counted {
    inner: OnWorld,
    counter: RequestCounter,
}

impl tower::Service<http::Request<Body>> for Counted {
    type Response = <OnWorld as tower::Service<http::Request<Body>>>::Response;
    type Error = <OnWorld as tower::Service<http::Request<Body>>>::Error;
    type Future = <OnWorld as tower::Service<http::Request<Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let (verb, resource) = classify(request.method(), request.uri());
        self.counter.add(verb, resource);
        tower::Service::call(&mut self.inner, request)
    }
}

/// The verb and resource of a request, named as the API server's audit log names them:
/// `plural` for the core group, `plural.group` otherwise, `/subresource` appended.
fn classify(method: &http::Method, uri: &http::Uri) -> (&'static str, String) {
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    // /api/v1/... or /apis/<group>/<version>/...
    let (group, rest) = match segments.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => ("", &[][..]),
    };
    let rest = match rest {
        ["namespaces", _ns, rest @ ..] if !rest.is_empty() => rest,
        other => other,
    };
    let (plural, name, sub) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub, ..] => (*plural, Some(*name), Some(*sub)),
        [] => ("", None, None),
    };
    let mut resource = if group.is_empty() {
        plural.to_owned()
    } else {
        format!("{plural}.{group}")
    };
    if let Some(sub) = sub {
        resource.push('/');
        resource.push_str(sub);
    }
    let watch = is_watch(uri);
    let verb = match (method.as_str(), name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if watch => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "other",
    };
    (verb, resource)
}

/// Whether a GET at `uri` is a watch.
pub(crate) fn is_watch(uri: &http::Uri) -> bool {
    uri.query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"))
}
