//! Field validation (`fieldValidation=Strict|Warn|Ignore`): unknown and duplicate fields
//! of a write, reported as the real server reports them.
//!
//! * `Strict` fails the write: 400 `... cannot be handled as a Kind: strict decoding error:
//!   unknown field "spec.foo", ...` for a create or update, 422 `patch: Invalid value: ...`
//!   for a JSON, merge or strategic merge patch.
//! * `Warn` (the default) admits it and sends each finding as a `Warning: 299 - "..."`
//!   response header.
//! * `Ignore` says nothing.
//!
//! Server-side apply is stricter whatever the parameter: unknown fields fail with 500
//! `failed to create typed patch object`, and only duplicate keys follow the parameter.

mod text;

use std::fmt::Write as _;

use serde_json::Value;

use super::{
    error::{ApiError, FieldError, FieldErrorKind},
    fieldpath::{Elem, ListKind, item_key, list_kind},
    request::Query,
    resources::ResourceType,
    schema::unknown,
};

pub(crate) use self::text::go_format;
use self::text::{Duplicate, scan};

/// What to do with unknown and duplicate fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

impl FieldValidation {
    /// The `fieldValidation` parameter; `options` names the options kind in the 422 for
    /// a bad value (`CreateOptions`, `UpdateOptions`, `PatchOptions`).
    pub(crate) fn from_query(query: &Query, options: &str) -> Result<Self, ApiError> {
        match query.get("fieldValidation").unwrap_or_default() {
            "" | "Warn" => Ok(FieldValidation::Warn),
            "Ignore" => Ok(FieldValidation::Ignore),
            "Strict" => Ok(FieldValidation::Strict),
            other => {
                let cause = FieldError::new(
                    "fieldValidation",
                    FieldErrorKind::NotSupported(format!("{other:?}")),
                    r#"supported values: "", "Ignore", "Strict", "Warn""#,
                );
                Err(ApiError::invalid(options, "meta.k8s.io", "", &[cause]))
            }
        }
    }
}

/// The unknown fields of `obj` for `rt`: by its schema for a custom resource, by the Go
/// type's schema for a built-in kind.
pub(crate) fn unknown_fields(rt: &ResourceType, obj: &Value) -> Vec<String> {
    if rt.built_in {
        unknown::built_in((&rt.group, &rt.version, &rt.kind), obj).unwrap_or_default()
    } else if let Some(schema) = &rt.schema {
        unknown::custom(schema, obj)
    } else {
        Vec::new()
    }
}

/// Checks the body of a create or update.
pub(crate) fn check_body(
    rt: &ResourceType,
    mode: FieldValidation,
    body: &[u8],
    obj: &Value,
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    if mode == FieldValidation::Ignore {
        return Ok(());
    }
    let scan = scan(body);
    let unknown = unknown_fields(rt, obj);
    let dup = |d: &Duplicate| format!("duplicate field \"{}\"", d.path);
    let unk = |p: &String| format!("unknown field \"{p}\"");
    let findings: Vec<String> = if rt.built_in {
        // The Go decoder reports in document order.
        let mut all: Vec<(usize, String)> = scan
            .duplicates
            .iter()
            .map(|d| (d.seq, dup(d)))
            .chain(
                unknown
                    .iter()
                    .map(|p| (scan.first.get(p).copied().unwrap_or(usize::MAX), unk(p))),
            )
            .collect();
        all.sort_by_key(|(seq, _)| *seq);
        all.into_iter().map(|(_, m)| m).collect()
    } else {
        scan.duplicates
            .iter()
            .map(dup)
            .chain(unknown.iter().map(unk))
            .collect()
    };
    if findings.is_empty() {
        return Ok(());
    }
    if mode == FieldValidation::Strict {
        let version = &rt.version;
        let kind = &rt.kind;
        return Err(ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
            findings.join(", ")
        )));
    }
    warnings.extend(findings);
    Ok(())
}

/// Checks the result of a JSON, merge or strategic merge patch; `shown` is what the
/// 422 quotes: the patched object, or for a strategic merge patch the patch itself.
pub(crate) fn check_patched(
    rt: &ResourceType,
    mode: FieldValidation,
    patched: &Value,
    shown: impl FnOnce() -> String,
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    if mode == FieldValidation::Ignore {
        return Ok(());
    }
    let findings: Vec<String> = unknown_fields(rt, patched)
        .iter()
        .map(|p| format!("unknown field \"{p}\""))
        .collect();
    if findings.is_empty() {
        return Ok(());
    }
    if mode == FieldValidation::Strict {
        let cause = FieldError::new(
            "patch",
            FieldErrorKind::Invalid(format!("{:?}", shown())),
            format!("strict decoding error: {}", findings.join(", ")),
        );
        return Err(ApiError::invalid("", "", "", &[cause]));
    }
    warnings.extend(findings);
    Ok(())
}

