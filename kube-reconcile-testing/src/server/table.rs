//! `meta.k8s.io/v1` Table output, for `kubectl get`.

use serde_json::{Value, json};

use super::{resources::ResourceType, view::metadata_only};

struct Column {
    name: &'static str,
    type_: &'static str,
    format: &'static str,
    cell: fn(&Value) -> Value,
}

fn s(v: &Value, p: &str) -> String {
    v.pointer(p)
        .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
        .unwrap_or_default()
}

fn count(v: &Value, p: &str) -> Value {
    json!(
        v.pointer(p)
            .and_then(|x| x
                .as_object()
                .map(serde_json::Map::len)
                .or_else(|| x.as_array().map(Vec::len)))
            .unwrap_or(0)
    )
}

fn ready(v: &Value) -> Value {
    let want = v
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let have = v
        .pointer("/status/readyReplicas")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    json!(format!("{have}/{want}"))
}

fn builtin_columns(rt: &ResourceType) -> Vec<Column> {
    let col = |name, type_, cell| Column {
        name,
        type_,
        format: "",
        cell,
    };
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "configmaps") => vec![col("Data", "integer", |v| count(v, "/data"))],
        ("", "secrets") => vec![
            col("Type", "string", |v| json!(s(v, "/type"))),
            col("Data", "integer", |v| count(v, "/data")),
        ],
        ("", "namespaces") => vec![col("Status", "string", |v| json!(s(v, "/status/phase")))],
        ("", "services") => vec![
            col("Type", "string", |v| json!(s(v, "/spec/type"))),
            col("Cluster-IP", "string", |v| json!(s(v, "/spec/clusterIP"))),
            col("Ports", "string", |v| {
                let ports = v
                    .pointer("/spec/ports")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                json!(
                    ports
                        .iter()
                        .map(|p| format!("{}/{}", s(p, "/port"), s(p, "/protocol")))
                        .collect::<Vec<_>>()
                        .join(",")
                )
            }),
        ],
        ("", "pods") => vec![col("Status", "string", |v| json!(s(v, "/status/phase")))],
        ("", "persistentvolumeclaims") => {
            vec![col("Status", "string", |v| json!(s(v, "/status/phase")))]
        }
        ("apps", "statefulsets") => vec![col("Ready", "string", ready)],
        ("apps", "deployments") => vec![
            col("Ready", "string", ready),
            col("Up-to-date", "integer", |v| {
                json!(
                    v.pointer("/status/updatedReplicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(0)
                )
            }),
            col("Available", "integer", |v| {
                json!(
                    v.pointer("/status/availableReplicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(0)
                )
            }),
        ],
        ("coordination.k8s.io", "leases") => vec![col("Holder", "string", |v| {
            json!(s(v, "/spec/holderIdentity"))
        })],
        ("", "events") => vec![
            col("Type", "string", |v| json!(s(v, "/type"))),
            col("Reason", "string", |v| json!(s(v, "/reason"))),
            col("Object", "string", |v| {
                json!(format!(
                    "{}/{}",
                    s(v, "/involvedObject/kind").to_lowercase(),
                    s(v, "/involvedObject/name")
                ))
            }),
            col("Message", "string", |v| json!(s(v, "/message"))),
        ],
        ("apiextensions.k8s.io", _) => vec![col("Created At", "date", |v| {
            json!(s(v, "/metadata/creationTimestamp"))
        })],
        _ => Vec::new(),
    }
}

/// Human age as kubectl prints it: `42s`, `5m3s`, `3h`, `2d`.
pub(crate) fn age(created: &str) -> String {
    let Ok(t) = created.parse::<jiff::Timestamp>() else {
        return "<unknown>".into();
    };
    let secs = (jiff::Timestamp::now().as_second() - t.as_second()).max(0);
    match secs {
        0..120 => format!("{secs}s"),
        120..600 => format!("{}m{}s", secs / 60, secs % 60),
        600..10_800 => format!("{}m", secs / 60),
        10_800..172_800 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// Evaluates the simple `JSONPath` of a printer column (`.spec.engine`, `.status.conditions[0].type`).
pub(crate) fn json_path(obj: &Value, path: &str) -> Value {
    let path = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('$');
    let found = select(vec![obj], path);
    match found.as_slice() {
        [] => Value::Null,
        [one] => (*one).clone(),
        // Several matches print as one cell, space-separated, as kubectl's jsonpath does.
        many => Value::String(
            many.iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(" "),
        ),
    }
}

/// The nodes under `nodes` that `path` selects: `.field`, `[n]`, `[*]` and filters
/// `[?(@.field=="value")]` (or `!=`), the subset printer columns use.
fn select<'a>(mut nodes: Vec<&'a Value>, mut rest: &str) -> Vec<&'a Value> {
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            rest = r;
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = closing_bracket(r) else {
                return Vec::new();
            };
            let inner = &r[..end];
            rest = &r[end + 1..];
            nodes = if let Some(filter) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')'))
            {
                let items = nodes.into_iter().filter_map(Value::as_array).flatten();
                items.filter(|item| matches_filter(item, filter)).collect()
            } else if inner == "*" {
                nodes
                    .into_iter()
                    .filter_map(Value::as_array)
                    .flatten()
                    .collect()
            } else if let Ok(i) = inner.parse::<usize>() {
                nodes.into_iter().filter_map(|n| n.get(i)).collect()
            } else {
                return Vec::new();
            };
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            let field = &rest[..end];
            rest = &rest[end..];
            nodes = nodes.into_iter().filter_map(|n| n.get(field)).collect();
        }
    }
    nodes
}

