//! Patch types other than server-side apply: JSON patch, merge patch, strategic merge patch.

use serde_json::{Map, Value};

use super::error::ApiError;

/// The patch types the server understands, by `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub(crate) fn from_content_type(ct: &str) -> Option<Self> {
        let ct = ct.split(';').next().unwrap_or_default().trim();
        Some(match ct {
            "application/json-patch+json" => PatchType::Json,
            "application/merge-patch+json" => PatchType::Merge,
            "application/strategic-merge-patch+json" => PatchType::Strategic,
            "application/apply-patch+yaml"
            | "application/apply-patch+json"
            | "application/apply-patch+cbor" => PatchType::Apply,
            _ => return None,
        })
    }
}

/// Applies an RFC 6902 JSON patch (with `test`).
pub(crate) fn json_patch(doc: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| ApiError::bad_request("json patch must be a JSON array of operations"))?;
    for op in ops {
        // As in the real server, `test` of a missing path against `null` succeeds
        // (kube's finalizer helper relies on it).
        let missing_null_test = op.get("op").and_then(Value::as_str) == Some("test")
            && op.get("value").is_some_and(Value::is_null)
            && op
                .get("path")
                .and_then(Value::as_str)
                .is_some_and(|p| doc.pointer(p).is_none());
        if missing_null_test {
            continue;
        }
        let one: json_patch::Patch = serde_json::from_value(Value::Array(vec![op.clone()]))
            .map_err(|e| ApiError::bad_request(format!("json: cannot unmarshal the patch: {e}")))?;
        json_patch::patch(doc, &one).map_err(|_| {
            let mut err = ApiError::new(
                422,
                "Invalid",
                "the server rejected our request due to an error in our request",
            );
            err.details = Some(serde_json::json!({}));
            err
        })?;
    }
    Ok(())
}

/// Applies an RFC 7386 merge patch.
pub(crate) fn merge_patch(doc: &mut Value, patch: &Value) -> Result<(), ApiError> {
    if !patch.is_object() {
        return Err(ApiError::bad_request("merge patch must be a JSON object"));
    }
    json_patch::merge(doc, patch);
    Ok(())
}

/// The merge key of a list field in built-in kinds (`patchMergeKey`), or `None` if it is replaced whole.
fn merge_key(field: &str) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "conditions" => "type",
        "ownerReferences" => "uid",
        "hostAliases" => "ip",
        "ports" => "port",
        _ => return None,
    })
}

/// Lists of scalars merged as sets (`patchStrategy: merge` on a primitive list).
fn is_set(field: &str) -> bool {
    matches!(field, "finalizers")
}

/// Applies a strategic merge patch, with the list semantics of built-in kinds.
pub(crate) fn strategic_merge(doc: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let Value::Object(p) = patch else {
        return Err(ApiError::bad_request(
            "strategic merge patch must be a JSON object",
        ));
    };
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    merge_object(
        doc.as_object_mut()
            .expect("invariant: doc was made an object"),
        p,
    );
    Ok(())
}

fn merge_object(doc: &mut Map<String, Value>, patch: &Map<String, Value>) {
    if patch.get("$patch").and_then(Value::as_str) == Some("replace") {
        doc.clear();
        for (k, v) in patch.iter().filter(|(k, _)| !k.starts_with('$')) {
            doc.insert(k.clone(), v.clone());
        }
        return;
    }
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Value::Array(remove)) = (doc.get_mut(field), value) {
                list.retain(|x| !remove.contains(x));
            }
            continue;
        }
        if key.starts_with('$') {
            continue; // $setElementOrder, $retainKeys: ordering and retention hints
        }
        match value {
            Value::Null => {
                doc.remove(key);
            }
            Value::Object(pv) => {
                if pv.get("$patch").and_then(Value::as_str) == Some("delete") {
                    doc.remove(key);
                    continue;
                }
                let slot = doc
                    .entry(key.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                merge_object(
                    slot.as_object_mut().expect("invariant: slot is an object"),
                    pv,
                );
            }
            Value::Array(items) => {
                let merged = match (merge_key(key), doc.get(key)) {
                    (Some(mk), Some(Value::Array(current)))
                        if items.iter().all(Value::is_object) =>
                    {
                        merge_list(current.clone(), items, mk)
                    }
                    (None, Some(Value::Array(current))) if is_set(key) => {
                        let mut out = current.clone();
                        for item in items {
                            if !out.contains(item) {
                                out.push(item.clone());
                            }
                        }
                        out
                    }
                    (Some(mk), None) => merge_list(Vec::new(), items, mk),
                    _ => items.clone(),
                };
                doc.insert(key.clone(), Value::Array(merged));
            }
            other => {
                doc.insert(key.clone(), other.clone());
            }
        }
    }
}

fn merge_list(mut current: Vec<Value>, patch: &[Value], key: &str) -> Vec<Value> {
    if patch
        .iter()
        .any(|p| p.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return patch
            .iter()
            .filter(|p| p.get("$patch").is_none())
            .cloned()
            .collect();
    }
    for item in patch {
        let k = item.get(key);
        let pos = current.iter().position(|c| k.is_some() && c.get(key) == k);
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                current.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => {
                if let (Value::Object(c), Value::Object(p)) = (&mut current[i], item) {
                    merge_object(c, p);
                }
            }
            (None, false) => {
                let mut fresh = Value::Object(Map::new());
                if let (Value::Object(c), Value::Object(p)) = (&mut fresh, item) {
                    merge_object(c, p);
                }
                current.push(fresh);
            }
        }
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merge_merges_containers_by_name_and_finalizers_as_a_set() {
        let mut doc = json!({
            "metadata": {"finalizers": ["a"]},
            "spec": {"containers": [{"name": "db", "image": "pg:15"}, {"name": "side", "image": "x"}]}
        });
        let patch = json!({
            "metadata": {"finalizers": ["b"]},
            "spec": {"containers": [{"name": "db", "image": "pg:16"}, {"name": "side", "$patch": "delete"}]}
        });
        strategic_merge(&mut doc, &patch).unwrap();
        assert_eq!(doc["metadata"]["finalizers"], json!(["a", "b"]));
        assert_eq!(
            doc["spec"]["containers"],
            json!([{"name": "db", "image": "pg:16"}])
        );
    }

    #[test]
    fn json_patch_test_failure_is_rejected() {
        let mut doc = json!({"metadata": {"finalizers": ["a"]}});
        let patch = json!([{"op": "test", "path": "/metadata/finalizers", "value": null}]);
        assert_eq!(json_patch(&mut doc, &patch).unwrap_err().code, 422);
    }
}
