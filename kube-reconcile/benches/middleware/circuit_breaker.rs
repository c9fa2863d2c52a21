//! Circuit breaker: the closed path (admit + record a success) against `recloser`.

use std::{hint::black_box, num::NonZeroU32, time::Duration};

use criterion::Criterion;
use kube_reconcile::{
    ErrorClass,
    middleware::circuit_breaker::{Breaker, BreakerConfig, Window},
};

use crate::support::{Report, allocations, live_bytes};

const GROUP: &str = "circuit_breaker";

pub(crate) fn benches(c: &mut Criterion, report: &mut Report) {
    let ours = Breaker::new("dbaas");
    let peer = recloser::Recloser::default();
    let timed = BreakerConfig::default()
        .window(Window::time(Duration::from_secs(60)))
        .build("dbaas")
        .expect("valid config");
    let open = Breaker::new("dbaas");
    open.force_open();

    let mut g = c.benchmark_group(GROUP);
    g.bench_function("closed_admit_record", |b| {
        b.iter(|| black_box(&ours).try_acquire().expect("closed").success());
    });
    g.bench_function("recloser_closed_call", |b| {
        b.iter(|| black_box(&peer).call(|| Ok::<_, ()>(())).expect("closed"));
    });
    g.bench_function("closed_call_ready_future", |b| {
        b.iter(|| {
            let call = black_box(&ours).call(std::future::ready(Ok::<_, ErrorClass>(())));
            futures::FutureExt::now_or_never(call)
                .expect("ready")
                .expect("closed");
        });
    });
    g.bench_function("closed_time_window_admit_record", |b| {
        b.iter(|| black_box(&timed).try_acquire().expect("closed").success());
    });
    g.bench_function("open_reject", |b| {
        b.iter(|| black_box(&open).try_acquire().expect_err("forced open"));
    });
    g.finish();

    // Closed path, with the same 1000 calls as a failing dependency would see them
    // (one failure in ten, below the threshold).
    let quiet = BreakerConfig::default()
        .consecutive_failures(0)
        .failure_rate_threshold(1.0)
        .min_calls(NonZeroU32::new(50).expect("not zero"))
        .build("dbaas")
        .expect("valid config");
    let ((), allocs) = allocations(|| {
        for i in 0..1000 {
            let permit = quiet.try_acquire().expect("closed");
            if i % 10 == 0 {
                permit.failure(ErrorClass::Transient);
            } else {
                permit.success();
            }
        }
    });
    let before = live_bytes();
    let sized = Breaker::new("dbaas");
    let bytes = live_bytes() - before;

    report.ratio(
        "circuit breaker: closed admit+record vs recloser",
        &format!("{GROUP}/closed_admit_record"),
        &format!("{GROUP}/recloser_closed_call"),
        "≤ 25 ns",
    );
    report.fact(
        "circuit breaker: allocations per closed-path call",
        format!(
            "{:.3}",
            f64::from(u32::try_from(allocs).unwrap_or(u32::MAX)) / 1000.0
        ),
        "0",
    );
    report.fact(
        "circuit breaker: bytes per breaker (50-call window)",
        bytes,
        "small; one per dependency",
    );
    drop(sized);
}
