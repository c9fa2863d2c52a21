//! `OpenAPI` v3 schemas of the built-in kinds, generated once from k8s-openapi's
//! `JsonSchema` implementations (descriptions included), with the
//! `x-kubernetes-group-version-kind` extension on each served kind (all of them are `v1`).

use std::sync::OnceLock;

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, StatefulSet},
        coordination::v1::Lease,
        core::v1::{
            ConfigMap, Event, Namespace, PersistentVolumeClaim, Pod, Secret, Service,
            ServiceAccount,
        },
        events::v1::Event as EventsV1Event,
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use schemars::{JsonSchema, SchemaGenerator, generate::SchemaSettings};
use serde_json::{Map, Value, json};

/// Where `$ref`s point in the generated documents.
pub(crate) const REF_PREFIX: &str = "#/components/schemas/";

/// The component schemas of every built-in kind and what they reference.
#[derive(Debug)]
pub(crate) struct Catalog {
    pub(crate) defs: Map<String, Value>,
    kinds: Vec<(&'static str, &'static str, String)>,
}

impl Catalog {
    /// The component name of a built-in kind (`io.k8s.api.core.v1.ConfigMap`).
    pub(crate) fn root(&self, group: &str, kind: &str) -> Option<&str> {
        self.kinds
            .iter()
            .find(|(g, k, _)| *g == group && *k == kind)
            .map(|(_, _, name)| name.as_str())
    }

    /// The schema a `$ref` (possibly wrapped in a one-element `allOf`) points at, else `schema`.
    pub(crate) fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        let target = schema.get("$ref").or_else(|| {
            schema
                .get("allOf")
                .and_then(Value::as_array)
                .filter(|all| all.len() == 1)
                .and_then(|all| all[0].get("$ref"))
        });
        target
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix(REF_PREFIX))
            .and_then(|name| self.defs.get(name))
            .unwrap_or(schema)
    }

    /// The named schemas and every schema they reference, transitively.
    pub(crate) fn closure<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Map<String, Value> {
        let mut out = Map::new();
        let mut todo: Vec<String> = names.into_iter().map(str::to_string).collect();
        while let Some(name) = todo.pop() {
            if out.contains_key(&name) {
                continue;
            }
            let Some(schema) = self.defs.get(&name) else {
                continue;
            };
            refs(schema, &mut todo);
            out.insert(name, schema.clone());
        }
        out
    }

    /// The component name of `ObjectMeta`.
    pub(crate) fn object_meta_name() -> String {
        ObjectMeta::schema_name().into_owned()
    }

    /// `ObjectMeta`'s schema, for the `metadata` of custom resources.
    pub(crate) fn object_meta(&self) -> &Value {
        static NULL: Value = Value::Null;
        self.defs.get(&*ObjectMeta::schema_name()).unwrap_or(&NULL)
    }
}

fn refs(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(name) = map
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix(REF_PREFIX))
            {
                out.push(name.to_string());
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

fn add<T: JsonSchema>(
    generator: &mut SchemaGenerator,
    kinds: &mut Vec<(&'static str, &'static str, String)>,
    group: &'static str,
    kind: &'static str,
) {
    let _ = generator.subschema_for::<T>();
    kinds.push((group, kind, T::schema_name().into_owned()));
}

/// The catalog, built on first use.
pub(crate) fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(build)
}

fn build() -> Catalog {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let mut kinds = Vec::new();
    add::<Namespace>(&mut generator, &mut kinds, "", "Namespace");
    add::<ConfigMap>(&mut generator, &mut kinds, "", "ConfigMap");
    add::<Secret>(&mut generator, &mut kinds, "", "Secret");
    add::<Service>(&mut generator, &mut kinds, "", "Service");
    add::<Pod>(&mut generator, &mut kinds, "", "Pod");
    add::<PersistentVolumeClaim>(&mut generator, &mut kinds, "", "PersistentVolumeClaim");
    add::<ServiceAccount>(&mut generator, &mut kinds, "", "ServiceAccount");
    add::<Event>(&mut generator, &mut kinds, "", "Event");
    add::<EventsV1Event>(&mut generator, &mut kinds, "events.k8s.io", "Event");
    add::<StatefulSet>(&mut generator, &mut kinds, "apps", "StatefulSet");
    add::<Deployment>(&mut generator, &mut kinds, "apps", "Deployment");
    add::<Lease>(&mut generator, &mut kinds, "coordination.k8s.io", "Lease");
    add::<CustomResourceDefinition>(
        &mut generator,
        &mut kinds,
        "apiextensions.k8s.io",
        "CustomResourceDefinition",
    );
    let _ = generator.subschema_for::<ObjectMeta>();
    let mut defs = generator.take_definitions(true);
    for (group, kind, name) in &kinds {
        if let Some(schema) = defs.get_mut(name).and_then(Value::as_object_mut) {
            schema.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{ "group": group, "version": "v1", "kind": kind }]),
            );
        }
    }
    Catalog { defs, kinds }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_kind_has_a_described_schema_with_its_gvk() {
        let c = catalog();
        let name = c.root("", "ConfigMap").unwrap();
        assert_eq!(name, "io.k8s.api.core.v1.ConfigMap");
        let cm = &c.defs[name];
        assert!(
            cm["description"]
                .as_str()
                .unwrap()
                .contains("configuration data")
        );
        assert_eq!(
            cm["x-kubernetes-group-version-kind"][0]["kind"],
            "ConfigMap"
        );
        let meta = c.resolve(&cm["properties"]["metadata"]);
        assert!(meta["properties"]["labels"].is_object(), "{meta}");
        assert!(c.root("apps", "Deployment").is_some());
        assert!(c.object_meta()["properties"]["name"].is_object());
    }
}
