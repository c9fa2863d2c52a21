//! Label and field selectors, as `kubectl` and kube's `ListParams` send them.

use serde_json::Value;

use super::{error::ApiError, resources::ResourceType};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector (`app=db,tier in (a,b),!legacy`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LabelSelector(Vec<Requirement>);

impl LabelSelector {
    pub(crate) fn parse(s: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for term in split_terms(s) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let bad = || {
                ApiError::bad_request(format!(
                    "unable to parse requirement: invalid label selector: {term:?}"
                ))
            };
            let req = if let Some(key) = term.strip_prefix('!') {
                Requirement::NotExists(valid_key(key.trim()).ok_or_else(bad)?)
            } else if let Some((k, v)) = term.split_once("!=") {
                Requirement::NotEq(valid_key(k.trim()).ok_or_else(bad)?, v.trim().to_string())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                Requirement::Eq(valid_key(k.trim()).ok_or_else(bad)?, v.trim().to_string())
            } else if let Some((k, rest)) = split_set(term, " notin ") {
                Requirement::NotIn(
                    valid_key(k).ok_or_else(bad)?,
                    set_values(rest).ok_or_else(bad)?,
                )
            } else if let Some((k, rest)) = split_set(term, " in ") {
                Requirement::In(
                    valid_key(k).ok_or_else(bad)?,
                    set_values(rest).ok_or_else(bad)?,
                )
            } else {
                Requirement::Exists(valid_key(term).ok_or_else(bad)?)
            };
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    pub(crate) fn matches(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Eq(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEq(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => !get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
    }
}

fn split_terms(s: &str) -> Vec<&str> {
    // Commas separate terms, except inside `( ... )`.
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn split_set<'a>(term: &'a str, op: &str) -> Option<(&'a str, &'a str)> {
    let i = term.find(op)?;
    Some((term[..i].trim(), term[i + op.len()..].trim()))
}

fn set_values(rest: &str) -> Option<Vec<String>> {
    let inner = rest.strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

fn valid_key(k: &str) -> Option<String> {
    let ok = !k.is_empty()
        && k.len() <= 317
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    ok.then(|| k.to_string())
}

/// A parsed field selector (`metadata.name=x,involvedObject.kind!=Pod`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    pub(crate) fn parse(s: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for term in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, eq, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (f, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{term}'"
                )));
            };
            reqs.push((field.trim().to_string(), eq, value.trim().to_string()));
        }
        Ok(FieldSelector(reqs))
    }

    /// Rejects fields the resource cannot be selected by, as kube-apiserver does (400).
    pub(crate) fn check_supported(&self, rt: &ResourceType) -> Result<(), ApiError> {
        let Some(supported) = supported_fields(rt) else {
            return Ok(());
        };
        for (field, _, _) in &self.0 {
            if !supported.iter().any(|s| s == field) {
                let only = supported
                    .iter()
                    .map(|s| format!("\"{s}\""))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(ApiError::bad_request(format!(
                    "\"{field}\" is not a known field selector: only {only}"
                )));
            }
        }
        Ok(())
    }

    pub(crate) fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(field, eq, value)| {
            let actual = field
                .split('.')
                .try_fold(obj, |v, seg| v.get(seg))
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                })
                .unwrap_or_default();
            (actual == *value) == *eq
        })
    }
}

/// The fields `rt` can be selected by, or `None` where the embedded server does not know
/// the real list (it then accepts any dotted path).
fn supported_fields(rt: &ResourceType) -> Option<Vec<String>> {
    const META: [&str; 2] = ["metadata.name", "metadata.namespace"];
    let extra: &[&str] = match (rt.built_in, rt.group.as_str(), rt.plural.as_str()) {
        (false, _, _) => {
            let mut all: Vec<String> = META.iter().map(|s| (*s).to_string()).collect();
            all.extend(rt.selectable_fields.iter().cloned());
            return Some(all);
        }
        (true, "", "configmaps" | "serviceaccounts" | "persistentvolumeclaims")
        | (true, "apps", "statefulsets" | "deployments")
        | (true, "coordination.k8s.io", "leases")
        | (true, "apiextensions.k8s.io", "customresourcedefinitions") => &[],
        (true, "", "secrets") => &["type"],
        (true, "", "namespaces") => &["status.phase"],
        (true, "", "events") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        (true, "", "pods") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ],
        _ => return None,
    };
    Some(META.iter().chain(extra).map(|s| (*s).to_string()).collect())
}

/// Both selectors of a list or watch.
#[derive(Clone, Debug, Default)]
pub(crate) struct Selectors {
    pub(crate) labels: LabelSelector,
    pub(crate) fields: FieldSelector,
}

impl Selectors {
    pub(crate) fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        self.labels.matches(labels) && self.fields.matches(obj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors_support_every_operator() {
        let labels = json!({"app": "db", "tier": "a"});
        let m = labels.as_object();
        for (sel, want) in [
            ("app=db", true),
            ("app==db,tier!=b", true),
            ("tier in (a, b)", true),
            ("tier notin (a)", false),
            ("app", true),
            ("!legacy", true),
            ("!app", false),
            ("app=web", false),
        ] {
            assert_eq!(LabelSelector::parse(sel).unwrap().matches(m), want, "{sel}");
        }
    }

    #[test]
    fn field_selectors_read_dotted_paths() {
        let obj = json!({"metadata": {"name": "x", "namespace": "ns"}, "involvedObject": {"kind": "Database"}});
        assert!(
            FieldSelector::parse("metadata.name=x,involvedObject.kind=Database")
                .unwrap()
                .matches(&obj)
        );
        assert!(
            !FieldSelector::parse("metadata.namespace!=ns")
                .unwrap()
                .matches(&obj)
        );
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
