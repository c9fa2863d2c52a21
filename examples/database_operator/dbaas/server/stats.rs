//! What the simulated DBaaS has seen: calls per endpoint and the answers it gave.

use std::{collections::BTreeMap, fmt};

use hyper::Method;

/// An endpoint of the DBaaS API: a method and a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    /// `POST /v1/instances`
    Create,
    /// `GET /v1/instances`
    List,
    /// `GET /v1/instances/{id}`
    Get,
    /// `PATCH /v1/instances/{id}`
    Update,
    /// `DELETE /v1/instances/{id}`
    Delete,
    /// `GET /v1/instances/{id}/health`
    InstanceHealth,
    /// `GET /healthz`
    ServiceHealth,
    /// `GET /v1/callers`: which clients handled each instance, in order (an audit
    /// endpoint of the simulator, for tests of several operator replicas).
    Callers,
    /// Anything else (answered 404 or 405).
    Other,
}

impl Endpoint {
    /// The endpoint `method` and `path` address, and the instance id in the path.
    pub(super) fn route<'p>(method: &Method, path: &'p str) -> (Self, Option<&'p str>) {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let endpoint = match (method, segments.as_slice()) {
            (&Method::GET, ["healthz"]) => Endpoint::ServiceHealth,
            (&Method::GET, ["v1", "callers"]) => Endpoint::Callers,
            (&Method::POST, ["v1", "instances"]) => Endpoint::Create,
            (&Method::GET, ["v1", "instances"]) => Endpoint::List,
            (&Method::GET, ["v1", "instances", _]) => Endpoint::Get,
            (&Method::PATCH, ["v1", "instances", _]) => Endpoint::Update,
            (&Method::DELETE, ["v1", "instances", _]) => Endpoint::Delete,
            (&Method::GET, ["v1", "instances", _, "health"]) => Endpoint::InstanceHealth,
            _ => Endpoint::Other,
        };
        let id = match segments.as_slice() {
            ["v1", "instances", id, ..] if endpoint != Endpoint::Other => Some(*id),
            _ => None,
        };
        (endpoint, id)
    }

    /// Whether this is a health check or the audit (exempt from the rate limit and the
    /// error rate, not counted as instance calls).
    pub fn is_health(self) -> bool {
        matches!(
            self,
            Endpoint::InstanceHealth | Endpoint::ServiceHealth | Endpoint::Callers
        )
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Endpoint::Create => "POST /v1/instances",
            Endpoint::List => "GET /v1/instances",
            Endpoint::Get => "GET /v1/instances/{id}",
            Endpoint::Update => "PATCH /v1/instances/{id}",
            Endpoint::Delete => "DELETE /v1/instances/{id}",
            Endpoint::InstanceHealth => "GET /v1/instances/{id}/health",
            Endpoint::ServiceHealth => "GET /healthz",
            Endpoint::Callers => "GET /v1/callers",
            Endpoint::Other => "other",
        })
    }
}

/// A snapshot of what a running DBaaS has seen since it started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DbaasStats {
    /// Calls received per endpoint, whatever the answer.
    pub calls: BTreeMap<Endpoint, u64>,
    /// Calls refused by the rate limit (429).
    pub throttled: u64,
    /// Answers with a 5xx status: outages, injected errors and failed instance health checks.
    pub server_errors: u64,
    /// 500s from the error-rate fault.
    pub injected_errors: u64,
    /// Calls received during an outage (each answered 503).
    pub outage_calls: u64,
    /// Instances created (idempotent replays do not count).
    pub instances_created: u64,
    /// Instances whose deletion has completed.
    pub instances_deleted: u64,
    /// Instances that exist now, in any state, deleting included.
    pub live_instances: usize,
}

impl DbaasStats {
    /// Calls received by `endpoint`.
    pub fn calls_to(&self, endpoint: Endpoint) -> u64 {
        self.calls.get(&endpoint).copied().unwrap_or(0)
    }

    /// Calls received in all.
    pub fn total_calls(&self) -> u64 {
        self.calls.values().sum()
    }
}

impl fmt::Display for DbaasStats {
    /// One line: calls per endpoint, refusals, errors and instances.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} calls (", self.total_calls())?;
        for (i, (endpoint, calls)) in self.calls.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{endpoint}: {calls}")?;
        }
        write!(
            f,
            "); 429s {}, 5xx {} ({} injected), during outages {}; instances created {}, deleted {}, live {}",
            self.throttled,
            self.server_errors,
            self.injected_errors,
            self.outage_calls,
            self.instances_created,
            self.instances_deleted,
            self.live_instances
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_route_to_endpoints_with_their_instance_id() {
        assert_eq!(
            Endpoint::route(&Method::GET, "/healthz"),
            (Endpoint::ServiceHealth, None)
        );
        assert_eq!(
            Endpoint::route(&Method::POST, "/v1/instances"),
            (Endpoint::Create, None)
        );
        assert_eq!(
            Endpoint::route(&Method::GET, "/v1/instances/db-1"),
            (Endpoint::Get, Some("db-1"))
        );
        assert_eq!(
            Endpoint::route(&Method::GET, "/v1/instances/db-1/health"),
            (Endpoint::InstanceHealth, Some("db-1"))
        );
        assert_eq!(
            Endpoint::route(&Method::PUT, "/v1/instances/db-1"),
            (Endpoint::Other, None)
        );
        assert_eq!(
            Endpoint::route(&Method::GET, "/v2/things"),
            (Endpoint::Other, None)
        );
    }
}
