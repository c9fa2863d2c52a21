//! Status conditions with the semantics of apimachinery's `meta.SetStatusCondition`.
//!
//! A [`Condition`] is one observation about an object (`type: Ready`, `status: "True"`),
//! and [`Conditions`] is the list kept in `status.conditions`. Setting a condition follows
//! `meta.SetStatusCondition` exactly:
//!
//! - a new type is appended, stamped with the time of the call (or its own
//!   `lastTransitionTime` when it has one);
//! - for an existing type, `lastTransitionTime` moves **only when `status` changes**;
//!   `reason`, `message` and `observedGeneration` are updated in place;
//! - the call says whether anything changed, so a caller writes status only when needed.
//!
//! [`Conditions`] declares itself to the schema generator as a map-list keyed by `type`
//! (`x-kubernetes-list-type: map`, `x-kubernetes-list-map-keys: [type]`), so server-side
//! apply merges conditions per type and two field managers can each own their own
//! conditions on one object.
//!
//! Reading is lenient: a stored condition with a missing field or an unknown status
//! still deserializes (the status reads as [`ConditionStatus::Unknown`]), an entry that is
//! not an object is dropped and a `conditions` that is not a list reads as empty, so one
//! corrupt entry never makes the whole object unreadable to a controller.
//!
//! # Examples
//!
//! ```
//! use k8s_openapi::jiff::Timestamp;
//! use kube_reconcile::conditions::{Condition, Conditions};
//!
//! let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
//! let t1: Timestamp = "2026-01-01T00:05:00Z".parse().unwrap();
//! let mut conditions = Conditions::default();
//!
//! assert!(conditions.set(Condition::false_("Ready", "Provisioning", "creating the instance"), t0));
//! // Same status, new reason: updated, but the transition time stays.
//! assert!(conditions.set(Condition::false_("Ready", "Configuring", "writing the config"), t1));
//! assert_eq!(conditions.find("Ready").unwrap().last_transition_time.as_ref().unwrap().0, t0);
//! // Setting the very same condition again changes nothing.
//! assert!(!conditions.set(Condition::false_("Ready", "Configuring", "writing the config"), t1));
//! // A status change moves the transition time.
//! assert!(conditions.set(Condition::true_("Ready", "Available", "serving"), t1));
//! assert!(conditions.is_true("Ready"));
//! assert_eq!(conditions.find("Ready").unwrap().last_transition_time.as_ref().unwrap().0, t1);
//! ```

use std::{borrow::Cow, fmt, ops::Deref};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1 as meta, jiff::Timestamp};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The status of a [`Condition`]: `"True"`, `"False"` or `"Unknown"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// The controller cannot tell (also what an unreadable stored value reads as).
    #[default]
    Unknown,
}

impl ConditionStatus {
    /// The string Kubernetes stores: `"True"`, `"False"` or `"Unknown"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }

    /// Reads a stored status; anything but `"True"` and `"False"` is `Unknown`.
    pub fn parse(s: &str) -> Self {
        match s {
            "True" => ConditionStatus::True,
            "False" => ConditionStatus::False,
            _ => ConditionStatus::Unknown,
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(value: bool) -> Self {
        if value {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    }
}

impl fmt::Display for ConditionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ConditionStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ConditionStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Lenient on purpose: a corrupt value must not make the object unreadable.
        let value = serde_json::Value::deserialize(deserializer)?;
        Ok(value
            .as_str()
            .map_or(ConditionStatus::Unknown, ConditionStatus::parse))
    }
}

/// One condition of an object's status, as `metav1.Condition` stores it.
///
/// Every field reads with a default when missing, so a hand-edited or corrupt entry
/// still deserializes; [`Conditions::set`] fills `lastTransitionTime`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Condition {
    /// The kind of observation, in `CamelCase` (`Ready`, `Reconciling`).
    #[serde(rename = "type", default, deserialize_with = "lenient")]
    pub type_: String,
    /// Whether it holds.
    #[serde(default)]
    pub status: ConditionStatus,
    /// Why, as one `CamelCase` word a program can match on.
    #[serde(default, deserialize_with = "lenient")]
    pub reason: String,
    /// Why, for a human.
    #[serde(default, deserialize_with = "lenient")]
    pub message: String,
    /// The `metadata.generation` this observation was made at.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub observed_generation: Option<i64>,
    /// When `status` last changed.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_transition_time: Option<meta::Time>,
}

/// Reads a field, or its default when the stored value has the wrong shape.
pub(crate) fn lenient<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned + Default,
{
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).unwrap_or_default())
}

