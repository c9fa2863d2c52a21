//! What the embedded server serves, diffed against a bare kube-apiserver: every resource
//! and subresource with its kind, scope, verbs, short names and categories (legacy and
//! aggregated discovery), and the objects a cluster starts with. A new gap fails the
//! test; so does a listed difference that is gone.
//!
//! A test binary of its own, so the real control plane holds only what a fresh cluster
//! holds (the conformance suite's tests share theirs and create CRDs).

use std::collections::BTreeMap;

use kube_reconcile_test_support::tier::Tier;
use serde_json::Value;

/// The differences that are deliberate, each with the reason. A key matches a
/// difference's key exactly, or every key it prefixes when it ends with `*`.
const DELIBERATE: &[(&str, &str)] = &[
    (
        "object clusterroles/system:*",
        "the embedded server authorizes every request: of the bootstrap RBAC policy it keeps \
         only the roles users bind to (cluster-admin, admin, edit, view)",
    ),
    ("object clusterrolebindings/system:*", "as clusterroles"),
    ("object roles/kube-system/*", "as clusterroles"),
    ("object roles/kube-public/*", "as clusterroles"),
    ("object rolebindings/kube-system/*", "as clusterroles"),
    ("object rolebindings/kube-public/*", "as clusterroles"),
    (
        "object flowschemas/*",
        "no API priority and fairness: the embedded server queues no requests",
    ),
    ("object prioritylevelconfigurations/*", "as flowschemas"),
    (
        "object configmaps/kube-system/*",
        "no front proxy and no legacy token tracking to configure",
    ),
    (
        "object leases/kube-system/apiserver-*",
        "one embedded server: no apiserver identity leases",
    ),
];

/// `group/version resource` → what discovery says about it, from the legacy documents.
async fn legacy(cx: &Tier) -> BTreeMap<String, String> {
    let mut paths = vec!["/api/v1".to_string()];
    let (_, _, groups) = cx.get_json("/apis", "application/json").await;
    for group in groups["groups"].as_array().expect("groups") {
        for version in group["versions"].as_array().expect("versions") {
            paths.push(format!(
                "/apis/{}",
                version["groupVersion"].as_str().expect("gv")
            ));
        }
    }
    let mut out = BTreeMap::new();
    for path in paths {
        let (code, _, list) = cx.get_json(&path, "application/json").await;
        assert_eq!(code, 200, "{}: {path}", cx.name());
        let gv = list["groupVersion"]
            .as_str()
            .expect("groupVersion")
            .to_string();
        for r in list["resources"].as_array().expect("resources") {
            let name = r["name"].as_str().expect("name");
            out.insert(
                format!("{gv} {name}"),
                describe(r, "kind", r["namespaced"].as_bool()),
            );
        }
    }
    out
}

/// The same, from the aggregated documents (`/api` and `/apis` as `APIGroupDiscoveryList`).
async fn aggregated(cx: &Tier) -> BTreeMap<String, String> {
    let accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
    let mut out = BTreeMap::new();
    for path in ["/api", "/apis"] {
        let (code, _, list) = cx.get_json(path, accept).await;
        assert_eq!(code, 200, "{}: {path}", cx.name());
        for group in list["items"].as_array().expect("items") {
            let g = group["metadata"]["name"].as_str().unwrap_or_default();
            for version in group["versions"].as_array().expect("versions") {
                let v = version["version"].as_str().expect("version");
                let gv = if g.is_empty() {
                    v.to_string()
                } else {
                    format!("{g}/{v}")
                };
                for r in version["resources"].as_array().into_iter().flatten() {
                    let name = r["resource"].as_str().expect("resource");
                    let scope = Some(r["scope"] == "Namespaced");
                    let mut main = r.clone();
                    main["kind"] = r["responseKind"]["kind"].clone();
                    out.insert(format!("{gv} {name}"), describe(&main, "kind", scope));
                    for s in r["subresources"].as_array().into_iter().flatten() {
                        let mut sub = s.clone();
                        sub["kind"] = s["responseKind"]["kind"].clone();
                        let key =
                            format!("{gv} {name}/{}", s["subresource"].as_str().expect("name"));
                        out.insert(key, describe(&sub, "kind", scope));
                    }
                }
            }
        }
    }
    out
}

