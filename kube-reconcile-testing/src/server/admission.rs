//! Checks and defaults every create and update passes through.

use serde_json::{Value, json};

use super::{
    crd, defaults,
    error::{ApiError, FieldError, FieldErrorKind},
    meta::{meta_mut, meta_str, validate_label, validate_subdomain},
    resources::ResourceType,
    schema,
    store::State,
};

/// The most an object may weigh once stored (etcd's default request limit).
pub(crate) const MAX_OBJECT_BYTES: usize = 1_572_864;

/// The most data a ConfigMap or Secret may hold (`[]: Too long`).
const MAX_DATA_BYTES: usize = 1_048_576;

/// The largest request body the server reads.
pub(crate) const MAX_REQUEST_BYTES: usize = 3_145_728;

/// Admits `obj` for a write to `rt` in `ns`; fills server defaults.
pub(crate) fn admit(
    state: &State,
    rt: &ResourceType,
    ns: Option<&str>,
    obj: &mut Value,
    create: bool,
) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "Object 'Kind' is missing in the request body",
        ));
    }
    check_type_meta(rt, obj)?;
    if create {
        generate_name(obj);
    }
    let name = meta_str(obj, "name").unwrap_or_default().to_string();
    let mut errors = Vec::new();
    if name.is_empty() {
        errors.push(FieldError::new(
            "metadata.name",
            FieldErrorKind::Required,
            "name or generateName is required",
        ));
    } else {
        let bad = if rt.group.is_empty() && rt.plural == "namespaces" {
            validate_label("metadata.name", &name)
        } else {
            validate_subdomain("metadata.name", &name)
        };
        errors.extend(bad);
    }
    if rt.namespaced {
        let url_ns = ns.unwrap_or_default();
        match meta_str(obj, "namespace") {
            Some(body_ns) if !body_ns.is_empty() && body_ns != url_ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {
                meta_mut(obj).insert("namespace".into(), json!(url_ns));
            }
        }
        if create {
            match state.namespace_state(url_ns) {
                None => return Err(ApiError::not_found("", "namespaces", url_ns)),
                Some(n) if n.pointer("/metadata/deletionTimestamp").is_some() => {
                    return Err(ApiError::new(
                        403,
                        "Forbidden",
                        format!(
                            "{} \"{name}\" is forbidden: unable to create new content in namespace {url_ns} because it is being terminated",
                            rt.plural
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
    } else if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("namespace");
    }
    errors.extend(validate_labels(obj));
    if !errors.is_empty() {
        return Err(ApiError::invalid(&rt.kind, &rt.group, &name, &errors));
    }
    if rt.group.is_empty() && rt.plural == "namespaces" {
        if obj.pointer("/spec/finalizers").is_none() {
            obj["spec"] = json!({ "finalizers": ["kubernetes"] });
        }
        if create {
            obj["status"] = json!({ "phase": "Active" });
        }
        let labels = meta_mut(obj).entry("labels").or_insert_with(|| json!({}));
        if let Some(l) = labels.as_object_mut() {
            l.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
    }
    if rt.group == "apiextensions.k8s.io" && rt.plural == "customresourcedefinitions" {
        crd::admit(obj)?;
    }
    if let Some(s) = &rt.schema {
        schema::admit(rt, s, obj)?;
    }
    if rt.built_in {
        if !rt.view {
            schema::unknown::prune_built_in((&rt.group, &rt.version, &rt.kind), obj);
        }
        defaults::apply(state, rt, obj);
    }
    check_data_size(rt, &name, obj)?;
    let size = serde_json::to_vec(obj).map_or(0, |v| v.len());
    if size > MAX_OBJECT_BYTES {
        // What etcd answers through the real server: a 500 without a reason.
        return Err(ApiError::new(500, "", "etcdserver: request is too large"));
    }
    Ok(())
}

/// ConfigMaps and Secrets hold at most 1 MiB of data.
fn check_data_size(rt: &ResourceType, name: &str, obj: &Value) -> Result<(), ApiError> {
    if rt.group.is_empty() && matches!(rt.plural.as_str(), "configmaps" | "secrets") {
        let data_bytes: usize = ["data", "binaryData", "stringData"]
            .iter()
            .filter_map(|f| obj.get(*f).and_then(Value::as_object))
            .flat_map(|m| {
                m.iter()
                    .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
            })
            .sum();
        if data_bytes > MAX_DATA_BYTES {
            let too_long = FieldError::new(
                "[]",
                FieldErrorKind::TooLong,
                format!("may not be more than {MAX_DATA_BYTES} bytes"),
            );
            return Err(ApiError::invalid(&rt.kind, "", name, &[too_long]));
        }
    }
    Ok(())
}

fn check_type_meta(rt: &ResourceType, obj: &Value) -> Result<(), ApiError> {
    let kind = obj.get("kind").and_then(Value::as_str);
    let api_version = obj.get("apiVersion").and_then(Value::as_str);
    if let Some(kind) = kind.filter(|k| !k.is_empty())
        && kind != rt.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            rt.kind
        )));
    }
    if let Some(av) = api_version.filter(|v| !v.is_empty()) {
        let group = av.rsplit_once('/').map_or("", |(g, _)| g);
        let same_storage_group = group == rt.group || (rt.view && group == "events.k8s.io");
        if !same_storage_group {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                rt.api_version()
            )));
        }
    }
    Ok(())
}

fn generate_name(obj: &mut Value) {
    let has_name = meta_str(obj, "name").is_some_and(|n| !n.is_empty());
    if has_name {
        return;
    }
    if let Some(prefix) = meta_str(obj, "generateName").map(str::to_string) {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let suffix: String = (0..5)
            .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
            .collect();
        meta_mut(obj).insert("name".into(), json!(format!("{prefix}{suffix}")));
    }
}

fn validate_labels(obj: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Some(labels) = obj.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            let Some(v) = v.as_str() else {
                errors.push(FieldError::new(
                    format!("metadata.labels.{k}"),
                    FieldErrorKind::TypeInvalid(v.to_string()),
                    "must be a string",
                ));
                continue;
            };
            let value_ok = v.len() <= 63
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && (v.is_empty()
                    || (v.starts_with(|c: char| c.is_ascii_alphanumeric())
                        && v.ends_with(|c: char| c.is_ascii_alphanumeric())));
            if !value_ok {
                errors.push(FieldError::new(
                    "metadata.labels",
                    FieldErrorKind::Invalid(format!("{v:?}")),
                    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                ));
            }
            let name = k.rsplit_once('/').map_or(k.as_str(), |(_, n)| n);
            if name.is_empty()
                || name.len() > 63
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                errors.push(FieldError::new(
                    "metadata.labels",
                    FieldErrorKind::Invalid(format!("{k:?}")),
                    "name part must consist of alphanumeric characters, '-', '_' or '.'",
                ));
            }
        }
    }
    errors
}
