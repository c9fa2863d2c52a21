//! Unknown fields of a request: what strict field validation reports.
//!
//! Custom resources are walked along their structural schema exactly as pruning would
//! drop fields (honouring `x-kubernetes-preserve-unknown-fields`), with `metadata` (the
//! object's and that of every `x-kubernetes-embedded-resource`) checked against
//! `ObjectMeta`. Built-in kinds are walked along k8s-openapi's schema of the Go type,
//! where an object without properties (`RawExtension`, `JSON`, `FieldsV1`) takes anything.

use serde_json::Value;

use super::builtin::{Catalog, object_meta, of_kind};

/// Unknown field paths (`spec.foo`, `spec.list[0].bar`) of a custom resource, in the real
/// server's order: the object's metadata and pruned fields sorted, then those of embedded
/// resources' metadata.
pub(crate) fn custom(schema: &Value, obj: &Value) -> Vec<String> {
    let c = object_meta();
    let mut found = Vec::new();
    let mut embedded = Vec::new();
    if let Some(map) = obj.as_object() {
        for (k, child) in map {
            match k.as_str() {
                "apiVersion" | "kind" => {}
                "metadata" => walk(c, c.root_schema(), child, k, &mut found, false),
                _ => match schema.get("properties").and_then(|p| p.get(k)) {
                    Some(sub) => crd_walk(c, sub, child, k, &mut found, &mut embedded),
                    None if !preserves(schema) => found.push(k.clone()),
                    None => {}
                },
            }
        }
    }
    found.sort();
    found.extend(embedded);
    found
}

fn preserves(schema: &Value) -> bool {
    schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn crd_walk(
    c: &Catalog,
    schema: &Value,
    v: &Value,
    path: &str,
    found: &mut Vec<String>,
    embedded: &mut Vec<String>,
) {
    match v {
        Value::Object(map) => {
            let is_embedded = schema
                .get("x-kubernetes-embedded-resource")
                .and_then(Value::as_bool)
                == Some(true);
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, child) in map {
                let p = join(path, k);
                if is_embedded && matches!(k.as_str(), "apiVersion" | "kind") {
                    continue;
                }
                if is_embedded && k == "metadata" {
                    walk(c, c.root_schema(), child, &p, embedded, false);
                    continue;
                }
                if let Some(sub) = props.and_then(|p| p.get(k)) {
                    crd_walk(c, sub, child, &p, found, embedded);
                } else if let Some(sub) = additional.filter(|_| props.is_none()) {
                    crd_walk(c, sub, child, &p, found, embedded);
                } else if !preserves(schema)
                    && (props.is_some()
                        || schema.get("type").and_then(Value::as_str) == Some("object"))
                    && schema.get("additionalProperties") != Some(&Value::Bool(true))
                {
                    found.push(p);
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    crd_walk(c, sub, item, &format!("{path}[{i}]"), found, embedded);
                }
            }
        }
        _ => {}
    }
}

/// Unknown field paths of a built-in kind's object, in schema (key) order; `None` for a
/// kind without a schema.
pub(crate) fn built_in(gvk: (&str, &str, &str), obj: &Value) -> Option<Vec<String>> {
    let c = of_kind(gvk.0, gvk.1, gvk.2)?;
    let mut found = Vec::new();
    walk(c, c.root_schema(), obj, "", &mut found, true);
    Some(found)
}

/// Drops the fields of a built-in kind's object its Go type does not have, as decoding
/// into the type does.
pub(crate) fn prune_built_in(gvk: (&str, &str, &str), obj: &mut Value) {
    if let Some(c) = of_kind(gvk.0, gvk.1, gvk.2) {
        prune(c, c.root_schema(), obj, true);
    }
}

fn prune(c: &Catalog, schema: &Value, v: &mut Value, root: bool) {
    let schema = c.resolve(schema);
    match v {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            if let Some(props) = props {
                map.retain(|k, _| {
                    props.contains_key(k) || (root && matches!(k.as_str(), "apiVersion" | "kind"))
                });
            }
            for (k, child) in map.iter_mut() {
                if let Some(sub) = props.and_then(|p| p.get(k)).or(additional) {
                    prune(c, sub, child, false);
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                for item in items {
                    prune(c, sub, item, false);
                }
            }
        }
        _ => {}
    }
}

/// Walks a Go type's schema: properties are the fields, `additionalProperties` a map,
/// an object schema with neither takes anything.
fn walk(c: &Catalog, schema: &Value, v: &Value, path: &str, found: &mut Vec<String>, root: bool) {
    let schema = c.resolve(schema);
    match v {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, child) in map {
                let p = join(path, k);
                if let Some(sub) = props.and_then(|p| p.get(k)) {
                    walk(c, sub, child, &p, found, false);
                } else if let Some(sub) = additional {
                    walk(c, sub, child, &p, found, false);
                } else if props.is_some() && !(root && matches!(k.as_str(), "apiVersion" | "kind"))
                {
                    found.push(p);
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    walk(c, sub, item, &format!("{path}[{i}]"), found, false);
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

    #[test]
    fn built_in_unknown_fields_are_found_through_refs_lists_and_metadata() {
        let obj = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "bogus": 1, "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "n", "uid": "u", "zz": null}]},
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"junk": 1}, "spec": {"containers": [{"name": "c", "bad": 1, "ports": [{"containerPort": 80, "zzz": 2}]}]}}},
            "top": 1,
        });
        let mut found = built_in(("apps", "v1", "Deployment"), &obj).unwrap();
        found.sort();
        assert_eq!(
            found,
            [
                "metadata.bogus",
                "metadata.ownerReferences[0].zz",
                "spec.template.metadata.junk",
                "spec.template.spec.containers[0].bad",
                "spec.template.spec.containers[0].ports[0].zzz",
                "top",
            ]
        );
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "managedFields": [{"fieldsV1": {"f:data": {}}}]}, "data": {"k": "v"}});
        assert_eq!(
            built_in(("", "v1", "ConfigMap"), &cm).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn custom_resources_honour_preserve_unknown_fields_and_embedded_resources() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "code": {"type": "string"},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "freeP": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"a": {"type": "object", "properties": {}}}},
            "emb": {"type": "object", "x-kubernetes-embedded-resource": true, "properties": {"spec": {"type": "object", "properties": {"x": {"type": "string"}}}}},
            "list": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}}}},
        }}}});
        let obj = json!({"apiVersion": "x/v1", "kind": "P", "metadata": {"name": "b", "bogus": 1},
            "spec": {"foo": 1, "code": "A", "free": {"x": 1}, "freeP": {"y": 2, "a": {"z": 1}},
                "emb": {"apiVersion": "v1", "kind": "X", "metadata": {"name": "n", "junk": 1}, "spec": {"x": "a", "z": 1}},
                "list": [{"a": "b", "q": 1}]},
            "top": 1});
        assert_eq!(
            custom(&schema, &obj),
            [
                "metadata.bogus",
                "spec.emb.spec.z",
                "spec.foo",
                "spec.freeP.a.z",
                "spec.list[0].q",
                "top",
                "spec.emb.metadata.junk"
            ]
        );
    }
}
