//! Semantic equality of JSON values as the API server stores them.
//!
//! Numbers compare by value (`1` equals `1.0`), a missing field equals an empty map,
//! an empty list or `null`, and resource quantities compare by amount (`1Gi` equals
//! `1024Mi`, `500m` equals `0.5`) where Kubernetes keeps quantities.

use serde_json::{Map, Value};

use super::path::FieldPath;

/// Map keys under which values are resource quantities.
const QUANTITY_PARENTS: &[&str] = &[
    "limits",
    "requests",
    "hard",
    "used",
    "capacity",
    "allocatable",
    "overhead",
];

/// Whether a value is absent in meaning: `null`, `{}` or `[]`.
pub(crate) fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Whether an optional value is absent in meaning.
pub(crate) fn is_absent(v: Option<&Value>) -> bool {
    v.is_none_or(is_empty)
}

/// Whether the value at `path` is a resource quantity.
pub(crate) fn is_quantity_path(path: &FieldPath) -> bool {
    path.parent_field()
        .is_some_and(|p| QUANTITY_PARENTS.contains(&p))
        || path.last_field() == Some("sizeLimit")
}

/// Deep semantic equality of two optional values at `path`.
pub(crate) fn equal(a: Option<&Value>, b: Option<&Value>, path: &mut FieldPath) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), None) | (None, Some(x)) => is_empty(x),
        (Some(a), Some(b)) => values_equal(a, b, path),
    }
}

fn values_equal(a: &Value, b: &Value, path: &mut FieldPath) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => maps_equal(x, y, path),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len()
                && x.iter().zip(y).enumerate().all(|(i, (p, q))| {
                    path.push(super::path::Seg::Index(i));
                    let eq = values_equal(p, q, path);
                    path.pop();
                    eq
                })
        }
        _ if is_empty(a) && is_empty(b) => true,
        _ => scalars_equal(a, b, path),
    }
}

fn maps_equal(x: &Map<String, Value>, y: &Map<String, Value>, path: &mut FieldPath) -> bool {
    let keys = x.keys().chain(y.keys().filter(|k| !x.contains_key(*k)));
    for k in keys {
        path.field(k);
        let eq = equal(x.get(k), y.get(k), path);
        path.pop();
        if !eq {
            return false;
        }
    }
    true
}

/// Equality of two scalars: numbers by value, quantities by amount, else exact.
pub(crate) fn scalars_equal(a: &Value, b: &Value, path: &FieldPath) -> bool {
    if a == b {
        return true;
    }
    if let (Value::Number(x), Value::Number(y)) = (a, b) {
        return numbers_equal(x, y);
    }
    if is_quantity_path(path)
        && let (Some(x), Some(y)) = (quantity(a), quantity(b))
    {
        let scale = x.abs().max(y.abs()).max(f64::MIN_POSITIVE);
        return (x - y).abs() <= scale * 1e-12;
    }
    false
}

fn numbers_equal(x: &serde_json::Number, y: &serde_json::Number) -> bool {
    match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
        (Some(a), Some(b), _, _) => a == b,
        (_, _, Some(a), Some(b)) => a == b,
        _ => match (x.as_f64(), y.as_f64()) {
            #[allow(clippy::float_cmp, reason = "1 and 1.0 are the same number in JSON")]
            (Some(a), Some(b)) => a == b,
            _ => false,
        },
    }
}

/// The amount of a Kubernetes quantity (`"1Gi"`, `"500m"`, `"1e3"`, `2`), if it parses.
pub(crate) fn quantity(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => parse_quantity(s),
        _ => None,
    }
}

fn parse_quantity(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s
        .char_indices()
        .find(|&(i, c)| {
            c.is_ascii_alphabetic()
                && !((c == 'e' || c == 'E')
                    && s[i + 1..]
                        .chars()
                        .next()
                        .is_some_and(|d| d.is_ascii_digit() || d == '-' || d == '+'))
        })
        .map_or(s.len(), |(i, _)| i);
    let (number, suffix) = s.split_at(split);
    if number.is_empty() {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0_f64.powi(4),
        "Pi" => 1024.0_f64.powi(5),
        "Ei" => 1024.0_f64.powi(6),
        _ => return None,
    };
    let amount = value * factor;
    amount.is_finite().then_some(amount)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(fields: &[&str]) -> FieldPath {
        let mut p = FieldPath::default();
        for f in fields {
            p.field(f);
        }
        p
    }

    #[test]
    fn integers_and_floats_of_the_same_value_are_equal() {
        assert!(equal(Some(&json!(1)), Some(&json!(1.0)), &mut at(&["a"])));
        assert!(!equal(Some(&json!(1)), Some(&json!(1.5)), &mut at(&["a"])));
        assert!(equal(
            Some(&json!(u64::MAX)),
            Some(&json!(u64::MAX)),
            &mut at(&["a"])
        ));
    }

    #[test]
    fn missing_equals_empty_map_list_and_null() {
        for empty in [json!({}), json!([]), json!(null)] {
            assert!(equal(None, Some(&empty), &mut at(&["a"])));
            assert!(equal(Some(&empty), None, &mut at(&["a"])));
        }
        assert!(equal(
            Some(&json!({"a": {}, "b": 1})),
            Some(&json!({"b": 1.0})),
            &mut FieldPath::default()
        ));
        assert!(!equal(None, Some(&json!("")), &mut at(&["a"])));
    }

    #[test]
    fn quantities_compare_by_amount_only_where_kubernetes_keeps_them() {
        let mut cpu = at(&["resources", "requests", "cpu"]);
        assert!(equal(Some(&json!("500m")), Some(&json!("0.5")), &mut cpu));
        assert!(equal(Some(&json!("1")), Some(&json!(1)), &mut cpu));
        let mut mem = at(&["resources", "limits", "memory"]);
        assert!(equal(Some(&json!("1Gi")), Some(&json!("1024Mi")), &mut mem));
        assert!(equal(Some(&json!("1e3")), Some(&json!("1k")), &mut mem));
        assert!(!equal(Some(&json!("1G")), Some(&json!("1Gi")), &mut mem));
        // Elsewhere a string is a string.
        let mut data = at(&["data", "size"]);
        assert!(!equal(
            Some(&json!("1Gi")),
            Some(&json!("1024Mi")),
            &mut data
        ));
    }

    #[test]
    fn quantity_parser_rejects_garbage() {
        assert_eq!(parse_quantity("abc"), None);
        assert_eq!(parse_quantity("1Xi"), None);
        assert_eq!(parse_quantity(""), None);
        assert_eq!(parse_quantity("2Ki"), Some(2048.0));
        assert_eq!(parse_quantity("-1.5"), Some(-1.5));
    }

    #[test]
    fn lists_compare_item_by_item() {
        let mut p = at(&["spec", "args"]);
        assert!(equal(
            Some(&json!(["a", 1])),
            Some(&json!(["a", 1.0])),
            &mut p
        ));
        assert!(!equal(
            Some(&json!(["a", "b"])),
            Some(&json!(["b", "a"])),
            &mut p
        ));
        assert!(!equal(
            Some(&json!(["a"])),
            Some(&json!(["a", "b"])),
            &mut p
        ));
    }
}
