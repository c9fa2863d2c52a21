//! `CustomResourceDefinitions`: creating one serves its resource at once.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{
    error::{ApiError, FieldError, FieldErrorKind},
    lifecycle::DeleteOptions,
    meta::{finalizers, meta_str, now_rfc3339, str_at},
    resources::{CRUD, PrinterColumn, ResourceType, SCALE, ScalePaths},
    store::{ObjKey, State},
};

const CLEANUP: &str = "customresourcecleanup.apiextensions.k8s.io";

/// Checks a CRD before it is stored; adds the cleanup finalizer.
pub(crate) fn admit(crd: &mut Value) -> Result<(), ApiError> {
    let name = meta_str(crd, "name").unwrap_or_default().to_string();
    let group = str_at(crd, "/spec/group");
    let plural = str_at(crd, "/spec/names/plural");
    let kind = crd
        .pointer("/spec/names/kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut errors = Vec::new();
    if group.is_empty() {
        errors.push(FieldError::new("spec.group", FieldErrorKind::Required, ""));
    } else if !group.contains('.') {
        errors.push(FieldError::new(
            "spec.group",
            FieldErrorKind::Invalid(format!("{group:?}")),
            "should be a domain with at least one dot",
        ));
    }
    if plural.is_empty() {
        errors.push(FieldError::new(
            "spec.names.plural",
            FieldErrorKind::Required,
            "",
        ));
    }
    if kind.is_empty() {
        errors.push(FieldError::new(
            "spec.names.kind",
            FieldErrorKind::Required,
            "",
        ));
    }
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        errors.push(FieldError::new(
            "metadata.name",
            FieldErrorKind::Invalid(format!("{name:?}")),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        errors.push(FieldError::new(
            "spec.versions",
            FieldErrorKind::Invalid("null".into()),
            "must have exactly one version marked as storage version",
        ));
    } else if versions
        .iter()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .count()
        != 1
    {
        errors.push(FieldError::new(
            "spec.versions",
            FieldErrorKind::Invalid("[]".into()),
            "must have exactly one version marked as storage version",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(
            "CustomResourceDefinition",
            "apiextensions.k8s.io",
            &name,
            &errors,
        ));
    }
    let fins = crd
        .pointer_mut("/metadata")
        .and_then(Value::as_object_mut)
        .map(|m| m.entry("finalizers").or_insert_with(|| json!([])));
    if let Some(Value::Array(f)) = fins
        && crd_is_new_and_missing(f)
    {
        f.push(json!(CLEANUP));
    }
    Ok(())
}

fn crd_is_new_and_missing(f: &[Value]) -> bool {
    !f.iter().any(|x| x.as_str() == Some(CLEANUP))
}

/// The resource types a CRD serves, one per served version.
pub(crate) fn served_types(crd: &Value) -> Vec<ResourceType> {
    let spec = crd.get("spec").cloned().unwrap_or_default();
    let s = |p: &str| {
        spec.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let list = |p: &str| -> Vec<String> {
        spec.pointer(p)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let group = s("/group");
    let plural = s("/names/plural");
    let kind = s("/names/kind");
    let singular = Some(s("/names/singular"))
        .filter(|x| !x.is_empty())
        .unwrap_or_else(|| kind.to_lowercase());
    let namespaced = s("/scope") != "Cluster";
    let storage: Arc<str> = Arc::from(format!("{group}/{plural}"));
    spec.get("versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v.get("served").and_then(Value::as_bool) != Some(false))
        .map(|v| ResourceType {
            group: group.clone(),
            version: v
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            kind: kind.clone(),
            plural: plural.clone(),
            singular: singular.clone(),
            short_names: list("/names/shortNames"),
            categories: list("/names/categories"),
            namespaced,
            status_subresource: v.pointer("/subresources/status").is_some(),
            generation: true,
            storage: Arc::clone(&storage),
            schema: v.pointer("/schema/openAPIV3Schema").cloned().map(Arc::new),
            selectable_fields: v
                .get("selectableFields")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|f| f.get("jsonPath").and_then(Value::as_str))
                .map(|p| p.trim_start_matches('.').to_string())
                .collect(),
            printer_columns: v
                .get("additionalPrinterColumns")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|c| PrinterColumn {
                    name: c
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    type_: c
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("string")
                        .to_string(),
                    format: c
                        .get("format")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    description: c
                        .get("description")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                    json_path: c
                        .get("jsonPath")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                })
                .collect(),
            built_in: false,
            view: false,
            verbs: CRUD,
            subresources: scale_of(v).map(|_| vec![SCALE]).unwrap_or_default(),
            scale: scale_of(v),
        })
        .collect()
}

impl State {
    /// A CRD was stored: serve its versions, mark it established, and clean up on deletion.
    pub(crate) fn crd_written(&mut self, crd: &Arc<Value>) {
        let types = served_types(crd);
        if let Some(first) = types.first() {
            let (group, plural) = (first.group.clone(), first.plural.clone());
            self.unregister_group_plural(&group, &plural);
        }
        let storage = types.first().map(|t| Arc::clone(&t.storage));
        for rt in types {
            self.register(rt);
        }
        let deleting = crd.pointer("/metadata/deletionTimestamp").is_some();
        if deleting {
            if let Some(storage) = storage {
                self.delete_all_in(&storage);
                self.finish_crd_cleanup(&storage);
            }
            return;
        }
        let established = crd
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Established" && c["status"] == "True")
            });
        let names = crd.pointer("/spec/names").cloned().unwrap_or_default();
        if established && crd.pointer("/status/acceptedNames") == Some(&names) {
            return;
        }
        let now = now_rfc3339();
        let mut new = (**crd).clone();
        let stored: Vec<Value> = crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|v| v["storage"] == true)
            .map(|v| v["name"].clone())
            .collect();
        new["status"] = json!({
            "acceptedNames": names,
            "storedVersions": stored,
            "conditions": [
                { "type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now },
                { "type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now },
            ],
        });
        if let Some(rt) = self.lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions") {
            let key: ObjKey = (
                String::new(),
                meta_str(crd, "name").unwrap_or_default().to_string(),
            );
            self.commit(&rt, key, Some(Arc::clone(crd)), new);
        }
    }

    /// A CRD is gone: stop serving it.
    pub(crate) fn crd_removed(&mut self, crd: &Arc<Value>) {
        let group = str_at(crd, "/spec/group");
        let plural = str_at(crd, "/spec/names/plural");
        self.unregister_group_plural(&group, &plural);
        self.objects.remove(format!("{group}/{plural}").as_str());
    }

    fn delete_all_in(&mut self, storage: &Arc<str>) {
        let Some(rt) = self.type_for_storage(storage) else {
            return;
        };
        let keys: Vec<ObjKey> = self
            .objects
            .get(storage)
            .map(|b| b.keys().cloned().collect())
            .unwrap_or_default();
        for key in keys {
            let ns = (!key.0.is_empty()).then_some(key.0.as_str());
            let _ = self.delete(&rt, ns, &key.1, &DeleteOptions::default());
        }
    }

    /// Drops the cleanup finalizer of a terminating CRD once its objects are gone.
    pub(crate) fn finish_crd_cleanup(&mut self, storage: &Arc<str>) {
        if self.objects.get(storage).is_some_and(|b| !b.is_empty()) {
            return;
        }
        let Some(crd_rt) = self.lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        else {
            return;
        };
        let name = storage
            .split_once('/')
            .map(|(g, p)| format!("{p}.{g}"))
            .unwrap_or_default();
        let Ok(crd) = self.get(&crd_rt, None, &name) else {
            return;
        };
        if crd.pointer("/metadata/deletionTimestamp").is_none()
            || !finalizers(&crd).iter().any(|f| f == CLEANUP)
        {
            return;
        }
        let mut new = (*crd).clone();
        if let Some(f) = new
            .pointer_mut("/metadata/finalizers")
            .and_then(Value::as_array_mut)
        {
            f.retain(|x| x.as_str() != Some(CLEANUP));
        }
        let _ = self.update(
            &crd_rt,
            None,
            &name,
            new,
            false,
            &super::store::WriteOptions::default(),
        );
    }
}

/// A version's `subresources.scale`, if declared.
fn scale_of(version: &Value) -> Option<ScalePaths> {
    let scale = version.pointer("/subresources/scale")?;
    let path = |key: &str| scale.get(key).and_then(Value::as_str).map(str::to_string);
    Some(ScalePaths {
        spec_replicas: path("specReplicasPath")?,
        status_replicas: path("statusReplicasPath")?,
        label_selector: path("labelSelectorPath"),
    })
}