impl Condition {
    /// A condition of `type_` with `status`, `reason` and `message`.
    pub fn new(
        type_: impl Into<String>,
        status: impl Into<ConditionStatus>,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: None,
            last_transition_time: None,
        }
    }

    /// A condition that holds.
    pub fn true_(
        type_: impl Into<String>,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Condition::new(type_, ConditionStatus::True, reason, message)
    }

    /// A condition that does not hold.
    pub fn false_(
        type_: impl Into<String>,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Condition::new(type_, ConditionStatus::False, reason, message)
    }

    /// A condition whose state is unknown.
    pub fn unknown(
        type_: impl Into<String>,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Condition::new(type_, ConditionStatus::Unknown, reason, message)
    }

    /// This condition observed at `generation`.
    #[must_use]
    pub fn observed_generation(mut self, generation: Option<i64>) -> Self {
        self.observed_generation = generation;
        self
    }

    /// When `status` last changed, if stamped.
    pub fn last_transition(&self) -> Option<Timestamp> {
        self.last_transition_time.as_ref().map(|t| t.0)
    }
}

impl From<meta::Condition> for Condition {
    fn from(c: meta::Condition) -> Self {
        Condition {
            type_: c.type_,
            status: ConditionStatus::parse(&c.status),
            reason: c.reason,
            message: c.message,
            observed_generation: c.observed_generation,
            last_transition_time: Some(c.last_transition_time),
        }
    }
}

