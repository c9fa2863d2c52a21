//! [`RateLimitHint`]: what a dependency's answer says about its own rate limit, for an
//! adaptive budget to slow down before the dependency refuses anything.

use std::{cell::Cell, future::Future, time::Duration};

use http::HeaderMap;

tokio::task_local! {
    /// The hint the running call reported, if any.
    static REPORTED: Cell<Option<RateLimitHint>>;
}

/// How much of its rate limit a dependency said it has left, in the answer to a call.
///
/// Many HTTP APIs send this in headers ([`from_headers`](Self::from_headers) reads the
/// common ones). A client that [reports](Self::report) it from inside
/// [`Dependency::call`](super::Dependency::call) lets an
/// [adaptive budget](crate::middleware::rate_limit::RateBudget::adaptive) act on it the
/// way TCP acts on an ECN mark: when less than half the limit is left (nothing, when the
/// limit is not said) and, if the answer says when the limit resets, the budget's own
/// rate would spend what is left before then, the budget slows down as it would for a
/// 429, but before any call is refused. Half, so that every client sharing the
/// dependency still has room for a burst; the reset, so that a client spending a daily
/// or hourly allowance at a pace it can keep is not slowed down as the window runs
/// out. Replicas sharing the dependency all see the same dwindling count, so they slow
/// down together instead of each learning from refusals of its own. Without hints the
/// budget works from 429s alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimitHint {
    /// Calls the dependency would still take now (in its current window or bucket).
    pub remaining: u64,
    /// The whole limit those calls are part of, if the answer said it.
    pub limit: Option<u64>,
    /// When the limit is whole again, if the answer said it.
    pub reset: Option<Duration>,
}

impl RateLimitHint {
    /// A hint of `remaining` calls left, out of `limit` if known, until `reset` if known.
    pub const fn new(remaining: u64, limit: Option<u64>, reset: Option<Duration>) -> Self {
        RateLimitHint {
            remaining,
            limit,
            reset,
        }
    }

    /// Reads the rate-limit headers of an HTTP answer, in the first of these forms
    /// present:
    ///
    /// - `RateLimit: "default";r=50;t=30` with `RateLimit-Policy: "default";q=100;w=60`
    ///   (draft-ietf-httpapi-ratelimit-headers, since draft 08);
    /// - `RateLimit: limit=100, remaining=50, reset=30` (draft 07);
    /// - `RateLimit-Remaining: 50` with `RateLimit-Limit: 100` and `RateLimit-Reset: 30`
    ///   (drafts up to 06);
    /// - `X-RateLimit-Remaining: 50` with `X-RateLimit-Limit: 100` and
    ///   `X-RateLimit-Reset` (GitHub, GitLab and many others; a reset past 10⁹ is read
    ///   as a Unix time, as GitHub sends it, else as seconds from now).
    ///
    /// `None` when none of them is there or its count is not a number.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use http::{HeaderMap, HeaderValue};
    /// use kube_reconcile::external::RateLimitHint;
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert("ratelimit-limit", HeaderValue::from_static("100"));
    /// headers.insert("ratelimit-remaining", HeaderValue::from_static("7"));
    /// headers.insert("ratelimit-reset", HeaderValue::from_static("2"));
    /// let hint = RateLimitHint::new(7, Some(100), Some(Duration::from_secs(2)));
    /// assert_eq!(RateLimitHint::from_headers(&headers), Some(hint));
    /// assert_eq!(RateLimitHint::from_headers(&HeaderMap::new()), None);
    /// ```
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let seconds = |n: u64| Some(Duration::from_secs(n));
        if let Some(field) = text("ratelimit") {
            // Draft 08 on: a list of policies, each with parameters; the first is the one
            // this answer counts against. Draft 07: a dictionary.
            let first = field.split(',').next().unwrap_or_default();
            if let Some(remaining) = parameter(first, ';', "r") {
                let limit = text("ratelimit-policy")
                    .and_then(|p| parameter(p.split(',').next().unwrap_or_default(), ';', "q"));
                let reset = parameter(first, ';', "t").and_then(seconds);
                return Some(RateLimitHint::new(remaining, limit, reset));
            }
            if let Some(remaining) = parameter(field, ',', "remaining") {
                let limit = parameter(field, ',', "limit");
                let reset = parameter(field, ',', "reset").and_then(seconds);
                return Some(RateLimitHint::new(remaining, limit, reset));
            }
        }
        for prefix in ["ratelimit", "x-ratelimit"] {
            if let Some(remaining) = text(&format!("{prefix}-remaining")).and_then(leading_number) {
                let limit = text(&format!("{prefix}-limit")).and_then(leading_number);
                let reset = text(&format!("{prefix}-reset"))
                    .and_then(leading_number)
                    .map(from_now);
                return Some(RateLimitHint::new(remaining, limit, reset));
            }
        }
        None
    }

    /// Hands this hint to the [`Dependency`](super::Dependency) whose call is running,
    /// for its budget; from the client's code, while it reads the answer inside
    /// [`Dependency::call`](super::Dependency::call) or an
    /// [exactly-once](super::ExactlyOnce) method. Elsewhere (outside such a call, or on
    /// another task) it does nothing. The last hint of a call counts.
    pub fn report(self) {
        let _ = REPORTED.try_with(|reported| reported.set(Some(self)));
    }

    /// Whether the dependency is running out for a caller at `rate` calls a second:
    /// less than half the limit left (nothing, when the limit is not known), and that
    /// rate would spend what is left before the reset (when the reset is known).
    pub(crate) fn is_congested(self, rate: f64) -> bool {
        let low = match self.limit {
            Some(limit) if limit > 0 => self.remaining.saturating_mul(2) < limit,
            _ => self.remaining == 0,
        };
        #[allow(clippy::cast_precision_loss, reason = "call counts far below 2^52")]
        let left = self.remaining as f64;
        low && self
            .reset
            .is_none_or(|reset| left < rate * reset.as_secs_f64())
    }
}

