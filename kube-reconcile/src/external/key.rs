//! [`IdempotencyKey`]: the name an external resource is created and found by.

use std::{borrow::Borrow, fmt, sync::Arc};

use kube::Resource;

use super::error::KeyError;

/// The longest prefix: `<prefix>-<uid>` then fits a DNS label (63 characters).
pub(super) const MAX_PREFIX_LEN: usize = 63 - 1 - 36;

/// The idempotency key of one external resource of one object: `<prefix>-<uid>`.
///
/// Derived from the object's UID only, so it is the same on every reconcile, in every
/// replica and after any crash, and a deleted-and-recreated object (same name, new
/// UID) gets a new one. Nothing has to be stored for the key to be known again: this
/// is what lets [`Dependency::ensure`](super::Dependency::ensure) find, after a crash, a
/// resource whose creation it never recorded.
///
/// With a valid prefix (lowercase letters, digits and `-`, starting with a letter and
/// ending with a letter or digit, at most 26 characters) the key is a valid DNS label
/// (RFC 1123, at most 63 characters), which most external systems accept as a name, a
/// tag value or an idempotency token.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdempotencyKey {
    key: Arc<str>,
    prefix_len: usize,
}

impl IdempotencyKey {
    /// The key of `obj`'s external resource called `prefix`; `None` for a prefix that
    /// is not a short DNS label or an object without `metadata.uid` (never stored by an
    /// API server). [`Dependency::key`](super::Dependency::key) says which.
    #[cfg(test)]
    pub(crate) fn for_object<K: Resource>(prefix: &str, obj: &K) -> Option<Self> {
        Self::derive(prefix, obj).ok()
    }

    pub(super) fn derive<K: Resource>(prefix: &str, obj: &K) -> Result<Self, KeyError> {
        validate_prefix(prefix)?;
        let meta = obj.meta();
        let uid = meta
            .uid
            .as_deref()
            .filter(|uid| !uid.is_empty())
            .ok_or_else(|| KeyError::MissingUid {
                name: meta.name.clone().unwrap_or_default(),
            })?;
        Ok(IdempotencyKey {
            key: format!("{prefix}-{uid}").into(),
            prefix_len: prefix.len(),
        })
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.key
    }

    /// The prefix it was derived with (which external resource of the object it names).
    #[cfg(test)]
    pub(crate) fn prefix(&self) -> &str {
        &self.key[..self.prefix_len]
    }

    /// The object UID it was derived from.
    #[cfg(test)]
    pub(crate) fn uid(&self) -> &str {
        &self.key[self.prefix_len + 1..]
    }
}

/// Checks that `prefix` is a lowercase DNS label of at most [`MAX_PREFIX_LEN`] characters.
fn validate_prefix(prefix: &str) -> Result<(), KeyError> {
    let why = if prefix.is_empty() {
        Some("it is empty")
    } else if prefix.len() > MAX_PREFIX_LEN {
        Some("it is longer than 26 characters")
    } else if !prefix
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Some("it may hold only lowercase letters, digits and '-'")
    } else if !prefix.as_bytes()[0].is_ascii_lowercase() {
        Some("it must start with a lowercase letter")
    } else if prefix.ends_with('-') {
        Some("it must end with a letter or digit")
    } else {
        None
    };
    match why {
        Some(why) => Err(KeyError::InvalidPrefix {
            prefix: prefix.to_owned(),
            why,
        }),
        None => Ok(()),
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key)
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.key, f)
    }
}

impl AsRef<str> for IdempotencyKey {
    fn as_ref(&self) -> &str {
        &self.key
    }
}

impl Borrow<str> for IdempotencyKey {
    fn borrow(&self) -> &str {
        &self.key
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn with_uid(uid: &str) -> ConfigMap {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some("db".into());
        cm.metadata.uid = Some(uid.into());
        cm
    }

    #[test]
    fn the_key_is_the_prefix_and_the_uid() {
        let key = IdempotencyKey::for_object("dbaas", &with_uid("u-1")).unwrap();
        assert_eq!(key.as_str(), "dbaas-u-1");
        assert_eq!(key.prefix(), "dbaas");
        assert_eq!(key.uid(), "u-1");
        assert_eq!(key.to_string(), "dbaas-u-1");
    }

    #[test]
    fn a_recreated_object_gets_a_new_key() {
        let a = IdempotencyKey::for_object("db", &with_uid("u-1")).unwrap();
        let b = IdempotencyKey::for_object("db", &with_uid("u-2")).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn an_object_without_uid_has_no_key() {
        let err = IdempotencyKey::derive("db", &with_uid("")).unwrap_err();
        assert_eq!(err, KeyError::MissingUid { name: "db".into() });
        let shown = crate::external::ExternalError::<std::io::Error>::from(err).to_string();
        assert_eq!(
            shown,
            "object db has no metadata.uid: it was never stored by an api server"
        );
    }

    #[test]
    fn bad_prefixes_are_refused_with_the_reason() {
        for (prefix, why) in [
            ("", "it is empty"),
            ("Db", "it may hold only lowercase letters, digits and '-'"),
            ("db_1", "it may hold only lowercase letters, digits and '-'"),
            ("1db", "it must start with a lowercase letter"),
            ("db-", "it must end with a letter or digit"),
            (
                "abcdefghijklmnopqrstuvwxyza",
                "it is longer than 26 characters",
            ),
        ] {
            assert_eq!(
                validate_prefix(prefix),
                Err(KeyError::InvalidPrefix {
                    prefix: prefix.into(),
                    why
                }),
                "{prefix}"
            );
        }
        assert!(validate_prefix("abcdefghijklmnopqrstuvwxyz").is_ok());
    }

    #[test]
    fn a_key_from_a_valid_prefix_and_a_real_uid_is_a_dns_label() {
        let uid = "6f1c0b9e-2a43-4f55-9d0e-7c1f2b3a4d5e";
        let key = IdempotencyKey::for_object("abcdefghijklmnopqrstuvwxyz", &with_uid(uid)).unwrap();
        assert_eq!(key.as_str().len(), 63);
    }
}
