//! [`ShardLayer`]: reconcile only this member's objects, hand them over when asked.

use std::{fmt, sync::Arc, time::Duration};

use kube::{Client, Resource, core::ApiResource, runtime::controller::Action};
use serde_json::json;
use tower_layer::Layer;

use super::{
    handle::{ShardEvent, Shared},
    labels::relabel,
};
use crate::{
    leader::{Leader, LeaderLayer},
    reconciler::{Outcome, Reconciler},
};

/// Wraps reconcilers so they run only for this member's objects; see [`Sharded`].
#[derive(Clone)]
pub struct ShardLayer {
    pub(super) shared: Arc<Shared>,
    pub(super) client: Client,
}

impl fmt::Debug for ShardLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardLayer")
            .field("ring", &self.shared.config.ring())
            .field("identity", &self.shared.config.identity_str())
            .finish_non_exhaustive()
    }
}

impl<R> Layer<R> for ShardLayer {
    type Service = Sharded<R>;

    fn layer(&self, inner: R) -> Sharded<R> {
        let hand_over = HandOver {
            inner,
            shared: Arc::clone(&self.shared),
            client: self.client.clone(),
        };
        Sharded {
            inner: LeaderLayer::new(self.shared.member.clone()).layer(hand_over),
        }
    }
}

/// A reconciler that runs only for the objects its member owns, while it holds its
/// membership Lease.
///
/// A call is admitted under the member's Lease exactly as [`Leader`] admits one under
/// a leader's (deferred with [`DeferReason::NotLeader`](crate::reconciler::DeferReason)
/// naming the member's Lease while it is not held, cut at the end of its term). An
/// admitted call whose object is labelled for another member (a stale event) does
/// nothing; one whose object carries the ring's drain label hands it over: it removes
/// the object's shard and drain labels, conditional on the version it read, and the
/// assigner then gives the object to its new owner.
///
/// # Guarantees
///
/// - A hand-over happens inside an admitted reconcile of the object, so no reconcile of
///   it runs on this member at that moment, and none runs afterwards: the object no
///   longer matches this member's watch, and a stale copy still carries the drain label.
/// - After a crash or a partition the member's reconciles stop at its renew deadline;
///   the assigner moves its objects only after the member's Lease went unchanged for the
///   lease duration. The [`Leader`] caveats (no fencing, clock rates) apply.
pub struct Sharded<R> {
    inner: Leader<HandOver<R>>,
}

impl<R: fmt::Debug> fmt::Debug for Sharded<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sharded")
            .field("inner", &self.inner)
            .finish()
    }
}

impl<R: Clone> Clone for Sharded<R> {
    fn clone(&self) -> Self {
        Sharded {
            inner: self.inner.clone(),
        }
    }
}

impl<K, Ctx, R> Reconciler<K, Ctx> for Sharded<R>
where
    R: Reconciler<K, Ctx>,
    K: Resource + Send + Sync,
    K::DynamicType: Default,
    Ctx: Send + Sync,
{
    type Error = R::Error;

    async fn reconcile(&self, obj: Arc<K>, ctx: Arc<Ctx>) -> Result<Action, Self::Error> {
        self.inner.reconcile(obj, ctx).await
    }

    async fn call(&self, obj: Arc<K>, ctx: Arc<Ctx>) -> Outcome<Self::Error> {
        self.inner.call(obj, ctx).await
    }

    fn error_action(&self, obj: &K, error: &Self::Error) -> Action {
        self.inner.error_action(obj, error)
    }
}

/// The inside of [`Sharded`]: skips objects that are not this member's, hands over
/// drained ones, runs the reconciler on the rest.
#[derive(Clone)]
struct HandOver<R> {
    inner: R,
    shared: Arc<Shared>,
    client: Client,
}

impl<R: fmt::Debug> fmt::Debug for HandOver<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandOver")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<R> HandOver<R> {
    /// Removes the object's shard and drain labels, if it is still the version seen.
    async fn hand_over<K>(&self, obj: &K) -> Action
    where
        K: Resource,
        K::DynamicType: Default,
    {
        let config = &self.shared.config;
        let meta = obj.meta();
        let resource = ApiResource::erase::<K>(&K::DynamicType::default());
        let labels = json!({ config.shard_label(): null, config.drain_label(): null });
        let name = meta.name.as_deref().unwrap_or_default();
        match relabel(&self.client, &resource, meta, labels).await {
            Ok(()) => {
                self.shared.record(ShardEvent::HandedOver);
                tracing::debug!(object = name, "handed over to the ring");
                Action::await_change()
            }
            Err(kube::Error::Api(e)) if e.code == 404 => Action::await_change(),
            // Changed since: the next event brings the new version (still drained).
            Err(error) => {
                tracing::debug!(object = name, %error, "hand-over not written; trying again");
                Action::requeue(Duration::from_secs(1))
            }
        }
    }
}

impl<K, Ctx, R> Reconciler<K, Ctx> for HandOver<R>
where
    R: Reconciler<K, Ctx>,
    K: Resource + Send + Sync,
    K::DynamicType: Default,
    Ctx: Send + Sync,
{
    type Error = R::Error;

    async fn reconcile(&self, obj: Arc<K>, ctx: Arc<Ctx>) -> Result<Action, Self::Error> {
        self.call(obj, ctx).await.into_result()
    }

    async fn call(&self, obj: Arc<K>, ctx: Arc<Ctx>) -> Outcome<Self::Error> {
        self.shared.recount();
        let config = &self.shared.config;
        let labels = obj.meta().labels.as_ref();
        let owner = labels.and_then(|l| l.get(&config.shard_label()));
        if owner.map(String::as_str) != Some(config.identity_str()) {
            // A stale copy of an object this member no longer owns.
            return Outcome::Done(Action::await_change());
        }
        if labels.is_some_and(|l| l.contains_key(&config.drain_label())) {
            return Outcome::Done(self.hand_over(obj.as_ref()).await);
        }
        self.inner.call(obj, ctx).await
    }

    fn error_action(&self, obj: &K, error: &Self::Error) -> Action {
        self.inner.error_action(obj, error)
    }
}
