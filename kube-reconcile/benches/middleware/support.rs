//! Shared bench plumbing: an allocation counter and the closing ratio table.

#![allow(dead_code, reason = "each bench binary uses a different part")]

use std::{alloc::System, path::PathBuf};

use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

/// The allocator to install with `#[global_allocator]`: the system one, instrumented.
pub(crate) static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// How many allocations `f` made.
pub(crate) fn allocations<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCATOR.stats().allocations;
    let out = f();
    (out, ALLOCATOR.stats().allocations - before)
}

/// Bytes currently allocated by the whole process.
pub(crate) fn live_bytes() -> usize {
    let s = ALLOCATOR.stats();
    // A reallocation's growth or shrink is already counted in allocated/deallocated.
    s.bytes_allocated.saturating_sub(s.bytes_deallocated)
}

/// One line of the closing table.
enum Line {
    /// `ours` and `peer` are criterion ids (`group/function`); the ratio is ours / peer.
    Ratio {
        what: &'static str,
        ours: String,
        peer: String,
        target: &'static str,
    },
    /// A measured fact with its target.
    Fact {
        what: &'static str,
        value: String,
        target: &'static str,
    },
}

/// The closing table: ratios read from criterion's estimates, and facts.
#[derive(Default)]
pub(crate) struct Report {
    lines: Vec<Line>,
}

impl Report {
    /// Compares two criterion benchmarks by their mean.
    pub(crate) fn ratio(
        &mut self,
        what: &'static str,
        ours: &str,
        peer: &str,
        target: &'static str,
    ) {
        self.lines.push(Line::Ratio {
            what,
            ours: ours.into(),
            peer: peer.into(),
            target,
        });
    }

    /// Records a measured fact (memory per key, allocations per call, ...).
    pub(crate) fn fact(
        &mut self,
        what: &'static str,
        value: impl std::fmt::Display,
        target: &'static str,
    ) {
        self.lines.push(Line::Fact {
            what,
            value: value.to_string(),
            target,
        });
    }

    /// Prints the table. Benchmarks that did not run (filtered out, `--test`) are skipped.
    pub(crate) fn print(&self) {
        println!("\n== kube-reconcile middleware: ours vs peer (same run) ==");
        for line in &self.lines {
            match line {
                Line::Ratio {
                    what,
                    ours,
                    peer,
                    target,
                } => match (mean_ns(ours), mean_ns(peer)) {
                    (Some(o), Some(p)) => println!(
                        "{what:<48} ours {o:>10.1} ns | peer {p:>10.1} ns | ratio {:>6.2}x | target {target}",
                        o / p
                    ),
                    _ => println!("{what:<48} not measured in this run"),
                },
                Line::Fact {
                    what,
                    value,
                    target,
                } => {
                    println!("{what:<48} {value:>30} | target {target}");
                }
            }
        }
    }
}

fn criterion_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return home.into();
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    target.join("criterion")
}

/// Mean time per iteration of a criterion benchmark from this run, in nanoseconds.
pub(crate) fn mean_ns(id: &str) -> Option<f64> {
    let path = criterion_home().join(id).join("new").join("estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json.get("mean")?.get("point_estimate")?.as_f64()
}
