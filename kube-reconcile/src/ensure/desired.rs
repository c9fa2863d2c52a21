//! [`Ensure`]: the trait a user implements for one child of an owner.

use kube::Resource;
use serde::{Serialize, de::DeserializeOwned};

use super::{Children, Ensured, error::EnsureError};

/// One child object of an owner `K`: its desired state, how it is written and,
/// optionally, when it counts as ready. The library does the machinery (see the [module
/// documentation](super)): owner references and standard labels, a semantic compare,
/// **zero writes when nothing changed**, conflicts retried once.
///
/// Implement it on a small type per child and ask the step for it in a phase handler
/// ([`Step::ensure`](crate::phase::Step::ensure)), or call
/// [`Children::ensure`] from any reconciler.
///
/// # Examples
///
/// ```
/// use std::collections::BTreeMap;
/// use k8s_openapi::api::core::v1::{ConfigMap, Secret};
/// use kube::{ResourceExt, api::ObjectMeta};
/// use kube_reconcile::ensure::{Ensure, Strategy};
///
/// /// The owner's settings, as a ConfigMap next to it.
/// struct Settings;
///
/// impl Ensure<ConfigMap> for Settings {
///     type Child = ConfigMap;
///     fn desired(&self, owner: &ConfigMap) -> ConfigMap {
///         ConfigMap {
///             metadata: ObjectMeta { name: Some(format!("{}-settings", owner.name_any())), ..Default::default() },
///             data: Some(BTreeMap::from([("log_level".into(), "info".into())])),
///             ..Default::default()
///         }
///     }
/// }
///
/// /// A generated password: written once, never regenerated.
/// struct Credentials(String);
///
/// impl Ensure<ConfigMap> for Credentials {
///     type Child = Secret;
///     fn desired(&self, owner: &ConfigMap) -> Secret {
///         Secret {
///             metadata: ObjectMeta { name: Some(format!("{}-credentials", owner.name_any())), ..Default::default() },
///             string_data: Some(BTreeMap::from([("password".into(), self.0.clone())])),
///             ..Default::default()
///         }
///     }
///     fn strategy(&self) -> Strategy {
///         Strategy::CreateOnly
///     }
/// }
/// ```
pub trait Ensure<K>: Send + Sync {
    /// The child's kind.
    type Child: Resource<DynamicType = (), Scope: 'static>
        + Serialize
        + DeserializeOwned
        + Send
        + Sync;

    /// The child as it should be, from the owner. Only what the operator decides needs
    /// setting: owner reference, standard labels and namespace are added.
    fn desired(&self, owner: &K) -> Self::Child;

    /// How the child is written. Default: [`Strategy::Apply`].
    fn strategy(&self) -> Strategy {
        Strategy::Apply
    }

    /// Whether the live child is ready (replicas up, a load balancer address
    /// assigned...). Default: ready as soon as it exists.
    fn readiness(&self, live: &Self::Child) -> Readiness {
        let _ = live;
        Readiness::Ready
    }
}

/// How an [`Ensure`] child is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Strategy {
    /// Server-side apply with the field manager, sent only when a field we apply
    /// differs or is no longer applied ([`Children::apply`]).
    #[default]
    Apply,
    /// Create, or one JSON merge patch of the fields the desired object sets that differ
    /// ([`Children::patch`]).
    Patch,
    /// Create if missing, never update: for generated values such as a password
    /// ([`Children::create_only`]).
    CreateOnly,
    /// Delete if present (only a child that is ours), by the desired object's name
    /// ([`Children::absent`]).
    Absent,
}

/// Whether an [`Ensure`] child is ready, and if not, why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Ready.
    Ready,
    /// Not yet: what is missing (`"2/3 replicas ready"`), for a transition's message.
    Waiting(String),
}

impl Readiness {
    /// Whether the child is ready.
    pub const fn is_ready(&self) -> bool {
        matches!(self, Readiness::Ready)
    }
}

impl Children {
    /// Writes `child` of `owner` by its [strategy](Ensure::strategy); see the strategy's
    /// method for what is compared and written.
    ///
    /// # Errors
    ///
    /// As for the strategy's method ([`apply`](Self::apply), [`patch`](Self::patch),
    /// [`create_only`](Self::create_only), [`absent`](Self::absent)).
    pub async fn ensure<K, E>(&self, owner: &K, child: &E) -> Result<Ensured, EnsureError>
    where
        E: Ensure<K>,
        <E::Child as Resource>::Scope: 'static,
    {
        let desired = child.desired(owner);
        match child.strategy() {
            Strategy::Apply => self.apply(&desired).await,
            Strategy::Patch => self.patch(&desired).await,
            Strategy::CreateOnly => self.create_only(&desired).await,
            Strategy::Absent => {
                let name = desired.meta().name.clone().unwrap_or_default();
                self.absent::<E::Child>(&name).await
            }
        }
    }

    /// Reads `child` of `owner` and asks it whether it is [ready](Ensure::readiness); a
    /// child that does not exist is waiting.
    ///
    /// # Errors
    ///
    /// `NotOwned` for a child that is not ours, `MissingField` and `Api` as for
    /// [`apply`](Self::apply).
    pub async fn readiness<K, E>(&self, owner: &K, child: &E) -> Result<Readiness, EnsureError>
    where
        E: Ensure<K>,
        <E::Child as Resource>::Scope: 'static,
    {
        let desired = child.desired(owner);
        let target = self.target(&desired, &())?;
        let shown = target.display();
        let Some(live) = self.read(&target.location, &target.name).await? else {
            return Ok(Readiness::Waiting(format!("{shown} does not exist yet")));
        };
        self.check_owner(&live, &target.location.kind, &shown, false)?;
        let live: E::Child = serde_json::from_value(live).map_err(|e| {
            super::write::api_error("reading", &target.location.kind, &shown)(
                kube::Error::SerdeError(e),
            )
        })?;
        Ok(child.readiness(&live))
    }
}
