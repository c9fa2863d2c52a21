//! Kinds that are answered, never stored: the authentication and authorization reviews,
//! `bindings`, and the computed `componentstatuses`.
//!
//! The embedded server authenticates one user and authorizes every request, so access
//! reviews allow everything; a bare kube-apiserver asks RBAC.

use http::Response;
use serde_json::{Value, json};

use super::super::{body::Body, error::ApiError, resources::ResourceType, store::State};
use super::{json_response, subresources};

/// Who the embedded server's clients are: the envtest harness's admin, as on the real tier.
fn admin() -> Value {
    json!({ "username": "admin", "groups": ["system:masters", "system:authenticated"] })
}

/// Answers a create of a kind that is not stored.
pub(super) fn answer(
    state: &mut State,
    rt: &ResourceType,
    ns: Option<&str>,
    body: Value,
) -> Result<Response<Body>, ApiError> {
    let mut reply = body;
    if !reply.is_object() {
        return Err(ApiError::bad_request(format!(
            "a {} is a JSON object",
            rt.kind
        )));
    }
    reply["apiVersion"] = json!(rt.api_version());
    reply["kind"] = json!(rt.kind);
    if let Some(ns) = ns {
        let theirs = reply
            .pointer("/spec/resourceAttributes/namespace")
            .and_then(Value::as_str);
        if rt.plural == "localsubjectaccessreviews" && theirs.is_some_and(|t| t != ns) {
            return Err(ApiError::bad_request(format!(
                "spec.resourceAttributes.namespace must match namespace: {ns}"
            )));
        }
    }
    let status = match rt.plural.as_str() {
        "bindings" => {
            let pods = state
                .lookup("", "v1", "pods")
                .ok_or_else(|| ApiError::internal("pods are built in"))?;
            let name = reply["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            return subresources::bind(state, &pods, ns, &name, Some(&reply));
        }
        "selfsubjectreviews" => json!({ "userInfo": admin() }),
        "tokenreviews" => {
            let token = reply
                .pointer("/spec/token")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let audiences: Vec<String> = reply
                .pointer("/spec/audiences")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            match state.tokens.review(token, &audiences) {
                Some(ok) => {
                    json!({ "authenticated": true, "user": ok.user, "audiences": ok.audiences })
                }
                None => json!({ "user": {}, "error": "invalid bearer token" }),
            }
        }
        "selfsubjectrulesreviews" => json!({
            "resourceRules": [{ "verbs": ["*"], "apiGroups": ["*"], "resources": ["*"] }],
            "nonResourceRules": [{ "verbs": ["*"], "nonResourceURLs": ["*"] }],
            "incomplete": false,
        }),
        _ => json!({ "allowed": true, "reason": "the embedded server authorizes every request" }),
    };
    reply["status"] = status;
    if reply.get("metadata").is_none_or(|m| !m.is_object()) {
        reply["metadata"] = json!({});
    }
    reply["metadata"]["creationTimestamp"] = Value::Null;
    Ok(json_response(201, &reply))
}

/// `componentstatuses`: etcd is healthy; no scheduler or controller manager runs.
pub(super) fn component_statuses(name: Option<&str>) -> Result<Response<Body>, ApiError> {
    let component = |name: &str, healthy: bool, message: &str| {
        json!({
            "kind": "ComponentStatus",
            "apiVersion": "v1",
            "metadata": { "name": name },
            "conditions": [{
                "type": "Healthy",
                "status": if healthy { "True" } else { "False" },
                "message": message,
            }],
        })
    };
    let all = [
        component(
            "controller-manager",
            false,
            "no controller manager runs beside the embedded server",
        ),
        component("etcd-0", true, "ok"),
        component(
            "scheduler",
            false,
            "no scheduler runs beside the embedded server",
        ),
    ];
    match name {
        Some(name) => all
            .into_iter()
            .find(|c| c["metadata"]["name"] == name)
            .map(|c| json_response(200, &c))
            .ok_or_else(|| ApiError::not_found("", "componentstatuses", name)),
        None => Ok(json_response(
            200,
            &json!({ "kind": "ComponentStatusList", "apiVersion": "v1", "metadata": {}, "items": all }),
        )),
    }
}
