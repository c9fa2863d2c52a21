//! `x-kubernetes-list-type` uniqueness, checked after schema validation over the whole
//! object, as apiextensions-apiserver does.

use serde_json::{Map, Value};

use super::validate::join;
use crate::server::error::{FieldError, FieldErrorKind};

/// `x-kubernetes-list-type: set` items and `map` keys must be unique: one `Duplicate value`
/// per repeated item, at its index.
pub(crate) fn list_types(schema: &Value, v: &Value, path: &str, errors: &mut Vec<FieldError>) {
    match v {
        Value::Array(items) => {
            match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("set") => {
                    for (i, item) in items.iter().enumerate() {
                        if items[..i].contains(item) {
                            errors.push(FieldError::new(
                                format!("{path}[{i}]"),
                                FieldErrorKind::Duplicate(item.to_string()),
                                "",
                            ));
                        }
                    }
                }
                Some("map") => {
                    let keys: Vec<&str> = schema
                        .get("x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    let key_of = |item: &Value| -> Value {
                        let m: Map<String, Value> = keys
                            .iter()
                            .filter_map(|k| item.get(*k).map(|x| ((*k).to_string(), x.clone())))
                            .collect();
                        Value::Object(m)
                    };
                    let seen: Vec<Value> = items.iter().map(key_of).collect();
                    for (i, key) in seen.iter().enumerate() {
                        if seen[..i].contains(key) {
                            errors.push(FieldError::new(
                                format!("{path}[{i}]"),
                                FieldErrorKind::Duplicate(key.to_string()),
                                "",
                            ));
                        }
                    }
                }
                _ => {}
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    list_types(item_schema, item, &format!("{path}[{i}]"), errors);
                }
            }
        }
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, sub) in props {
                    if let Some(child) = map.get(k) {
                        list_types(sub, child, &join(path, k), errors);
                    }
                }
            } else if let Some(additional) =
                schema.get("additionalProperties").filter(|a| a.is_object())
            {
                for (k, child) in map {
                    list_types(additional, child, &format!("{path}[{k}]"), errors);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::messages;

    #[test]
    fn list_types_reject_repeated_set_items_and_map_keys() {
        let set =
            json!({"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}});
        assert_eq!(
            messages(&set, &json!(["a", "b", "a", "a"])),
            [
                "spec.f[2]: Duplicate value: \"a\"",
                "spec.f[3]: Duplicate value: \"a\""
            ]
        );
        let map = json!({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name", "port"],
            "items": {"type": "object", "properties": {"name": {"type": "string"}, "port": {"type": "integer"}, "v": {"type": "integer"}}}});
        assert_eq!(
            messages(
                &map,
                &json!([{"name": "x", "port": 1}, {"name": "x", "port": 2}, {"name": "x", "port": 1, "v": 3}])
            ),
            ["spec.f[2]: Duplicate value: {\"name\":\"x\",\"port\":1}"]
        );
        let atomic = json!({"type": "array", "items": {"type": "string"}});
        assert!(messages(&atomic, &json!(["a", "a"])).is_empty());
    }
}
