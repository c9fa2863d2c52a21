//! Two (then three) real `Controller`s on one server, one per candidate, each reconciler
//! wrapped in its candidate's leader layer, reconciling the same ConfigMaps over and over.
//! Every reconcile records its interval; no two intervals of one object may overlap,
//! only the leader of the moment reconciles, and a new leader takes over in time —
//! after the old leader's elector stalls (the layer alone must cut it off) and after a
//! release.

use std::{
    collections::BTreeMap,
    future::Future,
    pin::Pin,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
};

use futures::StreamExt;
use kube::{
    ResourceExt,
    api::{ObjectMeta, PostParams},
    runtime::{Controller, watcher},
};
use kube_reconcile::ControllerExt;

use super::*;

/// One reconcile: which instance ran it, on which object, from when to when.
#[derive(Clone, Debug)]
pub(crate) struct Interval {
    pub(crate) instance: &'static str,
    pub(crate) object: String,
    pub(crate) start: Instant,
    pub(crate) end: Instant,
}

#[derive(Default)]
pub(crate) struct Log(Mutex<Vec<Interval>>);

impl Log {
    pub(crate) fn intervals(&self) -> Vec<Interval> {
        self.0.lock().expect("log lock").clone()
    }

    /// Asserts that no two intervals of one object overlap, across all instances.
    pub(crate) fn assert_no_overlap(&self) {
        let mut by_object: BTreeMap<String, Vec<Interval>> = BTreeMap::new();
        for i in self.intervals() {
            by_object.entry(i.object.clone()).or_default().push(i);
        }
        for (object, mut intervals) in by_object {
            intervals.sort_by_key(|i| i.start);
            for pair in intervals.windows(2) {
                assert!(
                    pair[0].end <= pair[1].start,
                    "{object}: {:?} overlaps {:?}",
                    pair[0],
                    pair[1]
                );
            }
        }
    }

    pub(crate) fn by(&self, instance: &str) -> Vec<Interval> {
        self.intervals()
            .into_iter()
            .filter(|i| i.instance == instance)
            .collect()
    }
}

pub(crate) struct Ctx {
    pub(crate) instance: &'static str,
    pub(crate) log: Arc<Log>,
    pub(crate) work: Duration,
}

/// Records the interval when dropped, so a cancelled reconcile records when it stopped.
struct Recording<'a> {
    ctx: &'a Ctx,
    object: String,
    start: Instant,
}

impl Drop for Recording<'_> {
    fn drop(&mut self) {
        self.ctx.log.0.lock().expect("log lock").push(Interval {
            instance: self.ctx.instance,
            object: std::mem::take(&mut self.object),
            start: self.start,
            end: Instant::now(),
        });
    }
}

pub(crate) async fn reconcile(cm: Arc<ConfigMap>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    let _recording = Recording {
        ctx: &ctx,
        object: cm.name_any(),
        start: Instant::now(),
    };
    tokio::time::sleep(ctx.work).await;
    Ok(Action::requeue(Duration::from_secs(1)))
}

pub(crate) fn configmap(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some([("app".to_owned(), "leader-test".to_owned())].into()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    }
}

/// Runs a controller for the labelled ConfigMaps of `cms`, reconciling only while
/// `leader` leads.
pub(crate) fn run_controller(
    cms: Api<ConfigMap>,
    leader: &LeaderHandle,
    instance: &'static str,
    log: &Arc<Log>,
    work: Duration,
) -> tokio::task::JoinHandle<()> {
    let ctx = Arc::new(Ctx {
        instance,
        log: Arc::clone(log),
        work,
    });
    let reconciler = reconcile.with(leader.layer().defer(Duration::from_millis(500)));
    let controller = Controller::new(cms, watcher::Config::default().labels("app=leader-test"))
        .run_reconciler(reconciler, ctx);
    tokio::spawn(controller.for_each(|_| async {}))
}

/// A future that stops being polled (without being dropped) once frozen: an elector
/// task that is starved or stuck, while the rest of its process carries on.
struct Freezable<F> {
    inner: Pin<Box<F>>,
    frozen: Arc<AtomicBool>,
}

impl<F: Future> Future for Freezable<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if self.frozen.load(Ordering::SeqCst) {
            return Poll::Pending;
        }
        self.inner.as_mut().poll(cx)
    }
}

#[tokio::test(start_paused = true)]
async fn only_the_leader_reconciles_and_no_object_is_reconciled_by_two_at_once() {
    let server = ApiServer::new();
    let client = server.client();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let objects = ["db-0", "db-1", "db-2", "db-3"];
    for name in objects {
        cms.create(&PostParams::default(), &configmap(name))
            .await
            .expect("create");
    }
    let log = Arc::new(Log::default());
    let work = Duration::from_millis(700);

    // a leads; its elector can be frozen while its controller keeps going.
    let a_elector = elector(&client, "a");
    let a = a_elector.handle();
    let frozen = Arc::new(AtomicBool::new(false));
    let _a_task = tokio::spawn(Freezable {
        inner: Box::pin(a_elector.run()),
        frozen: Arc::clone(&frozen),
    });
    a.leading().await;
    let _a_controller = run_controller(cms.clone(), &a, "a", &log, work);
    let b = elector(&client, "b").spawn();
    let _b_controller = run_controller(cms.clone(), &b, "b", &log, work);

    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(log.by("b").is_empty(), "the follower never reconciled");
    for name in objects {
        let n = log.by("a").iter().filter(|i| i.object == name).count();
        assert!(n >= 15, "{name} reconciled {n} times by the leader");
    }

    // a's elector stalls: no more renewals, no step-down by the elector. a's layer must
    // stop a's reconciles by the renew deadline on its own.
    frozen.store(true, Ordering::SeqCst);
    let stalled = Instant::now();
    b.leading().await;
    let took = stalled.elapsed();
    assert!(took <= LEASE + POLL, "b took over after {took:?}");
    assert!(
        a.subscribe().borrow().is_leader(),
        "a's stalled elector never stepped down"
    );
    assert!(!a.is_leader(), "but a's renew deadline has passed");

    tokio::time::sleep(Duration::from_secs(20)).await;
    let a_last = log
        .by("a")
        .iter()
        .map(|i| i.end)
        .max()
        .expect("a reconciled");
    let b_first = log
        .by("b")
        .iter()
        .map(|i| i.start)
        .min()
        .expect("b reconciled");
    assert!(a_last <= stalled + RENEW, "a stopped by its renew deadline");
    assert!(
        // The margin is LEASE - RENEW (5 s); allow a retry period of observation lag.
        b_first >= a_last + Duration::from_secs(3),
        "a margin between a's last reconcile ({a_last:?}) and b's first ({b_first:?})"
    );
    for name in objects {
        assert!(
            log.by("b").iter().any(|i| i.object == name),
            "b reconciles {name}"
        );
    }

    // c joins; b releases on shutdown and c takes over within a poll.
    let c = elector(&client, "c").spawn();
    let _c_controller = run_controller(cms.clone(), &c, "c", &log, work);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(log.by("c").is_empty());
    b.release().await.expect("b releases");
    let released = Instant::now();
    c.leading().await;
    assert!(released.elapsed() <= POLL);
    tokio::time::sleep(Duration::from_secs(20)).await;
    let b_last = log
        .by("b")
        .iter()
        .map(|i| i.end)
        .max()
        .expect("b reconciled");
    let c_first = log
        .by("c")
        .iter()
        .map(|i| i.start)
        .min()
        .expect("c reconciled");
    assert!(b_last <= released, "b finished before its release returned");
    assert!(b_last <= c_first);
    log.assert_no_overlap();
}
