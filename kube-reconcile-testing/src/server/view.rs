//! How a stored object looks through the resource it is requested from.
//!
//! Objects are stored once per storage; a resource is a view of a storage. Custom
//! resource versions differ only in `apiVersion`. The core/v1 `events` resource is a
//! converted view of `events.k8s.io/v1` events, so events written by kube's `Recorder`
//! show in `kubectl describe`.

use serde_json::{Map, Value, json};

use super::resources::ResourceType;

/// Field renames between events.k8s.io/v1 (left) and core/v1 (right).
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// The object as `rt` presents it.
pub(crate) fn present(rt: &ResourceType, stored: &Value) -> Value {
    let mut obj = stored.clone();
    if rt.view {
        obj = rename(obj, |(from, to)| (from, to));
        fill_core_event(&mut obj);
    }
    if let Some(o) = obj.as_object_mut() {
        o.insert("apiVersion".into(), json!(rt.api_version()));
        o.insert("kind".into(), json!(rt.kind));
    }
    obj
}

/// The object as stored, from a body written through `rt`.
pub(crate) fn ingest(rt: &ResourceType, body: Value) -> Value {
    let mut obj = if rt.view {
        rename(body, |(from, to)| (to, from))
    } else {
        body
    };
    if rt.view
        && let Some(o) = obj.as_object_mut()
    {
        o.insert("apiVersion".into(), json!("events.k8s.io/v1"));
    }
    obj
}

fn rename(
    mut obj: Value,
    dir: impl Fn((&'static str, &'static str)) -> (&'static str, &'static str),
) -> Value {
    if let Some(o) = obj.as_object_mut() {
        for pair in EVENT_FIELDS {
            let (from, to) = dir(*pair);
            if let Some(v) = o.remove(from) {
                o.insert(to.to_string(), v);
            }
        }
    }
    obj
}

/// core/v1 readers (kubectl describe) expect counts and timestamps even for new-style events.
fn fill_core_event(obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else { return };
    let series_count = o.get("series").and_then(|s| s.get("count")).cloned();
    let series_last = o
        .get("series")
        .and_then(|s| s.get("lastObservedTime"))
        .cloned();
    let event_time = o.get("eventTime").cloned().filter(|v| !v.is_null());
    if !o.contains_key("count") {
        o.insert("count".into(), series_count.unwrap_or(json!(1)));
    }
    if !o.contains_key("firstTimestamp")
        && let Some(t) = event_time.clone()
    {
        o.insert("firstTimestamp".into(), truncate_micro(&t));
    }
    if !o.contains_key("lastTimestamp")
        && let Some(t) = series_last.or(event_time)
    {
        o.insert("lastTimestamp".into(), truncate_micro(&t));
    }
    if !o.contains_key("source") {
        let component = o.get("reportingComponent").cloned().unwrap_or(json!(""));
        o.insert("source".into(), json!({ "component": component }));
    }
}

fn truncate_micro(t: &Value) -> Value {
    match t.as_str() {
        Some(s) if s.len() > 20 && s.contains('.') => json!(format!("{}Z", &s[..19])),
        _ => t.clone(),
    }
}

/// `PartialObjectMetadata` of an object.
pub(crate) fn metadata_only(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or(Value::Object(Map::new())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::resources::built_ins;

    #[test]
    fn events_read_through_core_v1_have_involved_object_and_message() {
        let core = built_ins().into_iter().find(|r| r.view).unwrap();
        let stored = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e", "namespace": "default"},
            "regarding": {"kind": "Database", "name": "pg"},
            "note": "provisioning started", "reason": "Provisioning", "type": "Normal",
            "eventTime": "2026-11-25T04:00:00.123456Z", "reportingController": "db-operator",
        });
        let view = present(&core, &stored);
        assert_eq!(view["apiVersion"], "v1");
        assert_eq!(view["involvedObject"]["name"], "pg");
        assert_eq!(view["message"], "provisioning started");
        assert_eq!(view["count"], 1);
        assert_eq!(view["firstTimestamp"], "2026-11-25T04:00:00Z");
        assert_eq!(ingest(&core, view)["regarding"]["name"], "pg");
    }
}
