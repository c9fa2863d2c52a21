//! Request counters per verb and resource, so a test can assert what something cost.

use std::{collections::BTreeMap, fmt, sync::Mutex};

use super::request::Verb;

/// Counts of requests the server answered, by verb and resource.
///
/// Resources are named `plural` for the core group and `plural.group` otherwise, with
/// `/subresource` appended (`databases.example.dev/status`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestCounts {
    counts: BTreeMap<(Verb, String), u64>,
}

impl RequestCounts {
    /// Requests with `verb` on `resource`.
    pub fn get(&self, verb: Verb, resource: &str) -> u64 {
        self.counts
            .get(&(verb, resource.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Requests with `verb` on any resource.
    pub fn verb(&self, verb: Verb) -> u64 {
        self.counts
            .iter()
            .filter(|((v, _), _)| *v == verb)
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests on `resource` with any verb.
    pub fn resource(&self, resource: &str) -> u64 {
        self.counts
            .iter()
            .filter(|((_, r), _)| r == resource)
            .map(|(_, n)| n)
            .sum()
    }

    /// Write requests (create, update, patch, delete, deletecollection) on any resource.
    pub fn writes(&self) -> u64 {
        self.counts
            .iter()
            .filter(|((v, _), _)| v.is_write())
            .map(|(_, n)| n)
            .sum()
    }

    /// All requests.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Every `(verb, resource) → count`.
    pub fn iter(&self) -> impl Iterator<Item = (Verb, &str, u64)> {
        self.counts.iter().map(|((v, r), n)| (*v, r.as_str(), *n))
    }

    /// What happened since `earlier` (counts subtracted).
    #[must_use]
    pub fn since(&self, earlier: &RequestCounts) -> RequestCounts {
        let mut counts = BTreeMap::new();
        for (k, n) in &self.counts {
            let d = n.saturating_sub(earlier.counts.get(k).copied().unwrap_or(0));
            if d > 0 {
                counts.insert(k.clone(), d);
            }
        }
        RequestCounts { counts }
    }
}

impl fmt::Display for RequestCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for ((verb, resource), n) in &self.counts {
            writeln!(f, "{verb:>16} {resource:<40} {n}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counter(Mutex<RequestCounts>);

impl Counter {
    pub(crate) fn add(&self, verb: Verb, resource: String) {
        let mut c = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *c.counts.entry((verb, resource)).or_default() += 1;
    }

    pub(crate) fn snapshot(&self) -> RequestCounts {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn reset(&self) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .counts
            .clear();
    }
}
