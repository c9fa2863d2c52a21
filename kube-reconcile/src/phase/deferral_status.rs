//! [`DeferralStatusLayer`]: the middleware's retry state, visible in status.

use std::{fmt, sync::Arc, time::Duration};

use k8s_openapi::jiff::Timestamp;
use kube::{
    Client, Resource,
    api::{GetParams, Patch, PatchParams},
    core::Request,
    runtime::controller::Action,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tower_layer::Layer;

use super::{
    HasPhaseStatus,
    deferral::{Change, DEFERRED, Seen, decide},
};
use crate::{
    clock::Clock,
    error::Classify,
    middleware::backoff::{BackoffHandle, BackoffLayer},
    reconciler::{DeferReason, ObjectKey, Outcome, Reconciler},
    wall_clock::WallClock,
};

/// Shows in each object's status why the middleware holds it back, and until when.
///
/// Put it outside [`Backoff`](crate::middleware::backoff::Backoff) (the outermost layer
/// that writes), and show it the backoff layer so failures show their next attempt.
/// [`Operator`](super::Operator) wires it so by itself.
///
/// # Examples
///
/// ```
/// use kube_reconcile::{
///     middleware::{backoff::BackoffLayer, rate_limit::{Quota, RateLimitLayer}},
///     phase::DeferralStatusLayer,
/// };
/// use kube_reconcile_testing::ApiServer;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let client = ApiServer::new().client();
/// let backoff = BackoffLayer::operator();
/// let status = DeferralStatusLayer::new(client).backoff(&backoff);
/// // engine.with(RateLimitLayer::per_object(quota)).with(backoff).with(status)
/// # let _ = (status, RateLimitLayer::per_object(Quota::per_second(std::num::NonZeroU32::MIN)));
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct DeferralStatusLayer {
    settings: Settings,
}

#[derive(Clone)]
struct Settings {
    client: Client,
    backoff: Option<BackoffHandle>,
    min_wait: Duration,
    wall: WallClock,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeferralStatus")
            .field("backoff", &self.backoff)
            .field("min_wait", &self.min_wait)
            .field("wall", &self.wall)
            .finish_non_exhaustive()
    }
}

impl DeferralStatusLayer {
    /// A layer that writes status through `client`.
    pub fn new(client: Client) -> Self {
        DeferralStatusLayer {
            settings: Settings {
                client,
                backoff: None,
                min_wait: Duration::from_secs(1),
                wall: WallClock::new(Clock::default(), Timestamp::now()),
            },
        }
    }

    fn update(mut self, f: impl FnOnce(&mut Settings)) -> Self {
        f(&mut self.settings);
        self
    }

    /// The backoff whose failures to show (with their count and next attempt), from any
    /// reconciler it wraps; its clock becomes this layer's clock.
    ///
    /// # Default
    ///
    /// None: failures are not shown (the phase machine's `lastError` still records
    /// them); deferrals are.
    #[must_use]
    pub fn backoff(self, backoff: &BackoffLayer) -> Self {
        let handle = backoff.handle();
        self.update(|s| {
            s.wall = WallClock::new(handle.clock().clone(), Timestamp::now());
            s.backoff = Some(handle);
        })
    }

    /// The shortest wait worth a status write; shorter ones pass unseen.
    ///
    /// # Default
    ///
    /// 1 s.
    #[must_use]
    pub fn min_wait(self, min_wait: Duration) -> Self {
        self.update(|s| s.min_wait = min_wait)
    }
}

impl<R> Layer<R> for DeferralStatusLayer {
    type Service = DeferralStatus<R>;

    fn layer(&self, inner: R) -> DeferralStatus<R> {
        DeferralStatus {
            inner,
            shared: Arc::new(self.settings.clone()),
        }
    }
}

