//! Server-side defaults of built-in kinds, as kube-apiserver fills them.
//!
//! These are the fields that make naive create-or-update loops churn: a reconciler that
//! compares its desired object with the stored one sees them as differences. Modelling
//! them keeps the embedded server honest for `Ensure`-style tests.

use serde_json::{Map, Value, json};

use super::{resources::ResourceType, store::State};

fn set_default(obj: &mut Map<String, Value>, key: &str, value: Value) {
    obj.entry(key.to_string()).or_insert(value);
}

fn object<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    let o = v.as_object_mut()?;
    let slot = o.entry(key.to_string()).or_insert_with(|| json!({}));
    slot.as_object_mut()
}

fn each<'a>(v: &'a mut Value, key: &str) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    v.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

/// `stringData` is write-only: its entries go into `data`, base64-encoded, as the real
/// server does on every write, and it is never stored.
fn merge_string_data(secret: &mut Map<String, Value>) {
    use base64::Engine as _;
    let Some(Value::Object(strings)) = secret.remove("stringData") else {
        return;
    };
    let data = secret.entry("data").or_insert_with(|| json!({}));
    if let Some(data) = data.as_object_mut() {
        for (key, value) in strings {
            if let Some(text) = value.as_str() {
                let encoded = base64::engine::general_purpose::STANDARD.encode(text);
                data.insert(key, Value::String(encoded));
            }
        }
    }
}

/// Fills the defaults of a built-in object before it is stored.
pub(crate) fn apply(state: &State, rt: &ResourceType, obj: &mut Value) {
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "services") => service(state, obj),
        ("", "secrets") => {
            if let Some(o) = obj.as_object_mut() {
                set_default(o, "type", json!("Opaque"));
                merge_string_data(o);
            }
        }
        ("", "persistentvolumeclaims") => {
            if let Some(spec) = object(obj, "spec") {
                set_default(spec, "volumeMode", json!("Filesystem"));
            }
            if let Some(status) = object(obj, "status") {
                set_default(status, "phase", json!("Pending"));
            }
        }
        ("", "pods") => {
            if let Some(spec) = obj.get_mut("spec") {
                pod_spec(spec);
            }
            if let Some(status) = object(obj, "status") {
                set_default(status, "phase", json!("Pending"));
                set_default(status, "qosClass", json!("BestEffort"));
            }
        }
        ("apps", "statefulsets") => {
            let Some(spec) = object(obj, "spec") else {
                return;
            };
            set_default(spec, "replicas", json!(1));
            set_default(spec, "podManagementPolicy", json!("OrderedReady"));
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(
                spec,
                "updateStrategy",
                json!({ "type": "RollingUpdate", "rollingUpdate": { "partition": 0 } }),
            );
            set_default(
                spec,
                "persistentVolumeClaimRetentionPolicy",
                json!({ "whenDeleted": "Retain", "whenScaled": "Retain" }),
            );
            if let Some(templates) = spec
                .get_mut("volumeClaimTemplates")
                .and_then(Value::as_array_mut)
            {
                for t in templates.iter_mut().filter_map(Value::as_object_mut) {
                    set_default(t, "apiVersion", json!("v1"));
                    set_default(t, "kind", json!("PersistentVolumeClaim"));
                    if let Some(s) = t.get_mut("spec").and_then(Value::as_object_mut) {
                        set_default(s, "volumeMode", json!("Filesystem"));
                    }
                    set_default(t, "status", json!({ "phase": "Pending" }));
                }
            }
            template(spec);
        }
        ("apps", "deployments") => {
            let Some(spec) = object(obj, "spec") else {
                return;
            };
            set_default(spec, "replicas", json!(1));
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(spec, "progressDeadlineSeconds", json!(600));
            set_default(
                spec,
                "strategy",
                json!({ "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": "25%", "maxSurge": "25%" } }),
            );
            template(spec);
        }
        _ => {}
    }
}

/// Keeps values the server allocated (a Service's cluster IP) when a PUT omits them.
pub(crate) fn carry_over(rt: &ResourceType, old: &Value, new: &mut Value) {
    if rt.group.is_empty() && rt.plural == "services" {
        for field in ["clusterIP", "clusterIPs"] {
            if let (Some(v), Some(spec)) = (
                old.pointer(&format!("/spec/{field}")),
                new.get_mut("spec").and_then(Value::as_object_mut),
            ) {
                set_default(spec, field, v.clone());
            }
        }
    }
}

fn template(spec: &mut Map<String, Value>) {
    if let Some(pod) = spec.get_mut("template").and_then(|t| t.get_mut("spec")) {
        pod_spec(pod);
    }
    if let Some(meta) = spec.get_mut("template").and_then(Value::as_object_mut) {
        set_default(meta, "metadata", json!({}));
        if let Some(m) = meta.get_mut("metadata").and_then(Value::as_object_mut) {
            set_default(m, "creationTimestamp", Value::Null);
        }
    }
}

