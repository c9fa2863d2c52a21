//! `OpenAPI` v3 schemas of the built-in kinds, generated on first use from k8s-openapi's
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

/// The component schema of one kind (or of `ObjectMeta`) and every schema it references.
#[derive(Debug)]
pub(crate) struct Catalog {
    pub(crate) defs: Map<String, Value>,
    /// The component name of the kind (`io.k8s.api.core.v1.ConfigMap`).
    pub(crate) root: String,
}

impl Catalog {
    /// The kind's own schema.
    pub(crate) fn root_schema(&self) -> &Value {
        static NULL: Value = Value::Null;
        self.defs.get(&self.root).unwrap_or(&NULL)
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

/// How to generate one kind's schemas: its group, kind, and the generator call.
type Entry = (
    &'static str,
    &'static str,
    fn(&mut SchemaGenerator) -> String,
);

fn gen_for<T: JsonSchema>(generator: &mut SchemaGenerator) -> String {
    let _ = generator.subschema_for::<T>();
    T::schema_name().into_owned()
}

const KINDS: [Entry; 13] = [
    ("", "Namespace", gen_for::<Namespace>),
    ("", "ConfigMap", gen_for::<ConfigMap>),
    ("", "Secret", gen_for::<Secret>),
    ("", "Service", gen_for::<Service>),
    ("", "Pod", gen_for::<Pod>),
    (
        "",
        "PersistentVolumeClaim",
        gen_for::<PersistentVolumeClaim>,
    ),
    ("", "ServiceAccount", gen_for::<ServiceAccount>),
    ("", "Event", gen_for::<Event>),
    ("events.k8s.io", "Event", gen_for::<EventsV1Event>),
    ("apps", "StatefulSet", gen_for::<StatefulSet>),
    ("apps", "Deployment", gen_for::<Deployment>),
    ("coordination.k8s.io", "Lease", gen_for::<Lease>),
    (
        "apiextensions.k8s.io",
        "CustomResourceDefinition",
        gen_for::<CustomResourceDefinition>,
    ),
];

/// The schemas of a built-in kind, generated on first use (each kind on its own, so a
/// test touching ConfigMaps does not pay for Pods).
pub(crate) fn of_kind(group: &str, kind: &str) -> Option<&'static Catalog> {
    static CELLS: [OnceLock<Catalog>; KINDS.len()] = [const { OnceLock::new() }; KINDS.len()];
    let i = KINDS
        .iter()
        .position(|(g, k, _)| *g == group && *k == kind)?;
    let (group, kind, generate) = KINDS[i];
    Some(CELLS[i].get_or_init(|| {
        let mut catalog = build(generate);
        if let Some(schema) = catalog
            .defs
            .get_mut(&catalog.root)
            .and_then(Value::as_object_mut)
        {
            schema.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{ "group": group, "version": "v1", "kind": kind }]),
            );
        }
        catalog
    }))
}

/// `ObjectMeta`'s schemas, for the `metadata` of custom resources.
pub(crate) fn object_meta() -> &'static Catalog {
    static CELL: OnceLock<Catalog> = OnceLock::new();
    CELL.get_or_init(|| build(gen_for::<ObjectMeta>))
}

fn build(generate: fn(&mut SchemaGenerator) -> String) -> Catalog {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let root = generate(&mut generator);
    Catalog {
        defs: generator.take_definitions(true),
        root,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_kind_has_a_described_schema_with_its_gvk() {
        let c = of_kind("", "ConfigMap").unwrap();
        assert_eq!(c.root, "io.k8s.api.core.v1.ConfigMap");
        let cm = c.root_schema();
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
        for (group, kind, _) in KINDS {
            let schema = of_kind(group, kind).unwrap().root_schema();
            assert_eq!(schema["x-kubernetes-group-version-kind"][0]["kind"], kind);
            assert!(schema["properties"]["metadata"].is_object(), "{kind}");
        }
        assert!(of_kind("apps", "ReplicaSet").is_none());
        assert!(object_meta().root_schema()["properties"]["name"].is_object());
    }
}
