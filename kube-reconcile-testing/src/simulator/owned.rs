//! The Pods of simulated workloads, as the controller manager would create them: a
//! `StatefulSet`'s `name-0` … `name-(n-1)`, a Deployment's `ReplicaSet` for its current
//! template and that `ReplicaSet`'s Pods. Pods come and go with the replica count; a new
//! template replaces them. Each is owned by its workload (a controller reference), so
//! garbage collection removes them with it where a collector runs.

use std::collections::BTreeMap;

use k8s_openapi::api::{apps::v1::ReplicaSet, core::v1::Pod};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

/// The label naming a Pod's revision of its workload's template.
const REVISION: &str = "controller-revision-hash";
/// The label a Deployment's `ReplicaSet` and Pods carry.
const TEMPLATE_HASH: &str = "pod-template-hash";
/// The field manager of what the simulator writes.
const MANAGER: &str = "workload-simulator";

/// What the simulator needs to know of a workload to run its Pods.
#[derive(Clone, Debug)]
pub(super) struct Owner {
    pub(super) kind: Kind,
    pub(super) namespace: String,
    pub(super) name: String,
    pub(super) uid: String,
    pub(super) replicas: i32,
    /// `spec.template` (a `PodTemplateSpec`).
    pub(super) template: Value,
    /// `spec.selector.matchLabels`.
    pub(super) selector: Value,
    /// A `StatefulSet`'s `spec.serviceName`.
    pub(super) service_name: Option<String>,
    /// The names of a `StatefulSet`'s `volumeClaimTemplates`: each Pod mounts the claim
    /// `<template>-<pod>`.
    pub(super) claims: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    StatefulSet,
    Deployment,
}

impl Owner {
    /// The revision of the current template: `name-<hash>`.
    pub(super) fn revision(&self) -> String {
        format!(
            "{}-{}",
            self.name,
            safe_hash(&self.template.to_string(), 10)
        )
    }