fn pod_spec(spec: &mut Value) {
    if let Some(s) = spec.as_object_mut() {
        set_default(s, "restartPolicy", json!("Always"));
        set_default(s, "terminationGracePeriodSeconds", json!(30));
        set_default(s, "dnsPolicy", json!("ClusterFirst"));
        set_default(s, "securityContext", json!({}));
        set_default(s, "schedulerName", json!("default-scheduler"));
    }
    for kind in ["containers", "initContainers"] {
        for c in each(spec, kind) {
            set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
            set_default(c, "terminationMessagePolicy", json!("File"));
            let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
            let tag = image
                .rsplit('/')
                .next()
                .and_then(|last| last.split_once(':'))
                .map(|(_, t)| t);
            let pull = if image.contains('@') || tag.is_some_and(|t| t != "latest") {
                "IfNotPresent"
            } else {
                "Always"
            };
            set_default(c, "imagePullPolicy", json!(pull));
            set_default(c, "resources", json!({}));
            if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                    set_default(p, "protocol", json!("TCP"));
                }
            }
            for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                if let Some(p) = c.get_mut(probe).and_then(Value::as_object_mut) {
                    set_default(p, "timeoutSeconds", json!(1));
                    set_default(p, "periodSeconds", json!(10));
                    set_default(p, "successThreshold", json!(1));
                    set_default(p, "failureThreshold", json!(3));
                }
            }
        }
    }
    for v in each(spec, "volumes") {
        for source in ["configMap", "secret"] {
            if let Some(s) = v.get_mut(source).and_then(Value::as_object_mut) {
                set_default(s, "defaultMode", json!(420));
            }
        }
    }
}

fn service(state: &State, obj: &mut Value) {
    let Some(spec) = object(obj, "spec") else {
        return;
    };
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    set_default(spec, "ipFamilies", json!(["IPv4"]));
    set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
    if !spec.contains_key("clusterIP") {
        // Allocate from 10.96.0.0/12 by resource version: unique for the server's lifetime.
        let n = state.rv + 10;
        let ip = format!("10.96.{}.{}", (n / 250) % 250, n % 250 + 1);
        spec.insert("clusterIP".into(), json!(ip));
    }
    if !spec.contains_key("clusterIPs") {
        let ip = spec["clusterIP"].clone();
        spec.insert("clusterIPs".into(), json!([ip]));
    }
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            set_default(p, "protocol", json!("TCP"));
            let port = p.get("port").cloned().unwrap_or(Value::Null);
            set_default(p, "targetPort", port);
        }
    }
    if let Some(status) = object(obj, "status") {
        set_default(status, "loadBalancer", json!({}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::resources::built_ins;

    #[test]
    fn statefulset_and_its_pod_template_get_the_real_defaults() {
        let state = State::new(10);
        let rt = built_ins()
            .into_iter()
            .find(|r| r.plural == "statefulsets")
            .unwrap();
        let mut sts = json!({"spec": {"template": {"spec": {"containers": [{"name": "db", "image": "postgres:16", "ports": [{"containerPort": 5432}]}]}}}});
        apply(&state, &rt, &mut sts);
        assert_eq!(sts["spec"]["podManagementPolicy"], "OrderedReady");
        assert_eq!(sts["spec"]["replicas"], 1);
        let c = &sts["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(sts["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
    }

    #[test]
    fn secret_string_data_is_stored_as_base64_data() {
        let state = State::new(10);
        let rt = built_ins()
            .into_iter()
            .find(|r| r.plural == "secrets")
            .unwrap();
        let mut secret = json!({"data": {"user": "YXBw"}, "stringData": {"password": "s3cret"}});
        apply(&state, &rt, &mut secret);
        assert_eq!(
            secret["data"],
            json!({"user": "YXBw", "password": "czNjcmV0"})
        );
        assert_eq!(secret.get("stringData"), None);
        assert_eq!(secret["type"], "Opaque");
    }

    #[test]
    fn services_get_a_cluster_ip_and_target_ports() {
        let state = State::new(10);
        let rt = built_ins()
            .into_iter()
            .find(|r| r.plural == "services")
            .unwrap();
        let mut svc = json!({"spec": {"ports": [{"port": 5432}]}});
        apply(&state, &rt, &mut svc);
        assert_eq!(svc["spec"]["type"], "ClusterIP");
        assert!(
            svc["spec"]["clusterIP"]
                .as_str()
                .unwrap()
                .starts_with("10.96.")
        );
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], 5432);
    }
}
