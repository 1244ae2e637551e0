//! The map's digest for anti-entropy: [`BUCKETS`] 64-bit hashes, each the XOR of the hashes
//! of the (key, entry) pairs whose key falls in that bucket.
//!
//! XOR lets the map keep the digest up to date in O(1) per change (remove the old entry's hash,
//! add the new one) instead of hashing 100,000 keys per anti-entropy round. The hashes are
//! SHA-256 truncated to 64 bits over a fixed, versioned encoding, so every node on every
//! platform and Rust version computes the same digest (std's `DefaultHasher` promises no such
//! thing), and a nonlinear hash keeps XOR from cancelling related entries (a CRC would: the
//! CRCs of counters 1 and 2 XOR to that of 3 and 0).

use std::collections::BTreeMap;

use ha_core::NodeId;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{Body, Entry, Stamp};

/// Number of digest buckets. A node that differs in a few keys sends only those buckets'
/// entries: 1/256 of the map per differing key.
pub const BUCKETS: usize = 256;

/// Domain separation for the two hashes, with a version: changing the encoding changes the
/// version, so mixed versions see differing digests (extra repair traffic), never equal digests
/// over different state.
const BUCKET_DOMAIN: &[u8] = b"ha.shared_state.bucket.v1";
const ENTRY_DOMAIN: &[u8] = b"ha.shared_state.entry.v1";

/// One hash per bucket; two maps with equal digests hold the same entries (up to 64-bit hash
/// collisions).
///
/// ```
/// use ha_core::NodeId;
/// use ha_gossip::{SharedMap, StateLimits};
/// let mut a = SharedMap::new(NodeId::new("a").unwrap(), StateLimits::default());
/// let mut b = SharedMap::new(NodeId::new("b").unwrap(), StateLimits::default());
/// let delta = a.put(1_000, "k", b"v".to_vec()).unwrap();
/// assert_eq!(a.differing_buckets(&b.digest()), vec![SharedMap::bucket_of("k")]);
/// b.merge(1_000, delta).unwrap();
/// assert_eq!(a.digest(), b.digest());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// The [`BUCKETS`] bucket hashes; 0 for an empty bucket.
    pub buckets: Vec<u64>,
}

impl Default for Digest {
    fn default() -> Self {
        Self {
            buckets: vec![0; BUCKETS],
        }
    }
}

impl Digest {
    /// The buckets whose hashes differ from `theirs`. A digest of another length (a peer's
    /// fault) differs in every bucket it lacks.
    pub fn differing_buckets(&self, theirs: &Digest) -> Vec<u16> {
        (0..BUCKETS)
            .filter(|index| self.buckets.get(*index) != theirs.buckets.get(*index))
            .map(bucket_index)
            .collect()
    }

    /// XORs `hash` into `bucket` (adds or removes an entry's hash).
    pub(crate) fn toggle(&mut self, bucket: u16, hash: u64) {
        if let Some(slot) = self.buckets.get_mut(usize::from(bucket)) {
            *slot ^= hash;
        }
    }
}

fn bucket_index(index: usize) -> u16 {
    // BUCKETS is 256, so every index fits.
    u16::try_from(index).unwrap_or(u16::MAX)
}

/// The bucket of `key`: the first byte of SHA-256 over the key (256 buckets).
pub fn bucket_of(key: &str) -> u16 {
    let mut hasher = Sha256::new();
    hasher.update(BUCKET_DOMAIN);
    hasher.update(key.as_bytes());
    let hash = hasher.finalize();
    u16::from(hash[0]) % bucket_index(BUCKETS)
}

/// The 64-bit hash of `(key, entry)` that goes into its bucket. Nonzero for every entry.
pub fn entry_hash(key: &str, entry: &Entry) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(ENTRY_DOMAIN);
    update_bytes(&mut hasher, key.as_bytes());
    update_stamp(&mut hasher, &entry.stamp);
    update_stamp(&mut hasher, &entry.generation);
    match &entry.body {
        Body::Tombstone => hasher.update([0]),
        Body::Value(value) => {
            hasher.update([1]);
            update_bytes(&mut hasher, value);
        }
        Body::Counter(counter) => {
            hasher.update([2]);
            update_totals(&mut hasher, counter.increments());
            update_totals(&mut hasher, counter.decrements());
        }
    }
    let hash = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    // A zero hash would be invisible in the XOR; 1 in 2^64, but cheap to rule out.
    u64::from_le_bytes(first).max(1)
}

fn update_bytes(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

fn update_stamp(hasher: &mut Sha256, stamp: &Stamp) {
    hasher.update(stamp.hlc.wall_ms.to_le_bytes());
    hasher.update(stamp.hlc.logical.to_le_bytes());
    update_bytes(hasher, stamp.node.as_str().as_bytes());
}

fn update_totals(hasher: &mut Sha256, totals: &BTreeMap<NodeId, u64>) {
    hasher.update((totals.len() as u64).to_le_bytes());
    for (node, total) in totals {
        update_bytes(hasher, node.as_str().as_bytes());
        hasher.update(total.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Hlc, PnCounter};

    #[test]
    fn buckets_and_hashes_are_pinned() {
        // Pinned values: a change here changes what digests mean on the wire and between
        // versions; bump the domain version instead of editing these.
        let pinned: Vec<u16> = ["a", "key-1", "service/x"]
            .iter()
            .map(|key| bucket_of(key))
            .collect();
        let node = NodeId::new("n1").unwrap();
        let entry = Entry::value(
            Stamp {
                hlc: Hlc {
                    wall_ms: 1_000,
                    logical: 2,
                },
                node,
            },
            b"v".to_vec(),
        );
        assert_eq!(pinned, vec![62, 91, 217]);
        assert_eq!(entry_hash("k", &entry), 0x8b43_413f_26fd_c7ca);
    }

    #[test]
    fn keys_spread_over_the_buckets() {
        let spread: std::collections::BTreeSet<u16> = (0..2_000)
            .map(|index| bucket_of(&format!("key-{index}")))
            .collect();
        assert!(
            spread.len() > 240,
            "2,000 keys fill most of the 256 buckets"
        );
        assert!(spread.iter().all(|bucket| usize::from(*bucket) < BUCKETS));
    }

    #[test]
    fn related_counters_do_not_cancel_in_the_xor() {
        let node = NodeId::new("n").unwrap();
        let stamp = Stamp {
            hlc: Hlc {
                wall_ms: 1,
                logical: 0,
            },
            node: node.clone(),
        };
        let counter = |by: i64| {
            let mut counter = PnCounter::default();
            counter.add(&node, by).unwrap();
            Entry {
                stamp: stamp.clone(),
                generation: Stamp::zero(),
                body: Body::Counter(counter),
            }
        };
        let left = entry_hash("x", &counter(1)) ^ entry_hash("y", &counter(2));
        let right = entry_hash("x", &counter(3)) ^ entry_hash("y", &counter(0));
        assert_ne!(left, right);
    }

    #[test]
    fn a_short_digest_differs_in_the_buckets_it_lacks() {
        let ours = Digest::default();
        let theirs = Digest {
            buckets: vec![0; 10],
        };
        assert_eq!(ours.differing_buckets(&theirs).len(), BUCKETS - 10);
    }
}
