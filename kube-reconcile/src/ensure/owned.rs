//! The no-op check of server-side apply: the desired object against the fields our field
//! manager owns in the live object (`metadata.managedFields`, `fieldsV1`).
//!
//! An apply changes nothing when the fields it sets are exactly the fields the manager
//! already owns and each of them already has the desired value. Anything else (a value
//! differs, a field is new to us, a field we owned is no longer applied) would change the
//! object or its ownership, so the apply is sent.

use serde_json::{Map, Value};

use super::{
    path::{FieldPath, Seg},
    semantic::{equal, is_absent},
    subset::subset_diff,
};

/// The `fieldsV1` of the `Apply` entry of `manager` (main resource, not a subresource).
pub(crate) fn owned_fields<'a>(live: &'a Value, manager: &str) -> Option<&'a Map<String, Value>> {
    live.pointer("/metadata/managedFields")?
        .as_array()?
        .iter()
        .find(|e| {
            e.get("manager").and_then(Value::as_str) == Some(manager)
                && e.get("operation").and_then(Value::as_str) == Some("Apply")
                && e.get("subresource")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
        })?
        .get("fieldsV1")?
        .as_object()
}

/// Whether `manager` appears in the live object's managed fields at all.
pub(crate) fn is_manager(live: &Value, manager: &str) -> bool {
    live.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .is_some_and(|entries| {
            entries
                .iter()
                .any(|e| e.get("manager").and_then(Value::as_str) == Some(manager))
        })
}

/// The paths an apply of `desired` would change, given the fields `owned` in `live`.
/// `desired` carries no identity (`apiVersion`, `kind`, `metadata.name`/`namespace`).
pub(crate) fn owned_diff(
    desired: &Value,
    live: &Value,
    owned: Option<&Map<String, Value>>,
) -> Vec<String> {
    let mut out = Vec::new();
    walk(
        Some(desired),
        Some(live),
        owned,
        &mut FieldPath::default(),
        &mut out,
    );
    out
}

/// The child entries of a `fieldsV1` node, without the `.` marker.
fn children(node: &Map<String, Value>) -> impl Iterator<Item = (&str, &Value)> {
    node.iter()
        .filter(|(k, _)| k.as_str() != ".")
        .map(|(k, v)| (k.as_str(), v))
}

fn walk(
    desired: Option<&Value>,
    live: Option<&Value>,
    owned: Option<&Map<String, Value>>,
    path: &mut FieldPath,
    out: &mut Vec<String>,
) {
    let Some(node) = owned else {
        // Not ours yet: applying a value would take it over. Report each leaf we set.
        match desired {
            Some(Value::Object(d)) if !d.is_empty() => {
                for (k, v) in d {
                    path.field(k);
                    walk(Some(v), live.and_then(|l| l.get(k)), None, path, out);
                    path.pop();
                }
            }
            _ if !is_absent(desired) => out.push(path.render()),
            _ => {}
        }
        return;
    };
    let Some((first, _)) = children(node).next() else {
        // A leaf (or an atomic value): ours as a whole. The server defaults fields inside
        // atomic values too (a StatefulSet's `volumeClaimTemplates`), and its managed
        // fields then credit them to us: compare an atomic composite as a subset, so those
        // defaults never count as a difference.
        let differs = match (desired, live) {
            (Some(d @ (Value::Object(_) | Value::Array(_))), Some(l)) => {
                !subset_diff(d, l).fields.is_empty()
            }
            _ => !equal(desired, live, path),
        };
        if differs {
            out.push(path.render());
        }
        return;
    };
    if first.starts_with("f:") {
        fields(desired, live, node, path, out);
    } else if first.starts_with("k:") {
        list_map(desired, live, node, path, out);
    } else if first.starts_with("v:") {
        set(desired, node, path, out);
    } else if !equal(desired, live, path) {
        out.push(path.render());
    }
}