    /// The workload's `matchLabels` as a label selector: only what it selects is listed,
    /// so a cluster of many workloads stays cheap.
    fn label_selector(&self) -> String {
        self.selector
            .as_object()
            .map(|labels| {
                labels
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    }

    fn reference(&self) -> Value {
        let kind = match self.kind {
            Kind::StatefulSet => "StatefulSet",
            Kind::Deployment => "Deployment",
        };
        owner_reference("apps/v1", kind, &self.name, &self.uid)
    }
}

fn owner_reference(api_version: &str, kind: &str, name: &str, uid: &str) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// `len` characters of an FNV-1a hash of `text` in the alphabet Kubernetes uses for
/// generated names (no vowels, no look-alikes).
fn safe_hash(text: &str, len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let base = ALPHABET.len() as u64;
    (0..len)
        .map(|_| {
            let c = ALPHABET[usize::try_from(hash % base).unwrap_or(0)];
            hash /= base;
            char::from(c)
        })
        .collect()
}

/// A Pod named `name` from `template`, owned by `owner`, with `labels` added.
fn pod(
    template: &Value,
    namespace: &str,
    name: &str,
    owner: &Value,
    labels: &[(&str, String)],
) -> Value {
    let mut metadata = template
        .get("metadata")
        .cloned()
        .unwrap_or_else(|| json!({}));
    metadata["name"] = json!(name);
    metadata["namespace"] = json!(namespace);
    metadata["ownerReferences"] = json!([owner.clone()]);
    if !metadata["labels"].is_object() {
        metadata["labels"] = json!({});
    }
    for (key, value) in labels {
        metadata["labels"][*key] = json!(value);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": template.get("spec").cloned().unwrap_or_else(|| json!({})),
    })
}

/// Creates and deletes Pods so the workload has exactly the Pods it should.
pub(super) async fn sync(client: &Client, owner: &Owner) -> Result<(), kube::Error> {
    let revision = owner.revision();
    let (parent, template) = match owner.kind {
        Kind::StatefulSet => (owner.reference(), owner.template.clone()),
        Kind::Deployment => replica_set(client, owner, &revision).await?,
    };
    let parent_uid = parent["uid"].as_str().unwrap_or_default().to_string();
    let mut want = BTreeMap::new();
    for i in 0..owner.replicas.max(0) {
        let (name, labels) = match owner.kind {
            Kind::StatefulSet => {
                let name = format!("{}-{i}", owner.name);
                let labels = vec![
                    ("statefulset.kubernetes.io/pod-name", name.clone()),
                    ("apps.kubernetes.io/pod-index", i.to_string()),
                    (REVISION, revision.clone()),
                ];
                (name, labels)
            }
            Kind::Deployment => {
                let hash = revision.rsplit('-').next().unwrap_or_default().to_string();
                let name = format!("{revision}-{}", safe_hash(&format!("{revision}/{i}"), 5));
                (name, vec![(TEMPLATE_HASH, hash)])
            }
        };
        let mut body = pod(&template, &owner.namespace, &name, &parent, &labels);
        if let (Kind::StatefulSet, Some(service)) = (owner.kind, &owner.service_name) {
            body["spec"]["hostname"] = json!(name);
            body["spec"]["subdomain"] = json!(service);
        }
        if !owner.claims.is_empty() {
            if !body["spec"]["volumes"].is_array() {
                body["spec"]["volumes"] = json!([]);
            }
            if let Some(volumes) = body["spec"]["volumes"].as_array_mut() {
                for claim in &owner.claims {
                    volumes.push(json!({
                        "name": claim,
                        "persistentVolumeClaim": { "claimName": format!("{claim}-{name}") },
                    }));
                }
            }
        }
        want.insert(name, body);
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), &owner.namespace);
    let owned_by = |p: &Pod, uid: &str| {
        p.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.uid == uid)
    };
    let selected = ListParams::default().labels(&owner.label_selector());
    for existing in pods.list(&selected).await?.items {
        let Some(name) = existing.metadata.name.clone() else {
            continue;
        };
        let current = owner.kind == Kind::Deployment
            || existing
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(REVISION))
                == Some(&revision);
        let mine = owned_by(&existing, &parent_uid) || owned_by(&existing, &owner.uid);
        if !mine {
            continue;
        }
        if want.contains_key(&name) && current && owned_by(&existing, &parent_uid) {
            want.remove(&name);
        } else if existing.metadata.deletion_timestamp.is_none() {
            ignore_missing(
                pods.delete(&name, &DeleteParams::default())
                    .await
                    .map(|_| ()),
            )?;
        }
    }
    for body in want.into_values() {
        let pod: Pod = serde_json::from_value(body).map_err(kube::Error::SerdeError)?;
        match pods.create(&PostParams::default(), &pod).await {
            Ok(_) => {}
            // Created by an earlier pass, or still going after a template change.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn ignore_missing(result: Result<(), kube::Error>) -> Result<(), kube::Error> {
    match result {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        other => other,
    }
}

/// A Deployment's `ReplicaSet` for its current template (applied), with every older one
/// scaled to zero; returns its owner reference and Pod template.
async fn replica_set(
    client: &Client,
    owner: &Owner,
    revision: &str,
) -> Result<(Value, Value), kube::Error> {
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &owner.namespace);
    let hash = revision.rsplit('-').next().unwrap_or_default();
    let mut template = owner.template.clone();
    template["metadata"]["labels"][TEMPLATE_HASH] = json!(hash);
    let mut selector = owner.selector.clone();
    if !selector.is_object() {
        selector = json!({});
    }
    selector[TEMPLATE_HASH] = json!(hash);
    let body = json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": revision,
            "namespace": owner.namespace,
            "labels": template["metadata"]["labels"],
            "ownerReferences": [owner.reference()],
        },
        "spec": {
            "replicas": owner.replicas,
            "selector": { "matchLabels": selector },
            "template": template,
        },
    });
    let applied = sets
        .patch(
            revision,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?;
    let selected = ListParams::default().labels(&owner.label_selector());
    for old in sets.list(&selected).await?.items {
        let theirs = old
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.uid == owner.uid);
        if theirs
            && old.metadata.name.as_deref() != Some(revision)
            && serde_json::to_value(&old)
                .ok()
                .and_then(|v| v.pointer("/spec/replicas")?.as_i64())
                != Some(0)
        {
            let name = old.metadata.name.clone().unwrap_or_default();
            let zero = json!({ "spec": { "replicas": 0 } });
            ignore_missing(
                sets.patch(&name, &PatchParams::default(), &Patch::Merge(&zero))
                    .await
                    .map(|_| ()),
            )?;
        }
    }
    let uid = applied.metadata.uid.clone().unwrap_or_default();
    Ok((
        owner_reference("apps/v1", "ReplicaSet", revision, &uid),
        template,
    ))
}

/// Marks a Deployment's current `ReplicaSet` ready with `ready` of `replicas`.
pub(super) async fn replica_set_ready(
    client: &Client,
    owner: &Owner,
    replicas: i32,
    ready: i32,
) -> Result<(), kube::Error> {
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &owner.namespace);
    let status = json!({ "status": {
        "replicas": replicas,
        "fullyLabeledReplicas": replicas,
        "readyReplicas": ready,
        "availableReplicas": ready,
    } });
    ignore_missing(
        sets.patch_status(
            &owner.revision(),
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
        .map(|_| ()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_are_stable_and_use_the_safe_alphabet() {
        let a = safe_hash("web/0", 5);
        assert_eq!(a, safe_hash("web/0", 5));
        assert_ne!(a, safe_hash("web/1", 5));
        assert!(
            a.bytes()
                .all(|c| b"bcdfghjklmnpqrstvwxz2456789".contains(&c))
        );
    }
}
