//! What a [`Children`](super::Children) call did.

use std::fmt;

/// What a [`Children`](super::Children) call did to the child.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ensured {
    /// The object did not exist and was created.
    Created,
    /// The object existed and differed; one write brought it in line.
    Updated {
        /// Paths of the fields that differed (`spec.replicas`,
        /// `spec.template.spec.containers[name=db].image`,
        /// `metadata.labels["app.kubernetes.io/name"]`).
        fields: Vec<String>,
    },
    /// The object already matched: nothing was written.
    Unchanged,
    /// The object was deleted (or was already being deleted, and no request was sent).
    Deleted,
}

impl Ensured {
    /// The fields that differed, for [`Updated`](Ensured::Updated); empty otherwise.
    pub fn fields(&self) -> &[String] {
        match self {
            Ensured::Updated { fields } => fields,
            _ => &[],
        }
    }
}

impl fmt::Display for Ensured {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ensured::Created => f.write_str("created"),
            Ensured::Updated { fields } => write!(f, "updated ({})", fields.join(", ")),
            Ensured::Unchanged => f.write_str("unchanged"),
            Ensured::Deleted => f.write_str("deleted"),
        }
    }
}
