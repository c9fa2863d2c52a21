//! Watch streams: initial events, resume from a resource version, bookmarks, timeouts.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::{
    body::Body,
    error::ApiError,
    meta::meta_str,
    resources::ResourceType,
    selectors::Selectors,
    store::{EventType, Record, State},
    view::{metadata_only, present},
};

/// What a watch request asked for.
#[derive(Debug)]
pub(crate) struct WatchSpec {
    pub(crate) rt: Arc<ResourceType>,
    pub(crate) namespace: Option<String>,
    pub(crate) selectors: Selectors,
    /// `resourceVersion` as sent (`None`, `"0"` or a number).
    pub(crate) resource_version: Option<String>,
    pub(crate) send_initial_events: bool,
    pub(crate) bookmarks: bool,
    pub(crate) timeout: Duration,
    pub(crate) metadata_only: bool,
    pub(crate) bookmark_every: Duration,
}

impl WatchSpec {
    fn line(&self, event: &str, obj: &Value) -> Bytes {
        let object = if self.metadata_only {
            metadata_only(obj)
        } else {
            obj.clone()
        };
        let mut line = json!({ "type": event, "object": object }).to_string();
        line.push('\n');
        Bytes::from(line)
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({ "resourceVersion": rv.to_string() });
        if initial_end {
            meta["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        let obj =
            json!({ "kind": self.rt.kind, "apiVersion": self.rt.api_version(), "metadata": meta });
        let mut line = json!({ "type": "BOOKMARK", "object": obj }).to_string();
        line.push('\n');
        Bytes::from(line)
    }

    fn in_scope(&self, obj: &Value) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|ns| meta_str(obj, "namespace") == Some(ns))
    }

    /// The event this watcher sees for a record, if any (selector transitions included).
    fn translate(&self, rec: &Record) -> Option<(&'static str, Value)> {
        if rec.storage != self.rt.storage || !self.in_scope(&rec.object) {
            return None;
        }
        let new = present(&self.rt, &rec.object);
        let new_matches = self.selectors.matches(&new);
        let old_matches = rec
            .old
            .as_ref()
            .map(|o| self.selectors.matches(&present(&self.rt, o)));
        let event = match (rec.event, old_matches, new_matches) {
            (EventType::Added, _, true) | (EventType::Modified, Some(false) | None, true) => {
                "ADDED"
            }
            (EventType::Modified, Some(true), true) => "MODIFIED",
            (EventType::Modified, Some(true), false)
            | (EventType::Deleted, Some(true), _)
            | (EventType::Deleted, None, true) => "DELETED",
            _ => return None,
        };
        Some((event, new))
    }
}

/// Starts a watch. Called with the state locked, so nothing is missed between the
/// snapshot and the live feed.
pub(crate) fn start(state: &State, spec: WatchSpec) -> Result<Body, ApiError> {
    let live = state.tx.subscribe();
    let now = state.rv;
    let mut initial: Vec<Bytes> = Vec::new();
    let from = match spec.resource_version.as_deref() {
        Some(rv) if !spec.send_initial_events && rv != "0" => Some(
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))?,
        ),
        _ => None,
    };
    match from {
        None => {
            let ns = spec.namespace.as_deref();
            for obj in state.scan(&spec.rt, ns, None) {
                let view = present(&spec.rt, obj);
                if spec.selectors.matches(&view) {
                    initial.push(spec.line("ADDED", &view));
                }
            }
            if spec.send_initial_events {
                initial.push(spec.bookmark(now, true));
            }
        }
        Some(rv) => {
            if let Some(records) = state.history_after(&spec.rt.storage, rv) {
                for rec in records {
                    if let Some((event, obj)) = spec.translate(&rec) {
                        initial.push(spec.line(event, &obj));
                    }
                }
            } else {
                let status = ApiError::gone(format!(
                    "too old resource version: {rv} ({})",
                    state.oldest_rv
                ))
                .to_status();
                initial.push(spec.line("ERROR", &status));
                let (tx, rx) = mpsc::channel(initial.len().max(1));
                for line in initial {
                    let _ = tx.try_send(line);
                }
                return Ok(Body::stream(rx));
            }
        }
    }
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(run(spec, initial, live, now, tx));
    Ok(Body::stream(rx))
}

async fn run(
    spec: WatchSpec,
    initial: Vec<Bytes>,
    mut live: broadcast::Receiver<Arc<Record>>,
    mut last_rv: u64,
    tx: mpsc::Sender<Bytes>,
) {
    for line in initial {
        if tx.send(line).await.is_err() {
            return;
        }
    }
    let deadline = tokio::time::sleep(spec.timeout);
    tokio::pin!(deadline);
    let mut ticks = tokio::time::interval_at(
        tokio::time::Instant::now() + spec.bookmark_every,
        spec.bookmark_every,
    );
    loop {
        tokio::select! {
            () = &mut deadline => return,
            () = tx.closed() => return,
            _ = ticks.tick(), if spec.bookmarks => {
                if tx.send(spec.bookmark(last_rv, false)).await.is_err() {
                    return;
                }
            }
            received = live.recv() => match received {
                Ok(rec) => {
                    if rec.rv <= last_rv {
                        continue;
                    }
                    last_rv = rec.rv;
                    if let Some((event, obj)) = spec.translate(&rec)
                        && tx.send(spec.line(event, &obj)).await.is_err() {
                            return;
                        }
                }
                // A watcher that falls too far behind is closed; the client resumes from
                // its last resource version (or relists after 410), as with a real server.
                Err(_) => return,
            },
        }
    }
}