/// A reconciler whose objects carry a `Deferred` condition while the middleware holds
/// them back.
///
/// After each call of the wrapped reconciler it looks at what the call came to:
///
/// | came to | `Deferred` condition |
/// |---|---|
/// | deferred by [`Backoff`](crate::middleware::backoff::Backoff) | `True`, reason `BackingOff`: "backing off after 3 failures in a row; next attempt at 2026-11-25T10:00:05Z" |
/// | failed, and the backoff waits | `True`, reason `BackingOff`: how many failures, the last error, the next attempt |
/// | deferred by [`RateLimit`](crate::middleware::rate_limit::RateLimit) | `True`, reason `RateLimited`: which limit, the next attempt |
/// | deferred by [`CircuitBreaker`](crate::middleware::circuit_breaker::CircuitBreaker) | `True`, reason `CircuitOpen`: which dependency, the next attempt |
/// | ran, or failed terminally | removed |
/// | conflict, or a follower's deferral | unchanged |
///
/// Times are whole seconds, rounded up, as `metav1.Time` stores them.
///
/// # Guarantees
///
/// - No write when nothing changed: a deferral that repeats the cause shown, before
///   the time shown, writes nothing, so the condition's own write (which wakes the
///   controller) cannot start a loop. Waits shorter than
///   [`min_wait`](DeferralStatusLayer::min_wait) are not written at all.
/// - It never changes what the call came to: a failed write is logged and the
///   outcome is returned as it was.
/// - Its writes touch only this condition: a JSON patch that tests the entry it
///   replaces or removes, or the object's `resourceVersion` when it adds one, so it
///   never overwrites a concurrent status write. The phase engine keeps the condition
///   through its own writes (it keeps every condition it does not own).
/// - A follower (deferred with [`DeferReason::NotLeader`]) never writes.
///
/// # Caveats
///
/// - Each deferral of `min_wait` or more that finds no current condition costs one
///   status write, and clearing costs one more. With many objects held back at once
///   (a global limit, an open breaker) that is one write per object per wait; raise
///   `min_wait` if that is too many.
/// - A write the server refuses because the object moved on (typically the wrapped
///   reconciler's own status write during the same call) is made again once on a fresh
///   read; if that is refused too, the next call writes it.
#[derive(Clone, Debug)]
pub struct DeferralStatus<R> {
    inner: R,
    shared: Arc<Settings>,
}

