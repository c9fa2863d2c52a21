//! A consistent-hash ring: each member owns the arcs before its virtual nodes, so a
//! member that joins or leaves moves only the keys on its own arcs.

use std::collections::BTreeMap;

/// FNV-1a, then the `splitmix64` finalizer to spread similar keys over the ring.
///
/// Written out rather than taken from the standard library, whose hasher may change
/// between releases: replicas of different builds must place keys alike.
pub(crate) fn hash(bytes: &[u8]) -> u64 {
    let mut h = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Members placed on a ring by `virtual_nodes` points each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ring {
    points: BTreeMap<u64, usize>,
    members: Vec<String>,
}

impl Ring {
    /// The ring of `members` (duplicates count once).
    pub(crate) fn new<'a>(members: impl IntoIterator<Item = &'a str>, virtual_nodes: u32) -> Ring {
        let mut members: Vec<String> = members.into_iter().map(str::to_owned).collect();
        members.sort();
        members.dedup();
        let mut points = BTreeMap::new();
        for (i, member) in members.iter().enumerate() {
            for v in 0..virtual_nodes {
                // A collision keeps the first member's point: the same on every replica.
                points
                    .entry(hash(format!("{member}#{v}").as_bytes()))
                    .or_insert(i);
            }
        }
        Ring { points, members }
    }

    /// The members, sorted.
    pub(crate) fn members(&self) -> &[String] {
        &self.members
    }

    /// The member that owns `key`: the one at the first point at or after its hash.
    pub(crate) fn owner(&self, key: &str) -> Option<&str> {
        let h = hash(key.as_bytes());
        let (_, i) = self
            .points
            .range(h..)
            .next()
            .or_else(|| self.points.iter().next())?;
        self.members.get(*i).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("ns-{}/db-{i}", i % 7)).collect()
    }

    fn shares(ring: &Ring, keys: &[String]) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        for k in keys {
            *out.entry(ring.owner(k).unwrap().to_owned()).or_default() += 1;
        }
        out
    }

    #[test]
    fn an_empty_ring_owns_nothing() {
        assert_eq!(Ring::new([], 64).owner("a"), None);
    }

    #[test]
    fn three_members_share_three_thousand_keys_within_fifteen_percent() {
        let ring = Ring::new(["replica-a", "replica-b", "replica-c"], 256);
        let keys = keys(3000);
        for (member, n) in shares(&ring, &keys) {
            assert!((850..=1150).contains(&n), "{member} owns {n} of 3000");
        }
    }

    #[test]
    fn a_joining_member_takes_keys_only_for_itself() {
        let before = Ring::new(["a", "b", "c"], 256);
        let after = Ring::new(["a", "b", "c", "d"], 256);
        let keys = keys(2000);
        let mut moved = 0;
        for k in &keys {
            let (old, new) = (before.owner(k).unwrap(), after.owner(k).unwrap());
            if old != new {
                assert_eq!(
                    new, "d",
                    "{k} moved from {old} to {new}, not to the newcomer"
                );
                moved += 1;
            }
        }
        assert!(
            (300..=700).contains(&moved),
            "{moved} of 2000 moved to the fourth member"
        );
    }

    const PINNED: u64 = 0x2251_68b1_4b0c_4ba6;

    #[test]
    fn the_hash_is_the_same_on_every_build() {
        // Pinned: a change would move keys between replicas of different versions.
        assert_eq!(hash(b"default/orders"), PINNED);
    }
}
