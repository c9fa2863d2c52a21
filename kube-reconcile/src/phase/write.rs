//! The engine's writes: status, finalizers and events, each one request guarded by the
//! `resourceVersion` it was computed from.

use kube::{
    Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
    core::Request,
    runtime::{controller::Action, events::EventType},
};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::{
    PhaseError, PhaseStatus,
    engine::{Inner, Object},
    messages::truncate,
    next_status,
};

/// An event to publish after a write.
pub(super) struct Note {
    pub(super) kind: EventType,
    pub(super) reason: String,
    pub(super) text: String,
}

impl Note {
    pub(super) fn normal(reason: impl Into<String>, text: impl Into<String>) -> Self {
        Note {
            kind: EventType::Normal,
            reason: reason.into(),
            text: text.into(),
        }
    }

    pub(super) fn warning(reason: impl Into<String>, text: impl Into<String>) -> Self {
        Note {
            kind: EventType::Warning,
            reason: reason.into(),
            text: text.into(),
        }
    }
}

/// Where an object lives: its collection's URL, for any scope.
pub(super) struct Target {
    client: Client,
    url: String,
}

impl Target {
    pub(super) fn of<K: Object>(client: &Client, obj: &K) -> Self {
        let url = K::url_path(&K::DynamicType::default(), obj.meta().namespace.as_deref());
        Target {
            client: client.clone(),
            url,
        }
    }

    async fn send<K: DeserializeOwned, E>(
        &self,
        request: Result<http::Request<Vec<u8>>, kube::core::request::Error>,
        action: &'static str,
    ) -> Result<K, PhaseError<E>> {
        let request = request.map_err(|e| PhaseError::Kube {
            action,
            source: kube::Error::BuildRequest(e),
        })?;
        self.client
            .request::<K>(request)
            .await
            .map_err(|source| PhaseError::Kube { action, source })
    }
}

impl<M> Inner<M> {
    /// Writes `status` and `extra` if they change anything; if it wrote, tells the
    /// observers about a phase change and publishes `note`. Then answers `action`.
    pub(super) async fn write_then<K: Object, E>(
        &self,
        api: &Target,
        obj: &K,
        status: &PhaseStatus,
        extra: Option<&Value>,
        note: Option<Note>,
        action: Action,
    ) -> Result<Action, PhaseError<E>> {
        if self.write(api, obj, status, extra).await? {
            let meta = obj.meta();
            self.config.observers.notify(
                meta.namespace.as_deref(),
                meta.name.as_deref().unwrap_or_default(),
                obj.phase_status(),
                status,
            );
            if let Some(note) = note {
                self.publish(obj, note).await;
            }
        }
        Ok(action)
    }

    /// Writes `status` and `extra` fields if they change anything; says whether it wrote.
    pub(super) async fn write<K: Object, E>(
        &self,
        api: &Target,
        obj: &K,
        status: &PhaseStatus,
        extra: Option<&Value>,
    ) -> Result<bool, PhaseError<E>> {
        // Paced times never cause a write of their own (see `Transition::paced`).
        let wanted = next_status::without_paced(status);
        let unchanged = obj
            .phase_status()
            .map_or(*wanted == PhaseStatus::default(), |s| {
                *next_status::without_paced(s) == *wanted
            });
        let extra_changes = match extra {
            Some(fields) => {
                let whole = serde_json::to_value(obj)
                    .map_err(|e| PhaseError::StatusFields(e.to_string()))?;
                merge_changes(whole.get("status").unwrap_or(&Value::Null), fields)
            }
            None => false,
        };
        if unchanged && !extra_changes {
            return Ok(false);
        }
        self.patch_status::<K, E>(api, obj, status, extra).await?;
        Ok(true)
    }

    /// Merge-patches the status subresource, guarded by the object's `resourceVersion`.
    pub(super) async fn patch_status<K: Object, E>(
        &self,
        api: &Target,
        obj: &K,
        status: &PhaseStatus,
        extra: Option<&Value>,
    ) -> Result<K, PhaseError<E>> {
        let (name, rv) = name_and_version(obj)?;
        let mut fields = match extra {
            Some(Value::Object(extra)) => extra.clone(),
            _ => Map::new(),
        };
        fields.extend(status_fields(status));
        let body = json!({ "metadata": { "resourceVersion": rv }, "status": fields });
        let params = PatchParams::default();
        let request =
            Request::new(&api.url).patch_subresource("status", name, &params, &Patch::Merge(&body));
        let answered: K = api.send(request, "writing status").await?;
        self.own_writes.wrote(&answered);
        Ok(answered)
    }

