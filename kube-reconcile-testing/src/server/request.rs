//! Turning an HTTP request line into what the API server should do.

use std::collections::HashMap;

use http::Method;

/// The path of a request, resolved against the URL layout of the Kubernetes API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    Version,
    Health(String),
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/{group}`
    Group(String),
    /// `/api/v1` or `/apis/{group}/{version}`
    Resources {
        group: String,
        version: String,
    },
    /// `/openapi/v2`, `/openapi/v3`, `/openapi/v3/{api|apis/g}/{v}`
    OpenApi(String),
    /// A resource collection, item or subresource.
    Object(Target),
}

/// What a resource request addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) group: String,
    pub(crate) version: String,
    pub(crate) plural: String,
    pub(crate) namespace: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) subresource: Option<String>,
}

/// The Kubernetes verb a request maps to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verb {
    /// GET of one object.
    Get,
    /// GET of a collection.
    List,
    /// GET of a collection with `watch=true`.
    Watch,
    /// POST.
    Create,
    /// PUT.
    Update,
    /// PATCH (any patch type, including server-side apply).
    Patch,
    /// DELETE of one object.
    Delete,
    /// DELETE of a collection.
    DeleteCollection,
}

impl Verb {
    /// The lowercase name Kubernetes uses (`get`, `list`, `watch`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }

    /// Whether the verb writes.
    pub const fn is_write(self) -> bool {
        !matches!(self, Verb::Get | Verb::List | Verb::Watch)
    }

    pub(crate) fn of(method: &Method, target: &Target, query: &Query) -> Option<Verb> {
        let item = target.name.is_some();
        Some(match *method {
            Method::GET | Method::HEAD if item => Verb::Get,
            Method::GET | Method::HEAD if query.flag("watch") => Verb::Watch,
            Method::GET | Method::HEAD => Verb::List,
            // POST to a subresource (`token`, `eviction`, `binding`) creates it.
            Method::POST if !item || target.subresource.is_some() => Verb::Create,
            Method::PUT if item => Verb::Update,
            Method::PATCH if item => Verb::Patch,
            Method::DELETE if item => Verb::Delete,
            Method::DELETE => Verb::DeleteCollection,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Verb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses a request path.
pub(crate) fn route(path: &str) -> Option<Route> {
    let segments: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let s: Vec<&str> = segments.iter().map(String::as_str).collect();
    match s.as_slice() {
        ["version"] => Some(Route::Version),
        [h @ ("healthz" | "readyz" | "livez"), ..] => Some(Route::Health((*h).to_string())),
        ["openapi", rest @ ..] => Some(Route::OpenApi(rest.join("/"))),
        ["api"] => Some(Route::CoreVersions),
        ["apis"] => Some(Route::Groups),
        ["apis", g] => Some(Route::Group((*g).to_string())),
        ["api", v] => Some(Route::Resources {
            group: String::new(),
            version: (*v).to_string(),
        }),
        ["apis", g, v] => Some(Route::Resources {
            group: (*g).to_string(),
            version: (*v).to_string(),
        }),
        ["api", v, rest @ ..] => object("", v, rest),
        ["apis", g, v, rest @ ..] => object(g, v, rest),
        _ => None,
    }
}

fn object(group: &str, version: &str, rest: &[&str]) -> Option<Route> {
    let target = |plural: &str, namespace: Option<&str>, name: Option<&str>, sub: Option<&str>| {
        Some(Route::Object(Target {
            group: group.to_string(),
            version: version.to_string(),
            plural: plural.to_string(),
            namespace: namespace.map(str::to_string),
            name: name.map(str::to_string),
            subresource: sub.map(str::to_string),
        }))
    };
    match rest {
        // A namespace itself, or its status/finalize subresource.
        ["namespaces", ns] if group.is_empty() => target("namespaces", None, Some(ns), None),
        ["namespaces", ns, sub @ ("status" | "finalize")] if group.is_empty() => {
            target("namespaces", None, Some(ns), Some(sub))
        }
        ["namespaces", ns, plural] => target(plural, Some(ns), None, None),
        ["namespaces", ns, plural, name] => target(plural, Some(ns), Some(name), None),
        ["namespaces", ns, plural, name, sub] => target(plural, Some(ns), Some(name), Some(sub)),
        [plural] => target(plural, None, None, None),
        [plural, name] => target(plural, None, Some(name), None),
        [plural, name, sub] => target(plural, None, Some(name), Some(sub)),
        _ => None,
    }
}

/// Decoded query parameters.
#[derive(Clone, Debug, Default)]
pub(crate) struct Query(HashMap<String, String>);

impl Query {
    pub(crate) fn parse(query: Option<&str>) -> Self {
        let mut map = HashMap::new();
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            map.insert(percent_decode(k), percent_decode(v));
        }
        Query(map)
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub(crate) fn flag(&self, key: &str) -> bool {
        matches!(self.0.get(key).map(String::as_str), Some("true" | "1"))
    }

    pub(crate) fn number(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(|v| v.parse().ok())
    }
}

/// Decodes `%XX` escapes and `+` (as a space) in a URL component; bad escapes stay as they are.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    out.push(b);
                    i += 3;
                } else {
                    out.push(b'%');
                    i += 1;
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_item_routes_to_its_target() {
        let Some(Route::Object(t)) = route("/apis/apps/v1/namespaces/db/statefulsets/pg/status")
        else {
            panic!("no route")
        };
        assert_eq!(
            (t.group.as_str(), t.plural.as_str()),
            ("apps", "statefulsets")
        );
        assert_eq!(t.namespace.as_deref(), Some("db"));
        assert_eq!(t.name.as_deref(), Some("pg"));
        assert_eq!(t.subresource.as_deref(), Some("status"));
    }

    #[test]
    fn a_namespace_is_a_cluster_scoped_item() {
        let Some(Route::Object(t)) = route("/api/v1/namespaces/default") else {
            panic!("no route")
        };
        assert_eq!(
            (t.plural.as_str(), t.name.as_deref(), t.namespace),
            ("namespaces", Some("default"), None)
        );
    }

    #[test]
    fn query_values_are_percent_decoded() {
        let q = Query::parse(Some("labelSelector=app%3Ddb%2Cx+in+(a)&watch=true&limit=5"));
        assert_eq!(q.get("labelSelector"), Some("app=db,x in (a)"));
        assert!(q.flag("watch"));
        assert_eq!(q.number("limit"), Some(5));
        assert_eq!(percent_decode("100%"), "100%");
    }
}
