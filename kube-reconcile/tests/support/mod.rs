//! Helpers of the library's own integration tests (the workspace-wide ones are in the
//! `kube-reconcile-test-support` crate).

pub mod dbaas;
