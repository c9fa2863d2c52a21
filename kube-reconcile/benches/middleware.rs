//! Middleware cost, each figure next to a named peer measured in the same run.
//!
//! `cargo bench --bench middleware` runs everything and ends with a table of ratios
//! (ours / peer) and per-key memory. Run with `-- --quick` for a fast pass.

#[path = "middleware/support.rs"]
mod support;

#[path = "middleware/backoff.rs"]
mod backoff;
#[path = "middleware/circuit_breaker.rs"]
mod circuit_breaker;
#[path = "middleware/rate_limit.rs"]
mod rate_limit;
#[path = "middleware/stack.rs"]
mod stack;

#[global_allocator]
static ALLOC: &stats_alloc::StatsAlloc<std::alloc::System> = support::ALLOCATOR;

fn main() {
    let mut c = criterion::Criterion::default().configure_from_args();
    let mut report = support::Report::default();
    circuit_breaker::benches(&mut c, &mut report);
    rate_limit::benches(&mut c, &mut report);
    backoff::benches(&mut c, &mut report);
    stack::benches(&mut c, &mut report);
    // Pauses a runtime, which changes tokio's clock path for the rest of the process.
    rate_limit::paused_clock(&mut c, &mut report);
    c.final_summary();
    report.print();
}
