//! Value validation of a structural schema, keyword by keyword in kube-openapi's order:
//! type, `allOf`/`anyOf`/`oneOf`/`not`, string (`maxLength`, `minLength`, `pattern`),
//! `format`, number (`multipleOf`, `maximum`, `minimum`), array (`minItems`, `maxItems`,
//! items), `enum`, object (`maxProperties`, `minProperties`, properties, `required`).
//! `x-kubernetes-list-type` duplicates are checked afterwards over the whole object, as
//! apiextensions-apiserver does.

use serde_json::{Map, Value};

use super::{combinators::combinators, format};
use crate::server::error::{FieldError, FieldErrorKind};

/// The field of the errors kube-openapi reports without a path (combinators, int formats).
const NO_FIELD: &str = "<nil>";

pub(super) fn shown(v: &Value) -> String {
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

/// The Go type name kube-openapi shows when a formatted number has the wrong type.
fn go_type_name(v: &Value) -> &'static str {
    match v {
        Value::Number(n) if n.is_i64() || n.is_u64() => "int64",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Bool(_) => "bool",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
        Value::Null => "<nil>",
    }
}

pub(super) fn invalid(path: &str, v: &Value, detail: String) -> FieldError {
    FieldError::new(path, FieldErrorKind::Invalid(shown(v)), detail)
}

pub(super) fn unpathed(detail: String) -> FieldError {
    FieldError::new(NO_FIELD, FieldErrorKind::Invalid("\"\"".into()), detail)
}

/// Validates `v` at `path` against `schema`, appending every violation to `errors`.
pub(crate) fn validate(schema: &Value, v: &Value, path: &str, errors: &mut Vec<FieldError>) {
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
    check_type(schema, v, path, errors);
    combinators(schema, v, path, errors);
    match v {
        Value::String(s) => string(schema, s, v, path, errors),
        Value::Number(_) => number(schema, v, path, errors),
        Value::Array(items) => array(schema, items, path, errors),
        _ => {}
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
    if let Value::Object(map) = v {
        object(schema, map, path, errors);
    }
}

fn check_type(schema: &Value, v: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let Some(want) = schema.get("type").and_then(Value::as_str) else {
        return;
    };
    let int_or_string = schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true);
    let have = type_name(v);
    let ok = have == want
        || (want == "number" && have == "integer")
        || (int_or_string && matches!(have, "integer" | "string"));
    if ok {
        return;
    }
    let int_format = schema
        .get("format")
        .and_then(Value::as_str)
        .filter(|f| matches!(*f, "int32" | "int64") && want == "integer");
    let (want, have) = match int_format {
        Some(f) => (f, go_type_name(v)),
        None => (want, have),
    };
    errors.push(FieldError::new(
        path,
        FieldErrorKind::TypeInvalid(shown(v)),
        format!("{path} in body must be of type {want}: \"{have}\""),
    ));
}

fn string(schema: &Value, s: &str, v: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let len = s.chars().count() as u64;
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && len > max
    {
        errors.push(FieldError::new(
            path,
            FieldErrorKind::TooLong,
            format!("may not be more than {max} bytes"),
        ));
    }
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && len < min
    {
        errors.push(invalid(
            path,
            v,
            format!("{path} in body should be at least {min} chars long"),
        ));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
        && format::matches_pattern(pattern, s) == Some(false)
    {
        errors.push(invalid(
            path,
            v,
            format!("{path} in body should match '{pattern}'"),
        ));
    }
    if let Some(f) = schema.get("format").and_then(Value::as_str)
        && !format::string_is(f, s)
    {
        errors.push(FieldError::new(
            path,
            FieldErrorKind::TypeInvalid(shown(v)),
            format!("{path} in body must be of type {f}: {}", shown(v)),
        ));
    }
}

fn number(schema: &Value, v: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let Some(x) = v.as_f64() else { return };
    if let Some(f) = schema.get("format").and_then(Value::as_str)
        && let Some(bits) = match f {
            "int32" => Some(32),
            "int64" => Some(64),
            _ => None,
        }
        && !format::fits_int(v, bits)
    {
        errors.push(unpathed(format!(
            "Checked value must be of type integer with format {f} in {path}"
        )));
    }
    if let Some(factor) = schema.get("multipleOf")
        && !is_multiple(v, factor)
    {
        let shown_factor = factor.as_f64().map_or_else(|| factor.to_string(), fmt_num);
        errors.push(invalid(
            path,
            v,
            format!("{path} in body should be a multiple of {shown_factor}"),
        ));
    }
    let bound = |key: &str, exclusive_key: &str| {
        schema.get(key).and_then(Value::as_f64).map(|b| {
            let exclusive = schema.get(exclusive_key).and_then(Value::as_bool) == Some(true);
            (b, exclusive)
        })
    };
    if let Some((max, exclusive)) = bound("maximum", "exclusiveMaximum")
        && (x > max || (exclusive && x >= max))
    {
        let op = if exclusive {
            "less than"
        } else {
            "less than or equal to"
        };
        errors.push(invalid(
            path,
            v,
            format!("{path} in body should be {op} {}", fmt_num(max)),
        ));
    }
    if let Some((min, exclusive)) = bound("minimum", "exclusiveMinimum")
        && (x < min || (exclusive && x <= min))
    {
        let op = if exclusive {
            "greater than"
        } else {
            "greater than or equal to"
        };
        errors.push(invalid(
            path,
            v,
            format!("{path} in body should be {op} {}", fmt_num(min)),
        ));
    }
}

fn is_multiple(v: &Value, factor: &Value) -> bool {
    if let (Some(x), Some(m)) = (v.as_i64(), factor.as_i64()) {
        return m == 0 || x % m == 0;
    }
    let (Some(x), Some(m)) = (v.as_f64(), factor.as_f64()) else {
        return true;
    };
    if m == 0.0 {
        return true;
    }
    let q = x / m;
    (q - q.round()).abs() < 1e-9
}

fn array(schema: &Value, items: &[Value], path: &str, errors: &mut Vec<FieldError>) {
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

fn object(schema: &Value, map: &Map<String, Value>, path: &str, errors: &mut Vec<FieldError>) {
    let count = map.len() as u64;
    if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
        && count > max
    {
        errors.push(FieldError::new(
            path,
            FieldErrorKind::TooMany(count.to_string()),
            format!("must have at most {max} items"),
        ));
    }
    if let Some(min) = schema.get("minProperties").and_then(Value::as_u64)
        && count < min
    {
        errors.push(FieldError::new(
            path,
            FieldErrorKind::Invalid(count.to_string()),
            format!("{path} in body should have at least {min} properties"),
        ));
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, sub) in props {
            if let Some(child) = map.get(k) {
                validate(sub, child, &join(path, k), errors);
            }
        }
    } else if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        for (k, child) in map {
            validate(additional, child, &format!("{path}[{k}]"), errors);
        }
    }
    required(schema, map, path, errors);
}

pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub(crate) fn required(
    schema: &Value,
    map: &Map<String, Value>,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    for field in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(f) = field.as_str()
            && !map.contains_key(f)
        {
            errors.push(FieldError::new(join(path, f), FieldErrorKind::Required, ""));
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
