//! Subresources that are not the object itself: `scale`, `serviceaccounts/token`,
//! `pods/eviction`, `pods/binding` (and the `bindings` resource), and the kubelet's
//! (`log`, `exec`, `attach`, `portforward`, `proxy`), which no kubelet answers here.

use http::Response;
use serde_json::{Value, json};

use super::super::{
    body::Body,
    error::ApiError,
    lifecycle::{DeleteOptions, Deleted},
    meta::now_rfc3339,
    patch::{self, PatchType},
    request::Verb,
    resources::{ResourceType, ScalePaths},
    store::State,
    tokens,
    view::present,
};
use super::{Writer, json_response, replace};

/// A request to a subresource this module answers.
pub(super) struct Call<'a> {
    pub(super) rt: &'a ResourceType,
    pub(super) ns: Option<&'a str>,
    pub(super) name: &'a str,
    pub(super) subresource: &'a str,
    pub(super) verb: Verb,
    /// The parsed body of a write.
    pub(super) body: Option<Value>,
    /// The patch type of a PATCH.
    pub(super) patch: Option<PatchType>,
}

/// Whether `subresource` of `rt` is answered here rather than written through to the object.
pub(super) fn answered_here(subresource: &str) -> bool {
    !matches!(
        subresource,
        "status" | "finalize" | "approval" | "ephemeralcontainers" | "resize"
    )
}

pub(super) fn serve(
    state: &mut State,
    call: &Call<'_>,
    writer: &Writer,
) -> Result<Response<Body>, ApiError> {
    match call.subresource {
        "scale" => scale(state, call, writer),
        "token" => token(state, call),
        "eviction" => evict(state, call),
        "binding" => {
            let named = call
                .body
                .as_ref()
                .and_then(|b| b.pointer("/metadata/name"))
                .and_then(Value::as_str);
            if named != Some(call.name) {
                return Err(ApiError::bad_request(
                    "name in URL does not match name in Binding object",
                ));
            }
            bind(state, call.rt, call.ns, call.name, call.body.as_ref())
        }
        "log" => {
            let obj = state.get(call.rt, call.ns, call.name)?;
            if obj.pointer("/spec/nodeName").is_none_or(Value::is_null) {
                // Nothing ran, so nothing was logged: an empty log, as kube-apiserver says.
                return Ok(text_response(""));
            }
            Err(no_kubelet(call.rt, &obj, call.subresource))
        }
        _ => {
            let obj = state.get(call.rt, call.ns, call.name)?;
            Err(no_kubelet(call.rt, &obj, call.subresource))
        }
    }
}

/// What a bare kube-apiserver answers when a request needs a kubelet.
fn no_kubelet(rt: &ResourceType, obj: &Value, subresource: &str) -> ApiError {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    match rt.plural.as_str() {
        "pods" if obj.pointer("/spec/nodeName").is_none_or(Value::is_null) => {
            ApiError::bad_request(format!("pod {name} does not have a host assigned"))
        }
        "services" => ApiError::new(
            503,
            "ServiceUnavailable",
            format!("no endpoints available for service \"{name}\""),
        ),
        _ => ApiError::new(
            503,
            "ServiceUnavailable",
            format!(
                "no kubelet serves {}/{subresource} of \"{name}\" (the embedded server runs none)",
                rt.plural
            ),
        ),
    }
}

/// The `autoscaling/v1` `Scale` of an object.
fn scale_view(paths: &ScalePaths, obj: &Value) -> Value {
    let at = |path: &str| pointer(path).and_then(|p| obj.pointer(&p).cloned());
    let spec = at(&paths.spec_replicas)
        .and_then(|v| v.as_i64())
        .unwrap_or(0);
    let status = at(&paths.status_replicas)
        .and_then(|v| v.as_i64())
        .unwrap_or(0);
    let meta = &obj["metadata"];
    let mut metadata = json!({});
    for key in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = meta.get(key) {
            metadata[key] = v.clone();
        }
    }
    let mut scale = json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {},
        "status": { "replicas": status },
    });
    if spec != 0 {
        scale["spec"]["replicas"] = json!(spec);
    }
    if let Some(selector) = paths
        .label_selector
        .as_deref()
        .and_then(at)
        .and_then(|s| selector_string(&s))
    {
        scale["status"]["selector"] = json!(selector);
    }
    scale
}

