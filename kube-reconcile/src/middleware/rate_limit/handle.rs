//! [`RateLimitHandle`]: what a layer's limits hold right now.

use std::{fmt, sync::Arc};

use super::layer::{Limit, Shared};
use crate::reconciler::ObjectKey;

/// A view of a [`RateLimitLayer`](super::RateLimitLayer)'s limits, for the deferral
/// status, metrics and [`Running::tracked`](crate::phase::Running::tracked).
///
/// Limits are named as deferrals name them: `"global"`, `"object"` and each budget's
/// name.
#[derive(Clone)]
pub(crate) struct RateLimitHandle {
    shared: Arc<Shared>,
}

impl RateLimitHandle {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        RateLimitHandle { shared }
    }

    /// The names of the layer's limits, in the order a call checks them.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.shared.limits.iter().map(|limit| &**limit.name())
    }

    /// The free capacity of the `"global"` limit or of a budget, by name.
    ///
    /// `None` for an unknown name and for `"object"`: see
    /// [`object_capacity`](Self::object_capacity).
    #[cfg(test)]
    pub(crate) fn capacity(&self, name: &str) -> Option<super::gcra::Capacity> {
        self.shared.limits.iter().find_map(|limit| match limit {
            Limit::Global(n, limiter) if &**n == name => Some(limiter.capacity()),
            Limit::Budget(budget) if budget.name() == name => Some(budget.capacity()),
            _ => None,
        })
    }

    /// The free capacity of `obj`'s own limit; `None` without a per-object limit.
    #[cfg(test)]
    pub(crate) fn object_capacity<K: kube::Resource>(
        &self,
        obj: &K,
    ) -> Option<super::gcra::Capacity> {
        self.per_object()
            .map(|limiter| limiter.capacity(&*ObjectKey::lookup(obj)))
    }

    /// How many objects the per-object limit tracks (including full ones not yet pruned).
    #[cfg(test)]
    pub(crate) fn keys_tracked(&self) -> usize {
        self.per_object().map_or(0, super::KeyedLimiter::len)
    }

    /// Forgets objects whose limit is full again; returns how many are still tracked.
    ///
    /// Pruning also happens by itself as new objects arrive; this runs it now.
    pub(crate) fn sweep(&self) -> usize {
        self.per_object().map_or(0, super::KeyedLimiter::sweep)
    }

    fn per_object(&self) -> Option<&super::KeyedLimiter<ObjectKey>> {
        self.shared.limits.iter().find_map(|limit| match limit {
            Limit::PerObject(_, limiter) => Some(limiter),
            _ => None,
        })
    }
}

impl fmt::Debug for RateLimitHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}