/// Checks a server-side apply body: duplicate keys as the YAML decoder words them (per
/// `mode`), unknown fields always (500, as building the typed patch fails).
pub(crate) fn check_apply(
    rt: &ResourceType,
    mode: FieldValidation,
    body: &[u8],
    applied: &Value,
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    if mode != FieldValidation::Ignore {
        let lines: Vec<String> = scan(body)
            .duplicates
            .iter()
            .map(|d| format!("line {}: key {:?} already set in map", d.line, d.key))
            .collect();
        if !lines.is_empty() {
            if mode == FieldValidation::Strict {
                return Err(ApiError::bad_request(format!(
                    "error strict decoding patch: error converting YAML to JSON: yaml: unmarshal errors:\n  {}",
                    lines.join("\n  ")
                )));
            }
            warnings.extend(lines);
        }
    }
    let mut unknown = unknown_fields(rt, applied);
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort();
    let meta = |k: &str| {
        applied
            .pointer(&format!("/metadata/{k}"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let list = if unknown.len() == 1 {
        format!(
            "{}: field not declared in schema",
            typed_path(rt, applied, &unknown[0])
        )
    } else {
        let each: Vec<String> = unknown
            .iter()
            .map(|p| {
                format!(
                    "  {}: field not declared in schema",
                    typed_path(rt, applied, p)
                )
            })
            .collect();
        format!("errors:\n{}", each.join("\n"))
    };
    Err(ApiError::new(
        500,
        "",
        format!(
            "failed to create typed patch object ({}/{}; {}/{}, Kind={}): {list}",
            meta("namespace"),
            meta("name"),
            rt.group,
            rt.version,
            rt.kind
        ),
    ))
}

/// A field path (`spec.containers[0].zz`) as structured-merge-diff prints it, list-map
/// items by their keys and set items by value: `.spec.containers[name="c"].zz`.
fn typed_path(rt: &ResourceType, obj: &Value, path: &str) -> String {
    let mut out = String::new();
    let mut at = Some(obj);
    let mut elems: Vec<Elem> = Vec::new();
    for segment in path.split('.') {
        let (field, indices) = segment
            .split_once('[')
            .map_or((segment, ""), |(f, rest)| (f, rest));
        out.push('.');
        out.push_str(field);
        elems.push(Elem::Field(field.to_string()));
        at = at.and_then(|v| v.get(field));
        for index in indices.split('[').filter(|s| !s.is_empty()) {
            let i: usize = index.trim_end_matches(']').parse().unwrap_or_default();
            let items = at
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let item = items.get(i);
            match (list_kind(rt, &elems, items), item) {
                (ListKind::Map(keys), Some(item)) => {
                    let pairs: Vec<String> = keys
                        .iter()
                        .map(|k| format!("{k}={}", item.get(k).unwrap_or(&Value::Null)))
                        .collect();
                    let _ = write!(out, "[{}]", pairs.join(","));
                    elems.extend(item_key(&keys, item));
                }
                (ListKind::Set, Some(item)) => {
                    let _ = write!(out, "[={item}]");
                    elems.push(Elem::Value(item.to_string()));
                }
                _ => {
                    let _ = write!(out, "[{i}]");
                }
            }
            at = item;
        }
    }
    out
}

/// The `Warning` header value of one finding.
pub(crate) fn warning_header(text: &str) -> String {
    format!("299 - {text:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_field_validation_value_is_a_422_naming_the_options() {
        let q = Query::parse(Some("fieldValidation=Bogus"));
        let err = FieldValidation::from_query(&q, "CreateOptions").unwrap_err();
        assert_eq!(err.code, 422);
        assert_eq!(
            err.message,
            r#"CreateOptions.meta.k8s.io "" is invalid: fieldValidation: Unsupported value: "Bogus": supported values: "", "Ignore", "Strict", "Warn""#
        );
        let q = Query::parse(None);
        assert_eq!(
            FieldValidation::from_query(&q, "CreateOptions").unwrap(),
            FieldValidation::Warn
        );
    }
}