/// A reset header's value as a wait: past 10⁹ a Unix time (GitHub's `X-RateLimit-Reset`),
/// else seconds from now.
fn from_now(value: u64) -> Duration {
    const UNIX_TIME: u64 = 1_000_000_000;
    if value < UNIX_TIME {
        return Duration::from_secs(value);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Duration::from_secs(value).saturating_sub(now)
}

/// Runs `call` where [`RateLimitHint::report`] reaches; returns its output and the last
/// hint reported.
pub(crate) async fn collect<F: Future>(call: F) -> (F::Output, Option<RateLimitHint>) {
    REPORTED
        .scope(Cell::new(None), async move {
            let out = call.await;
            (out, REPORTED.with(Cell::get))
        })
        .await
}

/// The value of `name=<number>` among the `separator`-separated parts of `field`.
fn parameter(field: &str, separator: char, name: &str) -> Option<u64> {
    field.split(separator).find_map(|part| {
        let (key, value) = part.split_once('=')?;
        (key.trim().eq_ignore_ascii_case(name))
            .then(|| leading_number(value))
            .flatten()
    })
}

/// The number a header value starts with (`100`, `100, 100;w=60`, `100;w=60`).
fn leading_number(value: &str) -> Option<u64> {
    let value = value.trim();
    let end = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    value[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    const fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn each_header_form_is_read() {
        let cases = [
            (
                headers(&[
                    ("ratelimit", "\"default\";r=50;t=30"),
                    ("ratelimit-policy", "\"default\";q=100;w=60"),
                ]),
                RateLimitHint::new(50, Some(100), Some(secs(30))),
            ),
            (
                headers(&[("ratelimit", "\"burst\";r=3;t=1, \"day\";r=900;t=3600")]),
                RateLimitHint::new(3, None, Some(secs(1))),
            ),
            (
                headers(&[("ratelimit", "limit=100, remaining=50, reset=30")]),
                RateLimitHint::new(50, Some(100), Some(secs(30))),
            ),
            (
                headers(&[
                    ("ratelimit-limit", "100, 100;w=60"),
                    ("ratelimit-remaining", "42"),
                    ("ratelimit-reset", "5"),
                ]),
                RateLimitHint::new(42, Some(100), Some(secs(5))),
            ),
            (
                headers(&[
                    ("x-ratelimit-limit", "5000"),
                    ("x-ratelimit-remaining", "4999"),
                ]),
                RateLimitHint::new(4999, Some(5000), None),
            ),
        ];
        for (map, want) in cases {
            assert_eq!(RateLimitHint::from_headers(&map), Some(want), "{map:?}");
        }
    }

    #[test]
    fn a_reset_past_ten_to_the_ninth_is_a_unix_time() {
        let in_an_hour = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3_600;
        let mut map = headers(&[("x-ratelimit-remaining", "10")]);
        map.insert("x-ratelimit-reset", HeaderValue::from(in_an_hour));
        let reset = RateLimitHint::from_headers(&map).unwrap().reset.unwrap();
        assert!(reset <= Duration::from_secs(3_600), "{reset:?}");
        assert!(reset >= Duration::from_secs(3_590), "{reset:?}");
        // Long past: nothing left to wait.
        map.insert("x-ratelimit-reset", HeaderValue::from(1_000_000_000_u64));
        let past = RateLimitHint::from_headers(&map).unwrap();
        assert_eq!(past.reset, Some(Duration::ZERO));
    }

    #[test]
    fn absent_or_malformed_headers_are_no_hint() {
        for map in [
            HeaderMap::new(),
            headers(&[("ratelimit-remaining", "many")]),
            headers(&[("ratelimit", "\"default\";t=30")]),
            headers(&[("x-ratelimit-limit", "100")]),
        ] {
            assert_eq!(RateLimitHint::from_headers(&map), None, "{map:?}");
        }
    }

    #[test]
    fn congestion_is_under_half_the_limit_at_a_rate_that_spends_it_before_the_reset() {
        // No reset said: under half the limit, or nothing left when no limit is said.
        assert!(RateLimitHint::new(49, Some(100), None).is_congested(1.0));
        assert!(!RateLimitHint::new(50, Some(100), None).is_congested(1.0));
        assert!(RateLimitHint::new(0, None, None).is_congested(1.0));
        assert!(!RateLimitHint::new(1, None, None).is_congested(1.0));
        // With a reset: only if the caller's rate would spend the rest before it.
        assert!(RateLimitHint::new(30, Some(100), Some(secs(1))).is_congested(40.0));
        assert!(!RateLimitHint::new(30, Some(100), Some(secs(1))).is_congested(20.0));
        // An hourly allowance spent at a pace it lasts at is no congestion.
        assert!(!RateLimitHint::new(400, Some(5_000), Some(secs(300))).is_congested(1.0));
        assert!(RateLimitHint::new(400, Some(5_000), Some(secs(300))).is_congested(2.0));
        // A limit that is whole again now.
        assert!(!RateLimitHint::new(0, Some(100), Some(secs(0))).is_congested(100.0));
    }

    #[tokio::test]
    async fn a_report_reaches_only_the_call_it_is_made_in() {
        RateLimitHint::new(1, None, None).report(); // outside any call: nothing happens
        let ((), hint) = collect(async {
            RateLimitHint::new(5, Some(10), None).report();
            RateLimitHint::new(4, Some(10), None).report();
        })
        .await;
        assert_eq!(hint, Some(RateLimitHint::new(4, Some(10), None)));
        let ((), none) = collect(async {}).await;
        assert_eq!(none, None);
    }
}
