//! Discovery (legacy and aggregated), `/version`, health, and the `OpenAPI` documents.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::{HeaderMap, Response, StatusCode, header};
use serde_json::{Value, json};

use super::{
    body::Body,
    error::ApiError,
    handler::json_response,
    openapi,
    request::Route,
    resources::{GPU, ResourceType},
    store::State,
};

/// The Kubernetes version the embedded server reports.
pub(crate) const VERSION: (&str, &str) = ("1", "37");

const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

pub(crate) fn serve(
    state: &State,
    route: &Route,
    headers: &HeaderMap,
) -> Result<Response<Body>, ApiError> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let aggregated = accept
        .split(',')
        .next()
        .unwrap_or_default()
        .contains("as=APIGroupDiscoveryList");
    let types: Vec<&Arc<ResourceType>> = state.types().collect();
    Ok(match route {
        Route::Version => json_response(
            200,
            &json!({
                "major": VERSION.0,
                "minor": VERSION.1,
                "gitVersion": format!("v{}.{}.0", VERSION.0, VERSION.1),
                "gitCommit": "0000000000000000000000000000000000000000",
                "gitTreeState": "clean",
                "buildDate": "2026-01-01T00:00:00Z",
                "goVersion": "go1.26",
                "compiler": "gc",
                "platform": "linux/amd64",
            }),
        ),
        Route::Health(_) => Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Body::full("ok"))
            .unwrap_or_else(|_| Response::new(Body::empty())),
        Route::CoreVersions if aggregated => aggregated_response(&types, true),
        Route::CoreVersions => json_response(
            200,
            &json!({
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1" }],
            }),
        ),
        Route::Groups if aggregated => aggregated_response(&types, false),
        Route::Groups => json_response(
            200,
            &json!({
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": groups(&types).iter().map(|(g, vs)| group_json(g, vs)).collect::<Vec<_>>(),
            }),
        ),
        Route::Group(g) => {
            let all = groups(&types);
            let versions = all
                .get(g.as_str())
                .ok_or_else(|| ApiError::unknown_path(g))?;
            let mut v = group_json(g, versions);
            v["apiVersion"] = json!("v1");
            json_response(200, &v)
        }
        Route::Resources { group, version } => {
            let list: Vec<Value> = types
                .iter()
                .filter(|t| t.group == *group && t.version == *version)
                .flat_map(|t| resource_entries(t))
                .collect();
            if list.is_empty() && !(group.is_empty() && version == "v1") {
                return Err(ApiError::unknown_path(&format!("{group}/{version}")));
            }
            let gv = if group.is_empty() {
                version.clone()
            } else {
                format!("{group}/{version}")
            };
            json_response(
                200,
                &json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list }),
            )
        }
        Route::OpenApi(path) => openapi::serve(state, path)?,
        Route::Object(_) => return Err(ApiError::internal("object route reached discovery")),
    })
}

/// Kubernetes version priority: GA before beta before alpha, higher numbers first.
pub(crate) fn version_priority(v: &str) -> (u8, i64, i64) {
    let rest = v.strip_prefix('v').unwrap_or(v);
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let major = digits.parse::<i64>().unwrap_or(0);
    let tail = &rest[digits.len()..];
    let (stage, minor) = if tail.is_empty() {
        (0, 0)
    } else if let Some(n) = tail.strip_prefix("beta") {
        (1, n.parse::<i64>().unwrap_or(0))
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (2, n.parse::<i64>().unwrap_or(0))
    } else {
        (3, 0)
    };
    (stage, -major, -minor)
}

fn groups<'a>(types: &[&'a Arc<ResourceType>]) -> BTreeMap<&'a str, Vec<&'a str>> {
    let mut out: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for t in types.iter().filter(|t| !t.group.is_empty()) {
        let vs = out.entry(t.group.as_str()).or_default();
        if !vs.contains(&t.version.as_str()) {
            vs.push(t.version.as_str());
        }
    }
    for vs in out.values_mut() {
        vs.sort_by_key(|v| version_priority(v));
    }
    out
}

