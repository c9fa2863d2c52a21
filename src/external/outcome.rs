//! What the create and delete protocol found or did: [`Ensured`] and [`Deletion`].

/// What [`ExternalResource::ensure`](super::ExternalResource::ensure) found or did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ensured<R> {
    /// The resource existed and the object already recorded it.
    Existing(R),
    /// The resource existed but the object did not record it (a crash after the create,
    /// a lost response, a lost write): it was adopted and is now recorded.
    Adopted(R),
    /// The resource was created now and recorded.
    Created(R),
}

impl<R> Ensured<R> {
    /// The resource.
    pub const fn resource(&self) -> &R {
        match self {
            Ensured::Existing(r) | Ensured::Adopted(r) | Ensured::Created(r) => r,
        }
    }

    /// The resource, owned.
    pub fn into_resource(self) -> R {
        match self {
            Ensured::Existing(r) | Ensured::Adopted(r) | Ensured::Created(r) => r,
        }
    }

    /// Whether this call created it.
    pub const fn is_created(&self) -> bool {
        matches!(self, Ensured::Created(_))
    }
}

/// What [`ExternalResource::delete`](super::ExternalResource::delete) found or did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deletion<R> {
    /// No resource with the key exists: it never did, or it is deleted. A finalizer
    /// may be removed.
    Gone,
    /// The delete call for this resource was accepted. If the system deletes
    /// asynchronously it may still exist: requeue, and remove a finalizer on
    /// [`Gone`](Deletion::Gone).
    Requested(R),
}

impl<R> Deletion<R> {
    /// Whether the resource is known to be gone.
    pub const fn is_gone(&self) -> bool {
        matches!(self, Deletion::Gone)
    }
}
