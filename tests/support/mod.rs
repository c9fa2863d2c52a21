//! Shared helpers of the integration tests.

#![allow(dead_code, unreachable_pub)] // reason: each test binary uses a different subset

pub mod binaries;
pub mod dbaas;
pub mod recorder;
pub mod tier;
pub mod widget;
