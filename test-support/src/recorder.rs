//! A client that records the requests it sends, on any server.
//!
//! The embedded `ApiServer` counts requests itself; a real kube-apiserver does not, and a
//! no-op write there leaves no trace (an identical server-side apply keeps the
//! `resourceVersion`). Counting on the client side lets "zero writes" mean zero write
//! requests on both tiers. A hook can also run just before a chosen request goes out,
//! to make a real race happen at a chosen moment (someone else's update between our read
//! and our write), which a real server answers with its own 409.

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use kube::{Client, client::Body};
/// The embedded server's verbs, so counts read the same on both tiers.
pub use kube_reconcile_testing::Verb;

/// One request: its verb, resource (`configmaps`, `pipelines/status`) and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// What the request did.
    pub verb: Verb,
    /// The resource, with its subresource (`pipelines/status`).
    pub resource: String,
    /// The object's name, for requests about one object.
    pub name: Option<String>,
}

impl Call {
    /// Reads verb, resource and name from an API path such as
    /// `/apis/apps/v1/namespaces/ns/statefulsets/db/status?...`.
    pub fn of(method: &http::Method, uri: &http::Uri) -> Call {
        let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
        let rest = match segments.first() {
            Some(&"api") => segments.get(2..),
            Some(&"apis") => segments.get(3..),
            _ => None,
        }
        .unwrap_or_default();
        // `namespaces/<ns>/<resource>/...`, unless the resource is the namespace itself.
        let rest = match rest {
            ["namespaces", _, resource, tail @ ..] => [&[*resource][..], tail].concat(),
            other => other.to_vec(),
        };
        let (resource, name) = match rest.as_slice() {
            [] => (String::new(), None),
            [resource] => ((*resource).to_string(), None),
            [resource, name] => ((*resource).to_string(), Some((*name).to_string())),
            [resource, name, sub, ..] => (format!("{resource}/{sub}"), Some((*name).to_string())),
        };
        let watch = uri
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
        let verb = match (method.as_str(), name.is_some()) {
            ("GET", true) => Verb::Get,
            ("GET", false) if watch => Verb::Watch,
            ("GET", false) => Verb::List,
            ("POST", _) => Verb::Create,
            ("PUT", _) => Verb::Update,
            ("PATCH", _) => Verb::Patch,
            ("DELETE", true) => Verb::Delete,
            ("DELETE", false) => Verb::DeleteCollection,
            (other, _) => panic!("unexpected method {other} for {uri}"),
        };
        Call {
            verb,
            resource,
            name,
        }
    }
}

/// The calls a [`Recorder`] saw between two points, and how many hooks ran meanwhile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Calls {
    calls: Vec<Call>,
    hooks: usize,
}

impl Calls {
    /// How many hooks ran (their own requests are not recorded).
    pub fn hooks(&self) -> usize {
        self.hooks
    }

    /// How many `verb` requests went to `resource`.
    pub fn get(&self, verb: Verb, resource: &str) -> usize {
        self.calls
            .iter()
            .filter(|c| c.verb == verb && c.resource == resource)
            .count()
    }

    /// How many requests changed (or tried to change) something.
    pub fn writes(&self) -> usize {
        self.calls.iter().filter(|c| c.verb.is_write()).count()
    }
}

impl fmt::Display for Calls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut counts: HashMap<(Verb, &str), usize> = HashMap::new();
        for c in &self.calls {
            *counts.entry((c.verb, c.resource.as_str())).or_default() += 1;
        }
        let mut counts: Vec<_> = counts.into_iter().collect();
        counts.sort();
        let shown: Vec<String> = counts
            .iter()
            .map(|((verb, resource), n)| format!("{verb:?} {resource}: {n}"))
            .collect();
        write!(f, "{{{}}}", shown.join(", "))
    }
}

type HookFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
type HookFn = Box<dyn FnMut() -> HookFuture + Send>;

struct Hook {
    verb: Verb,
    resource: String,
    left: usize,
    run: HookFn,
}

#[derive(Default)]
struct Log {
    calls: Mutex<Vec<Call>>,
    hooks: Mutex<Vec<Hook>>,
    hooks_run: AtomicUsize,
}

/// Records the requests of the client it hands out (see the module docs).
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    log: Arc<Log>,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

impl Recorder {
    /// Wraps `inner`: the recorded client talks to the same server, in the same default
    /// namespace.
    pub fn new(inner: &Client) -> Recorder {
        let log = Arc::new(Log::default());
        let service = {
            let (inner, log) = (inner.clone(), log.clone());
            tower::service_fn(move |request: http::Request<Body>| {
                let (inner, log) = (inner.clone(), log.clone());
                async move {
                    let call = Call::of(request.method(), request.uri());
                    let hook = log.hook_for(&call);
                    if let Some(hook) = hook {
                        hook.await;
                    }
                    log.calls.lock().unwrap().push(call);
                    inner.send(request).await
                }
            })
        };
        Recorder {
            client: Client::new(service, inner.default_namespace()),
            log,
        }
    }

    /// The recording client.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Everything recorded so far.
    pub fn calls(&self) -> Calls {
        Calls {
            calls: self.log.calls.lock().unwrap().clone(),
            hooks: self.log.hooks_run.load(Ordering::SeqCst),
        }
    }

    /// What was sent while `f` ran.
    pub async fn during<T>(&self, f: impl Future<Output = T>) -> (T, Calls) {
        let before = self.calls();
        let out = f.await;
        let after = self.calls();
        let calls = Calls {
            calls: after.calls[before.calls.len()..].to_vec(),
            hooks: after.hooks - before.hooks,
        };
        (out, calls)
    }

    /// Runs `hook` (to completion) before each of the next `times` `verb` requests to
    /// `resource` is sent.
    pub fn before<F, Fut>(&self, verb: Verb, resource: &str, times: usize, mut hook: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.log.hooks.lock().unwrap().push(Hook {
            verb,
            resource: resource.to_string(),
            left: times,
            run: Box::new(move || Box::pin(hook())),
        });
    }
}

impl Log {
    fn hook_for(&self, call: &Call) -> Option<HookFuture> {
        let mut hooks = self.hooks.lock().unwrap();
        let hook = hooks
            .iter_mut()
            .find(|h| h.left > 0 && h.verb == call.verb && h.resource == call.resource)?;
        hook.left -= 1;
        self.hooks_run.fetch_add(1, Ordering::SeqCst);
        Some((hook.run)())
    }
}