fn group_json(group: &str, versions: &[&str]) -> Value {
    let gvs: Vec<Value> = versions
        .iter()
        .map(|v| json!({ "groupVersion": format!("{group}/{v}"), "version": v }))
        .collect();
    json!({ "kind": "APIGroup", "name": group, "versions": gvs, "preferredVersion": gvs.first().cloned().unwrap_or(Value::Null) })
}

/// A subresource's name, the group, version and kind it answers with, and its verbs.
type Listed<'a> = (
    &'a str,
    (&'a str, &'a str, &'a str),
    &'static [&'static str],
);

/// A resource's subresources as discovery lists them: `status` first, then the rest,
/// each with the group, version and kind it answers with.
fn subresources(t: &ResourceType) -> Vec<Listed<'_>> {
    let own = (t.group.as_str(), t.version.as_str(), t.kind.as_str());
    let mut out = Vec::new();
    if t.status_subresource {
        out.push(("status", own, GPU));
    }
    for s in &t.subresources {
        let gvk = if s.kind.is_empty() {
            own
        } else {
            (s.group, s.version, s.kind)
        };
        out.push((s.name, gvk, s.verbs));
    }
    out.sort_by_key(|(name, ..)| *name);
    out
}

fn resource_entries(t: &ResourceType) -> Vec<Value> {
    let mut out = vec![json!({
        "name": t.plural,
        "singularName": t.singular,
        "namespaced": t.namespaced,
        "kind": t.kind,
        "verbs": t.verbs,
        "shortNames": t.short_names,
        "categories": t.categories,
    })];
    for (name, (group, version, kind), verbs) in subresources(t) {
        let mut entry = json!({ "name": format!("{}/{name}", t.plural), "singularName": "", "namespaced": t.namespaced, "kind": kind, "verbs": verbs });
        if group != t.group || version != t.version {
            entry["group"] = json!(group);
            entry["version"] = json!(version);
        }
        out.push(entry);
    }
    out
}

fn aggregated_response(types: &[&Arc<ResourceType>], core: bool) -> Response<Body> {
    let mut by_group: BTreeMap<&str, BTreeMap<&str, Vec<&ResourceType>>> = BTreeMap::new();
    for t in types.iter().filter(|t| t.group.is_empty() == core) {
        by_group
            .entry(t.group.as_str())
            .or_default()
            .entry(t.version.as_str())
            .or_default()
            .push(t);
    }
    let items: Vec<Value> = by_group
        .iter()
        .map(|(group, versions)| {
            let mut vs: Vec<(&&str, &Vec<&ResourceType>)> = versions.iter().collect();
            vs.sort_by_key(|(v, _)| version_priority(v));
            json!({
                "metadata": { "name": group },
                "versions": vs.iter().map(|(v, ts)| json!({
                    "version": v,
                    "freshness": "Current",
                    "resources": ts.iter().map(|t| {
                        let kind = json!({ "group": t.group, "version": t.version, "kind": t.kind });
                        let mut r = json!({
                            "resource": t.plural,
                            "responseKind": kind,
                            "scope": if t.namespaced { "Namespaced" } else { "Cluster" },
                            "singularResource": t.singular,
                            "verbs": t.verbs,
                            "shortNames": t.short_names,
                            "categories": t.categories,
                        });
                        let subs: Vec<Value> = subresources(t).into_iter().map(|(name, (group, version, kind), verbs)| json!({
                            "subresource": name,
                            "responseKind": { "group": group, "version": version, "kind": kind },
                            "verbs": verbs,
                        })).collect();
                        if !subs.is_empty() {
                            r["subresources"] = json!(subs);
                        }
                        r
                    }).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let body = json!({ "kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, AGGREGATED)
        .body(Body::full(body.to_string()))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}
