//! The whole recommended stack around a no-op reconcile, next to the bare reconcile.

use std::{hint::black_box, num::NonZeroU32, sync::Arc, time::Duration};

use criterion::Criterion;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{api::ObjectMeta, runtime::controller::Action};
use kube_reconcile::{
    ErrorClass, Reconciler, ReconcilerExt,
    middleware::{
        backoff::BackoffLayer,
        circuit_breaker::CircuitBreakerLayer,
        rate_limit::{Quota, RateLimitLayer},
        timeout::TimeoutLayer,
    },
};

use crate::support::{Report, allocations, mean_ns};

#[allow(
    clippy::unused_async,
    reason = "the shape kube-runtime reconcilers have"
)]
async fn noop(_: Arc<ConfigMap>, _: Arc<()>) -> Result<Action, ErrorClass> {
    Ok(Action::await_change())
}

pub(crate) fn benches(c: &mut Criterion, report: &mut Report) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _entered = rt.enter();
    let obj = Arc::new(ConfigMap {
        metadata: ObjectMeta {
            name: Some("bench".into()),
            namespace: Some("default".into()),
            uid: Some("4b9b6f5c-1d2e-4f00-8a1b-000000000001".into()),
            generation: Some(1),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    });
    let ctx = Arc::new(());
    let plenty = Quota::per_second(NonZeroU32::MAX);
    let stack = noop
        .with(TimeoutLayer::new(Duration::from_secs(30)))
        .with(CircuitBreakerLayer::new("bench"))
        .with(RateLimitLayer::per_object(plenty))
        .with(BackoffLayer::operator());

    let mut group = c.benchmark_group("stack");
    group.bench_function("bare_reconcile", |b| {
        b.iter(|| {
            black_box(futures::executor::block_on(Reconciler::call(
                &noop,
                Arc::clone(&obj),
                Arc::clone(&ctx),
            )))
        });
    });
    group.bench_function("whole_stack", |b| {
        b.iter(|| {
            black_box(futures::executor::block_on(
                stack.call(Arc::clone(&obj), Arc::clone(&ctx)),
            ))
        });
    });
    group.finish();

    let ((), allocs) = allocations(|| {
        for _ in 0..1000 {
            black_box(futures::executor::block_on(
                stack.call(Arc::clone(&obj), Arc::clone(&ctx)),
            ));
        }
    });
    report.ratio(
        "whole stack around a no-op vs bare reconcile",
        "stack/whole_stack",
        "stack/bare_reconcile",
        "≤ 250 ns over bare",
    );
    if let (Some(stack), Some(bare)) = (
        mean_ns("stack/whole_stack"),
        mean_ns("stack/bare_reconcile"),
    ) {
        report.fact(
            "whole stack: ns added over bare",
            format!("{:.1} ns", stack - bare),
            "≤ 250 ns",
        );
    }
    #[allow(
        clippy::cast_precision_loss,
        reason = "a count of at most a few thousand"
    )]
    report.fact(
        "whole stack: allocations per call",
        format!("{:.3}", allocs as f64 / 1000.0),
        "0",
    );
}
