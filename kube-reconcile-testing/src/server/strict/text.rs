//! A request body as Go's decoders see it: where each key first appears, which keys
//! repeat (and on which line), and `%v` rendering of decoded values.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

/// Where each key of a JSON document first appears, and its repeated keys.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub(super) first: HashMap<String, usize>,
    pub(super) duplicates: Vec<Duplicate>,
}

#[derive(Debug)]
pub(super) struct Duplicate {
    pub(super) seq: usize,
    pub(super) path: String,
    pub(super) key: String,
    pub(super) line: usize,
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
                let text: String = serde_json::from_slice(&body[start..=i.min(body.len() - 1)])
                    .unwrap_or_default();
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
        let v =
            serde_json::json!({"top3": 1, "data": {"z": "1"}, "l": [1.5, true, null], "big": 1e21});
        assert_eq!(
            go_format(&v),
            "map[big:1e+21 data:map[z:1] l:[1.5 true <nil>] top3:1]"
        );
    }
}
