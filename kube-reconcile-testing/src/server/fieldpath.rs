//! Field paths and field sets, as server-side apply tracks ownership (`fieldsV1`).

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::resources::ResourceType;

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Elem {
    /// A map key: `f:name`.
    Field(String),
    /// An item of a list-map, by its key fields (canonical JSON object): `k:{"name":"db"}`.
    Key(String),
    /// An item of a set, by value (canonical JSON): `v:"a"`.
    Value(String),
}

pub(crate) type Path = Vec<Elem>;
pub(crate) type FieldSet = BTreeSet<Path>;

/// How a list merges and is owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ListKind {
    Map(Vec<String>),
    Set,
    Atomic,
}

/// Paths never tracked: identity and server-owned metadata.
fn ignored(path: &[Elem]) -> bool {
    match path {
        [Elem::Field(f)] => matches!(f.as_str(), "apiVersion" | "kind"),
        [Elem::Field(m), Elem::Field(f), ..] if m == "metadata" => matches!(
            f.as_str(),
            "name"
                | "namespace"
                | "uid"
                | "resourceVersion"
                | "generation"
                | "creationTimestamp"
                | "managedFields"
                | "deletionTimestamp"
                | "deletionGracePeriodSeconds"
                | "selfLink"
        ),
        _ => false,
    }
}

/// The schema node at `path` of a custom resource, if known.
fn schema_at<'a>(rt: &'a ResourceType, path: &[Elem]) -> Option<&'a Value> {
    let mut node: &Value = rt.schema.as_deref()?;
    for e in path {
        node = match e {
            Elem::Field(f) => node
                .get("properties")
                .and_then(|p| p.get(f))
                .or_else(|| node.get("additionalProperties").filter(|a| a.is_object()))?,
            Elem::Key(_) | Elem::Value(_) => node.get("items")?,
        };
    }
    Some(node)
}

/// The list kind of the list at `path`.
pub(crate) fn list_kind(rt: &ResourceType, path: &[Elem], items: &[Value]) -> ListKind {
    if let Some(node) = schema_at(rt, path) {
        return match node.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("map") => ListKind::Map(
                node.get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|k| {
                        k.iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            Some("set") => ListKind::Set,
            _ if is_metadata_list(path).is_some() => {
                is_metadata_list(path).unwrap_or(ListKind::Atomic)
            }
            _ => ListKind::Atomic,
        };
    }
    if let Some(kind) = is_metadata_list(path) {
        return kind;
    }
    let field = match path.last() {
        Some(Elem::Field(f)) => f.as_str(),
        _ => return ListKind::Atomic,
    };
    let key = |k: &str| ListKind::Map(vec![k.to_string()]);
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => key("name"),
        "volumeMounts" => key("mountPath"),
        "conditions" => key("type"),
        "ports" if items.iter().any(|i| i.get("containerPort").is_some()) => key("containerPort"),
        "ports" => key("port"),
        _ => ListKind::Atomic,
    }
}

fn is_metadata_list(path: &[Elem]) -> Option<ListKind> {
    match path {
        [Elem::Field(m), Elem::Field(f)] if m == "metadata" && f == "finalizers" => {
            Some(ListKind::Set)
        }
        [Elem::Field(m), Elem::Field(f)] if m == "metadata" && f == "ownerReferences" => {
            Some(ListKind::Map(vec!["uid".to_string()]))
        }
        _ => None,
    }
}

/// The key element of a list-map item, if it has every key field.
pub(crate) fn item_key(keys: &[String], item: &Value) -> Option<Elem> {
    let mut m = Map::new();
    for k in keys {
        m.insert(k.clone(), item.get(k)?.clone());
    }
    Some(Elem::Key(Value::Object(m).to_string()))
}

/// Every owned leaf (and list-map item) path of an object.
pub(crate) fn fields_of(rt: &ResourceType, obj: &Value) -> FieldSet {
    let mut set = FieldSet::new();
    walk(rt, obj, &mut Vec::new(), &mut set);
    set
}

fn walk(rt: &ResourceType, v: &Value, path: &mut Path, set: &mut FieldSet) {
    if ignored(path) {
        return;
    }
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, child) in map {
                path.push(Elem::Field(k.clone()));
                walk(rt, child, path, set);
                path.pop();
            }
        }
        Value::Array(items) => match list_kind(rt, path, items) {
            ListKind::Map(keys) => {
                for item in items {
                    let Some(k) = item_key(&keys, item) else {
                        continue;
                    };
                    path.push(k);
                    set.insert(path.clone());
                    if let Value::Object(m) = item {
                        for (f, child) in m {
                            path.push(Elem::Field(f.clone()));
                            walk(rt, child, path, set);
                            path.pop();
                        }
                    }
                    path.pop();
                }
            }
            ListKind::Set => {
                for item in items {
                    path.push(Elem::Value(item.to_string()));
                    set.insert(path.clone());
                    path.pop();
                }
            }
            ListKind::Atomic => {
                set.insert(path.clone());
            }
        },
        _ if !path.is_empty() => {
            set.insert(path.clone());
        }
        _ => {}
    }
}

