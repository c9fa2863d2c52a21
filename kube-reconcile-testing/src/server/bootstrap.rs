//! The objects a cluster has from its first second: the system namespaces, the
//! `kubernetes` Service and its CIDR, the system priority classes, the RBAC roles users
//! bind to, and an `APIService` per built-in group version.

use serde_json::{Value, json};

use super::store::{State, WriteOptions};

/// Every object the embedded server starts with, as `(group, plural, object)`.
fn objects() -> Vec<(&'static str, &'static str, Value)> {
    let mut out = Vec::new();
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        out.push((
            "",
            "namespaces",
            json!({
                "metadata": { "name": ns, "labels": { "kubernetes.io/metadata.name": ns } },
                "spec": { "finalizers": ["kubernetes"] },
                "status": { "phase": "Active" },
            }),
        ));
    }
    out.push((
        "",
        "services",
        json!({
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": { "component": "apiserver", "provider": "kubernetes" },
            },
            "spec": {
                "type": "ClusterIP",
                "clusterIP": "10.0.0.1",
                "clusterIPs": ["10.0.0.1"],
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack",
                "internalTrafficPolicy": "Cluster",
                "sessionAffinity": "None",
                "ports": [{ "name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443 }],
            },
            "status": { "loadBalancer": {} },
        }),
    ));
    out.push((
        "networking.k8s.io",
        "servicecidrs",
        json!({
            "metadata": { "name": "kubernetes" },
            "spec": { "cidrs": ["10.0.0.0/16"] },
            "status": { "conditions": [{
                "type": "Ready",
                "status": "True",
                "reason": "",
                "message": "Kubernetes Service CIDR is ready",
                "lastTransitionTime": super::meta::now_rfc3339(),
            }] },
        }),
    ));
    out.extend(priority_classes());
    out.extend(rbac());
    out
}

/// The two system priority classes.
fn priority_classes() -> Vec<(&'static str, &'static str, Value)> {
    let mut out = Vec::new();
    for (name, value, what) in [
        (
            "system-cluster-critical",
            2_000_000_000,
            "pods the cluster needs, movable between nodes",
        ),
        (
            "system-node-critical",
            2_000_001_000,
            "pods a node needs, never evicted first",
        ),
    ] {
        out.push((
            "scheduling.k8s.io",
            "priorityclasses",
            json!({
                "metadata": { "name": name },
                "value": value,
                "globalDefault": false,
                "preemptionPolicy": "PreemptLowerPriority",
                "description": format!("The priority of {what}."),
            }),
        ));
    }
    out
}

/// The roles users bind to, and `cluster-admin`'s binding to `system:masters`.
fn rbac() -> Vec<(&'static str, &'static str, Value)> {
    let mut out = Vec::new();
    let everything = json!([{ "apiGroups": ["*"], "resources": ["*"], "verbs": ["*"] }, { "nonResourceURLs": ["*"], "verbs": ["*"] }]);
    out.push((
        "rbac.authorization.k8s.io",
        "clusterroles",
        json!({ "metadata": { "name": "cluster-admin", "labels": bootstrapping() }, "rules": everything }),
    ));
    for (role, verbs) in [
        ("admin", json!(["*"])),
        ("edit", json!(super::resources::CRUD)),
        ("view", json!(["get", "list", "watch"])),
    ] {
        out.push((
            "rbac.authorization.k8s.io",
            "clusterroles",
            json!({
                "metadata": { "name": role, "labels": bootstrapping() },
                "aggregationRule": { "clusterRoleSelectors": [{ "matchLabels": { format!("rbac.authorization.k8s.io/aggregate-to-{role}"): "true" } }] },
                "rules": [{ "apiGroups": ["*"], "resources": ["*"], "verbs": verbs }],
            }),
        ));
    }
    out.push((
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
        json!({
            "metadata": { "name": "cluster-admin", "labels": bootstrapping() },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin" },
            "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:masters" }],
        }),
    ));
    out
}

fn bootstrapping() -> Value {
    json!({ "kubernetes.io/bootstrapping": "rbac-defaults" })
}

/// The aggregation layer's `APIService` of each built-in group version, marked local
/// (served by this server itself).
fn api_services(state: &State) -> Vec<(&'static str, &'static str, Value)> {
    let mut gvs: Vec<(String, String)> = state
        .types()
        // The aggregation layer itself has no APIService.
        .filter(|t| t.built_in && t.group != "apiregistration.k8s.io")
        .map(|t| t.group_version())
        .collect();
    gvs.sort_by(|a, b| (!a.0.is_empty(), &a.0, &a.1).cmp(&(!b.0.is_empty(), &b.0, &b.1)));
    gvs.dedup();
    let mut out = Vec::new();
    let mut rank = 18_000;
    let mut last_group = None;
    for (group, version) in gvs {
        if last_group.as_ref() != Some(&group) {
            rank -= 100;
            last_group = Some(group.clone());
        }
        out.push((
            "apiregistration.k8s.io",
            "apiservices",
            json!({
                "metadata": {
                    "name": format!("{version}.{group}"),
                    "labels": { "kube-aggregator.kubernetes.io/automanaged": "onstart" },
                },
                "spec": {
                    "group": group,
                    "version": version,
                    "groupPriorityMinimum": rank + 100,
                    "versionPriority": 15,
                },
                "status": { "conditions": [{
                    "type": "Available",
                    "status": "True",
                    "reason": "Local",
                    "message": "served by this API server itself",
                    "lastTransitionTime": super::meta::now_rfc3339(),
                }] },
            }),
        ));
    }
    out
}

/// Creates the objects every cluster starts with.
pub(crate) fn populate(state: &mut State) {
    let all = objects().into_iter().chain(api_services(state));
    for (group, plural, mut obj) in all.collect::<Vec<_>>() {
        let rt = state
            .lookup(group, "v1", plural)
            .expect("invariant: bootstrap objects are of built-in kinds");
        obj["apiVersion"] = json!(rt.api_version());
        obj["kind"] = json!(rt.kind);
        let ns = obj["metadata"]["namespace"].as_str().map(str::to_string);
        state
            .create(&rt, ns.as_deref(), obj, &WriteOptions::default())
            .expect("invariant: bootstrap objects are valid and new");
    }
}