fn describe(r: &Value, kind: &str, namespaced: Option<bool>) -> String {
    let list = |key: &str| {
        let mut items: Vec<&str> = r[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        items.sort_unstable();
        items.join(",")
    };
    format!(
        "{} {} verbs[{}] short[{}] categories[{}]",
        r[kind].as_str().unwrap_or_default(),
        if namespaced == Some(true) {
            "Namespaced"
        } else {
            "Cluster"
        },
        list("verbs"),
        list("shortNames"),
        list("categories"),
    )
}

/// The objects a fresh cluster holds, as `object resource/[namespace/]name` keys.
async fn objects(cx: &Tier) -> BTreeMap<String, String> {
    let system = |ns: &str| ns.is_empty() || ns == "default" || ns.starts_with("kube-");
    let mut out = BTreeMap::new();
    for path in [
        "/api/v1/namespaces",
        "/api/v1/services",
        "/api/v1/endpoints",
        "/api/v1/configmaps",
        "/api/v1/secrets",
        "/api/v1/serviceaccounts",
        "/apis/discovery.k8s.io/v1/endpointslices",
        "/apis/scheduling.k8s.io/v1/priorityclasses",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        "/apis/rbac.authorization.k8s.io/v1/roles",
        "/apis/rbac.authorization.k8s.io/v1/rolebindings",
        "/apis/coordination.k8s.io/v1/leases",
        "/apis/flowcontrol.apiserver.k8s.io/v1/flowschemas",
        "/apis/flowcontrol.apiserver.k8s.io/v1/prioritylevelconfigurations",
        "/apis/storage.k8s.io/v1/storageclasses",
        "/apis/networking.k8s.io/v1/servicecidrs",
        "/apis/apiregistration.k8s.io/v1/apiservices",
    ] {
        let (code, _, list) = cx.get_json(path, "application/json").await;
        assert_eq!(code, 200, "{}: {path}", cx.name());
        let resource = path.rsplit('/').next().expect("plural");
        for item in list["items"].as_array().expect("items") {
            let ns = item["metadata"]["namespace"].as_str().unwrap_or_default();
            let name = item["metadata"]["name"].as_str().expect("name");
            // The test's own namespace.
            if (resource == "namespaces" && !system(name)) || !system(ns) {
                continue;
            }
            let key = if ns.is_empty() {
                format!("object {resource}/{name}")
            } else {
                format!("object {resource}/{ns}/{name}")
            };
            out.insert(key, "present".to_string());
        }
    }
    out
}

/// Every key where the two maps differ, with what each side says.
fn diff(real: &BTreeMap<String, String>, embedded: &BTreeMap<String, String>) -> Vec<String> {
    let mut keys: Vec<&String> = real.keys().chain(embedded.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| real.get(*k) != embedded.get(*k))
        .map(|k| {
            format!(
                "{k}\n    real:     {}\n    embedded: {}",
                real.get(k).map_or("-", String::as_str),
                embedded.get(k).map_or("-", String::as_str)
            )
        })
        .collect()
}

fn deliberate(difference: &str) -> Option<&'static str> {
    let key = difference.lines().next().unwrap_or_default();
    DELIBERATE.iter().find_map(|(pattern, _)| {
        let hit = match pattern.strip_suffix('*') {
            Some(prefix) => key.starts_with(prefix),
            None => key == *pattern,
        };
        hit.then_some(*pattern)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_server_serves_what_a_bare_kube_apiserver_serves() {
    let Some(real) = Tier::real("inventory").await else {
        return;
    };
    let embedded = Tier::embedded("inventory").await;
    // Each server's two discovery forms agree with each other.
    for cx in [&real, &embedded] {
        let (legacy, aggregated) = (legacy(cx).await, aggregated(cx).await);
        let disagree = diff(&legacy, &aggregated);
        assert!(
            disagree.is_empty(),
            "{}: legacy vs aggregated discovery:\n{}",
            cx.name(),
            disagree.join("\n")
        );
    }
    let mut real_view = legacy(&real).await;
    real_view.extend(objects(&real).await);
    let mut embedded_view = legacy(&embedded).await;
    embedded_view.extend(objects(&embedded).await);
    let differences = diff(&real_view, &embedded_view);
    let unexplained: Vec<&String> = differences
        .iter()
        .filter(|d| deliberate(d).is_none())
        .collect();
    let used: Vec<&str> = differences.iter().filter_map(|d| deliberate(d)).collect();
    let stale: Vec<&str> = DELIBERATE
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| !used.contains(p))
        .collect();
    assert!(
        unexplained.is_empty(),
        "{} differences from a bare kube-apiserver that are not listed as deliberate:\n{}",
        unexplained.len(),
        unexplained
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        stale.is_empty(),
        "listed as deliberate but no longer different: {stale:?}"
    );
}
