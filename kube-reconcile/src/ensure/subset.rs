//! The subset compare of the create-or-patch strategy, and the merge patch it sends.
//!
//! Only fields the desired object sets are compared, so fields the server defaulted (or
//! another controller added) never count as differences. Where something differs, the
//! walk builds the smallest JSON merge patch that makes the live object a superset of the
//! desired one.

use serde_json::{Map, Value};

use super::{
    path::{FieldPath, Seg},
    semantic::{is_absent, is_empty, scalars_equal},
};

/// The result of a subset compare: changed paths and the merge patch that fixes them.
#[derive(Debug, Default)]
pub(crate) struct SubsetDiff {
    pub(crate) fields: Vec<String>,
    pub(crate) patch: Option<Value>,
}

/// Compares `desired` against `live`, counting only the fields `desired` sets.
pub(crate) fn subset_diff(desired: &Value, live: &Value) -> SubsetDiff {
    let mut fields = Vec::new();
    let patch = walk(desired, Some(live), &mut FieldPath::default(), &mut fields);
    SubsetDiff { fields, patch }
}

/// How the list at a path is identified item by item.
enum ListRule {
    /// Items matched by a key field (`metadata.ownerReferences` by `uid`).
    Keyed(&'static str),
    /// Items are a set of values (`metadata.finalizers`).
    Set,
    /// Items by position.
    Positional,
}

fn list_rule(path: &FieldPath) -> ListRule {
    if path.is(&["metadata", "ownerReferences"]) {
        ListRule::Keyed("uid")
    } else if path.is(&["metadata", "finalizers"]) {
        ListRule::Set
    } else {
        ListRule::Positional
    }
}

fn walk(
    desired: &Value,
    live: Option<&Value>,
    path: &mut FieldPath,
    out: &mut Vec<String>,
) -> Option<Value> {
    match desired {
        Value::Object(d) => match live {
            Some(Value::Object(l)) => {
                let mut changes = Map::new();
                for (k, dv) in d {
                    path.field(k);
                    if let Some(p) = walk(dv, l.get(k), path, out) {
                        changes.insert(k.clone(), p);
                    }
                    path.pop();
                }
                (!changes.is_empty()).then_some(Value::Object(changes))
            }
            _ => replace(desired, live, path, out),
        },
        Value::Array(d) => match live {
            Some(Value::Array(l)) => match list_rule(path) {
                ListRule::Keyed(key) => keyed(d, l, key, path, out),
                ListRule::Set => set(d, l, path, out),
                ListRule::Positional => positional(d, l, path, out),
            },
            _ => replace(desired, live, path, out),
        },
        Value::Null => {
            if is_absent(live) {
                None
            } else {
                out.push(path.render());
                Some(Value::Null)
            }
        }
        scalar => match live {
            Some(l) if scalars_equal(scalar, l, path) => None,
            _ => {
                out.push(path.render());
                Some(scalar.clone())
            }
        },
    }
}

/// The live value is missing or of another shape: the desired value replaces it.
fn replace(
    desired: &Value,
    live: Option<&Value>,
    path: &FieldPath,
    out: &mut Vec<String>,
) -> Option<Value> {
    if is_empty(desired) && is_absent(live) {
        return None;
    }
    out.push(path.render());
    Some(desired.clone())
}

fn positional(
    d: &[Value],
    l: &[Value],
    path: &mut FieldPath,
    out: &mut Vec<String>,
) -> Option<Value> {
    if d.len() == l.len() {
        let before = out.len();
        for (i, (di, li)) in d.iter().zip(l).enumerate() {
            path.push(Seg::Index(i));
            walk(di, Some(li), path, out);
            path.pop();
        }
        if out.len() == before {
            return None;
        }
    } else {
        out.push(path.render());
    }
    Some(Value::Array(merge_list(l, d)))
}

fn keyed(
    d: &[Value],
    l: &[Value],
    key: &str,
    path: &mut FieldPath,
    out: &mut Vec<String>,
) -> Option<Value> {
    let before = out.len();
    let mut result: Vec<Value> = l.to_vec();
    for item in d {
        let id = item.get(key);
        let mut seg = Map::new();
        seg.insert(key.to_string(), id.cloned().unwrap_or(Value::Null));
        path.push(Seg::Key(seg));
        if let Some(li) = result
            .iter_mut()
            .find(|li| id.is_some() && li.get(key) == id)
        {
            if walk(item, Some(li), path, out).is_some() {
                *li = merge_value(li, item);
            }
        } else {
            out.push(path.render());
            result.push(item.clone());
        }
        path.pop();
    }
    (out.len() != before).then_some(Value::Array(result))
}

fn set(d: &[Value], l: &[Value], path: &mut FieldPath, out: &mut Vec<String>) -> Option<Value> {
    let mut result = l.to_vec();
    for item in d {
        if !l.contains(item) {
            path.push(Seg::Member(item.clone()));
            out.push(path.render());
            path.pop();
            result.push(item.clone());
        }
    }
    (result.len() != l.len()).then_some(Value::Array(result))
}

/// Lays the desired value over the live one: keys the desired value does not set are kept,
/// `null` removes a key.
fn merge_value(live: &Value, desired: &Value) -> Value {
    match (live, desired) {
        (Value::Object(l), Value::Object(d)) => {
            let mut out = l.clone();
            for (k, dv) in d {
                if dv.is_null() {
                    out.remove(k);
                } else {
                    let merged = match l.get(k) {
                        Some(lv) => merge_value(lv, dv),
                        None => dv.clone(),
                    };
                    out.insert(k.clone(), merged);
                }
            }
            Value::Object(out)
        }
        (Value::Array(l), Value::Array(d)) => Value::Array(merge_list(l, d)),
        (_, d) => d.clone(),
    }
}

/// The desired list, each item laid over the live item of the same `name` (so fields the
/// server defaulted inside it survive); items without a name are taken as they are.
fn merge_list(l: &[Value], d: &[Value]) -> Vec<Value> {
    d.iter()
        .map(|di| {
            let name = di.get("name").filter(|n| n.is_string());
            match name.and_then(|n| l.iter().find(|li| li.get("name") == Some(n))) {
                Some(li) => merge_value(li, di),
                None => di.clone(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn server_defaults_are_not_differences() {
        let desired = json!({"spec": {"ports": [{"port": 5432}], "selector": {"app": "db"}}});
        let live = json!({"spec": {
            "ports": [{"port": 5432, "protocol": "TCP", "targetPort": 5432}],
            "selector": {"app": "db"}, "type": "ClusterIP", "clusterIP": "10.96.0.11"}});
        let diff = subset_diff(&desired, &live);
        assert!(diff.fields.is_empty(), "{:?}", diff.fields);
        assert_eq!(diff.patch, None);
    }

    #[test]
    fn a_changed_leaf_is_reported_and_patched_alone() {
        let desired = json!({"data": {"a": "1", "b": "2"}, "metadata": {"labels": {"x": "y"}}});
        let live =
            json!({"data": {"a": "1", "b": "3"}, "metadata": {"labels": {"x": "y", "other": "z"}}});
        let diff = subset_diff(&desired, &live);
        assert_eq!(diff.fields, vec!["data.b"]);
        assert_eq!(diff.patch, Some(json!({"data": {"b": "2"}})));
    }

    #[test]
    fn a_list_item_keeps_its_defaults_when_another_field_changes() {
        let desired = json!({"containers": [{"name": "db", "image": "postgres:17"}]});
        let live = json!({"containers": [{"name": "db", "image": "postgres:16", "imagePullPolicy": "IfNotPresent"}]});
        let diff = subset_diff(&desired, &live);
        assert_eq!(diff.fields, vec!["containers[0].image"]);
        assert_eq!(
            diff.patch,
            Some(
                json!({"containers": [{"name": "db", "image": "postgres:17", "imagePullPolicy": "IfNotPresent"}]})
            )
        );
    }

    #[test]
    fn lists_of_another_length_are_replaced() {
        let desired = json!({"args": ["a", "b"]});
        let live = json!({"args": ["a"]});
        let diff = subset_diff(&desired, &live);
        assert_eq!(diff.fields, vec!["args"]);
        assert_eq!(diff.patch, Some(json!({"args": ["a", "b"]})));
    }

    #[test]
    fn owner_references_merge_by_uid_and_keep_other_owners() {
        let ours = json!({"uid": "1", "name": "db", "controller": true});
        let other = json!({"uid": "2", "name": "other"});
        let desired = json!({"metadata": {"ownerReferences": [ours]}});
        let live = json!({"metadata": {"ownerReferences": [other, ours]}});
        assert!(subset_diff(&desired, &live).fields.is_empty());
        let live = json!({"metadata": {"ownerReferences": [other]}});
        let diff = subset_diff(&desired, &live);
        assert_eq!(diff.fields, vec!["metadata.ownerReferences[uid=1]"]);
        assert_eq!(
            diff.patch,
            Some(json!({"metadata": {"ownerReferences": [other, ours]}}))
        );
    }

    #[test]
    fn finalizers_are_a_set() {
        let desired = json!({"metadata": {"finalizers": ["a"]}});
        let live = json!({"metadata": {"finalizers": ["b", "a"]}});
        assert!(subset_diff(&desired, &live).fields.is_empty());
        let live = json!({"metadata": {"finalizers": ["b"]}});
        let diff = subset_diff(&desired, &live);
        assert_eq!(diff.fields, vec![r#"metadata.finalizers[="a"]"#]);
        assert_eq!(
            diff.patch,
            Some(json!({"metadata": {"finalizers": ["b", "a"]}}))
        );
    }

    #[test]
    fn null_asks_for_removal_and_empty_equals_missing() {
        let desired = json!({"data": {"gone": null, "empty": {}}});
        let live = json!({"data": {"gone": "x"}});
        let diff = subset_diff(&desired, &live);
        assert_eq!(diff.fields, vec!["data.gone"]);
        assert_eq!(diff.patch, Some(json!({"data": {"gone": null}})));
        let live = json!({"data": {}});
        assert!(subset_diff(&desired, &live).patch.is_none());
    }

    #[test]
    fn numbers_compare_by_value() {
        let desired = json!({"spec": {"replicas": 3.0}});
        let live = json!({"spec": {"replicas": 3}});
        assert!(subset_diff(&desired, &live).patch.is_none());
    }

    /// RFC 7386 JSON merge patch, as the API server applies ours.
    fn merge_patch(target: &mut Value, patch: &Value) {
        let Value::Object(p) = patch else {
            *target = patch.clone();
            return;
        };
        if !target.is_object() {
            *target = json!({});
        }
        let t = target.as_object_mut().unwrap();
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (0i64..4).prop_map(Value::from),
            (0u8..4).prop_map(|n| json!(f64::from(n))),
            prop::sample::select(vec!["a", "b", "db"]).prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop::sample::select(vec!["name", "image", "a", "b"]),
                    inner,
                    0..4
                )
                .prop_map(|m| Value::Object(
                    m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
                )),
            ]
        })
    }

    fn arb_object() -> impl Strategy<Value = Value> {
        prop::collection::btree_map(
            prop::sample::select(vec!["spec", "data", "metadata"]),
            arb_json(),
            0..3,
        )
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
    }

    proptest! {
        #[test]
        fn an_object_is_never_different_from_itself(x in arb_object()) {
            let diff = subset_diff(&x, &x);
            prop_assert!(diff.fields.is_empty(), "{:?}", diff.fields);
            prop_assert!(diff.patch.is_none());
        }

        #[test]
        fn after_its_patch_is_applied_nothing_differs(desired in arb_object(), live in arb_object()) {
            let diff = subset_diff(&desired, &live);
            prop_assert_eq!(diff.fields.is_empty(), diff.patch.is_none());
            if let Some(patch) = diff.patch {
                let mut patched = live.clone();
                merge_patch(&mut patched, &patch);
                let again = subset_diff(&desired, &patched);
                prop_assert!(again.fields.is_empty(), "{:?} after {}", again.fields, patch);
            }
        }
    }
}
