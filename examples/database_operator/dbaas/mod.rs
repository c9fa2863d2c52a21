//! A simulated DBaaS (managed databases as a service) and the operator's client for it.
//!
//! [`DbaasServer`] is a real HTTP/1.1 server on 127.0.0.1 that provisions database instances
//! asynchronously, as a cloud database service does; [`DbaasClient`] is how the operator calls
//! it. The server misbehaves on request through [`DbaasFaults`], and counts what it saw in
//! [`DbaasStats`].
//!
//! | Endpoint | Answers |
//! |---|---|
//! | `POST /v1/instances` + `Idempotency-Key` | 202 a new instance, `creating`; 200 the instance the key already created; 400 without a key; 422 for a spec not offered or a key whose instance was deleted |
//! | `GET /v1/instances?idempotencyKey=K` | 200 `{ "items": [...] }` with the key's live instance, if any |
//! | `GET /v1/instances/{id}` | 200 the instance; 404 |
//! | `PATCH /v1/instances/{id}` | 202 `updating` (then `ready`); 200 if nothing changed; 409 while deleting; 422 for another engine or less storage |
//! | `DELETE /v1/instances/{id}` | 202 `deleting` (then gone); 404 once gone |
//! | `GET /v1/instances/{id}/health` | 200 `{ "healthy": true }` when ready; 503 `{ "healthy": false, "reason" }` otherwise |
//! | `GET /healthz` | 200 when up; 503 during an outage |
//!
//! Every error body is `{ "code", "message" }`. The instance API (everything but the two
//! health endpoints) shares one rate limit; a call over it gets 429 with `Retry-After` in
//! whole seconds, at least 1.

mod api;
mod client;
mod server;

pub use self::{
    api::{Instance, InstanceHealth, InstanceSpec, InstanceState},
    client::{DbaasClient, DbaasError, Deletion},
    server::{DbaasFaults, DbaasServer, DbaasServerBuilder, DbaasStats, Endpoint, RunningDbaas},
};
