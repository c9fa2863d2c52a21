//! Request dispatch: from an HTTP request to a store operation and back.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode, header};
use serde_json::{Value, json};

use super::{
    Inner,
    admission::admit,
    body::Body,
    defaults, discovery,
    error::ApiError,
    lifecycle::Deleted,
    patch::{self, PatchType},
    request::{Query, Route, Target, Verb, route},
    resources::{GPU, ResourceType},
    snapshot, ssa,
    strict::{self, FieldValidation},
    table,
    view::{ingest, metadata_only, present},
    watch::{self, WatchSpec},
};

mod params;
mod replies;
mod reviews;
mod subresources;

use self::params::{
    decode_continue, delete_options, encode_continue, exact_version, manager, selectors,
};
use self::replies::{Shape, parse_json, shape};
pub(crate) use self::replies::{error_response, json_response};

impl Inner {
    pub(crate) async fn handle(
        &self,
        method: &Method,
        uri: &http::Uri,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response<Body> {
        if body.len() > super::admission::MAX_REQUEST_BYTES {
            let limit = super::admission::MAX_REQUEST_BYTES;
            let err = ApiError::new(
                413,
                "RequestEntityTooLarge",
                format!("Request entity too large: limit is {limit}"),
            );
            return error_response(&err);
        }
        let query = Query::parse(uri.query());
        let path = uri.path();
        match route(path) {
            None => error_response(&ApiError::unknown_path(path)),
            Some(Route::Object(target)) => {
                let mut warnings = Vec::new();
                let mut resp = match self
                    .object(method, &query, headers, target, body, &mut warnings)
                    .await
                {
                    Ok(resp) => resp,
                    Err(err) => error_response(&err),
                };
                for w in &warnings {
                    if let Ok(v) = header::HeaderValue::from_str(&strict::warning_header(w)) {
                        resp.headers_mut().append(header::WARNING, v);
                    }
                }
                resp
            }
            Some(route) => {
                let state = self.lock();
                match discovery::serve(&state, &route, headers) {
                    Ok(resp) => resp,
                    Err(err) => error_response(&err),
                }
            }
        }
    }

    #[allow(
        clippy::too_many_lines,
        reason = "one arm per verb reads best as a single dispatch table"
    )]
    async fn object(
        &self,
        method: &Method,
        query: &Query,
        headers: &HeaderMap,
        t: Target,
        body: Bytes,
        warnings: &mut Vec<String>,
    ) -> Result<Response<Body>, ApiError> {
        let rt = self
            .lock()
            .lookup(&t.group, &t.version, &t.plural)
            .ok_or_else(|| ApiError::unknown_path(&format!("{}/{}", t.group, t.plural)))?;
        let verb = Verb::of(method, &t, query).ok_or_else(|| {
            ApiError::method_not_allowed(format!("{method} is not supported here"))
        })?;
        let mut resource = if rt.group.is_empty() {
            rt.plural.clone()
        } else {
            format!("{}.{}", rt.plural, rt.group)
        };
        if let Some(sub) = &t.subresource {
            resource = format!("{resource}/{sub}");
        }
        self.counter.add(verb, resource.clone());
        let drop_watch_after = self
            .faults
            .before(verb, &resource, t.name.as_deref())
            .await?;
        let allowed = match t.subresource.as_deref() {
            None => rt.verbs,
            Some("status") if rt.status_subresource && t.name.is_some() => GPU,
            Some(sub) if t.name.is_some() => {
                rt.subresource(sub)
                    .ok_or_else(|| ApiError::unknown_path(&resource))?
                    .verbs
            }
            Some(_) => return Err(ApiError::unknown_path(&resource)),
        };
        if !allowed.contains(&verb.as_str()) {
            return Err(ApiError::method_not_allowed(format!(
                "{} is not supported on {resource}",
                verb.as_str()
            )));
        }
        if rt.namespaced && t.namespace.is_none() && (t.name.is_some() || verb == Verb::Create) {
            return Err(ApiError::unknown_path(&resource));
        }
        if !rt.namespaced && t.namespace.is_some() {
            return Err(ApiError::unknown_path(&resource));
        }
        let ns = t.namespace.as_deref();
        let name = t.name.as_deref().unwrap_or_default();
        let dry_run = query.get("dryRun").is_some();
        let opts = super::store::WriteOptions { dry_run };
        let shape = shape(headers);
        let status_only = t
            .subresource
            .as_deref()
            .is_some_and(|s| !matches!(s, "ephemeralcontainers" | "resize" | "scale"));
        let writer = Writer {
            manager: manager(query, headers),
            subresource: t.subresource.clone().unwrap_or_default(),
            status_only,
            opts: opts.clone(),
        };
        if rt.plural == "componentstatuses" {
            return reviews::component_statuses(t.name.as_deref());
        }
        if !rt.stored() {
            let body = parse_json(&body)?;
            return reviews::answer(&mut self.lock(), &rt, ns, body);
        }
        if let Some(sub) = t.subresource.as_deref()
            && subresources::answered_here(sub)
        {
            let patch = (verb == Verb::Patch)
                .then(|| {
                    headers
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(PatchType::from_content_type)
                })
                .flatten();
            let body = if verb.is_write() && !body.is_empty() {
                Some(parse_json(&body)?)
            } else {
                None
            };
            let call = subresources::Call {
                rt: &rt,
                ns,
                name,
                subresource: sub,
                verb,
                body,
                patch,
            };
            return subresources::serve(&mut self.lock(), &call, &writer);
        }
        match verb {
            Verb::Get => {
                let stored = self.lock().get(&rt, ns, name)?;
                let obj = present(&rt, &stored);
                Ok(Self::render_one(&rt, shape, &obj))
            }
            Verb::List => self.list(&rt, ns, query, shape),
            Verb::Watch => {
                let spec = WatchSpec {
                    rt: Arc::clone(&rt),
                    namespace: ns.map(str::to_string),
                    selectors: selectors(&rt, query)?,
                    resource_version: query.get("resourceVersion").map(str::to_string),
                    send_initial_events: query.flag("sendInitialEvents"),
                    bookmarks: query.flag("allowWatchBookmarks"),
                    timeout: Duration::from_secs(query.number("timeoutSeconds").unwrap_or(1800))
                        .min(drop_watch_after.unwrap_or(Duration::MAX)),
                    metadata_only: shape == Shape::Metadata,
                    bookmark_every: self.config.bookmark_every,
                };
                let body = watch::start(&self.lock(), spec)?;
                Ok(Response::builder()
                    .status(StatusCode::OK)
                    .header(header::CONTENT_TYPE, "application/json")
                    .header(header::TRANSFER_ENCODING, "chunked")
                    .body(body)
                    .unwrap_or_else(|_| Response::new(Body::empty())))
            }
            Verb::Create => {
                let mode = FieldValidation::from_query(query, "CreateOptions")?;
                let raw = parse_json(&body)?;
                strict::check_body(&rt, mode, &body, &raw, warnings)?;
                let mut obj = ingest(&rt, raw);
                let mut state = self.lock();
                admit(&state, &rt, ns, &mut obj, true)?;
                if rt.status_subresource
                    && rt.plural != "namespaces"
                    && let Some(o) = obj.as_object_mut()
                {
                    o.remove("status");
                }
                ssa::track_update(&rt, None, &mut obj, &manager(query, headers), "");
                let created = state.create(&rt, ns, obj, &opts)?;
                Ok(json_response(201, &present(&rt, &created)))
            }
            Verb::Update => {
                let mode = FieldValidation::from_query(query, "UpdateOptions")?;
                let raw = parse_json(&body)?;
                strict::check_body(&rt, mode, &body, &raw, warnings)?;
                let mut obj = ingest(&rt, raw);
                let mut state = self.lock();
                let old = state.get(&rt, ns, name)?;
                defaults::carry_over(&rt, &old, &mut obj);
                replace(&mut state, &rt, ns, name, &old, obj, &writer)
            }
            Verb::Patch => {
                let ct = headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                let kind = PatchType::from_content_type(ct)
                    .ok_or_else(|| ApiError::unsupported_media_type(ct))?;
                let mode = FieldValidation::from_query(query, "PatchOptions")?;
                let patch_body = parse_json(&body)?;
                let mut state = self.lock();
                if kind == PatchType::Apply {
                    strict::check_apply(&rt, mode, &body, &patch_body, warnings)?;
                    let field_manager = query.get("fieldManager").ok_or_else(|| {
                        ApiError::new(422, "Invalid", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch")
                    })?;
                    let (obj, created) = ssa::apply(
                        &mut state,
                        &rt,
                        ns,
                        name,
                        patch_body,
                        field_manager,
                        query.flag("force"),
                        status_only,
                        &opts,
                    )?;
                    return Ok(json_response(
                        if created { 201 } else { 200 },
                        &present(&rt, &obj),
                    ));
                }
                let current = state.get(&rt, ns, name)?;
                let mut doc = present(&rt, &current);
                match kind {
                    PatchType::Json => patch::json_patch(&mut doc, &patch_body)?,
                    PatchType::Merge => patch::merge_patch(&mut doc, &patch_body)?,
                    PatchType::Strategic if rt.built_in => {
                        patch::strategic_merge(&mut doc, &patch_body)?;
                    }
                    PatchType::Strategic => return Err(ApiError::unsupported_media_type(ct)),
                    PatchType::Apply => {
                        return Err(ApiError::internal("apply reached the merge path"));
                    }
                }
                let shown = || {
                    if kind == PatchType::Strategic {
                        strict::go_format(&patch_body)
                    } else {
                        doc.to_string()
                    }
                };
                strict::check_patched(&rt, mode, &doc, shown, warnings)?;
                let obj = ingest(&rt, doc);
                replace(&mut state, &rt, ns, name, &current, obj, &writer)
            }
            Verb::Delete => {
                let del = delete_options(&body, dry_run, query)?;
                match self.lock().delete(&rt, ns, name, &del)? {
                    Deleted::Pending(obj) => Ok(json_response(200, &present(&rt, &obj))),
                    Deleted::Gone(obj) => Ok(json_response(200, &success(&rt, &obj))),
                }
            }
            Verb::DeleteCollection => {
                let del = delete_options(&body, dry_run, query)?;
                let sel = selectors(&rt, query)?;
                let mut state = self.lock();
                let names: Vec<(Option<String>, String)> = state
                    .scan(&rt, ns, None)
                    .filter(|o| sel.matches(&present(&rt, o)))
                    .map(|o| {
                        let m = &o["metadata"];
                        (
                            m["namespace"].as_str().map(str::to_string),
                            m["name"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect();
                for (ns, name) in names {
                    state.delete(&rt, ns.as_deref(), &name, &del)?;
                }
                Ok(json_response(
                    200,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
                ))
            }
        }
    }

    fn render_one(rt: &ResourceType, shape: Shape, obj: &Value) -> Response<Body> {
        match shape {
            Shape::Full => json_response(200, obj),
            Shape::Metadata => json_response(200, &metadata_only(obj)),
            Shape::Table => json_response(200, &table::render(rt, std::slice::from_ref(obj), None)),
        }
    }

    fn list(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        query: &Query,
        shape: Shape,
    ) -> Result<Response<Body>, ApiError> {
        let sel = selectors(rt, query)?;
        let limit = query
            .number("limit")
            .filter(|l| *l > 0)
            .and_then(|l| usize::try_from(l).ok());
        let state = self.lock();
        // Which version to show: a continue token's, an exact one asked for, or the newest.
        let (at, after) = match query.get("continue") {
            Some(token) => {
                let (rv, key) = decode_continue(token)?;
                if rv < state.oldest_rv {
                    return Err(ApiError::gone(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                    ));
                }
                (rv, Some(key))
            }
            None => (exact_version(query, state.rv)?, None),
        };
        let past = if at < state.rv {
            Some(snapshot::objects_at(&state, rt, at)?)
        } else {
            None
        };
        let objects: Box<dyn Iterator<Item = &Arc<Value>>> = match &past {
            Some(objects) => Box::new(snapshot::scan(objects, ns, after.as_ref())),
            None => Box::new(state.scan(rt, ns, after.as_ref())),
        };
        let mut items = Vec::new();
        let mut last_key = None;
        let mut more = 0usize;
        for obj in objects {
            let view = present(rt, obj);
            if !sel.matches(&view) {
                continue;
            }
            if limit.is_some_and(|l| items.len() >= l) {
                more += 1;
                continue;
            }
            last_key = Some((
                view["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                view["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ));
            items.push(view);
        }
        let mut meta = json!({ "resourceVersion": at.to_string() });
        if more > 0
            && let Some(key) = last_key
        {
            meta["continue"] = json!(encode_continue(at, &key));
            meta["remainingItemCount"] = json!(more);
        }
        let body = match shape {
            Shape::Table => table::render(rt, &items, Some(meta)),
            Shape::Metadata => json!({
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": meta,
                "items": items.iter().map(metadata_only).collect::<Vec<_>>(),
            }),
            Shape::Full => json!({
                "kind": format!("{}List", rt.kind),
                "apiVersion": rt.api_version(),
                "metadata": meta,
                "items": items,
            }),
        };
        Ok(json_response(200, &body))
    }
}

/// Who writes, and how, for the update paths (PUT and non-apply PATCH).
struct Writer {
    manager: String,
    subresource: String,
    status_only: bool,
    opts: super::store::WriteOptions,
}

/// Admits a replacement for `old`, records the fields it changed, and stores it.
fn replace(
    state: &mut super::store::State,
    rt: &ResourceType,
    ns: Option<&str>,
    name: &str,
    old: &Value,
    mut obj: Value,
    w: &Writer,
) -> Result<Response<Body>, ApiError> {
    admit(state, rt, ns, &mut obj, false)?;
    ssa::track_update(rt, Some(old), &mut obj, &w.manager, &w.subresource);
    let updated = state.update(rt, ns, name, obj, w.status_only, &w.opts)?;
    Ok(json_response(200, &present(rt, &updated)))
}

fn success(rt: &ResourceType, obj: &Value) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": obj["metadata"]["name"],
            "group": rt.group,
            "kind": rt.plural,
            "uid": obj["metadata"]["uid"],
        },
    })
}