/// The index of the `]` that closes a bracket, skipping quoted strings.
fn closing_bracket(s: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, ']') => return Some(i),
            _ => {}
        }
    }
    None
}

/// `@.field=="value"` or `@.field!="value"` against `item`.
fn matches_filter(item: &Value, filter: &str) -> bool {
    let (lhs, rhs, equal) = if let Some((l, r)) = filter.split_once("==") {
        (l, r, true)
    } else if let Some((l, r)) = filter.split_once("!=") {
        (l, r, false)
    } else {
        return false;
    };
    let Some(path) = lhs.trim().strip_prefix('@') else {
        return false;
    };
    let want = rhs.trim().trim_matches(|c| c == '"' || c == '\'');
    let got = select(vec![item], path);
    let is = got
        .iter()
        .any(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned) == want);
    is == equal
}

/// A Table of `objects` (already presented through `rt`).
pub(crate) fn render(rt: &ResourceType, objects: &[Value], list_meta: Option<Value>) -> Value {
    let mut defs = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
    ];
    let builtin = builtin_columns(rt);
    for c in &builtin {
        defs.push(json!({"name": c.name, "type": c.type_, "format": c.format, "description": "", "priority": 0}));
    }
    for c in &rt.printer_columns {
        defs.push(json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority}));
    }
    // A CRD's printer columns replace the default Age column (kube-apiserver defaults
    // `additionalPrinterColumns` to Age only when a version declares none).
    let add_age = !rt.printer_columns.iter().any(|c| c.name == "Age")
        && (rt.built_in || rt.printer_columns.is_empty());
    if add_age {
        defs.push(json!({"name": "Age", "type": "string", "format": "", "description": "CreationTimestamp is a timestamp representing the server time when this object was created.", "priority": 0}));
    }
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut cells = vec![o.pointer("/metadata/name").cloned().unwrap_or(Value::Null)];
            cells.extend(builtin.iter().map(|c| (c.cell)(o)));
            for c in &rt.printer_columns {
                let v = json_path(o, &c.json_path);
                cells.push(if c.type_ == "date" {
                    v.as_str().map_or(Value::Null, |t| json!(age(t)))
                } else {
                    v
                });
            }
            if add_age {
                cells.push(json!(age(&s(o, "/metadata/creationTimestamp"))));
            }
            json!({ "cells": cells, "object": metadata_only(o) })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta.unwrap_or_else(|| json!({})),
        "columnDefinitions": defs,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::json_path;
    use serde_json::json;

    #[test]
    fn printer_column_paths_select_fields_indices_and_filters() {
        let obj = json!({
            "spec": { "replicas": 3, "ports": [{ "port": 80 }, { "port": 443 }] },
            "status": { "conditions": [
                { "type": "Reconciling", "status": "False" },
                { "type": "Ready", "status": "True" }
            ] }
        });
        assert_eq!(json_path(&obj, ".spec.replicas"), json!(3));
        assert_eq!(json_path(&obj, "{.spec.ports[1].port}"), json!(443));
        assert_eq!(json_path(&obj, ".spec.ports[*].port"), json!("80 443"));
        assert_eq!(
            json_path(&obj, r#".status.conditions[?(@.type=="Ready")].status"#),
            json!("True")
        );
        assert_eq!(
            json_path(&obj, ".status.conditions[?(@.type=='Missing')].status"),
            json!(null)
        );
        assert_eq!(
            json_path(&obj, r#".status.conditions[?(@.type!="Ready")].type"#),
            json!("Reconciling")
        );
        assert_eq!(json_path(&obj, ".nothing.here"), json!(null));
        assert_eq!(json_path(&obj, ".spec.ports[oops"), json!(null));
    }
}
