//! Structural `openAPIV3Schema` handling for custom resources: pruning, defaults, validation.
//!
//! Follows the order of the real server: unknown fields are pruned, defaults applied,
//! then the object is validated and every violation is reported with its field path.
//! Validation covers the structural-schema keywords (`type`, `nullable`, `enum`,
//! `pattern`, `format`, lengths, bounds, `multipleOf`, item and property counts,
//! `required`, `allOf`/`anyOf`/`oneOf`/`not`, `x-kubernetes-list-type` uniqueness).
//!
//! # Caveats
//!
//! CEL rules (`x-kubernetes-validations`) are not evaluated: objects that break them are
//! admitted. Test such rules against the real server (the envtest tier).

pub(crate) mod builtin;
mod combinators;
mod format;
mod list_type;
pub(crate) mod unknown;
mod validate;

use serde_json::Value;

use super::{error::ApiError, meta::meta_str, resources::ResourceType};

/// Prunes, defaults and validates a custom resource against its version's schema.
pub(crate) fn admit(rt: &ResourceType, schema: &Value, obj: &mut Value) -> Result<(), ApiError> {
    let name = meta_str(obj, "name").unwrap_or_default().to_string();
    if let Some(root) = obj.as_object_mut() {
        let props = schema.get("properties").and_then(Value::as_object);
        let preserve = preserves_unknown(schema);
        let keys: Vec<String> = root.keys().cloned().collect();
        for key in keys {
            if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            match props.and_then(|p| p.get(&key)) {
                Some(sub) => {
                    if let Some(v) = root.get_mut(&key) {
                        prune(sub, v);
                    }
                }
                None if !preserve => {
                    root.remove(&key);
                }
                None => {}
            }
        }
        if let Some(props) = props {
            for (key, sub) in props {
                if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(v) = root.get_mut(key) {
                    default(sub, v);
                } else if let Some(d) = sub.get("default") {
                    let mut d = d.clone();
                    default(sub, &mut d);
                    root.insert(key.clone(), d);
                }
            }
        }
    }
    let mut errors = Vec::new();
    if let (Some(props), Some(root)) = (
        schema.get("properties").and_then(Value::as_object),
        obj.as_object(),
    ) {
        for (key, sub) in props {
            if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if let Some(v) = root.get(key) {
                validate::validate(sub, v, key, &mut errors);
            }
        }
        validate::required(schema, root, "", &mut errors);
        for (key, sub) in props {
            if let Some(v) = root.get(key).filter(|_| key != "metadata") {
                list_type::list_types(sub, v, key, &mut errors);
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(&rt.kind, &rt.group, &name, &errors))
    }
}

fn preserves_unknown(schema: &Value) -> bool {
    schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
}

fn prune(schema: &Value, v: &mut Value) {
    if preserves_unknown(schema) && schema.get("properties").is_none() {
        return;
    }
    match v {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                let preserve = preserves_unknown(schema);
                map.retain(|k, _| preserve || props.contains_key(k));
                for (k, child) in map.iter_mut() {
                    if let Some(sub) = props.get(k) {
                        prune(sub, child);
                    }
                }
            } else if let Some(additional) =
                schema.get("additionalProperties").filter(|a| a.is_object())
            {
                for child in map.values_mut() {
                    prune(additional, child);
                }
            } else if !preserves_unknown(schema)
                && schema.get("additionalProperties").is_none()
                && schema.get("type").and_then(Value::as_str) == Some("object")
            {
                map.clear();
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    prune(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

fn default(schema: &Value, v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, sub) in props {
                    match map.get_mut(k) {
                        Some(child) => default(sub, child),
                        None => {
                            if let Some(d) = sub.get("default") {
                                let mut d = d.clone();
                                default(sub, &mut d);
                                map.insert(k.clone(), d);
                            }
                        }
                    }
                }
            } else if let Some(additional) =
                schema.get("additionalProperties").filter(|a| a.is_object())
            {
                for child in map.values_mut() {
                    default(additional, child);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    default(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn db_type() -> (ResourceType, Value) {
        let schema = json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["engine"],
                    "properties": {
                        "engine": {"type": "string", "enum": ["postgres", "mysql"]},
                        "replicas": {"type": "integer", "minimum": 1, "default": 1},
                        "storage": {"type": "object", "properties": {"size": {"type": "string", "default": "1Gi"}}},
                    }
                },
                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
            }
        });
        let rt = ResourceType {
            group: "example.dev".into(),
            version: "v1".into(),
            kind: "Database".into(),
            plural: "databases".into(),
            singular: "database".into(),
            short_names: vec![],
            categories: vec![],
            namespaced: true,
            status_subresource: true,
            generation: true,
            storage: Arc::from("example.dev/databases"),
            schema: Some(Arc::new(schema.clone())),
            printer_columns: vec![],
            selectable_fields: vec![],
            built_in: false,
            view: false,
            verbs: crate::server::resources::CRUD,
            subresources: vec![],
            scale: None,
        };
        (rt, schema)
    }

    #[test]
    fn unknown_fields_are_pruned_and_defaults_applied() {
        let (rt, schema) = db_type();
        let mut obj = json!({"metadata": {"name": "a"}, "spec": {"engine": "postgres", "storage": {}, "bogus": 1}, "extra": true});
        admit(&rt, &schema, &mut obj).unwrap();
        assert_eq!(
            obj["spec"],
            json!({"engine": "postgres", "replicas": 1, "storage": {"size": "1Gi"}})
        );
        assert!(obj.get("extra").is_none());
    }

    #[test]
    fn violations_name_their_fields_as_the_real_server_does() {
        let (rt, schema) = db_type();
        let mut obj =
            json!({"metadata": {"name": "a"}, "spec": {"engine": "mongo", "replicas": 0}});
        let err = admit(&rt, &schema, &mut obj).unwrap_err();
        assert_eq!(err.code, 422);
        assert!(
            err.message
                .starts_with("Database.example.dev \"a\" is invalid: ["),
            "{}",
            err.message
        );
        assert!(err.message.contains("spec.engine: Unsupported value: \"mongo\": supported values: \"postgres\", \"mysql\""), "{}", err.message);
        assert!(err.message.contains("spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1"), "{}", err.message);
        let mut missing = json!({"metadata": {"name": "a"}, "spec": {}});
        let err = admit(&rt, &schema, &mut missing).unwrap_err();
        assert_eq!(
            err.message,
            "Database.example.dev \"a\" is invalid: spec.engine: Required value"
        );
    }

    /// What the schema checks say of `spec` at `spec.f`, as the server words them.
    pub(super) fn messages(schema: &Value, spec: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        validate::validate(schema, spec, "spec.f", &mut errors);
        list_type::list_types(schema, spec, "spec.f", &mut errors);
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn string_number_and_object_keywords_use_the_real_wording() {
        let s = json!({"type": "string", "minLength": 2, "maxLength": 4, "pattern": "^[a-z]+$", "format": "uuid"});
        assert_eq!(
            messages(&s, &json!("ABCDEF")),
            [
                "spec.f: Too long: may not be more than 4 bytes",
                "spec.f: Invalid value: \"ABCDEF\": spec.f in body should match '^[a-z]+$'",
                "spec.f: Invalid value: \"ABCDEF\": spec.f in body must be of type uuid: \"ABCDEF\"",
            ]
        );
        let n =
            json!({"type": "number", "multipleOf": 0.5, "minimum": 0, "exclusiveMinimum": true});
        assert_eq!(
            messages(&n, &json!(0)),
            ["spec.f: Invalid value: 0: spec.f in body should be greater than 0"]
        );
        assert_eq!(
            messages(&n, &json!(0.3)),
            ["spec.f: Invalid value: 0.3: spec.f in body should be a multiple of 0.5"]
        );
        let i = json!({"type": "integer", "format": "int32"});
        assert_eq!(
            messages(&i, &json!(1.5)),
            [
                "spec.f: Invalid value: 1.5: spec.f in body must be of type int32: \"float64\"",
                "<nil>: Invalid value: \"\": Checked value must be of type integer with format int32 in spec.f",
            ]
        );
        let o = json!({"type": "object", "minProperties": 1, "maxProperties": 1, "additionalProperties": {"type": "string"}});
        assert_eq!(
            messages(&o, &json!({})),
            ["spec.f: Invalid value: 0: spec.f in body should have at least 1 properties"]
        );
        assert_eq!(
            messages(&o, &json!({"a": "1", "b": "2"})),
            ["spec.f: Too many: 2: must have at most 1 items"]
        );
    }
}
