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

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::{
    error::{ApiError, FieldError, FieldErrorKind},
    request::Query,
    resources::ResourceType,
    schema::unknown,
};

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

/// Where each key of a JSON document first appears, and its repeated keys.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    first: HashMap<String, usize>,
    duplicates: Vec<Duplicate>,
}

#[derive(Debug)]
struct Duplicate {
    seq: usize,
    path: String,
    key: String,
    line: usize,
}

enum Frame {
    Object {
        path: String,
        keys: HashSet<String>,
        key: Option<String>,
        expect_key: bool,
    },
    Array {
        path: String,
        index: usize,
    },
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Scans a JSON document (already known to parse) for its keys in order.
pub(crate) fn scan(body: &[u8]) -> Scan {
    let mut out = Scan::default();
    let mut stack: Vec<Frame> = Vec::new();
    let (mut i, mut line, mut seq) = (0, 1, 0);
    let value_path = |stack: &[Frame]| match stack.last() {
        Some(Frame::Object { path, key, .. }) => join(path, key.as_deref().unwrap_or_default()),
        Some(Frame::Array { path, index }) => format!("{path}[{index}]"),
        None => String::new(),
    };
    while i < body.len() {
        match body[i] {
            b'\n' => line += 1,
            b'{' => stack.push(Frame::Object {
                path: value_path(&stack),
                keys: HashSet::new(),
                key: None,
                expect_key: true,
            }),
            b'[' => stack.push(Frame::Array {
                path: value_path(&stack),
                index: 0,
            }),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Array { index, .. }) => *index += 1,
                Some(Frame::Object { expect_key, .. }) => *expect_key = true,
                None => {}
            },
            b'"' => {
                let start = i;
                i += 1;
                while i < body.len() && body[i] != b'"' {
                    i += if body[i] == b'\\' { 2 } else { 1 };
                }
                let text: String =
                    serde_json::from_slice(&body[start..=i.min(body.len() - 1)]).unwrap_or_default();
                if let Some(Frame::Object {
                    path,
                    keys,
                    key,
                    expect_key,
                }) = stack.last_mut()
                    && *expect_key
                {
                    seq += 1;
                    let full = join(path, &text);
                    if keys.insert(text.clone()) {
                        out.first.insert(full, seq);
                    } else {
                        out.duplicates.push(Duplicate {
                            seq,
                            path: full,
                            key: text.clone(),
                            line,
                        });
                    }
                    *key = Some(text);
                    *expect_key = false;
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The unknown fields of `obj` for `rt`: by its schema for a custom resource, by the Go
/// type's schema for a built-in kind.
pub(crate) fn unknown_fields(rt: &ResourceType, obj: &Value) -> Vec<String> {
    if rt.built_in {
        unknown::built_in(&rt.group, &rt.kind, obj).unwrap_or_default()
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
        format!(".{}: field not declared in schema", unknown[0])
    } else {
        let each: Vec<String> = unknown
            .iter()
            .map(|p| format!("  .{p}: field not declared in schema"))
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

/// Go's `%v` of a decoded JSON value (`map[a:1 b:[x y]]`), as the 422 of a strict
/// strategic merge patch quotes the patch.
pub(crate) fn go_format(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), go_float),
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(go_format).collect();
            format!("[{}]", inner.join(" "))
        }
        Value::Object(map) => {
            let inner: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k}:{}", go_format(v)))
                .collect();
            format!("map[{}]", inner.join(" "))
        }
    }
}

/// A float64 as Go's `%v` prints it: shortest representation, exponent from 1e21.
fn go_float(x: f64) -> String {
    if x.abs() >= 1e21 || (x != 0.0 && x.abs() < 1e-4) {
        let s = format!("{x:e}");
        match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e:0>2}"),
            Some((m, e)) => format!("{m}e-{:0>2}", &e[1..]),
            None => s,
        }
    } else {
        x.to_string()
    }
}

/// The `Warning` header value of one finding.
pub(crate) fn warning_header(text: &str) -> String {
    format!("299 - {text:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scan_finds_duplicates_with_their_paths_and_lines() {
        let body = br#"{"spec":{"code":"A",
"list":[{"a":1},{"a":2,"a":3}],
"code":"B"},"x\"y":1}"#;
        let s = scan(body);
        let dups: Vec<(&str, usize, &str)> = s
            .duplicates
            .iter()
            .map(|d| (d.path.as_str(), d.line, d.key.as_str()))
            .collect();
        assert_eq!(dups, [("spec.list[1].a", 2, "a"), ("spec.code", 3, "code")]);
        assert!(s.first["spec.list[0].a"] < s.first["x\"y"]);
    }

    #[test]
    fn go_format_prints_maps_sorted_and_numbers_as_go_does() {
        let v = serde_json::json!({"top3": 1, "data": {"z": "1"}, "l": [1.5, true, null], "big": 1e21});
        assert_eq!(
            go_format(&v),
            "map[big:1e+21 data:map[z:1] l:[1.5 true <nil>] top3:1]"
        );
    }

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