/// The value at `path`, if present.
pub(crate) fn get<'a>(obj: &'a Value, path: &[Elem]) -> Option<&'a Value> {
    let mut node = obj;
    for e in path {
        node = match e {
            Elem::Field(f) => node.get(f)?,
            Elem::Key(k) => {
                let key: Map<String, Value> = serde_json::from_str(k).ok()?;
                node.as_array()?
                    .iter()
                    .find(|i| key.iter().all(|(kf, kv)| i.get(kf) == Some(kv)))?
            }
            Elem::Value(v) => {
                let want: Value = serde_json::from_str(v).ok()?;
                node.as_array()?.iter().find(|i| **i == want)?
            }
        };
    }
    Some(node)
}

/// Removes the value at `path`; returns whether something was removed.
pub(crate) fn remove(obj: &mut Value, path: &[Elem]) -> bool {
    let Some((last, parent_path)) = path.split_last() else {
        return false;
    };
    let mut node = obj;
    for e in parent_path {
        let next = match e {
            Elem::Field(f) => node.get_mut(f),
            Elem::Key(k) => {
                let Ok(key) = serde_json::from_str::<Map<String, Value>>(k) else {
                    return false;
                };
                node.as_array_mut().and_then(|a| {
                    a.iter_mut()
                        .find(|i| key.iter().all(|(kf, kv)| i.get(kf) == Some(kv)))
                })
            }
            Elem::Value(_) => return false,
        };
        let Some(next) = next else { return false };
        node = next;
    }
    match last {
        Elem::Field(f) => node.as_object_mut().is_some_and(|m| m.remove(f).is_some()),
        Elem::Key(k) => {
            let Ok(key) = serde_json::from_str::<Map<String, Value>>(k) else {
                return false;
            };
            node.as_array_mut().is_some_and(|a| {
                let before = a.len();
                a.retain(|i| !key.iter().all(|(kf, kv)| i.get(kf) == Some(kv)));
                a.len() != before
            })
        }
        Elem::Value(v) => {
            let Ok(want) = serde_json::from_str::<Value>(v) else {
                return false;
            };
            node.as_array_mut().is_some_and(|a| {
                let before = a.len();
                a.retain(|i| *i != want);
                a.len() != before
            })
        }
    }
}

/// Encodes a field set as `fieldsV1`.
pub(crate) fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    let mut paths = set.iter().peekable();
    while let Some(path) = paths.next() {
        // A path that is in the set and has descendants there is owned itself: ".".
        let owns_itself = paths
            .peek()
            .is_some_and(|next| next.len() > path.len() && next.starts_with(path));
        let mut node = &mut root;
        for e in path {
            let key = match e {
                Elem::Field(f) => format!("f:{f}"),
                Elem::Key(k) => format!("k:{k}"),
                Elem::Value(v) => format!("v:{v}"),
            };
            node = node
                .entry(key)
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .expect("invariant: fieldsV1 nodes are objects");
        }
        if owns_itself || matches!(path.last(), Some(Elem::Key(_))) {
            node.insert(".".into(), Value::Object(Map::new()));
        }
    }
    Value::Object(root)
}

/// Decodes `fieldsV1` into a field set.
pub(crate) fn from_fields_v1(v: &Value) -> FieldSet {
    let mut set = FieldSet::new();
    decode(v, &mut Vec::new(), &mut set);
    set
}

fn decode(v: &Value, path: &mut Path, set: &mut FieldSet) {
    let Some(map) = v.as_object() else { return };
    if (map.is_empty() || map.contains_key(".")) && !path.is_empty() {
        set.insert(path.clone());
    }
    for (k, child) in map {
        let e = if let Some(f) = k.strip_prefix("f:") {
            Elem::Field(f.to_string())
        } else if let Some(key) = k.strip_prefix("k:") {
            Elem::Key(key.to_string())
        } else if let Some(val) = k.strip_prefix("v:") {
            Elem::Value(val.to_string())
        } else {
            continue;
        };
        path.push(e);
        decode(child, path, set);
        path.pop();
    }
}

/// Renders a path as the real server does in conflict messages (`.spec.replicas`).
pub(crate) fn display(path: &[Elem]) -> String {
    let mut s = String::new();
    for e in path {
        match e {
            Elem::Field(f) => {
                s.push('.');
                s.push_str(f);
            }
            Elem::Key(k) => {
                // `{"name":"c","port":80}` reads `[name="c",port=80]`: bare names,
                // JSON values (structured-merge-diff's `PathElement.String`).
                s.push('[');
                match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(k) {
                    Ok(fields) => {
                        let pairs: Vec<String> = fields
                            .iter()
                            .map(|(name, v)| format!("{name}={v}"))
                            .collect();
                        s.push_str(&pairs.join(","));
                    }
                    Err(_) => s.push_str(k),
                }
                s.push(']');
            }
            Elem::Value(v) => {
                s.push_str("[=");
                s.push_str(v);
                s.push(']');
            }
        }
    }
    s
}
