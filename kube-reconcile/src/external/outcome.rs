//! What the exactly-once protocol found or did: [`Provisioned`] and [`Deletion`].

/// What [`Dependency::ensure`](super::Dependency::ensure) found or did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Provisioned<R> {
    /// The resource existed (made by an earlier reconcile, possibly one whose response
    /// was lost) and was adopted.
    Found(R),
    /// The resource was created now.
    Created(R),
}

impl<R> Provisioned<R> {
    /// The resource.
    #[cfg(test)]
    pub(crate) const fn resource(&self) -> &R {
        match self {
            Provisioned::Found(r) | Provisioned::Created(r) => r,
        }
    }

    /// The resource, owned.
    pub fn into_resource(self) -> R {
        match self {
            Provisioned::Found(r) | Provisioned::Created(r) => r,
        }
    }

    /// Whether this call created it.
    #[cfg(test)]
    pub(crate) const fn is_created(&self) -> bool {
        matches!(self, Provisioned::Created(_))
    }
}

/// What [`Dependency::delete`](super::Dependency::delete) found or did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deletion<R> {
    /// No resource with the key exists: it never did, or it is deleted.
    Gone,
    /// The delete call for this resource was accepted. If the system deletes
    /// asynchronously it may still exist: wait, and finish on
    /// [`Gone`](Deletion::Gone).
    Requested(R),
}
