//! For tests of operators built on this crate: a clock that moves only when told to.
//!
//! Every layer, budget, breaker, lease and phase deadline reads tokio's time, so a test
//! that pauses it (`#[tokio::test(start_paused = true)]`) and calls
//! `tokio::time::advance()` drives them all, with no setting to pass: that is the way on
//! the embedded API server of `kube-reconcile-testing`. Against a real kube-apiserver,
//! tokio's time cannot be paused (the HTTP client's timeouts would fire at once); there,
//! build the layers while a [`ManualClock`] is [entered](ManualClock::enter) and
//! [advance](ManualClock::advance) it yourself.

pub use crate::clock::{EnteredClock, ManualClock};
