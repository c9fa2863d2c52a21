//! What a request asks for beyond its route: delete options, selectors, the field
//! manager, an exact resource version, and list continue tokens.

use bytes::Bytes;
use http::{HeaderMap, header};
use serde_json::{Value, json};

use super::super::{
    error::ApiError,
    lifecycle::DeleteOptions,
    request::Query,
    resources::ResourceType,
    selectors::{FieldSelector, LabelSelector, Selectors},
};
use super::replies::parse_json;

pub(super) fn delete_options(
    body: &Bytes,
    dry_run: bool,
    query: &Query,
) -> Result<DeleteOptions, ApiError> {
    let options = if body.is_empty() {
        json!({})
    } else {
        parse_json(body)?
    };
    Ok(DeleteOptions::from_body(
        &options,
        dry_run,
        query.get("propagationPolicy"),
    ))
}

pub(super) fn selectors(rt: &ResourceType, query: &Query) -> Result<Selectors, ApiError> {
    let fields = FieldSelector::parse(query.get("fieldSelector").unwrap_or_default())?;
    fields.check_supported(rt)?;
    Ok(Selectors {
        labels: LabelSelector::parse(query.get("labelSelector").unwrap_or_default())?,
        fields,
    })
}

/// The field manager of a non-apply write: the query parameter, else the user agent's product.
pub(super) fn manager(query: &Query, headers: &HeaderMap) -> String {
    if let Some(m) = query.get("fieldManager") {
        return m.to_string();
    }
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_string()
}

/// The version `resourceVersionMatch=Exact` asks for, else `current`. Other matches
/// (`NotOlderThan`, or none) may be served from the newest state, as the watch cache does.
pub(super) fn exact_version(query: &Query, current: u64) -> Result<u64, ApiError> {
    if query.get("resourceVersionMatch") != Some("Exact") {
        return Ok(current);
    }
    let rv = query.get("resourceVersion").unwrap_or_default();
    let rv: u64 = rv
        .parse()
        .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))?;
    if rv > current {
        return Err(ApiError::new(
            504,
            "Timeout",
            format!("Too large resource version: {rv}, current: {current}"),
        ));
    }
    Ok(rv)
}

pub(super) fn encode_continue(rv: u64, key: &(String, String)) -> String {
    use base64::Engine as _;
    let raw = json!({ "rv": rv, "ns": key.0, "name": key.1 }).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

pub(super) fn decode_continue(token: &str) -> Result<(u64, (String, String)), ApiError> {
    use base64::Engine as _;
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v["rv"].as_u64().ok_or_else(bad)?;
    Ok((
        rv,
        (
            v["ns"].as_str().unwrap_or_default().to_string(),
            v["name"].as_str().ok_or_else(bad)?.to_string(),
        ),
    ))
}
