//! [`Conditions`], a list with at most one condition per type, and the same operations as
//! free functions over a `Vec<Condition>`.

use std::{borrow::Cow, ops::Deref};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1 as meta, jiff::Timestamp};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Condition, ConditionStatus};

/// The conditions of an object: at most one per type, in the order they were first set.
///
/// Serializes as a plain list, so it drops into any status struct:
///
/// ```
/// use kube_reconcile::conditions::Conditions;
///
/// #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema, Default)]
/// struct WidgetStatus {
///     #[serde(default)]
///     conditions: Conditions,
/// }
///
/// let schema = schemars::schema_for!(WidgetStatus);
/// let json = serde_json::to_value(&schema).unwrap();
/// let conditions = &json["properties"]["conditions"];
/// assert_eq!(conditions["x-kubernetes-list-type"], "map");
/// assert_eq!(conditions["x-kubernetes-list-map-keys"][0], "type");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conditions(Vec<Condition>);

impl Conditions {
    /// No conditions.
    #[cfg(test)]
    pub(crate) const fn new() -> Self {
        Conditions(Vec::new())
    }

    /// Sets `condition` with `meta.SetStatusCondition` semantics, stamping `now` when
    /// its status changes (or when the type is new); returns whether anything changed.
    ///
    /// A `lastTransitionTime` already present on `condition` is used instead of `now`.
    pub fn set(&mut self, condition: Condition, now: Timestamp) -> bool {
        set(&mut self.0, condition, now)
    }

    /// The condition of `type_`, if present.
    pub fn find(&self, type_: &str) -> Option<&Condition> {
        find(&self.0, type_)
    }

    /// Removes the condition of `type_`; returns whether it was present.
    pub fn remove(&mut self, type_: &str) -> bool {
        remove(&mut self.0, type_)
    }

    /// Whether the condition of `type_` is present and `True`.
    pub fn is_true(&self, type_: &str) -> bool {
        is_true(&self.0, type_)
    }

    /// The conditions as a list.
    pub(crate) fn into_vec(self) -> Vec<Condition> {
        self.0
    }
}

impl Deref for Conditions {
    type Target = [Condition];

    fn deref(&self) -> &[Condition] {
        &self.0
    }
}

impl From<Vec<Condition>> for Conditions {
    /// Keeps the first condition of each type, as a map-list on the server would.
    fn from(list: Vec<Condition>) -> Self {
        let mut out = Vec::with_capacity(list.len());
        for c in list {
            if find(&out, &c.type_).is_none() {
                out.push(c);
            }
        }
        Conditions(out)
    }
}

impl FromIterator<Condition> for Conditions {
    fn from_iter<I: IntoIterator<Item = Condition>>(iter: I) -> Self {
        Conditions::from(iter.into_iter().collect::<Vec<_>>())
    }
}

impl<'a> IntoIterator for &'a Conditions {
    type Item = &'a Condition;
    type IntoIter = std::slice::Iter<'a, Condition>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl Serialize for Conditions {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Conditions {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Lenient like each condition: anything but a list reads as empty, and an entry
        // that is not an object is dropped, so a corrupt list never makes the object
        // unreadable. Duplicates keep the first, as the server's map-list would.
        let value = serde_json::Value::deserialize(deserializer)?;
        let serde_json::Value::Array(entries) = value else {
            return Ok(Conditions::default());
        };
        Ok(entries
            .into_iter()
            .filter(serde_json::Value::is_object)
            .filter_map(|entry| serde_json::from_value::<Condition>(entry).ok())
            .collect())
    }
}

impl JsonSchema for Conditions {
    fn schema_name() -> Cow<'static, str> {
        "Conditions".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let item = generator.subschema_for::<Condition>();
        json_schema!({
            "description": "Conditions of the object, at most one per type.",
            "type": "array",
            "items": item,
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"]
        })
    }
}

/// Sets `condition` in `list` with `meta.SetStatusCondition` semantics; returns whether
/// anything changed. See [`Conditions::set`].
pub(crate) fn set(list: &mut Vec<Condition>, mut condition: Condition, now: Timestamp) -> bool {
    let stamp = condition
        .last_transition_time
        .take()
        .unwrap_or(meta::Time(now));
    let Some(existing) = list.iter_mut().find(|c| c.type_ == condition.type_) else {
        condition.last_transition_time = Some(stamp);
        list.push(condition);
        return true;
    };
    let mut changed = false;
    if existing.status != condition.status || existing.last_transition_time.is_none() {
        existing.status = condition.status;
        existing.last_transition_time = Some(stamp);
        changed = true;
    }
    if existing.reason != condition.reason {
        existing.reason = condition.reason;
        changed = true;
    }
    if existing.message != condition.message {
        existing.message = condition.message;
        changed = true;
    }
    if existing.observed_generation != condition.observed_generation {
        existing.observed_generation = condition.observed_generation;
        changed = true;
    }
    changed
}

/// The condition of `type_` in `list`, if present.
pub(crate) fn find<'a>(list: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    list.iter().find(|c| c.type_ == type_)
}

/// Removes the condition of `type_` from `list`; returns whether it was present.
pub(crate) fn remove(list: &mut Vec<Condition>, type_: &str) -> bool {
    let before = list.len();
    list.retain(|c| c.type_ != type_);
    list.len() != before
}

/// Whether the condition of `type_` in `list` is present and `True`.
pub(crate) fn is_true(list: &[Condition], type_: &str) -> bool {
    find(list, type_).is_some_and(|c| c.status == ConditionStatus::True)
}
