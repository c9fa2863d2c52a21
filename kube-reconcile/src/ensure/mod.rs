//! Idempotent management of child objects: create, update only what differs, delete, prune.
//!
//! Implement [`Ensure<K>`](Ensure) for each child of your owner kind `K`: its desired
//! state, its [`Strategy`] and, optionally, its [`Readiness`]. A phase handler asks its
//! step for it ([`Step::ensure`](crate::phase::Step::ensure)); any other reconciler uses
//! [`Children::ensure`]. Both run the machinery below.
//!
//! [`Children`] makes a child object (any kind, typed or [`DynamicObject`]) match a desired
//! object and says what it did: [`Ensured::Created`], [`Ensured::Updated`] with the paths
//! of the fields that differed, or [`Ensured::Unchanged`]. **When nothing differs, nothing
//! is written** — not even a server-side apply — so a reconcile loop that runs every few
//! seconds costs one GET per child and never bumps a `resourceVersion` (no watch event,
//! no self-triggered reconcile).
//!
//! | Strategy | Call | Creates | Updates | Compares |
//! |---|---|---|---|---|
//! | Server-side apply (default) | [`Children::apply`] | yes | one apply, forced | the fields our field manager owns |
//! | Create or patch | [`Children::patch`] | yes | one JSON merge patch with `resourceVersion` | only the fields the desired object sets |
//! | Create only | [`Children::create_only`] | yes | never | nothing (an existing object is kept as it is) |
//! | Children absent | [`Children::absent`] | — | deletes (uid precondition) | — |
//! | Prune orphans | [`Children::prune`] | — | deletes labelled children not kept | — |
//!
//! Every child gets a controller owner reference to the owner (so it is garbage-collected
//! with it) and the standard labels `app.kubernetes.io/managed-by` (the field manager),
//! `app.kubernetes.io/instance` (the owner's name), `app.kubernetes.io/name` (the owner's
//! kind, lowercased) and, if configured, `app.kubernetes.io/part-of`; see [`EnsureConfig`].
//! Namespaced children of a namespaced owner go to the owner's namespace unless the desired
//! object names one.
//!
//! # Examples
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::collections::BTreeMap;
//! use k8s_openapi::api::core::v1::{ConfigMap, Secret};
//! use kube::{Api, api::{ObjectMeta, PostParams}};
//! use kube_reconcile::ensure::{Children, EnsureConfig, Ensured};
//! # use kube_reconcile_testing::ApiServer;
//! # let server = ApiServer::new();
//! # let client = server.client();
//!
//! // The owner: your custom resource (a ConfigMap stands in for it here).
//! let owner = Api::<ConfigMap>::default_namespaced(client.clone())
//!     .create(&PostParams::default(), &ConfigMap {
//!         metadata: ObjectMeta { name: Some("prod".into()), ..Default::default() },
//!         ..Default::default()
//!     })
//!     .await?;
//! let ensure = Children::with_config(client, &owner, EnsureConfig::default())?;
//!
//! let settings = |level: &str| ConfigMap {
//!     metadata: ObjectMeta { name: Some("prod-settings".into()), ..Default::default() },
//!     data: Some(BTreeMap::from([("log_level".into(), level.into())])),
//!     ..Default::default()
//! };
//! assert_eq!(ensure.apply(&settings("info")).await?, Ensured::Created);
//! assert_eq!(ensure.apply(&settings("info")).await?, Ensured::Unchanged); // no write
//! assert_eq!(
//!     ensure.apply(&settings("debug")).await?,
//!     Ensured::Updated { fields: vec!["data.log_level".into()] },
//! );
//!
//! // A generated password: created once, never regenerated or overwritten.
//! let password = |pw: &str| Secret {
//!     metadata: ObjectMeta { name: Some("prod-credentials".into()), ..Default::default() },
//!     string_data: Some(BTreeMap::from([("password".into(), pw.into())])),
//!     ..Default::default()
//! };
//! assert_eq!(ensure.create_only(&password("first")).await?, Ensured::Created);
//! assert_eq!(ensure.create_only(&password("second")).await?, Ensured::Unchanged);
//!
//! // Children that are no longer wanted.
//! assert_eq!(ensure.prune::<ConfigMap>(&["prod-settings"]).await?, Vec::<String>::new());
//! assert_eq!(ensure.absent::<ConfigMap>("prod-settings").await?, Ensured::Deleted);
//! # Ok(()) }
//! ```
//!
//! # Guarantees
//!
//! - **Zero writes when unchanged.** Each call first reads the child. [`apply`](Children::apply)
//!   sends the apply only if a field we apply differs from the live value, is not yet owned
//!   by our field manager, or was owned and is no longer applied (the checks an API server
//!   would make, read from `metadata.managedFields`). [`patch`](Children::patch) compares only
//!   the fields the desired object sets, so server defaults (`spec.clusterIP`,
//!   `imagePullPolicy`, `terminationGracePeriodSeconds`, ...) never cause an update.
//! - **Semantic compare.** Numbers by value (`1` equals `1.0`), a missing field equals an
//!   empty map, empty list or `null`, resource quantities by amount (`1Gi` equals
//!   `1024Mi`, `500m` equals `0.5`) under `limits`, `requests`, `hard`, `capacity`,
//!   `allocatable`, `overhead` and `sizeLimit`.
//! - **Never a silent takeover.** An existing object is ours when its controller owner
//!   reference names our owner's uid, or when it has no controller and our field manager
//!   wrote it before. Anything else is [`EnsureError::NotOwned`] (terminal) and the object
//!   is not touched — unless [`EnsureConfig::adopt`] allows taking over objects that have
//!   no controller. Objects controlled by another owner are never taken over, deleted or
//!   pruned.
//! - **Conflicts.** A 409 re-reads the object, compares again and retries once; a second
//!   409 is [`EnsureError::Conflict`], classified [`ErrorClass::Conflict`](crate::ErrorClass::Conflict).
//!   Patches carry the `resourceVersion` they were computed from, and deletes carry the uid
//!   they were decided on, so neither acts on an object that changed in between.
//! - **Cancellation.** Each call is at most a read and one write (two after a conflict).
//!   Dropped at any `.await`, a write was either sent whole or not at all; calling again
//!   converges.
//! - **Errors** are classified ([`Classify`](crate::Classify)): not owned and missing
//!   fields are terminal; API errors keep the class of the [`kube::Error`].
//!
//! # Caveats
//!
//! - The child's name comes from `metadata.name`; `generateName` is not supported (an
//!   idempotent call needs a stable name).
//! - `status` of the desired object is ignored: children's status belongs to their own
//!   controllers.
//! - [`patch`](Children::patch) never removes a field you stop setting (it only compares
//!   what you set); set it to `null` in a [`DynamicObject`], or use [`apply`](Children::apply),
//!   which removes fields it applied before and no longer applies. Lists are compared
//!   item by item and replaced whole when they differ (items with the same `name` keep
//!   the fields the server filled in); `metadata.ownerReferences` merge by `uid` and
//!   `metadata.finalizers` as a set, so other owners and finalizers are kept.
//! - Inside an atomic value (a list without merge keys such as a `StatefulSet`'s
//!   `volumeClaimTemplates`), [`apply`](Children::apply) compares only the fields you set,
//!   because the server's defaults there are credited to your field manager: removing a
//!   field from inside such a value is not seen as a change until something else in it
//!   changes.
//! - [`create_only`](Children::create_only) never updates, not even labels or owner
//!   references of an existing object.
//! - For a [`DynamicObject`] the scope is not known: without `metadata.namespace` the child
//!   goes to the owner's namespace, or is cluster-scoped when the owner is.
//! - The owner's name becomes the `app.kubernetes.io/instance` label only when it is a
//!   valid label value (at most 63 characters); otherwise that label is left out and
//!   [`prune`](Children::prune) selects by `managed-by` alone (it still deletes only our
//!   owner's children).
//! - Two owners that share a field manager and turn owner references off cannot tell
//!   their children apart; keep owner references on, or use one field manager per owner.
//!
//! [`DynamicObject`]: kube::core::DynamicObject