impl From<Condition> for meta::Condition {
    /// Converts to the `k8s-openapi` type; a condition never stamped gets the Unix epoch.
    fn from(c: Condition) -> Self {
        meta::Condition {
            type_: c.type_,
            status: c.status.as_str().to_owned(),
            reason: c.reason,
            message: c.message,
            observed_generation: c.observed_generation,
            last_transition_time: c
                .last_transition_time
                .unwrap_or(meta::Time(Timestamp::UNIX_EPOCH)),
        }
    }
}

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
    pub const fn new() -> Self {
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

    /// Whether the condition of `type_` is present and `False`.
    pub fn is_false(&self, type_: &str) -> bool {
        self.find(type_)
            .is_some_and(|c| c.status == ConditionStatus::False)
    }

    /// The conditions as a list.
    pub fn into_vec(self) -> Vec<Condition> {
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

impl JsonSchema for Condition {
    fn schema_name() -> Cow<'static, str> {
        "Condition".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "One observation of the object's state (metav1.Condition).",
            "type": "object",
            "required": ["type", "status", "reason", "message", "lastTransitionTime"],
            "properties": {
                "type": { "type": "string", "maxLength": 316 },
                "status": { "type": "string", "enum": ["True", "False", "Unknown"] },
                "reason": { "type": "string", "maxLength": 1024 },
                "message": { "type": "string", "maxLength": 32768 },
                "observedGeneration": { "type": "integer", "format": "int64", "minimum": 0 },
                "lastTransitionTime": { "type": "string", "format": "date-time" }
            }
        })
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
pub fn set(list: &mut Vec<Condition>, mut condition: Condition, now: Timestamp) -> bool {
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
pub fn find<'a>(list: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    list.iter().find(|c| c.type_ == type_)
}

/// Removes the condition of `type_` from `list`; returns whether it was present.
pub fn remove(list: &mut Vec<Condition>, type_: &str) -> bool {
    let before = list.len();
    list.retain(|c| c.type_ != type_);
    list.len() != before
}

/// Whether the condition of `type_` in `list` is present and `True`.
pub fn is_true(list: &[Condition], type_: &str) -> bool {
    find(list, type_).is_some_and(|c| c.status == ConditionStatus::True)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("in range")
    }

    #[test]
    fn a_new_type_is_appended_and_stamped() {
        let mut list = Conditions::new();
        assert!(list.set(Condition::true_("Ready", "Up", "ok"), at(10)));
        assert!(list.set(Condition::false_("Stalled", "Fine", ""), at(11)));
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].last_transition(), Some(at(10)));
        assert_eq!(list[1].type_, "Stalled");
    }

    #[test]
    fn an_explicit_transition_time_wins_over_now() {
        let mut list = Conditions::new();
        let mut c = Condition::true_("Ready", "Up", "ok");
        c.last_transition_time = Some(meta::Time(at(3)));
        list.set(c, at(10));
        assert_eq!(list.find("Ready").unwrap().last_transition(), Some(at(3)));
    }

    #[test]
    fn observed_generation_alone_is_a_change() {
        let mut list = Conditions::new();
        list.set(
            Condition::true_("Ready", "Up", "ok").observed_generation(Some(1)),
            at(1),
        );
        assert!(list.set(
            Condition::true_("Ready", "Up", "ok").observed_generation(Some(2)),
            at(2)
        ));
        let ready = list.find("Ready").unwrap();
        assert_eq!(ready.observed_generation, Some(2));
        assert_eq!(ready.last_transition(), Some(at(1)));
    }

    #[test]
    fn remove_and_is_true_read_by_type() {
        let mut list = Conditions::new();
        list.set(Condition::true_("Ready", "Up", ""), at(1));
        assert!(list.is_true("Ready"));
        assert!(!list.is_false("Ready"));
        assert!(!list.is_true("Other"));
        assert!(list.remove("Ready"));
        assert!(!list.remove("Ready"));
        assert!(list.is_empty());
    }

    #[test]
    fn corrupt_entries_read_leniently_and_duplicates_keep_the_first() {
        let list: Conditions = serde_json::from_value(serde_json::json!([
            { "type": "Ready", "status": "Maybe", "reason": 7, "lastTransitionTime": "yesterday" },
            { "type": "Ready", "status": "True" },
            { "status": "True" }
        ]))
        .unwrap();
        assert_eq!(list.len(), 2);
        let ready = list.find("Ready").unwrap();
        assert_eq!(ready.status, ConditionStatus::Unknown);
        assert_eq!(ready.reason, "");
        assert_eq!(ready.last_transition_time, None);
        let null: Conditions = serde_json::from_value(serde_json::Value::Null).unwrap();
        assert!(null.is_empty());
    }

    #[test]
    fn a_list_with_entries_that_are_not_objects_or_no_list_at_all_still_reads() {
        // Found by tests/bad_input.rs: `[null]` made the whole object unreadable.
        let list: Conditions = serde_json::from_value(serde_json::json!([
            null,
            7,
            "Ready",
            [],
            { "type": "Ready", "status": "True" }
        ]))
        .unwrap();
        assert_eq!(list.len(), 1);
        assert!(list.is_true("Ready"));
        for garbage in [
            serde_json::json!("Ready"),
            serde_json::json!(5),
            serde_json::json!({}),
        ] {
            let list: Conditions = serde_json::from_value(garbage).unwrap();
            assert!(list.is_empty());
        }
    }

    #[test]
    fn conversion_with_k8s_openapi_keeps_every_field() {
        let mut list = Conditions::new();
        list.set(
            Condition::false_("Ready", "Down", "gone").observed_generation(Some(4)),
            at(9),
        );
        let c = list[0].clone();
        let k: meta::Condition = c.clone().into();
        assert_eq!(k.status, "False");
        assert_eq!(Condition::from(k), c);
    }

    #[test]
    fn serialized_form_is_what_the_api_server_stores() {
        let mut list = Conditions::new();
        list.set(Condition::true_("Ready", "Up", "ok"), at(0));
        assert_eq!(
            serde_json::to_value(&list).unwrap(),
            serde_json::json!([{
                "type": "Ready", "status": "True", "reason": "Up", "message": "ok",
                "lastTransitionTime": "1970-01-01T00:00:00Z"
            }])
        );
    }

    fn condition() -> impl Strategy<Value = Condition> {
        (
            prop::sample::select(vec!["Ready", "Reconciling", "Stalled"]),
            prop::sample::select(vec![
                ConditionStatus::True,
                ConditionStatus::False,
                ConditionStatus::Unknown,
            ]),
            prop::sample::select(vec!["A", "B"]),
            prop::option::of(0i64..3),
        )
            .prop_map(|(t, s, r, g)| Condition::new(t, s, r, "").observed_generation(g))
    }

    proptest! {
        #[test]
        fn transition_time_moves_only_when_status_changes(
            steps in prop::collection::vec(condition(), 1..40)
        ) {
            let mut list = Conditions::new();
            for (i, c) in steps.into_iter().enumerate() {
                let now = at(i64::try_from(i).unwrap() + 1);
                let before = list.find(&c.type_).cloned();
                let changed = list.set(c.clone(), now);
                let after = list.find(&c.type_).unwrap();
                match before {
                    None => {
                        prop_assert!(changed);
                        prop_assert_eq!(after.last_transition(), Some(now));
                    }
                    Some(b) => {
                        let status_moved = b.status != c.status;
                        let expect = if status_moved { Some(now) } else { b.last_transition() };
                        prop_assert_eq!(after.last_transition(), expect);
                        prop_assert_eq!(changed, b != *after);
                    }
                }
                prop_assert_eq!(after.status, c.status);
                prop_assert_eq!(&after.reason, &c.reason);
                // At most one condition per type.
                let mut types: Vec<_> = list.iter().map(|c| c.type_.clone()).collect();
                types.sort();
                types.dedup();
                prop_assert_eq!(types.len(), list.len());
            }
        }
    }
}