fn fields(
    desired: Option<&Value>,
    live: Option<&Value>,
    node: &Map<String, Value>,
    path: &mut FieldPath,
    out: &mut Vec<String>,
) {
    let d = desired.and_then(Value::as_object);
    let l = live.and_then(Value::as_object);
    if desired.is_some_and(|v| !v.is_object() && !v.is_null()) {
        out.push(path.render());
        return;
    }
    for (key, child) in children(node) {
        let Some(name) = key.strip_prefix("f:") else {
            out.push(path.render());
            return;
        };
        path.field(name);
        walk(
            d.and_then(|m| m.get(name)),
            l.and_then(|m| m.get(name)),
            child.as_object(),
            path,
            out,
        );
        path.pop();
    }
    for (name, value) in d.into_iter().flatten() {
        if !node.contains_key(&format!("f:{name}")) {
            path.field(name);
            walk(Some(value), l.and_then(|m| m.get(name)), None, path, out);
            path.pop();
        }
    }
}

/// Whether the live `item` has the key fields of `key` with the same values.
fn matches_key(item: &Value, key: &Map<String, Value>, path: &mut FieldPath) -> bool {
    key.iter().all(|(k, v)| {
        path.field(k);
        let eq = equal(item.get(k), Some(v), path);
        path.pop();
        eq
    })
}

/// Whether the desired `item` is the one `key` names. A key field the desired item leaves
/// out counts as matching: the server defaults it before it keys the item (a Service port
/// applied without `protocol` is owned as `k:{"port":80,"protocol":"TCP"}`).
fn desired_matches_key(item: &Value, key: &Map<String, Value>, path: &mut FieldPath) -> bool {
    key.iter().all(|(k, v)| {
        path.field(k);
        let eq = item.get(k).is_none_or(|x| equal(Some(x), Some(v), path));
        path.pop();
        eq
    })
}

fn list_map(
    desired: Option<&Value>,
    live: Option<&Value>,
    node: &Map<String, Value>,
    path: &mut FieldPath,
    out: &mut Vec<String>,
) {
    let d: &[Value] = desired.and_then(Value::as_array).map_or(&[], Vec::as_slice);
    let l: &[Value] = live.and_then(Value::as_array).map_or(&[], Vec::as_slice);
    if desired.is_some_and(|v| !v.is_array() && !v.is_null()) {
        out.push(path.render());
        return;
    }
    let mut keys: Vec<Map<String, Value>> = Vec::new();
    for (entry, child) in children(node) {
        let Some(key) = entry
            .strip_prefix("k:")
            .and_then(|k| serde_json::from_str::<Map<String, Value>>(k).ok())
        else {
            out.push(path.render());
            return;
        };
        path.push(Seg::Key(key.clone()));
        let mut scratch = FieldPath::default();
        let di = d
            .iter()
            .find(|i| desired_matches_key(i, &key, &mut scratch));
        let li = l.iter().find(|i| matches_key(i, &key, &mut scratch));
        if di.is_none() {
            // We would stop applying an item we own: the apply removes it.
            out.push(path.render());
        } else {
            walk(di, li, child.as_object(), path, out);
        }
        path.pop();
        keys.push(key);
    }
    let mut scratch = FieldPath::default();
    for (i, item) in d.iter().enumerate() {
        if !keys
            .iter()
            .any(|k| desired_matches_key(item, k, &mut scratch))
        {
            path.push(Seg::Index(i));
            out.push(path.render());
            path.pop();
        }
    }
}

