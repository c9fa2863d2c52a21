//! Turning a desired object into a request target: name, namespace, owner reference,
//! labels, and the ownership check of an existing object.

use std::any::TypeId;

use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kube::{
    Api, Resource,
    core::{ApiResource, DynamicObject},
};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{Children, error::EnsureError, owned::is_manager};

/// Label keys of the standard labels.
pub(crate) const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub(crate) const INSTANCE: &str = "app.kubernetes.io/instance";
pub(crate) const NAME: &str = "app.kubernetes.io/name";
pub(crate) const PART_OF: &str = "app.kubernetes.io/part-of";

/// Metadata fields the server owns; never sent, never compared.
const SERVER_FIELDS: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// Where a child lives and how to reach it.
pub(crate) struct Location {
    pub(crate) api: Api<DynamicObject>,
    pub(crate) resource: ApiResource,
    pub(crate) kind: String,
    pub(crate) namespace: Option<String>,
}

impl Location {
    /// `namespace/name`, or `name` for a cluster-scoped object.
    pub(crate) fn display(&self, name: &str) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}/{name}"),
            None => name.to_string(),
        }
    }
}

/// A desired child, ready to send.
pub(crate) struct Target {
    pub(crate) location: Location,
    pub(crate) name: String,
    /// The full object to send (`apiVersion`, `kind`, `metadata.name`, ...).
    pub(crate) body: Value,
    /// The same without identity, for comparing with the live object.
    pub(crate) compare: Value,
}

impl Target {
    pub(crate) fn display(&self) -> String {
        self.location.display(&self.name)
    }
}

#[derive(Clone, Copy)]
enum Scope {
    Namespaced,
    Cluster,
    Dynamic,
}

fn scope<K: Resource>() -> Scope
where
    K::Scope: 'static,
{
    let id = TypeId::of::<K::Scope>();
    if id == TypeId::of::<NamespaceResourceScope>() {
        Scope::Namespaced
    } else if id == TypeId::of::<ClusterResourceScope>() {
        Scope::Cluster
    } else {
        Scope::Dynamic
    }
}

impl Children {
    /// Resolves the namespace and API of a child of kind `K`.
    ///
    /// A namespaced kind needs a namespace (the explicit one, else the owner's) unless
    /// `all_namespaces` allows spanning every namespace (for listing).
    pub(crate) fn locate<K>(
        &self,
        dt: &K::DynamicType,
        explicit_namespace: Option<&str>,
        all_namespaces: bool,
    ) -> Result<Location, EnsureError>
    where
        K: Resource,
        K::Scope: 'static,
    {
        let ar = ApiResource::erase::<K>(dt);
        let explicit = explicit_namespace.filter(|ns| !ns.is_empty());
        let namespace = match scope::<K>() {
            Scope::Cluster => None,
            Scope::Namespaced => match explicit.or(self.owner.namespace.as_deref()) {
                Some(ns) => Some(ns.to_string()),
                None if all_namespaces => None,
                None => {
                    return Err(EnsureError::MissingField {
                        object: format!(
                            "desired {} (namespaced, and owner {} is cluster-scoped)",
                            ar.kind, self.owner.display
                        ),
                        field: "metadata.namespace",
                    });
                }
            },
            Scope::Dynamic => explicit
                .or(self.owner.namespace.as_deref())
                .map(str::to_string),
        };
        let api = match &namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        };
        Ok(Location {
            api,
            kind: ar.kind.clone(),
            resource: ar,
            namespace,
        })
    }

    /// Prepares `desired` for sending: identity, namespace, owner reference, labels.
    pub(crate) fn target<K>(&self, desired: &K, dt: &K::DynamicType) -> Result<Target, EnsureError>
    where
        K: Resource + Serialize,
        K::Scope: 'static,
    {
        let location = self.locate::<K>(dt, desired.meta().namespace.as_deref(), false)?;
        let name = desired
            .meta()
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| EnsureError::MissingField {
                object: format!("desired {}", location.kind),
                field: "metadata.name",
            })?;
        let mut body = serde_json::to_value(desired).map_err(|e| EnsureError::Api {
            action: "serializing",
            kind: location.kind.clone(),
            name: location.display(&name),
            source: Box::new(kube::Error::SerdeError(e)),
        })?;
        let Some(obj) = body.as_object_mut() else {
            return Err(EnsureError::MissingField {
                object: format!("desired {} (not a JSON object)", location.kind),
                field: "metadata",
            });
        };
        obj.insert("apiVersion".into(), json!(K::api_version(dt)));
        obj.insert("kind".into(), json!(K::kind(dt)));
        obj.remove("status");
        let meta = obj
            .entry("metadata")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .ok_or_else(|| EnsureError::MissingField {
                object: format!("desired {} (metadata is not an object)", location.kind),
                field: "metadata",
            })?;
        for field in SERVER_FIELDS {
            meta.remove(*field);
        }
        meta.insert("name".into(), json!(name));
        match &location.namespace {
            Some(ns) => meta.insert("namespace".into(), json!(ns)),
            None => meta.remove("namespace"),
        };
        if self.config.labels_on() {
            self.add_labels(meta);
        }
        if self.config.owner_reference_on() {
            self.add_owner_reference(meta);
        }
        let mut compare = body.clone();
        if let Some(c) = compare.as_object_mut() {
            c.remove("apiVersion");
            c.remove("kind");
            if let Some(m) = c.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("name");
                m.remove("namespace");
            }
        }
        Ok(Target {
            location,
            name,
            body,
            compare,
        })
    }

    fn add_labels(&self, meta: &mut Map<String, Value>) {
        let Some(labels) = meta
            .entry("labels")
            .or_insert_with(|| json!({}))
            .as_object_mut()
        else {
            return;
        };
        for (key, value) in self.standard_labels() {
            labels.entry(key).or_insert_with(|| json!(value));
        }
    }

    fn add_owner_reference(&self, meta: &mut Map<String, Value>) {
        let mut reference = self.owner.reference.clone();
        if self.config.block_owner_deletion_on() {
            reference.block_owner_deletion = Some(true);
        }
        let Ok(ours) = serde_json::to_value(&reference) else {
            return;
        };
        let refs = meta.entry("ownerReferences").or_insert_with(|| json!([]));
        if let Some(list) = refs.as_array_mut() {
            list.retain(|r| r.get("uid").and_then(Value::as_str) != Some(&reference.uid));
            list.push(ours);
        }
    }

    /// Errors unless the live object is ours (see [`EnsureError::NotOwned`]).
    pub(crate) fn check_owner(
        &self,
        live: &Value,
        kind: &str,
        display: &str,
        allow_adopt: bool,
    ) -> Result<(), EnsureError> {
        let controller = live
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true));
        let ours = match controller {
            Some(r) => {
                if r.get("uid").and_then(Value::as_str) == Some(self.owner.reference.uid.as_str()) {
                    return Ok(());
                }
                Some(format!(
                    "{}/{}",
                    r.get("kind").and_then(Value::as_str).unwrap_or("?"),
                    r.get("name").and_then(Value::as_str).unwrap_or("?")
                ))
            }
            None if is_manager(live, self.config.get_field_manager()) => return Ok(()),
            None if allow_adopt && self.config.adopt_on() => return Ok(()),
            None => None,
        };
        Err(EnsureError::NotOwned {
            kind: kind.to_string(),
            name: display.to_string(),
            owner: ours,
        })
    }
}
