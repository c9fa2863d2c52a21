//! Server-side apply and field ownership (`metadata.managedFields`).
//!
//! Every write records which manager set which fields. An apply merges the applied
//! configuration into the live object (maps by key, list-maps by their key fields, sets
//! by value, other lists whole), removes fields the manager applied before and no
//! longer applies (unless someone else owns them), and conflicts with fields another
//! manager owns at a different value unless forced.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{
    admission::admit,
    error::ApiError,
    fieldpath::{
        Elem, FieldSet, ListKind, Path, display, fields_of, from_fields_v1, get, item_key,
        list_kind, remove, to_fields_v1,
    },
    meta::{meta_mut, meta_str, now_rfc3339},
    resources::ResourceType,
    store::{State, WriteOptions},
    view::ingest,
};

#[derive(Clone, Debug)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: String,
    subresource: String,
    fields: FieldSet,
}

fn entries(obj: &Value) -> Vec<Entry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| Entry {
            manager: e["manager"].as_str().unwrap_or_default().to_string(),
            operation: e["operation"].as_str().unwrap_or("Update").to_string(),
            api_version: e["apiVersion"].as_str().unwrap_or_default().to_string(),
            time: e["time"].as_str().unwrap_or_default().to_string(),
            subresource: e["subresource"].as_str().unwrap_or_default().to_string(),
            fields: e.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
        })
        .collect()
}

fn write_entries(obj: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.fields),
            });
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    let meta = meta_mut(obj);
    if list.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(list));
    }
}

fn in_scope(rt: &ResourceType, path: &Path, subresource: &str) -> bool {
    if !rt.status_subresource {
        return true;
    }
    let is_status = matches!(path.first(), Some(Elem::Field(f)) if f == "status");
    is_status == (subresource == "status")
}

fn starts_with(path: &Path, prefix: &Path) -> bool {
    path.len() >= prefix.len() && path[..prefix.len()] == prefix[..]
}

/// Records the fields a non-apply write changed as owned by `manager`.
pub(crate) fn track_update(
    rt: &ResourceType,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: &str,
) {
    let empty = json!({});
    let old_obj = old.unwrap_or(&empty);
    let mut ents = entries(old_obj);
    let new_fields = fields_of(rt, new);
    let old_fields = fields_of(rt, old_obj);
    let changed: FieldSet = new_fields
        .iter()
        .filter(|p| get(old_obj, p) != get(new, p))
        .chain(old_fields.iter().filter(|p| get(new, p).is_none()))
        .filter(|p| in_scope(rt, p, subresource))
        .cloned()
        .collect();
    if changed.is_empty() {
        match old {
            Some(o) => {
                let m = meta_mut(new);
                match o.pointer("/metadata/managedFields") {
                    Some(mf) => m.insert("managedFields".into(), mf.clone()),
                    None => m.remove("managedFields"),
                };
            }
            None => write_entries(new, &[]),
        }
        return;
    }
    for e in &mut ents {
        e.fields
            .retain(|p| !changed.iter().any(|c| starts_with(p, c)));
    }
    let mut gained: FieldSet = changed
        .into_iter()
        .filter(|p| get(new, p).is_some())
        .collect();
    let created_maps: Vec<Path> = gained
        .iter()
        .flat_map(|p| (1..p.len()).map(move |n| p[..n].to_vec()))
        .filter(|a| get(old_obj, a).is_none() && created_map_is_owned(rt, a))
        .collect();
    gained.extend(created_maps);
    let me = ents
        .iter_mut()
        .find(|e| e.manager == manager && e.operation == "Update" && e.subresource == subresource);
    match me {
        Some(e) => {
            e.fields.extend(gained);
            e.time = now_rfc3339();
        }
        None => ents.push(Entry {
            manager: manager.to_string(),
            operation: "Update".into(),
            api_version: rt.api_version(),
            time: now_rfc3339(),
            subresource: subresource.to_string(),
            fields: gained,
        }),
    }
    write_entries(new, &ents);
}

/// Whether an update that creates the map at `path` owns the map itself (`"."` in
/// `fieldsV1`), as kube-apiserver records it. In custom resources every object is a map;
/// in built-ins only real map fields are, not the structs an empty object already has.
fn created_map_is_owned(rt: &ResourceType, path: &[Elem]) -> bool {
    let Some(Elem::Field(last)) = path.last() else {
        return false;
    };
    if path.len() == 1 && last == "metadata" {
        return false;
    }
    !rt.built_in
        || matches!(
            last.as_str(),
            "labels"
                | "annotations"
                | "data"
                | "binaryData"
                | "stringData"
                | "matchLabels"
                | "nodeSelector"
        )
}

