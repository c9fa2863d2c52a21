//! A minimal scripted Kubernetes API for ConfigMaps: list and watch in one namespace.
//!
//! Just enough for a real `kube_runtime::Controller` to run: the test owns the objects
//! and pushes watch events. It is replaced by the embedded API server of the `testing`
//! feature once that exists.

#![allow(dead_code, unreachable_pub)] // reason: each test binary uses a different subset

use std::{
    collections::BTreeMap,
    convert::Infallible,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Client, api::ObjectMeta, client::Body};
use tokio::sync::broadcast;

type RespBody = UnsyncBoxBody<Bytes, Infallible>;

#[derive(Clone)]
pub struct ScriptedApi {
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<String>,
}

struct State {
    resource_version: u64,
    objects: BTreeMap<String, ConfigMap>,
}

impl ScriptedApi {
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(1024);
        ScriptedApi {
            state: Arc::new(Mutex::new(State {
                resource_version: 1,
                objects: BTreeMap::new(),
            })),
            events,
        }
    }

    /// A kube client whose every request this API answers in process.
    pub fn client(&self) -> Client {
        let api = self.clone();
        let service = tower::service_fn(move |req: Request<Body>| {
            let api = api.clone();
            async move { Ok::<_, Infallible>(api.handle(&req)) }
        });
        Client::new(service, "default")
    }

    /// Creates or replaces a ConfigMap (bumping generation when `data` changes) and sends a watch event.
    pub fn put(&self, name: &str, data: &[(&str, &str)]) -> ConfigMap {
        let mut state = self.state.lock().unwrap();
        state.resource_version += 1;
        let rv = state.resource_version;
        let data: BTreeMap<String, String> = data.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        let (kind, obj) = match state.objects.get(name) {
            Some(old) => {
                let mut obj = old.clone();
                if obj.data.as_ref() != Some(&data) {
                    obj.metadata.generation = obj.metadata.generation.map(|g| g + 1);
                }
                obj.data = Some(data);
                obj.metadata.resource_version = Some(rv.to_string());
                ("MODIFIED", obj)
            }
            None => (
                "ADDED",
                ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(name.into()),
                        namespace: Some("default".into()),
                        uid: Some(format!("uid-{name}-{rv}")),
                        generation: Some(1),
                        resource_version: Some(rv.to_string()),
                        ..ObjectMeta::default()
                    },
                    data: Some(data),
                    ..ConfigMap::default()
                },
            ),
        };
        state.objects.insert(name.into(), obj.clone());
        let _ = self.events.send(watch_line(kind, &obj));
        obj
    }

    /// Touches an object without changing its generation (a label change, say).
    pub fn touch(&self, name: &str) {
        let mut state = self.state.lock().unwrap();
        state.resource_version += 1;
        let rv = state.resource_version;
        if let Some(obj) = state.objects.get_mut(name) {
            obj.metadata.resource_version = Some(rv.to_string());
            let labels = obj.metadata.labels.get_or_insert_with(BTreeMap::new);
            labels.insert("touched".into(), rv.to_string());
            let _ = self.events.send(watch_line("MODIFIED", obj));
        }
    }

    fn handle(&self, req: &Request<Body>) -> Response<RespBody> {
        let path = req.uri().path();
        let query = req.uri().query().unwrap_or_default();
        if req.method() != http::Method::GET || !path.ends_with("/configmaps") {
            return json(StatusCode::NOT_FOUND, r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#.into());
        }
        if query.split('&').any(|kv| kv == "watch=true" || kv == "watch=1") {
            let rx = self.events.subscribe();
            let stream = futures::stream::unfold(rx, |mut rx| async move {
                loop {
                    match rx.recv().await {
                        Ok(line) => return Some((Ok(http_body::Frame::data(Bytes::from(line))), rx)),
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            });
            return Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .body(StreamBody::new(stream).boxed_unsync())
                .unwrap();
        }
        let state = self.state.lock().unwrap();
        let list = serde_json::json!({
            "kind": "ConfigMapList",
            "apiVersion": "v1",
            "metadata": { "resourceVersion": state.resource_version.to_string() },
            "items": state.objects.values().collect::<Vec<_>>(),
        });
        json(StatusCode::OK, list.to_string())
    }
}

fn watch_line(kind: &str, obj: &ConfigMap) -> String {
    let mut line = serde_json::json!({ "type": kind, "object": obj }).to_string();
    line.push('\n');
    line
}

fn json(status: StatusCode, body: String) -> Response<RespBody> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)).boxed_unsync())
        .unwrap()
}

pub mod widget;
pub mod binaries;