    pub(super) async fn add_finalizer<K: Object, E>(
        &self,
        api: &Target,
        obj: &K,
    ) -> Result<K, PhaseError<E>> {
        let mut finalizers = obj.finalizers().to_vec();
        finalizers.push(self.config.finalizer.clone());
        let answered = patch_finalizers(api, obj, &finalizers, "adding the finalizer").await?;
        self.own_writes.wrote(&answered);
        Ok(answered)
    }

    pub(super) async fn remove_finalizer<K: Object, E>(
        &self,
        api: &Target,
        obj: &K,
    ) -> Result<K, PhaseError<E>> {
        let finalizers: Vec<String> = obj
            .finalizers()
            .iter()
            .filter(|f| **f != self.config.finalizer)
            .cloned()
            .collect();
        let answered = patch_finalizers(api, obj, &finalizers, "removing the finalizer").await?;
        self.own_writes.forget(obj);
        Ok(answered)
    }

    /// Publishes an event about `obj`; a failure to publish is logged, never fatal.
    pub(super) async fn publish<K: Object>(&self, obj: &K, note: Note) {
        let Some(recorder) = &self.recorder else {
            return;
        };
        let note = Note {
            kind: note.kind,
            reason: truncate(&note.reason, 128).to_owned(),
            text: truncate(&note.text, 1024).to_owned(),
        };
        recorder.publish(obj, note, self.wall.now()).await;
    }
}

fn name_and_version<K: Resource, E>(obj: &K) -> Result<(&str, &str), PhaseError<E>> {
    let name = obj
        .meta()
        .name
        .as_deref()
        .ok_or(PhaseError::MissingField("metadata.name"))?;
    let rv = obj
        .meta()
        .resource_version
        .as_deref()
        .ok_or(PhaseError::MissingField("metadata.resourceVersion"))?;
    Ok((name, rv))
}

/// Replaces the finalizer list, failing with a conflict if the object moved on.
async fn patch_finalizers<K: Object, E>(
    api: &Target,
    obj: &K,
    finalizers: &[String],
    action: &'static str,
) -> Result<K, PhaseError<E>> {
    let (name, rv) = name_and_version(obj)?;
    let body = json!({ "metadata": { "resourceVersion": rv, "finalizers": finalizers } });
    let request = Request::new(&api.url).patch(name, &PatchParams::default(), &Patch::Merge(&body));
    api.send(request, action).await
}

/// The engine's fields of `.status`, with `null` for the absent ones so a merge patch
/// removes them.
fn status_fields(status: &PhaseStatus) -> Map<String, Value> {
    let mut fields = match serde_json::to_value(status) {
        Ok(Value::Object(fields)) => fields,
        _ => Map::new(),
    };
    for key in [
        "phase",
        "observedGeneration",
        "conditions",
        "phaseHistory",
        "retry",
        "lastError",
    ] {
        fields.entry(key).or_insert(Value::Null);
    }
    fields
}

/// Whether merge-patching `patch` onto `current` would change it.
fn merge_changes(current: &Value, patch: &Value) -> bool {
    match (current, patch) {
        (Value::Object(current), Value::Object(patch)) => {
            patch
                .iter()
                .any(|(key, value)| match (current.get(key), value) {
                    (None | Some(Value::Null), Value::Null) => false,
                    (None, _) => true,
                    (Some(now), Value::Object(_)) if now.is_object() => merge_changes(now, value),
                    (Some(now), value) => !same_json(now, value),
                })
        }
        (_, Value::Object(patch)) => !patch.is_empty() || !current.is_object(),
        (current, patch) => !same_json(current, patch),
    }
}

/// JSON equality where numbers compare by value (`1` and `1.0` are the same).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_changes_sees_only_real_differences() {
        let current = json!({ "endpoint": "db:5432", "size": 1, "nested": { "a": 1 } });
        assert!(!merge_changes(&current, &json!({ "endpoint": "db:5432" })));
        assert!(!merge_changes(&current, &json!({ "size": 1.0 })));
        assert!(!merge_changes(&current, &json!({ "gone": null })));
        assert!(!merge_changes(&current, &json!({ "nested": { "a": 1 } })));
        assert!(merge_changes(&current, &json!({ "nested": { "b": 2 } })));
        assert!(merge_changes(&current, &json!({ "endpoint": null })));
        assert!(merge_changes(&Value::Null, &json!({ "endpoint": "x" })));
    }

    #[test]
    fn absent_engine_fields_are_sent_as_null() {
        let fields = status_fields(&PhaseStatus::default());
        assert_eq!(fields.len(), 6);
        assert!(fields.values().all(Value::is_null));
    }
}