mod cache;
pub(crate) use self::{cache::ChildCache, child::MANAGED_BY, config::DEFAULT_FIELD_MANAGER};
mod child;
mod config;
mod desired;
mod error;
mod outcome;
mod owned;
mod path;
mod remove;
mod semantic;
mod subset;
mod write;

use std::{collections::BTreeMap, fmt};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Client, Resource};

pub use self::{
    config::EnsureConfig,
    desired::{Ensure, Readiness, Strategy},
    error::EnsureError,
    outcome::Ensured,
};

/// Keeps child objects of one owner in their desired state; see the [module docs](self).
///
/// Cheap to clone (a [`Client`] and a few strings). Make one per reconcile, from the
/// object being reconciled.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use k8s_openapi::api::core::v1::ConfigMap;
/// use kube::{Api, api::{ObjectMeta, PostParams}};
/// use kube_reconcile::ensure::{Children, EnsureConfig};
/// # let client = kube_reconcile_testing::ApiServer::new().client();
///
/// let owner = Api::<ConfigMap>::default_namespaced(client.clone())
///     .create(&PostParams::default(), &ConfigMap {
///         metadata: ObjectMeta { name: Some("prod".into()), ..Default::default() },
///         ..Default::default()
///     })
///     .await?;
/// let ensure = Children::with_config(
///     client,
///     &owner,
///     EnsureConfig::default().field_manager("database-operator").app_name("postgres"),
/// )?;
/// assert_eq!(
///     ensure.selector(),
///     "app.kubernetes.io/managed-by=database-operator,app.kubernetes.io/instance=prod"
/// );
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Children {
    client: Client,
    owner: Owner,
    config: EnsureConfig,
    /// Watch caches of child kinds, when the operator keeps them.
    cache: Option<cache::ChildCache>,
}

