//! [`ObjectKey`]: who an object is, for per-object state.

use std::{
    borrow::{Borrow, Cow},
    fmt,
    hash::{Hash, Hasher},
};

use kube::Resource;

/// Identity of one object for per-object middleware state.
///
/// Equality and hashing use the UID only, so a deleted and recreated object (same
/// name, new UID) starts with fresh state. An object without a UID (never stored by an
/// API server) is identified by `namespace/name`.
#[derive(Clone)]
#[doc(hidden)] // The key of the per-object layers' state; users never name it.
pub struct ObjectKey {
    uid: Box<str>,
    namespace: Option<Box<str>>,
    name: Box<str>,
}

impl ObjectKey {
    /// The key of `obj`.
    pub fn of<K: Resource>(obj: &K) -> Self {
        let meta = obj.meta();
        ObjectKey {
            uid: Self::lookup(obj).into_owned().into_boxed_str(),
            namespace: meta.namespace.as_deref().map(Into::into),
            name: meta.name.as_deref().unwrap_or_default().into(),
        }
    }

    /// The string the key hashes as, borrowed from `obj` when it has a UID.
    pub(crate) fn lookup<K: Resource>(obj: &K) -> Cow<'_, str> {
        let meta = obj.meta();
        match meta.uid.as_deref() {
            Some(uid) if !uid.is_empty() => Cow::Borrowed(uid),
            _ => Cow::Owned(format!(
                "{}/{}",
                meta.namespace.as_deref().unwrap_or_default(),
                meta.name.as_deref().unwrap_or_default()
            )),
        }
    }

    /// The object's UID (or `namespace/name` if it had none).
    #[cfg(test)]
    pub(crate) fn uid(&self) -> &str {
        &self.uid
    }
}

impl PartialEq for ObjectKey {
    fn eq(&self, other: &Self) -> bool {
        self.uid == other.uid
    }
}

impl Eq for ObjectKey {}

impl Hash for ObjectKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.uid.hash(state);
    }
}

impl Borrow<str> for ObjectKey {
    fn borrow(&self) -> &str {
        &self.uid
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}
