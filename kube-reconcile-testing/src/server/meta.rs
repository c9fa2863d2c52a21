//! Server-owned metadata: names, UIDs, timestamps, generation.

use serde_json::{Map, Value};

use super::error::{FieldError, FieldErrorKind};

/// The current wall-clock time as Kubernetes writes timestamps (RFC 3339, whole seconds, UTC).
pub(crate) fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
}

/// The current wall-clock time with microseconds (`MicroTime`, as in `eventTime`).
#[allow(dead_code)] // reason: used by the event view
pub(crate) fn now_micro() -> String {
    let now = jiff::Timestamp::now();
    now.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// A random RFC 4122 version-4 UID.
pub(crate) fn new_uid() -> String {
    let mut b: [u8; 16] = fastrand::u128(..).to_le_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().fold(String::with_capacity(32), |mut s, x| {
        use std::fmt::Write as _;
        let _ = write!(s, "{x:02x}");
        s
    });
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// DNS-1123 subdomain: lowercase alphanumerics, `-` and `.`, starting and ending alphanumeric, ≤ 253.
pub(crate) fn validate_subdomain(field: &str, value: &str) -> Option<FieldError> {
    let ok =
        !value.is_empty() && value.len() <= 253 && value.split('.').all(|part| label_ok(part, 253));
    (!ok).then(|| {
        FieldError::new(
            field,
            FieldErrorKind::Invalid(format!("{value:?}")),
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        )
    })
}

/// DNS-1123 label: lowercase alphanumerics and `-`, starting and ending alphanumeric, ≤ 63.
pub(crate) fn validate_label(field: &str, value: &str) -> Option<FieldError> {
    (!label_ok(value, 63)).then(|| {
        FieldError::new(
            field,
            FieldErrorKind::Invalid(format!("{value:?}")),
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        )
    })
}

fn label_ok(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Whether anything outside `metadata` (and `status`, when it is a subresource) differs.
pub(crate) fn spec_changed(old: &Value, new: &Value, status_is_subresource: bool) -> bool {
    let skip = |k: &str| {
        matches!(k, "metadata" | "apiVersion" | "kind") || (status_is_subresource && k == "status")
    };
    let (Some(o), Some(n)) = (old.as_object(), new.as_object()) else {
        return old != new;
    };
    let keys: std::collections::BTreeSet<&String> = o.keys().chain(n.keys()).collect();
    keys.into_iter()
        .filter(|k| !skip(k))
        .any(|k| o.get(k.as_str()) != n.get(k.as_str()))
}

/// `metadata` of an object, created if missing.
pub(crate) fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = Value::Object(Map::new());
    }
    obj["metadata"]
        .as_object_mut()
        .expect("invariant: metadata was just made an object")
}

/// The string at a JSON pointer, or empty.
pub(crate) fn str_at(obj: &Value, pointer: &str) -> String {
    obj.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// A string field of `metadata`.
pub(crate) fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// The finalizers of an object.
pub(crate) fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The UIDs in `metadata.ownerReferences`.
pub(crate) fn owner_uids(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| r.get("uid")?.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_follow_dns_1123() {
        assert!(validate_subdomain("metadata.name", "db-1.example").is_none());
        assert!(validate_subdomain("metadata.name", "Bad_Name").is_some());
        assert!(validate_label("metadata.name", "-x").is_some());
        assert!(validate_label("metadata.name", &"a".repeat(64)).is_some());
    }

    #[test]
    fn generation_ignores_metadata_and_subresource_status() {
        let old = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"x": 1}, "status": {"y": 1}});
        let relabelled =
            json!({"metadata": {"labels": {"a": "2"}}, "spec": {"x": 1}, "status": {"y": 2}});
        assert!(!spec_changed(&old, &relabelled, true));
        assert!(spec_changed(&old, &relabelled, false));
        assert!(spec_changed(
            &old,
            &json!({"metadata": {}, "spec": {"x": 2}}),
            true
        ));
    }

    #[test]
    fn uids_are_version_4() {
        let uid = new_uid();
        assert_eq!(uid.len(), 36);
        assert_eq!(&uid[14..15], "4");
    }
}
