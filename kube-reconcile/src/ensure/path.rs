//! Field paths as reported in [`Ensured::Updated`](super::Ensured::Updated).

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// One step of a path into an object.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Seg {
    /// A map key.
    Field(String),
    /// A list item by position.
    Index(usize),
    /// A list item by its key fields (`containers[name=db]`).
    Key(Map<String, Value>),
    /// A set member by value (`finalizers[="x"]`).
    Member(Value),
}

/// A path under construction while walking an object.
#[derive(Clone, Debug, Default)]
pub(crate) struct FieldPath(Vec<Seg>);

impl FieldPath {
    pub(crate) fn push(&mut self, seg: Seg) {
        self.0.push(seg);
    }

    pub(crate) fn pop(&mut self) {
        self.0.pop();
    }

    pub(crate) fn field(&mut self, name: &str) {
        self.push(Seg::Field(name.to_string()));
    }

    /// The last map key on the path, ignoring list steps.
    pub(crate) fn last_field(&self) -> Option<&str> {
        self.0.iter().rev().find_map(|s| match s {
            Seg::Field(f) => Some(f.as_str()),
            _ => None,
        })
    }

    /// The map key just above the last one (`requests` for `resources.requests.cpu`).
    pub(crate) fn parent_field(&self) -> Option<&str> {
        let mut fields = self.0.iter().rev().filter_map(|s| match s {
            Seg::Field(f) => Some(f.as_str()),
            _ => None,
        });
        fields.next();
        fields.next()
    }

    /// Whether the path is exactly these map keys.
    pub(crate) fn is(&self, fields: &[&str]) -> bool {
        self.0.len() == fields.len()
            && self
                .0
                .iter()
                .zip(fields)
                .all(|(s, f)| matches!(s, Seg::Field(x) if x == f))
    }

    /// Renders the path: `spec.template.spec.containers[name=db].image`,
    /// `metadata.labels["app.kubernetes.io/name"]`, `spec.ports[0]`.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        for seg in &self.0 {
            match seg {
                Seg::Field(f) if is_plain(f) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(f);
                }
                Seg::Field(f) => {
                    let _ = write!(out, "[{}]", Value::String(f.clone()));
                }
                Seg::Index(i) => {
                    let _ = write!(out, "[{i}]");
                }
                Seg::Key(k) => {
                    let parts: Vec<String> = k
                        .iter()
                        .map(|(f, v)| format!("{f}={}", scalar(v)))
                        .collect();
                    let _ = write!(out, "[{}]", parts.join(","));
                }
                Seg::Member(v) => {
                    let _ = write!(out, "[={v}]");
                }
            }
        }
        if out.is_empty() {
            out.push('.');
        }
        out
    }
}

fn is_plain(field: &str) -> bool {
    !field.is_empty()
        && field
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_render_like_jsonpath_with_keys_and_quoted_labels() {
        let mut p = FieldPath::default();
        p.field("spec");
        p.field("containers");
        let Value::Object(key) = json!({"name": "db"}) else {
            unreachable!()
        };
        p.push(Seg::Key(key));
        p.field("image");
        assert_eq!(p.render(), "spec.containers[name=db].image");

        let mut p = FieldPath::default();
        p.field("metadata");
        p.field("labels");
        p.field("app.kubernetes.io/name");
        assert_eq!(p.render(), r#"metadata.labels["app.kubernetes.io/name"]"#);

        let mut p = FieldPath::default();
        p.field("spec");
        p.field("ports");
        p.push(Seg::Index(1));
        assert_eq!(p.render(), "spec.ports[1]");
        assert_eq!(FieldPath::default().render(), ".");
    }

    #[test]
    fn parent_field_skips_list_steps() {
        let mut p = FieldPath::default();
        p.field("resources");
        p.field("requests");
        p.field("cpu");
        assert_eq!(p.parent_field(), Some("requests"));
        assert_eq!(p.last_field(), Some("cpu"));
        assert!(p.is(&["resources", "requests", "cpu"]));
    }
}
