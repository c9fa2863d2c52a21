//! Helpers shared by the workspace's integration tests (not published): running one
//! test body on both servers, a request-recording client, a small test CRD, and where
//! the Kubernetes binaries are.

#![allow(
    clippy::missing_panics_doc,
    reason = "test helpers: a panic fails the test that called them, with its message"
)]

pub mod binaries;
pub mod recorder;
pub mod tier;
pub mod widget;
