//! Structural `openAPIV3Schema` handling for custom resources: pruning, defaults, validation.
//!
//! Follows the order of the real server: unknown fields are pruned, defaults applied,
//! then the object is validated and every violation is reported with its field path.

use serde_json::{Map, Value};

use super::{
    error::{ApiError, FieldError, FieldErrorKind},
    meta::meta_str,
    resources::ResourceType,
};

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
                validate(sub, v, key, &mut errors);
            }
        }
        required(schema, root, "", &mut errors);
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

fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Object(_) => "\"object\"".to_string(),
        Value::Array(_) => "\"array\"".to_string(),
        other => other.to_string(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[allow(
    clippy::too_many_lines,
    reason = "one arm per JSON type, each checking its own keywords"
)]
fn validate(schema: &Value, v: &Value, path: &str, errors: &mut Vec<FieldError>) {
    if v.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) != Some(true)
            && schema.get("type").is_some()
        {
            errors.push(FieldError::new(
                path,
                FieldErrorKind::Invalid("\"null\"".into()),
                format!(
                    "{path} in body must be of type {}: \"null\"",
                    schema["type"].as_str().unwrap_or("object")
                ),
            ));
        }
        return;
    }
    let int_or_string = schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true);
    if let Some(want) = schema.get("type").and_then(Value::as_str) {
        let have = type_name(v);
        let ok = have == want
            || (want == "number" && have == "integer")
            || (int_or_string && matches!(have, "integer" | "string"));
        if !ok {
            errors.push(FieldError::new(
                path,
                FieldErrorKind::Invalid(shown(v)),
                format!("{path} in body must be of type {want}: \"{have}\""),
            ));
            return;
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(v)
    {
        let supported = options.iter().map(shown).collect::<Vec<_>>().join(", ");
        errors.push(FieldError::new(
            path,
            FieldErrorKind::NotSupported(shown(v)),
            format!("supported values: {supported}"),
        ));
    }
    match v {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
                let exclusive =
                    schema.get("exclusiveMinimum").and_then(Value::as_bool) == Some(true);
                if x < min || (exclusive && (x - min).abs() < f64::EPSILON) {
                    let op = if exclusive {
                        "greater than"
                    } else {
                        "greater than or equal to"
                    };
                    errors.push(FieldError::new(
                        path,
                        FieldErrorKind::Invalid(shown(v)),
                        format!("{path} in body should be {op} {}", fmt_num(min)),
                    ));
                }
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
                let exclusive =
                    schema.get("exclusiveMaximum").and_then(Value::as_bool) == Some(true);
                if x > max || (exclusive && (x - max).abs() < f64::EPSILON) {
                    let op = if exclusive {
                        "less than"
                    } else {
                        "less than or equal to"
                    };
                    errors.push(FieldError::new(
                        path,
                        FieldErrorKind::Invalid(shown(v)),
                        format!("{path} in body should be {op} {}", fmt_num(max)),
                    ));
                }
            }
        }
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                && len < min
            {
                errors.push(FieldError::new(
                    path,
                    FieldErrorKind::Invalid(shown(v)),
                    format!("{path} in body should be at least {min} chars long"),
                ));
            }
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && len > max
            {
                errors.push(FieldError::new(
                    path,
                    FieldErrorKind::TooLong,
                    format!("may not be more than {max} bytes"),
                ));
            }
        }
        Value::Array(items) => {
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && (items.len() as u64) < min
            {
                errors.push(FieldError::new(
                    path,
                    FieldErrorKind::Invalid(format!("{}", items.len())),
                    format!("{path} in body should have at least {min} items"),
                ));
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && (items.len() as u64) > max
            {
                errors.push(FieldError::new(
                    path,
                    FieldErrorKind::TooLong,
                    format!("must have at most {max} items"),
                ));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate(item_schema, item, &format!("{path}[{i}]"), errors);
                }
            }
        }
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, sub) in props {
                    if let Some(child) = map.get(k) {
                        validate(sub, child, &format!("{path}.{k}"), errors);
                    }
                }
            } else if let Some(additional) =
                schema.get("additionalProperties").filter(|a| a.is_object())
            {
                for (k, child) in map {
                    validate(additional, child, &format!("{path}[{k}]"), errors);
                }
            }
            required(schema, map, path, errors);
        }
        Value::Bool(_) | Value::Null => {}
    }
}

fn required(schema: &Value, map: &Map<String, Value>, path: &str, errors: &mut Vec<FieldError>) {
    for field in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(f) = field.as_str()
            && !map.contains_key(f)
        {
            let p = if path.is_empty() {
                f.to_string()
            } else {
                format!("{path}.{f}")
            };
            errors.push(FieldError::new(p, FieldErrorKind::Required, ""));
        }
    }
}

#[allow(
    clippy::cast_possible_truncation,
    reason = "only whole numbers below 1e15 are printed as integers"
)]
fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        x.to_string()
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
}