fn set(
    desired: Option<&Value>,
    node: &Map<String, Value>,
    path: &mut FieldPath,
    out: &mut Vec<String>,
) {
    let owned: Vec<Value> = children(node)
        .filter_map(|(k, _)| k.strip_prefix("v:"))
        .filter_map(|v| serde_json::from_str(v).ok())
        .collect();
    let d: &[Value] = desired.and_then(Value::as_array).map_or(&[], Vec::as_slice);
    let mut scratch = FieldPath::default();
    let contains = |set: &[Value], v: &Value, p: &mut FieldPath| {
        set.iter().any(|x| equal(Some(x), Some(v), p))
    };
    let same = d.iter().all(|v| contains(&owned, v, &mut scratch))
        && owned.iter().all(|v| contains(d, v, &mut scratch));
    if !same {
        out.push(path.render());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: &Value) -> &Map<String, Value> {
        v.as_object().unwrap()
    }

    #[test]
    fn owned_fields_at_the_desired_values_are_unchanged() {
        let owned = json!({"f:data": {"f:a": {}}, "f:metadata": {"f:labels": {"f:x": {}}}});
        let desired = json!({"data": {"a": "1"}, "metadata": {"labels": {"x": "y"}}});
        let live = json!({"data": {"a": "1", "b": "someone else's"},
                          "metadata": {"labels": {"x": "y", "z": "w"}}});
        assert!(owned_diff(&desired, &live, Some(fields(&owned))).is_empty());
    }

    #[test]
    fn a_new_field_a_changed_field_and_a_dropped_field_are_all_changes() {
        let owned = json!({"f:data": {"f:a": {}, "f:gone": {}}});
        let desired = json!({"data": {"a": "2", "new": "x"}});
        let live = json!({"data": {"a": "1", "gone": "y"}});
        let mut diff = owned_diff(&desired, &live, Some(fields(&owned)));
        diff.sort();
        assert_eq!(diff, vec!["data.a", "data.gone", "data.new"]);
    }

    #[test]
    fn nothing_owned_means_everything_desired_is_a_change() {
        let desired = json!({"data": {"a": "1", "b": "2"}, "metadata": {}});
        let live = json!({"data": {"a": "1"}});
        assert_eq!(owned_diff(&desired, &live, None), vec!["data.a", "data.b"]);
    }

    #[test]
    fn list_map_items_compare_by_key_ignoring_order_and_defaults() {
        let owned = json!({"f:spec": {"f:containers": {
            "k:{\"name\":\"a\"}": {".": {}, "f:name": {}, "f:image": {}},
            "k:{\"name\":\"b\"}": {".": {}, "f:name": {}, "f:image": {}}}}});
        let desired = json!({"spec": {"containers": [
            {"name": "b", "image": "y"}, {"name": "a", "image": "x"}]}});
        let live = json!({"spec": {"containers": [
            {"name": "a", "image": "x", "imagePullPolicy": "Always"},
            {"name": "b", "image": "y", "imagePullPolicy": "Always"}]}});
        assert!(owned_diff(&desired, &live, Some(fields(&owned))).is_empty());
        let desired = json!({"spec": {"containers": [{"name": "a", "image": "x2"}, {"name": "c", "image": "z"}]}});
        let diff = owned_diff(&desired, &live, Some(fields(&owned)));
        assert_eq!(
            diff,
            vec![
                "spec.containers[name=a].image",
                "spec.containers[name=b]",
                "spec.containers[1]"
            ]
        );
    }

    #[test]
    fn a_key_field_the_server_defaulted_still_matches_the_desired_item() {
        let owned = json!({"f:spec": {"f:ports": {
            "k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}}}}});
        let desired = json!({"spec": {"ports": [{"port": 80}]}});
        let live = json!({"spec": {"ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]}});
        assert!(owned_diff(&desired, &live, Some(fields(&owned))).is_empty());
        let desired = json!({"spec": {"ports": [{"port": 80, "protocol": "UDP"}]}});
        assert_eq!(
            owned_diff(&desired, &live, Some(fields(&owned))),
            vec!["spec.ports[port=80,protocol=TCP]", "spec.ports[0]"]
        );
    }

    #[test]
    fn sets_compare_as_sets() {
        let owned = json!({"f:metadata": {"f:finalizers": {"v:\"a\"": {}, "v:\"b\"": {}}}});
        let live = json!({"metadata": {"finalizers": ["a", "b"]}});
        let desired = json!({"metadata": {"finalizers": ["b", "a"]}});
        assert!(owned_diff(&desired, &live, Some(fields(&owned))).is_empty());
        let desired = json!({"metadata": {"finalizers": ["a"]}});
        assert_eq!(
            owned_diff(&desired, &live, Some(fields(&owned))),
            vec!["metadata.finalizers"]
        );
    }

    #[test]
    fn manager_entries_are_found_by_name_operation_and_subresource() {
        let live = json!({"metadata": {"managedFields": [
            {"manager": "me", "operation": "Update", "fieldsV1": {"f:a": {}}},
            {"manager": "me", "operation": "Apply", "subresource": "status", "fieldsV1": {"f:status": {}}},
            {"manager": "me", "operation": "Apply", "fieldsV1": {"f:data": {}}},
        ]}});
        assert!(owned_fields(&live, "me").unwrap().contains_key("f:data"));
        assert!(owned_fields(&live, "you").is_none());
        assert!(is_manager(&live, "me"));
        assert!(!is_manager(&live, "you"));
    }
}
