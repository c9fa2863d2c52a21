//! The operator's heap, apart from the world it runs in.
//!
//! The bench runs the operator in the same process as its world: the embedded API server
//! (which stores every object, its history and its watchers' queues), the DBaaS, the workload
//! simulator and the bench's own watchers. In a cluster the server lives in another process,
//! and its heap is not the operator's: it made the process's peak about 13 times the
//! operator's own. So each block carries the allocation group that allocated it
//! (`tracking-allocator` writes it in a header), and is counted off that group's side
//! whichever thread frees it:
//!
//! - the world's side: every request the API server serves through [`OnWorld`], the watch
//!   tasks it spawns (on [`world_runtime`]), and any future polled through [`world_side`]
//!   (building the world, creating the Databases, the bench's watchers);
//! - the operator's side: everything else. That includes the DBaaS's and the simulator's
//!   own tasks, which run beside the operator as they always have (moving them changes the
//!   naive operator's timing): the operator's peak is overstated by their state, never
//!   understated.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc, LazyLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    thread::JoinHandle,
    time::Duration,
};

use kube::client::Body;
use kube_reconcile_testing::ApiServer;
use tracking_allocator::{
    AllocationGroupId, AllocationGroupToken, AllocationRegistry, AllocationTracker,
};

/// The system allocator, with each block's allocation group written in a header, so a block
/// is counted off the side that allocated it.
pub(crate) type SidedAlloc = tracking_allocator::Allocator<std::alloc::System>;

/// Bytes allocated and not freed: the operator's side (the root group: no group entered)
/// and the world's (every other group).
static OPERATOR: AtomicUsize = AtomicUsize::new(0);
static WORLD: AtomicUsize = AtomicUsize::new(0);

fn side(group: &AllocationGroupId) -> &'static AtomicUsize {
    if *group == AllocationGroupId::ROOT {
        &OPERATOR
    } else {
        &WORLD
    }
}

struct Sides;

impl AllocationTracker for Sides {
    fn allocated(&self, _addr: usize, size: usize, _wrapped: usize, group: AllocationGroupId) {
        side(&group).fetch_add(size, Ordering::Relaxed);
    }

    fn deallocated(
        &self,
        _addr: usize,
        size: usize,
        _wrapped: usize,
        source: AllocationGroupId,
        _current: AllocationGroupId,
    ) {
        side(&source).fetch_sub(size, Ordering::Relaxed);
    }
}

/// Starts counting; blocks allocated before are counted on neither side, ever.
pub(crate) fn start_counting() {
    // A second call finds the tracker set; it is the same one.
    let _ = AllocationRegistry::set_global_tracker(Sides);
    AllocationRegistry::enable_tracking();
}

/// Bytes the operator's side has allocated and not yet freed.
pub(crate) fn live_heap() -> usize {
    OPERATOR.load(Ordering::Relaxed)
}

/// Enters a group of the world's side on this thread for the rest of its life.
fn world_thread() {
    let token: &'static mut AllocationGroupToken = Box::leak(Box::new(
        AllocationGroupToken::register().expect("allocation group ids left"),
    ));
    std::mem::forget(token.enter());
}

/// The runtime the API server's watch tasks run on; its threads count on the world's side.
pub(crate) fn world_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("world-watches")
            .on_thread_start(world_thread)
            .enable_all()
            .build()
            .expect("the world's tokio runtime")
    });
    &RUNTIME
}

/// `future`, counting what its polls allocate on the world's side, wherever it runs.
pub(crate) fn world_side<F: Future>(future: F) -> impl Future<Output = F::Output> {
    let mut future = Box::pin(future);
    // `register` answers `None` now and then when threads register at once (it checks the
    // id it took against a maximum other threads move, and loses that race; seen once in a
    // run at N = 10,000): the next try takes a fresh id.
    let mut token = loop {
        if let Some(token) = AllocationGroupToken::register() {
            break token;
        }
    };
    std::future::poll_fn(move |cx| {
        let _world = token.enter();
        future.as_mut().poll(cx)
    })
}

/// The embedded API server as a tower service whose work counts on the world's side, as a
/// server in another process would: each request is served inside a world group, and a watch
/// (whose task the server spawns and which lives on after the request) is served on the
/// world's runtime.
#[derive(Clone)]
pub(crate) struct OnWorld(pub(crate) ApiServer);

impl tower::Service<http::Request<Body>> for OnWorld {
    type Response = <ApiServer as tower::Service<http::Request<Body>>>::Response;
    type Error = <ApiServer as tower::Service<http::Request<Body>>>::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::poll_ready(&mut self.0, cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let watch = super::measure::is_watch(request.uri());
        let served = tower::Service::call(&mut self.0, request);
        if !watch {
            // Served where it is awaited: a hop to another runtime would slow every request.
            return Box::pin(world_side(served));
        }
        let served = world_runtime().spawn(served);
        Box::pin(async move {
            served
                .await
                .unwrap_or_else(|e| panic!("the API server's watch task failed: {e}"))
        })
    }
}

/// The peak of the operator's live heap while it runs, sampled every millisecond.
///
/// Sampled from a thread of its own, so the peak misses only spikes shorter than a
/// millisecond.
pub(crate) struct PeakHeap {
    peak: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PeakHeap {
    /// Starts sampling; the peak starts at the heap as it is now.
    pub(crate) fn start() -> Self {
        let peak = Arc::new(AtomicUsize::new(live_heap()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (peak, stop) = (peak.clone(), stop.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(live_heap(), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        PeakHeap {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling; returns the peak.
    pub(crate) fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}