/// Server-side apply of `body` by `manager`. Returns the object and whether it was created.
#[allow(
    clippy::too_many_arguments,
    clippy::too_many_lines,
    reason = "mirrors the request's parameters; the steps of apply read in order"
)]
pub(crate) fn apply(
    state: &mut State,
    rt: &ResourceType,
    ns: Option<&str>,
    name: &str,
    body: Value,
    manager: &str,
    force: bool,
    status_only: bool,
    opts: &WriteOptions,
) -> Result<(Arc<Value>, bool), ApiError> {
    let mut applied = ingest(rt, body);
    if applied
        .get("apiVersion")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
        || applied
            .get("kind")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        return Err(ApiError::bad_request(
            "apiVersion and kind must be set in an applied configuration",
        ));
    }
    match meta_str(&applied, "name") {
        Some(n) if !n.is_empty() && n != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        _ => {
            meta_mut(&mut applied).insert("name".into(), json!(name));
        }
    }
    let sub = if status_only { "status" } else { "" };
    if rt.status_subresource
        && !status_only
        && let Some(o) = applied.as_object_mut()
    {
        o.remove("status");
    }
    let applied_set: FieldSet = fields_of(rt, &applied)
        .into_iter()
        .filter(|p| in_scope(rt, p, sub))
        .collect();
    let Ok(live) = state.get(rt, ns, name) else {
        if status_only {
            return Err(ApiError::not_found(&rt.group, &rt.plural, name));
        }
        let mut obj = applied;
        admit(state, rt, ns, &mut obj, true)?;
        let entry = Entry {
            manager: manager.to_string(),
            operation: "Apply".into(),
            api_version: rt.api_version(),
            time: now_rfc3339(),
            subresource: String::new(),
            fields: applied_set,
        };
        write_entries(&mut obj, &[entry]);
        return Ok((state.create(rt, ns, obj, opts)?, true));
    };
    let mut ents = entries(&live);
    let is_me = |e: &Entry| e.manager == manager && e.operation == "Apply" && e.subresource == sub;
    let mut conflicts: Vec<(String, Path)> = Vec::new();
    for e in ents.iter().filter(|e| !is_me(e) && e.subresource == sub) {
        for p in applied_set.iter().filter(|p| e.fields.contains(*p)) {
            if get(&live, p) != get(&applied, p) {
                conflicts.push((e.manager.clone(), p.clone()));
            }
        }
    }
    if !conflicts.is_empty() {
        if !force {
            let lines: Vec<String> = conflicts
                .iter()
                .map(|(m, p)| format!("conflict with \"{m}\": {}", display(p)))
                .collect();
            let message = if lines.len() == 1 {
                format!("Apply failed with 1 conflict: {}", lines[0])
            } else {
                format!(
                    "Apply failed with {} conflicts: {}",
                    lines.len(),
                    lines.join("\n")
                )
            };
            let mut err = ApiError::new(409, "Conflict", message);
            err.details = Some(json!({
                "causes": conflicts.iter().map(|(m, p)| json!({
                    "reason": "FieldManagerConflict",
                    "message": format!("conflict with \"{m}\""),
                    "field": display(p),
                })).collect::<Vec<_>>(),
            }));
            return Err(err);
        }
        for e in ents.iter_mut().filter(|e| !is_me(e)) {
            e.fields.retain(|p| !conflicts.iter().any(|(_, c)| c == p));
        }
    }
    let mut merged = (*live).clone();
    merge(rt, &mut merged, &applied, &mut Vec::new());
    let previous = ents
        .iter()
        .find(|e| is_me(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    for p in previous.difference(&applied_set) {
        let owned_elsewhere = ents
            .iter()
            .filter(|e| !is_me(e))
            .any(|e| e.fields.iter().any(|q| starts_with(q, p)));
        if !owned_elsewhere {
            remove(&mut merged, p);
        }
    }
    match ents.iter_mut().find(|e| is_me(e)) {
        Some(e) if e.fields == applied_set => {}
        Some(e) => {
            e.fields = applied_set;
            e.time = now_rfc3339();
            e.api_version = rt.api_version();
        }
        None => ents.push(Entry {
            manager: manager.to_string(),
            operation: "Apply".into(),
            api_version: rt.api_version(),
            time: now_rfc3339(),
            subresource: sub.to_string(),
            fields: applied_set,
        }),
    }
    write_entries(&mut merged, &ents);
    admit(state, rt, ns, &mut merged, false)?;
    Ok((
        state.update(rt, ns, name, merged, status_only, opts)?,
        false,
    ))
}

fn merge(rt: &ResourceType, live: &mut Value, applied: &Value, path: &mut Path) {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) => {
            for (k, av) in a {
                path.push(Elem::Field(k.clone()));
                match l.get_mut(k) {
                    Some(lv) if !av.is_null() => merge(rt, lv, av, path),
                    _ => {
                        l.insert(k.clone(), av.clone());
                    }
                }
                path.pop();
            }
        }
        (Value::Array(l), Value::Array(a)) => match list_kind(rt, path, a) {
            ListKind::Map(keys) => {
                for item in a {
                    let Some(k) = item_key(&keys, item) else {
                        l.push(item.clone());
                        continue;
                    };
                    let existing = l
                        .iter_mut()
                        .find(|i| item_key(&keys, i).as_ref() == Some(&k));
                    match existing {
                        Some(i) => {
                            path.push(k);
                            merge(rt, i, item, path);
                            path.pop();
                        }
                        None => l.push(item.clone()),
                    }
                }
            }
            ListKind::Set => {
                for item in a {
                    if !l.contains(item) {
                        l.push(item.clone());
                    }
                }
            }
            ListKind::Atomic => l.clone_from(a),
        },
        (l, a) => *l = a.clone(),
    }
}
