//! Request handling: faults and the rate limit first, then the endpoint.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{
    Request, Response, StatusCode,
    body::Incoming,
    header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER, USER_AGENT},
};
use serde::{Serialize, de::DeserializeOwned};
use tokio::time::Instant;

use super::{
    super::api::{
        ApiError, IDEMPOTENCY_KEY, InstanceHealth, InstanceList, InstancePatch, InstanceSpec,
        InstanceState, percent_decode,
    },
    Endpoint, Rejection, Shared,
};

/// The longest idempotency key accepted.
const MAX_KEY_LEN: usize = 255;

type Reply = Response<Full<Bytes>>;

/// Answers one request and counts it.
pub(super) async fn handle(shared: &Shared, request: Request<Incoming>) -> Reply {
    if !authorized(shared, &request) {
        tracing::debug!(
            path = request.uri().path(),
            "dbaas request without its token"
        );
        return error(&Rejection::new(
            401,
            "unauthorized",
            "send the DBaaS's token as Authorization: Bearer <token>".into(),
        ));
    }
    let (endpoint, id) = Endpoint::route(request.method(), request.uri().path());
    let id = id.map(|id| percent_decode(id).unwrap_or_else(|| id.to_owned()));
    {
        let mut state = shared.lock();
        *state.stats.calls.entry(endpoint).or_default() += 1;
        state.arrivals.push((Instant::now(), endpoint));
    }
    let latency = shared.faults.added_latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let method = request.method().clone();
    let caller = request
        .headers()
        .get(USER_AGENT)
        .and_then(|agent| agent.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut reply = answer(shared, endpoint, id.as_deref(), request, &caller).await;
    if shared.rate_limit_headers && !endpoint.is_health() {
        let (remaining, burst, full_in) = shared.limiter.remaining();
        // Whole seconds, rounded up, until the budget is full again.
        let reset = full_in.as_secs() + u64::from(full_in.subsec_nanos() > 0);
        for (name, value) in [
            ("ratelimit-policy", format!("\"instances\";q={burst}")),
            (
                "ratelimit",
                format!("\"instances\";r={remaining};t={reset}"),
            ),
        ] {
            if let Ok(value) = HeaderValue::from_str(&value) {
                reply.headers_mut().insert(name, value);
            }
        }
    }
    let status = reply.status();
    if status.is_server_error() {
        shared.lock().stats.server_errors += 1;
    }
    tracing::debug!(%method, %endpoint, id, status = status.as_u16(), "dbaas request");
    reply
}

async fn answer(
    shared: &Shared,
    endpoint: Endpoint,
    id: Option<&str>,
    request: Request<Incoming>,
    caller: &str,
) -> Reply {
    let now = Instant::now();
    if shared.faults.outage_at(now) {
        shared.lock().stats.outage_calls += 1;
        return error(&Rejection::new(
            503,
            "outage",
            "the service is unavailable (outage)".into(),
        ));
    }
    if !endpoint.is_health() {
        if let Err(refused) = shared.limiter.check() {
            shared.lock().stats.throttled += 1;
            return throttled(refused.retry_after);
        }
        if shared.faults.roll_error() {
            shared.lock().stats.injected_errors += 1;
            return error(&Rejection::new(
                500,
                "internal",
                "internal error (injected)".into(),
            ));
        }
    }
    match (endpoint, id) {
        (Endpoint::ServiceHealth, _) if shared.faults.roll_health_failure() => {
            error(&Rejection::new(
                503,
                "unhealthy",
                "the health check failed (injected)".into(),
            ))
        }
        (Endpoint::ServiceHealth, _) => {
            json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
        }
        (Endpoint::Create, _) => create(shared, request, now, caller).await,
        (Endpoint::List, _) => list(shared, request.uri().query()),
        (Endpoint::Callers, _) => json(StatusCode::OK, &shared.lock().callers),
        (Endpoint::Get, Some(id)) => {
            let mut state = shared.lock_settled();
            let found = state.store.get(id);
            if let Ok(instance) = &found {
                state.handled(&instance.name, caller);
            }
            settle(found, StatusCode::OK)
        }
        (Endpoint::Update, Some(id)) => match body::<InstancePatch>(request).await {
            Ok(patch) => {
                let mut state = shared.lock_settled();
                let updated = state.store.update(id, patch, now);
                if let Ok((instance, _)) = &updated {
                    state.handled(&instance.name, caller);
                }
                match updated {
                    Ok((instance, true)) => json(StatusCode::ACCEPTED, &instance),
                    Ok((instance, false)) => json(StatusCode::OK, &instance),
                    Err(rejection) => error(&rejection),
                }
            }
            Err(rejection) => error(&rejection),
        },
        (Endpoint::Delete, Some(id)) => {
            let mut state = shared.lock_settled();
            let deleting = state.store.delete(id, now);
            if let Ok(instance) = &deleting {
                tracing::info!(id = %instance.id, name = %instance.name, "dbaas deleting instance");
                state.handled(&instance.name, caller);
            }
            settle(deleting, StatusCode::ACCEPTED)
        }
        (Endpoint::InstanceHealth, Some(id)) => health(shared, id, caller),
        _ => error(&Rejection::new(404, "not_found", "no such endpoint".into())),
    }
}

async fn create(shared: &Shared, request: Request<Incoming>, now: Instant, caller: &str) -> Reply {
    let key = match request
        .headers()
        .get(IDEMPOTENCY_KEY)
        .map(HeaderValue::to_str)
    {
        Some(Ok(key)) if !key.is_empty() && key.len() <= MAX_KEY_LEN => key.to_owned(),
        Some(_) => {
            let message = format!(
                "the Idempotency-Key header must be 1 to {MAX_KEY_LEN} visible ASCII characters"
            );
            return error(&Rejection::new(400, "invalid_idempotency_key", message));
        }
        None => {
            let message = "creating an instance needs an Idempotency-Key header".into();
            return error(&Rejection::new(400, "missing_idempotency_key", message));
        }
    };
    let spec = match body::<InstanceSpec>(request).await {
        Ok(spec) => spec,
        Err(rejection) => return error(&rejection),
    };
    let created = {
        let mut state = shared.lock_settled();
        let created = state.store.create(&key, spec, now);
        if let Ok((instance, _)) = &created {
            state.handled(&instance.name, caller);
        }
        created
    };
    match created {
        Ok((instance, true)) => {
            tracing::info!(id = %instance.id, name = %instance.name, key, "dbaas creating instance");
            json(StatusCode::ACCEPTED, &instance)
        }
        Ok((instance, false)) => json(StatusCode::OK, &instance),
        Err(rejection) => error(&rejection),
    }
}

fn list(shared: &Shared, query: Option<&str>) -> Reply {
    let key = query
        .into_iter()
        .flat_map(|query| query.split('&'))
        .find_map(|pair| pair.strip_prefix("idempotencyKey="));
    let state = shared.lock_settled();
    let items = match key {
        Some(key) => match percent_decode(key) {
            Some(key) => state.store.find_by_key(&key).into_iter().collect(),
            None => {
                return error(&Rejection::new(
                    400,
                    "bad_request",
                    "malformed idempotencyKey".into(),
                ));
            }
        },
        None => state.store.list(),
    };
    drop(state);
    json(StatusCode::OK, &InstanceList { items })
}

fn health(shared: &Shared, id: &str, caller: &str) -> Reply {
    let instance = {
        let mut state = shared.lock_settled();
        match state.store.get(id) {
            Ok(instance) => {
                state.handled(&instance.name, caller);
                instance
            }
            Err(rejection) => return error(&rejection),
        }
    };
    let reason = match instance.state {
        InstanceState::Ready if shared.faults.take_health_failure(&instance.name) => {
            "health check failed (injected)".to_owned()
        }
        InstanceState::Ready => {
            return json(
                StatusCode::OK,
                &InstanceHealth {
                    healthy: true,
                    reason: None,
                },
            );
        }
        state => format!("instance is {state}"),
    };
    json(
        StatusCode::SERVICE_UNAVAILABLE,
        &InstanceHealth {
            healthy: false,
            reason: Some(reason),
        },
    )
}

/// Reads a JSON body; 400 naming the problem if it is not one.
async fn body<T: DeserializeOwned>(request: Request<Incoming>) -> Result<T, Rejection> {
    let bytes = request
        .into_body()
        .collect()
        .await
        .map_err(|err| Rejection::new(400, "bad_request", format!("cannot read the body: {err}")))?
        .to_bytes();
    serde_json::from_slice(&bytes)
        .map_err(|err| Rejection::new(400, "bad_request", format!("invalid body: {err}")))
}

/// Whether the request carries the server's token, compared in time independent of
/// where the bytes differ.
fn authorized(shared: &Shared, request: &Request<Incoming>) -> bool {
    let expected = shared.authorization.as_bytes();
    request.headers().get(AUTHORIZATION).is_some_and(|given| {
        let given = given.as_bytes();
        given.len() == expected.len()
            && given
                .iter()
                .zip(expected)
                .fold(0u8, |differ, (a, b)| differ | (a ^ b))
                == 0
    })
}

fn settle<T: Serialize>(result: Result<T, Rejection>, status: StatusCode) -> Reply {
    match result {
        Ok(value) => json(status, &value),
        Err(rejection) => error(&rejection),
    }
}

fn throttled(wait: Duration) -> Reply {
    // Retry-After takes whole seconds; round up so a client that honours it is admitted.
    let seconds = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
    let body = ApiError {
        code: "rate_limited".into(),
        message: format!("rate limit exceeded, retry in {wait:?}"),
        retry_after_seconds: Some(seconds),
    };
    let mut reply = json(StatusCode::TOO_MANY_REQUESTS, &body);
    reply
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(seconds));
    reply
}

fn error(rejection: &Rejection) -> Reply {
    let status =
        StatusCode::from_u16(rejection.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = ApiError {
        code: rejection.code.into(),
        message: rejection.message.clone(),
        retry_after_seconds: None,
    };
    json(status, &body)
}

fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Reply {
    let body = serde_json::to_vec(value).unwrap_or_else(|err| {
        tracing::error!(error = %err, "dbaas cannot encode a response");
        b"{}".to_vec()
    });
    let mut reply = Response::new(Full::new(Bytes::from(body)));
    *reply.status_mut() = status;
    reply
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    reply
}