#[derive(Clone, Debug)]
struct Owner {
    /// A controller reference to the owner.
    reference: OwnerReference,
    namespace: Option<String>,
    /// `Kind/name`.
    display: String,
    /// The owner's label children carry too ([`EnsureConfig::owner_label`]), if it has it.
    label: Option<(String, String)>,
}

impl fmt::Debug for Children {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Children")
            .field("owner", &self.owner.display)
            .field("owner_namespace", &self.owner.namespace)
            .field("owner_uid", &self.owner.reference.uid)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Children {
    /// Manages children of `owner` with `config` (`EnsureConfig::default()` for the
    /// defaults).
    ///
    /// # Errors
    ///
    /// [`EnsureError::MissingField`] when the owner has no `metadata.name` or
    /// `metadata.uid` (an object read from the API server has both);
    /// [`EnsureError::InvalidConfig`] when a setting cannot be sent (see [`EnsureConfig`]).
    pub fn with_config<O>(
        client: Client,
        owner: &O,
        config: EnsureConfig,
    ) -> Result<Self, EnsureError>
    where
        O: Resource<DynamicType = ()>,
    {
        Self::new_with(client, owner, &(), config)
    }

    /// Manages children of an owner whose type needs runtime type information (a
    /// [`DynamicObject`](kube::core::DynamicObject) owner and its `ApiResource`).
    ///
    /// # Errors
    ///
    /// As for [`with_config`](Self::with_config).
    pub(crate) fn new_with<O>(
        client: Client,
        owner: &O,
        dt: &O::DynamicType,
        config: EnsureConfig,
    ) -> Result<Self, EnsureError>
    where
        O: Resource,
    {
        config.validate()?;
        let kind = O::kind(dt).to_string();
        let meta = owner.meta();
        let name = meta.name.clone().filter(|n| !n.is_empty()).ok_or_else(|| {
            EnsureError::MissingField {
                object: format!("owner {kind}"),
                field: "metadata.name",
            }
        })?;
        let display = format!("{kind}/{name}");
        let uid = meta.uid.clone().filter(|u| !u.is_empty()).ok_or_else(|| {
            EnsureError::MissingField {
                object: format!("owner {display}"),
                field: "metadata.uid",
            }
        })?;
        let label = config.owner_label_key().and_then(|key| {
            let value = meta.labels.as_ref()?.get(key)?;
            Some((key.to_owned(), value.clone()))
        });
        let reference = OwnerReference {
            api_version: O::api_version(dt).to_string(),
            kind,
            name,
            uid,
            controller: Some(true),
            block_owner_deletion: None,
        };
        Ok(Children {
            client,
            owner: Owner {
                reference,
                namespace: meta.namespace.clone().filter(|ns| !ns.is_empty()),
                display,
                label,
            },
            config,
            cache: None,
        })
    }

    /// Reads children from `cache` (the operator's watch caches) where it can.
    pub(crate) fn with_cache(mut self, cache: Option<ChildCache>) -> Self {
        self.cache = cache;
        self
    }

    /// The standard labels children get (when labels are on); labels the desired object
    /// sets itself take precedence.
    #[doc(hidden)]
    pub fn standard_labels(&self) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        labels.insert(
            child::MANAGED_BY.to_string(),
            self.config.get_field_manager().to_string(),
        );
        let owner = &self.owner.reference;
        if config::is_label_value(&owner.name) {
            labels.insert(child::INSTANCE.to_string(), owner.name.clone());
        }
        let app = self
            .config
            .app_name_value()
            .map_or_else(|| owner.kind.to_ascii_lowercase(), str::to_string);
        labels.insert(child::NAME.to_string(), app);
        if let Some(part_of) = self.config.part_of_value() {
            labels.insert(child::PART_OF.to_string(), part_of.to_string());
        }
        if let Some((key, value)) = &self.owner.label {
            labels.insert(key.clone(), value.clone());
        }
        labels
    }

    /// The label selector of this owner's children, as [`prune`](Self::prune) uses it:
    /// `app.kubernetes.io/managed-by=<field manager>,app.kubernetes.io/instance=<owner>`.
    pub fn selector(&self) -> String {
        let labels = self.standard_labels();
        [child::MANAGED_BY, child::INSTANCE]
            .iter()
            .filter_map(|k| labels.get(*k).map(|v| format!("{k}={v}")))
            .collect::<Vec<_>>()
            .join(",")
    }
}
