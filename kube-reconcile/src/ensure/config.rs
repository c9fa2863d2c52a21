//! Settings of [`Children`](super::Children).

use super::error::EnsureError;

/// The field manager used unless [`EnsureConfig::field_manager`] says otherwise.
pub(crate) const DEFAULT_FIELD_MANAGER: &str = "kube-reconcile";

/// Settings of [`Children`](super::Children).
///
/// # Default
///
/// | Setting | Default |
/// |---|---|
/// | [`field_manager`](Self::field_manager) | `kube-reconcile` (also the `app.kubernetes.io/managed-by` label) |
/// | [`owner_reference`](Self::owner_reference) | on: a controller owner reference to the owner |
/// | `blockOwnerDeletion` (fixed) | on, as controller-runtime sets it |
/// | [`labels`](Self::labels) | on: `app.kubernetes.io/managed-by`, `/instance`, `/name` (and `/part-of` if set) |
/// | [`app_name`](Self::app_name) | the owner's kind in lowercase (`database`) |
/// | [`part_of`](Self::part_of) | none |
/// | [`force`](Self::force) | on: server-side apply takes over fields another manager set |
/// | [`adopt`](Self::adopt) | off: an existing object without a controller is not taken over |
///
/// # Examples
///
/// ```
/// use kube_reconcile::ensure::EnsureConfig;
///
/// let config = EnsureConfig::default()
///     .field_manager("database-operator")
///     .app_name("postgres")
///     .part_of("billing");
/// assert_ne!(config, EnsureConfig::default());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent on/off settings, each with its own setter"
)]
pub struct EnsureConfig {
    field_manager: String,
    owner_reference: bool,
    block_owner_deletion: bool,
    labels: bool,
    app_name: Option<String>,
    part_of: Option<String>,
    force: bool,
    adopt: bool,
    /// A label of the owner that children carry too (set by a sharded operator: the
    /// shard label, so each replica's child caches hold only its own children).
    owner_label: Option<String>,
}

impl Default for EnsureConfig {
    fn default() -> Self {
        EnsureConfig {
            field_manager: DEFAULT_FIELD_MANAGER.to_string(),
            owner_reference: true,
            block_owner_deletion: true,
            labels: true,
            app_name: None,
            part_of: None,
            force: true,
            adopt: false,
            owner_label: None,
        }
    }
}

impl EnsureConfig {
    /// The field manager of every write, and the value of the `app.kubernetes.io/managed-by`
    /// label. It must be 1 to 128 characters (at most 63, and a valid label value, while
    /// labels are on); [`Children`](super::Children) refuses anything else.
    #[must_use]
    pub fn field_manager(mut self, manager: impl Into<String>) -> Self {
        self.field_manager = manager.into();
        self
    }

    /// Whether children get a controller owner reference to the owner (so the garbage
    /// collector deletes them with it).
    #[must_use]
    pub const fn owner_reference(mut self, on: bool) -> Self {
        self.owner_reference = on;
        self
    }

    /// Whether children get the standard `app.kubernetes.io/*` labels. Labels the desired
    /// object already sets are never overwritten.
    #[must_use]
    pub const fn labels(mut self, on: bool) -> Self {
        self.labels = on;
        self
    }

    /// The `app.kubernetes.io/name` label (default: the owner's kind in lowercase).
    #[must_use]
    pub fn app_name(mut self, name: impl Into<String>) -> Self {
        self.app_name = Some(name.into());
        self
    }

    /// The `app.kubernetes.io/part-of` label (default: not set).
    #[must_use]
    pub fn part_of(mut self, app: impl Into<String>) -> Self {
        self.part_of = Some(app.into());
        self
    }

    /// Whether server-side apply forces ownership of fields another manager set.
    /// Without it such an apply fails with a conflict.
    #[must_use]
    pub const fn force(mut self, on: bool) -> Self {
        self.force = on;
        self
    }

    /// Whether an existing object with no controller owner reference, not written by our
    /// field manager, may be taken over (it gets our owner reference and labels). Objects
    /// controlled by someone else are never taken over.
    #[must_use]
    pub const fn adopt(mut self, on: bool) -> Self {
        self.adopt = on;
        self
    }

    /// The field manager.
    pub(crate) fn get_field_manager(&self) -> &str {
        &self.field_manager
    }

    pub(crate) const fn owner_reference_on(&self) -> bool {
        self.owner_reference
    }

    pub(crate) const fn block_owner_deletion_on(&self) -> bool {
        self.block_owner_deletion
    }

    pub(crate) const fn labels_on(&self) -> bool {
        self.labels
    }

    pub(crate) fn app_name_value(&self) -> Option<&str> {
        self.app_name.as_deref()
    }

    pub(crate) fn part_of_value(&self) -> Option<&str> {
        self.part_of.as_deref()
    }

    pub(crate) const fn force_on(&self) -> bool {
        self.force
    }

    pub(crate) const fn adopt_on(&self) -> bool {
        self.adopt
    }

    /// Children also carry the owner's label `key` (with the owner's value).
    pub(crate) fn owner_label(mut self, key: impl Into<String>) -> Self {
        self.owner_label = Some(key.into());
        self
    }

    pub(crate) fn owner_label_key(&self) -> Option<&str> {
        self.owner_label.as_deref()
    }

    /// Checks the settings that end up in requests.
    pub(crate) fn validate(&self) -> Result<(), EnsureError> {
        let invalid = |message: String| Err(EnsureError::InvalidConfig { message });
        let fm = &self.field_manager;
        if fm.is_empty() || fm.len() > 128 {
            return invalid(format!(
                "field manager {fm:?} must be 1 to 128 characters long"
            ));
        }
        if self.labels {
            let labelled = [
                ("field manager", Some(fm.as_str())),
                ("app name", self.app_name.as_deref()),
                ("part-of", self.part_of.as_deref()),
            ];
            for (what, value) in labelled {
                if let Some(v) = value
                    && !is_label_value(v)
                {
                    return invalid(format!(
                        "{what} {v:?} is not a valid label value (at most 63 characters of \
                         [A-Za-z0-9-_.], starting and ending with a letter or digit); \
                         change it or turn labels off"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Whether `v` is a valid Kubernetes label value.
pub(crate) fn is_label_value(v: &str) -> bool {
    let ends_ok = |c: Option<char>| c.is_none_or(|c| c.is_ascii_alphanumeric());
    v.len() <= 63
        && ends_ok(v.chars().next())
        && ends_ok(v.chars().last())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_is_valid() {
        assert!(EnsureConfig::default().validate().is_ok());
        assert_eq!(
            EnsureConfig::default().get_field_manager(),
            "kube-reconcile"
        );
    }

    #[test]
    fn bad_field_managers_and_label_values_are_refused() {
        assert!(
            EnsureConfig::default()
                .field_manager("")
                .validate()
                .is_err()
        );
        let spaced = EnsureConfig::default().field_manager("my operator");
        assert!(spaced.clone().validate().is_err());
        assert!(spaced.labels(false).validate().is_ok());
        assert!(EnsureConfig::default().part_of("-x").validate().is_err());
        assert!(
            EnsureConfig::default()
                .app_name("a".repeat(64))
                .validate()
                .is_err()
        );
    }

    #[test]
    fn label_values_follow_the_kubernetes_rules() {
        assert!(is_label_value(""));
        assert!(is_label_value("db-1.prod_x"));
        assert!(!is_label_value("db/1"));
        assert!(!is_label_value("db-"));
    }
}
