//! Writing an object's shard labels: the one write both the assigner and a member make.

use kube::{
    Api, Client,
    api::{Patch, PatchParams},
    core::{ApiResource, DynamicObject, ObjectMeta},
};
use serde_json::{Value, json};

/// Merges `labels` (a `null` value removes a label) into the object `meta` names,
/// conditional on the `resourceVersion` it carries: a 409 means the object changed since.
pub(super) async fn relabel(
    client: &Client,
    resource: &ApiResource,
    meta: &ObjectMeta,
    labels: Value,
) -> Result<(), kube::Error> {
    let api: Api<DynamicObject> = match meta.namespace.as_deref() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    };
    let patch = json!({
        "metadata": { "resourceVersion": meta.resource_version, "labels": labels },
    });
    let name = meta.name.as_deref().unwrap_or_default();
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}