impl<R> DeferralStatus<R> {
    /// Unwraps the reconciler.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<K, Ctx, R> Reconciler<K, Ctx> for DeferralStatus<R>
where
    R: Reconciler<K, Ctx>,
    R::Error: std::error::Error,
    K: Resource<DynamicType: Default> + HasPhaseStatus + DeserializeOwned + Send + Sync,
    Ctx: Send + Sync,
{
    type Error = R::Error;

    async fn reconcile(&self, obj: Arc<K>, ctx: Arc<Ctx>) -> Result<Action, Self::Error> {
        self.call(obj, ctx).await.into_result()
    }

    async fn call(&self, obj: Arc<K>, ctx: Arc<Ctx>) -> Outcome<Self::Error> {
        let outcome = self.inner.call(Arc::clone(&obj), ctx).await;
        let settings = &*self.shared;
        let now = settings.wall.now();
        let key = ObjectKey::lookup(&*obj);
        let attempts = settings.backoff.as_ref().map_or(0, |b| b.attempts(&*key));
        let next = || {
            let handle = settings.backoff.as_ref()?;
            Some(settings.wall.at(handle.not_before(&*key)?))
        };
        let seen = match &outcome {
            Outcome::Done(_) => Seen::Ran,
            Outcome::Failed(error) => Seen::Failed {
                class: error.class(),
                attempts,
                next: next(),
                error: chain(error),
            },
            Outcome::Deferred(deferral) => Seen::Deferred {
                until: match deferral.reason {
                    DeferReason::BackingOff => next(),
                    _ => None,
                }
                .unwrap_or_else(|| settings.wall.after(deferral.retry_after)),
                reason: &deferral.reason,
                attempts,
            },
        };
        // Once on the object as the call saw it; once more on a fresh read if the
        // wrapped reconciler's own write moved the object on meanwhile.
        if settings.show(&*obj, seen.clone(), now).await == Written::Refused
            && let Some(fresh) = settings.read(&*obj).await
        {
            settings.show(&fresh, seen, now).await;
        }
        outcome
    }

    fn error_action(&self, obj: &K, error: &Self::Error) -> Action {
        self.inner.error_action(obj, error)
    }
}

/// `error` and its sources, as "outer: inner: root".
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        // Some errors repeat their source's text in their own.
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

/// What became of a write.
#[derive(Debug, PartialEq, Eq)]
enum Written {
    /// Written, or nothing to write.
    Done,
    /// The server refused it: the object is not the one the patch was made for.
    Refused,
    /// Failed otherwise (logged).
    Failed,
}

impl Settings {
    /// Decides the condition of `obj` after `seen` and writes it if it changes.
    async fn show<K>(&self, obj: &K, seen: Seen<'_>, now: Timestamp) -> Written
    where
        K: Resource<DynamicType: Default> + HasPhaseStatus,
    {
        let index = obj
            .phase_status()
            .and_then(|s| s.conditions.iter().position(|c| c.type_ == DEFERRED));
        let current = index.and_then(|i| obj.phase_status()?.conditions.get(i));
        let generation = obj.meta().generation;
        match decide(current, seen, now, self.min_wait, generation) {
            Some(change) => self.write(obj, index, change).await,
            None => Written::Done,
        }
    }

    /// Writes `change` to `obj`'s status, whose `Deferred` condition is at `index`.
    async fn write<K>(&self, obj: &K, index: Option<usize>, change: Change) -> Written
    where
        K: Resource<DynamicType: Default> + HasPhaseStatus,
    {
        let meta = obj.meta();
        let (Some(name), Some(version)) = (meta.name.as_deref(), meta.resource_version.as_deref())
        else {
            return Written::Done;
        };
        let Some(ops) = operations(obj, index, change, version) else {
            return Written::Done;
        };
        let url = K::url_path(&K::DynamicType::default(), meta.namespace.as_deref());
        let request = serde_json::from_value::<json_patch::Patch>(ops)
            .map_err(|e| e.to_string())
            .and_then(|patch| {
                Request::new(url)
                    .patch_subresource(
                        "status",
                        name,
                        &PatchParams::default(),
                        &Patch::<()>::Json(patch),
                    )
                    .map_err(|e| e.to_string())
            });
        let request = match request {
            Ok(request) => request,
            Err(error) => {
                tracing::warn!(object = %name, %error, "building the Deferred condition's patch failed");
                return Written::Failed;
            }
        };
        match self.client.request::<Value>(request).await {
            Ok(_) => Written::Done,
            Err(kube::Error::Api(status)) if matches!(status.code, 409 | 422) => Written::Refused,
            Err(error) => {
                tracing::debug!(object = %name, %error, "writing the Deferred condition failed; the next call retries");
                Written::Failed
            }
        }
    }

    /// The object as the server has it now, if it can be read.
    async fn read<K>(&self, obj: &K) -> Option<K>
    where
        K: Resource<DynamicType: Default> + DeserializeOwned,
    {
        let meta = obj.meta();
        let url = K::url_path(&K::DynamicType::default(), meta.namespace.as_deref());
        let request = Request::new(url)
            .get(meta.name.as_deref()?, &GetParams::default())
            .ok()?;
        self.client.request::<K>(request).await.ok()
    }
}

/// The JSON patch that makes `change`, guarded so it cannot overwrite another write.
fn operations<K: HasPhaseStatus>(
    obj: &K,
    index: Option<usize>,
    change: Change,
    version: &str,
) -> Option<Value> {
    let at = |i: usize| format!("/status/conditions/{i}");
    let guard =
        |i: usize| json!({ "op": "test", "path": format!("{}/type", at(i)), "value": DEFERRED });
    let fresh = json!({ "op": "test", "path": "/metadata/resourceVersion", "value": version });
    Some(match (change, index) {
        (Change::Clear, None) => return None,
        (Change::Clear, Some(i)) => json!([guard(i), { "op": "remove", "path": at(i) }]),
        (Change::Set(c), Some(i)) => {
            json!([guard(i), { "op": "replace", "path": at(i), "value": c }])
        }
        (Change::Set(c), None) => match obj.phase_status() {
            Some(status) if !status.conditions.is_empty() => {
                json!([fresh, { "op": "add", "path": "/status/conditions/-", "value": c }])
            }
            Some(_) => json!([fresh, { "op": "add", "path": "/status/conditions", "value": [c] }]),
            None => {
                json!([fresh, { "op": "add", "path": "/status", "value": { "conditions": [c] } }])
            }
        },
    })
}
