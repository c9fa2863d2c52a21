//! The `OpenAPI` v3 documents `kubectl apply` (strict validation) and `kubectl explain` read.
//!
//! Built-in kinds are described by k8s-openapi's schemas (with descriptions); custom
//! resources by their CRD's `openAPIV3Schema`, with `metadata` referencing `ObjectMeta`.

use http::Response;
use serde_json::{Value, json};

use super::{
    body::Body,
    error::ApiError,
    handler::json_response,
    schema::builtin::{REF_PREFIX, object_meta, of_kind},
    store::State,
};

pub(crate) fn serve(state: &State, path: &str) -> Result<Response<Body>, ApiError> {
    let mut gvs: Vec<(String, String)> = state.types().map(|t| t.group_version()).collect();
    gvs.sort();
    gvs.dedup();
    let doc_path = |(g, v): &(String, String)| {
        if g.is_empty() {
            format!("api/{v}")
        } else {
            format!("apis/{g}/{v}")
        }
    };
    if path == "v3" || path == "v3/" {
        let paths: serde_json::Map<String, Value> = gvs
            .iter()
            .map(|gv| {
                let p = doc_path(gv);
                (
                    p.clone(),
                    json!({ "serverRelativeURL": format!("/openapi/v3/{p}?hash=0") }),
                )
            })
            .collect();
        return Ok(json_response(200, &json!({ "paths": paths })));
    }
    let Some(rest) = path.strip_prefix("v3/") else {
        return Err(ApiError::unknown_path(&format!("/openapi/{path}")));
    };
    let Some(gv) = gvs.iter().find(|gv| doc_path(gv) == rest) else {
        return Err(ApiError::unknown_path(&format!("/openapi/{path}")));
    };
    let mut schemas = serde_json::Map::new();
    let mut paths = serde_json::Map::new();
    for t in state.types().filter(|t| t.group_version() == *gv) {
        let gvk = json!([{ "group": t.group, "version": t.version, "kind": t.kind }]);
        let catalog = of_kind(&t.group, &t.version, &t.kind).filter(|_| t.built_in);
        let name = if let Some(c) = catalog {
            c.root.clone()
        } else {
            let name = schema_name(&t.group, &t.version, &t.kind);
            schemas.insert(name.clone(), custom_schema(t.schema.as_deref(), &gvk));
            name
        };
        let c = catalog.unwrap_or_else(object_meta);
        for (def, schema) in c.closure([c.root.as_str()]) {
            schemas.entry(def).or_insert(schema);
        }
        let base = if t.group.is_empty() {
            format!("/api/{}", t.version)
        } else {
            format!("/apis/{}/{}", t.group, t.version)
        };
        let item = if t.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}/{{name}}", t.plural)
        } else {
            format!("{base}/{}/{{name}}", t.plural)
        };
        let op = |verb: &str| {
            json!({
                "operationId": format!("{verb}{}", t.kind),
                "x-kubernetes-action": verb,
                "x-kubernetes-group-version-kind": gvk[0],
                "parameters": [{ "name": "fieldValidation", "in": "query", "schema": { "type": "string", "uniqueItems": true } }],
                "responses": { "200": { "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{name}") } } } } },
            })
        };
        paths.insert(item, json!({ "get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete") }));
    }
    Ok(json_response(
        200,
        &json!({
            "openapi": "3.0.0",
            "info": { "title": "Kubernetes", "version": "v1.37.0" },
            "paths": paths,
            "components": { "schemas": schemas },
        }),
    ))
}

/// A custom resource version's schema as the real server publishes it.
fn custom_schema(schema: Option<&Value>, gvk: &Value) -> Value {
    let mut schema = schema.cloned().unwrap_or_else(
        || json!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true }),
    );
    if let Some(o) = schema.as_object_mut() {
        let props = o.entry("properties").or_insert_with(|| json!({}));
        if let Some(props) = props.as_object_mut() {
            props.insert("apiVersion".into(), json!({ "type": "string", "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values." }));
            props.insert("kind".into(), json!({ "type": "string", "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase." }));
            props.insert(
                "metadata".into(),
                json!({
                    "description": "Standard object's metadata.",
                    "allOf": [{ "$ref": format!("{REF_PREFIX}{}", object_meta().root) }],
                }),
            );
        }
        o.insert("x-kubernetes-group-version-kind".into(), gvk.clone());
    }
    schema
}

fn schema_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = if group.is_empty() {
        vec!["io", "k8s", "api", "core"]
    } else {
        group.split('.').rev().collect()
    };
    format!("{}.{version}.{kind}", reversed.join("."))
}
