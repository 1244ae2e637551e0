//! The configurations the search has already visited.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use crate::placed_set::{PlacedKey, PlacedSet};

/// The `(placed operations, model state)` pairs visited so far.
///
/// Two paths that placed the same operations and reached the same state have the same future,
/// so the second one is cut off: this is what turns the exponential Wing-Gong search into one
/// that is usually linear in the history length. Entries are found by a hash of both parts and
/// then compared exactly (see [`PlacedSet`] for the one exception, timed-out operations), so a
/// hash collision cannot make the checker skip a configuration it has not seen.
#[derive(Debug)]
pub(crate) struct Memo<S> {
    /// Buckets by combined hash; the hash is already well mixed, so the map must not hash it
    /// again.
    buckets: HashMap<u64, Vec<(PlacedKey, S)>, BuildHasherDefault<PassThroughHasher>>,
}

impl<S: Clone + Eq + Hash> Memo<S> {
    pub(crate) fn new() -> Self {
        Self {
            buckets: HashMap::default(),
        }
    }

    /// Records the configuration; false if it had been visited already.
    pub(crate) fn insert(&mut self, placed: &PlacedSet, state: &S) -> bool {
        let mut state_hasher = MultiplyRotateHasher::default();
        state.hash(&mut state_hasher);
        let key = mix(placed.fingerprint() ^ mix(state_hasher.finish()));
        let bucket = self.buckets.entry(key).or_default();
        let seen = bucket
            .iter()
            .any(|(seen_placed, seen_state)| placed.matches(seen_placed) && seen_state == state);
        if seen {
            return false;
        }
        bucket.push((placed.key(), state.clone()));
        true
    }
}

/// A finalizer that spreads every input bit over the whole output (from MurmurHash3).
fn mix(mut value: u64) -> u64 {
    value ^= value >> 33;
    value = value.wrapping_mul(0xff51_afd7_ed55_8ccd);
    value ^= value >> 33;
    value = value.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    value ^ (value >> 33)
}

/// For keys that are already good hashes.
#[derive(Default)]
struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by the map; this keeps the hasher correct for anything else.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// A fast, deterministic hasher for model states (the `FxHash` scheme). SipHash's resistance to
/// chosen inputs is not needed for histories we recorded ourselves, and it is several times
/// slower, which matters in the unoptimized test profile.
#[derive(Default)]
struct MultiplyRotateHasher(u64);

impl MultiplyRotateHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for MultiplyRotateHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let mut rest = [0u8; 8];
        rest[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        // The length goes in too, so that trailing zero bytes still change the hash.
        self.add(u64::from_le_bytes(rest) ^ ((bytes.len() as u64) << 56));
    }

    fn write_u8(&mut self, value: u8) {
        self.add(u64::from(value));
    }

    fn write_u64(&mut self, value: u64) {
        self.add(value);
    }

    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_is_new_only_once() {
        let mut memo = Memo::new();
        let mut placed = PlacedSet::new(10, 10);
        assert!(memo.insert(&placed, &Some("a".to_string())));
        assert!(!memo.insert(&placed, &Some("a".to_string())));
        assert!(memo.insert(&placed, &Some("b".to_string())));
        assert!(memo.insert(&placed, &None));
        placed.insert(4);
        assert!(memo.insert(&placed, &Some("a".to_string())));
        assert!(!memo.insert(&placed, &Some("a".to_string())));
        placed.insert(14);
        assert!(memo.insert(&placed, &Some("a".to_string())));
    }
}
