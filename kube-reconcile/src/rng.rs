//! Seedable randomness for jitter, shared by the clones of one layer.

use std::{sync::Mutex, time::Duration};

/// A seedable generator behind a mutex; taken only off the hot path (failures, deferrals).
#[derive(Debug)]
pub(crate) struct Rng(Mutex<fastrand::Rng>);

impl Rng {
    /// A generator seeded from `seed`, or from the OS when `None`.
    pub(crate) fn new(seed: Option<u64>) -> Self {
        Rng(Mutex::new(
            seed.map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed),
        ))
    }

    /// A uniform draw from `[0, 1)`.
    pub(crate) fn fraction(&self) -> f64 {
        // A poisoned lock only means another thread panicked while drawing; the
        // generator state is still a valid generator state.
        let mut rng = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        rng.f64()
    }

    /// A uniform duration in `[0, max]`.
    pub(crate) fn up_to(&self, max: Duration) -> Duration {
        max.mul_f64(self.fraction())
    }
}

impl Default for Rng {
    fn default() -> Self {
        Rng::new(None)
    }
}
