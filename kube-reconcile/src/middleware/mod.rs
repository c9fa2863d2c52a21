//! Resilience middleware around any [`Reconciler`](crate::Reconciler) or async call.
//!
//! Every layer follows one contract:
//!
//! - **Never sleep in a reconcile.** A deferral (backing off, rate limited, breaker open)
//!   returns [`Outcome::Deferred`](crate::Outcome::Deferred), which a controller sees as
//!   `Ok(Action::requeue(wait))`. It holds no concurrency slot and is not a failure.
//! - **Shared state, decided in the call.** Layers are `Clone`; clones share state
//!   behind an `Arc`. Each decision is made when the reconcile is called, not in a
//!   readiness poll.
//! - **Cancel-safe.** A dropped future releases what it reserved and records nothing.
//! - **One clock.** Time is tokio's, so `tokio::time::pause()` drives every layer (or a
//!   [`ManualClock`](crate::testing::ManualClock) entered while the layers are built).
//! - **Observable.** Each layer hands out a handle to inspect its state.
//!
//! Recommended order, outside in:
//!
//! ```text
//! Backoff ∘ RateLimit ∘ CircuitBreaker ∘ Timeout ∘ reconcile
//! ```

pub mod backoff;
pub mod circuit_breaker;
pub mod rate_limit;
pub mod timeout;