/// `.spec.replicas` as a JSON pointer (`/spec/replicas`).
fn pointer(path: &str) -> Option<String> {
    let path = path.strip_prefix('.')?;
    Some(format!("/{}", path.replace('.', "/")))
}

/// A label selector as a string: a string as is, a `LabelSelector` or a plain map
/// (a `ReplicationController`'s) rendered as `kubectl` would type it.
fn selector_string(selector: &Value) -> Option<String> {
    if let Some(s) = selector.as_str() {
        return Some(s.to_string());
    }
    let object = selector.as_object()?;
    let labels = if object.contains_key("matchLabels") || object.contains_key("matchExpressions") {
        object.get("matchLabels").and_then(Value::as_object)
    } else {
        Some(object)
    };
    let mut parts: Vec<String> = labels
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    for e in object
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        parts.push(match e["operator"].as_str().unwrap_or_default() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            _ => format!("!{key}"),
        });
    }
    Some(parts.join(","))
}

fn scale(state: &mut State, call: &Call<'_>, writer: &Writer) -> Result<Response<Body>, ApiError> {
    let rt = call.rt;
    let paths = rt
        .scale
        .as_ref()
        .ok_or_else(|| ApiError::unknown_path(&format!("{}/scale", rt.plural)))?;
    let current = state.get(rt, call.ns, call.name)?;
    let view = scale_view(paths, &present(rt, &current));
    let wanted = match (call.verb, call.patch) {
        (Verb::Get, _) => return Ok(json_response(200, &view)),
        (Verb::Update, _) => {
            let body = call.body.clone().unwrap_or(Value::Null);
            if let Some(rv) = body
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                && Some(rv) != current["metadata"]["resourceVersion"].as_str()
            {
                return Err(ApiError::stale(&rt.group, &rt.plural, call.name));
            }
            body
        }
        (Verb::Patch, Some(kind)) => {
            let mut doc = view;
            let body = call.body.clone().unwrap_or(Value::Null);
            match kind {
                PatchType::Json => patch::json_patch(&mut doc, &body)?,
                _ => patch::merge_patch(&mut doc, &body)?,
            }
            doc
        }
        _ => {
            return Err(ApiError::method_not_allowed(
                "scale is read, updated and patched",
            ));
        }
    };
    let replicas = wanted
        .pointer("/spec/replicas")
        .map_or(Some(0), Value::as_i64)
        .ok_or_else(|| ApiError::bad_request("spec.replicas of a Scale is an integer"))?;
    if replicas < 0 {
        return Err(ApiError::new(
            422,
            "Invalid",
            format!(
                "Scale.autoscaling \"{}\" is invalid: spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0",
                call.name
            ),
        ));
    }
    let mut obj = (*current).clone();
    set_path(&mut obj, &paths.spec_replicas, json!(replicas));
    let response = replace(state, rt, call.ns, call.name, &current, obj, writer)?;
    drop(response);
    let stored = state.get(rt, call.ns, call.name)?;
    Ok(json_response(
        200,
        &scale_view(paths, &present(rt, &stored)),
    ))
}

/// Writes `value` at a dotted `path`, creating the objects on the way.
fn set_path(obj: &mut Value, path: &str, value: Value) {
    let mut at = obj;
    let keys: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    for (i, key) in keys.iter().enumerate() {
        if !at.is_object() {
            *at = json!({});
        }
        let Some(map) = at.as_object_mut() else {
            return;
        };
        if i + 1 == keys.len() {
            map.insert((*key).to_string(), value);
            return;
        }
        at = map.entry((*key).to_string()).or_insert_with(|| json!({}));
    }
}

/// `serviceaccounts/token`: a signed, expiring token bound to the service account.
fn token(state: &mut State, call: &Call<'_>) -> Result<Response<Body>, ApiError> {
    let account = state.get(call.rt, call.ns, call.name)?;
    let body = call.body.clone().unwrap_or(Value::Null);
    let seconds = body
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(3600);
    if seconds < 600 {
        return Err(ApiError::new(
            422,
            "Invalid",
            format!(
                "TokenRequest.authentication.k8s.io \"{}\" is invalid: spec.expirationSeconds: Invalid value: {seconds}: may not specify a duration less than 10 minutes",
                call.name
            ),
        ));
    }
    let audiences: Vec<String> = match body.pointer("/spec/audiences").and_then(Value::as_array) {
        Some(list) if !list.is_empty() => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => vec![tokens::DEFAULT_AUDIENCE.to_string()],
    };
    let ns = call.ns.unwrap_or_default();
    let uid = account["metadata"]["uid"].as_str().unwrap_or_default();
    let issued = state
        .tokens
        .issue(ns, call.name, uid, &audiences, seconds)
        .map_err(|e| ApiError::internal(format!("no randomness for a token: {e}")))?;
    let mut spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    spec["audiences"] = json!(audiences);
    spec["expirationSeconds"] = json!(seconds);
    Ok(json_response(
        201,
        &json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": { "name": call.name, "namespace": ns, "creationTimestamp": now_rfc3339() },
            "spec": spec,
            "status": { "token": issued.token, "expirationTimestamp": issued.expires },
        }),
    ))
}

/// `pods/eviction`: deletes the pod (no disruption budget is consulted).
fn evict(state: &mut State, call: &Call<'_>) -> Result<Response<Body>, ApiError> {
    let body = call.body.clone().unwrap_or_else(|| json!({}));
    let options =
        DeleteOptions::from_body(body.get("deleteOptions").unwrap_or(&json!({})), false, None);
    match state.delete(call.rt, call.ns, call.name, &options)? {
        Deleted::Pending(_) | Deleted::Gone(_) => Ok(json_response(201, &success())),
    }
}

/// `pods/binding` and the `bindings` resource: assigns a pod to a node, once.
pub(super) fn bind(
    state: &mut State,
    pods: &ResourceType,
    ns: Option<&str>,
    name: &str,
    body: Option<&Value>,
) -> Result<Response<Body>, ApiError> {
    let node = body
        .and_then(|b| b.pointer("/target/name"))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                422,
                "Invalid",
                format!("Binding \"{name}\" is invalid: target.name: Required value"),
            )
        })?;
    let current = state.get(pods, ns, name)?;
    if current
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty())
    {
        return Err(ApiError::conflict(
            &pods.group,
            &pods.plural,
            name,
            &format!(
                "pod {name} is already assigned to node \"{}\"",
                current["spec"]["nodeName"].as_str().unwrap_or_default()
            ),
        ));
    }
    let mut obj = (*current).clone();
    set_path(&mut obj, ".spec.nodeName", json!(node));
    state.update(
        pods,
        ns,
        name,
        obj,
        false,
        &super::super::store::WriteOptions::default(),
    )?;
    Ok(json_response(201, &success()))
}

fn text_response(text: &str) -> Response<Body> {
    Response::builder()
        .status(200)
        .header(http::header::CONTENT_TYPE, "text/plain")
        .body(Body::full(text.to_string()))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn success() -> Value {
    json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_render_as_kubectl_types_them() {
        let selector = json!({
            "matchLabels": { "app": "db" },
            "matchExpressions": [{ "key": "tier", "operator": "In", "values": ["a", "b"] }],
        });
        assert_eq!(selector_string(&selector).unwrap(), "app=db,tier in (a,b)");
        assert_eq!(
            selector_string(&json!({ "app": "web" })).unwrap(),
            "app=web"
        );
        assert_eq!(selector_string(&json!("x=y")).unwrap(), "x=y");
    }

    #[test]
    fn replicas_are_written_at_a_dotted_path() {
        let mut obj = json!({ "spec": {} });
        set_path(&mut obj, ".spec.size.replicas", json!(3));
        assert_eq!(obj, json!({ "spec": { "size": { "replicas": 3 } } }));
    }
}
