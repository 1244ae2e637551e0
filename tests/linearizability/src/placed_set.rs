//! The set of operations the search has placed, kept in the compact form the memo table stores.

/// The operations placed so far (taken to have happened, or dropped as never having happened).
///
/// Operations are numbered with those that have a return entry ("bounded") first, in call
/// order, then the timed-out ones. The two parts are kept differently, so that a memo entry
/// costs a few words instead of one bit per operation of the key:
///
/// - Bounded operations are stored exactly, as the first unplaced one plus the bits from there
///   to the last placed one. Every operation before the first unplaced one is placed, and a
///   placed one after it must have been called before that one's return, so this window spans
///   only the operations that overlap it.
/// - Timed-out operations are stored as a 128-bit fingerprint (Zobrist hashing: the XOR of a
///   fixed pseudo-random number per member). They never leave the candidate set, so there is no
///   such window for them, and an exact copy per memo entry would cost one bit per timed-out
///   operation. Two different sets share a fingerprint with probability 2^-128 per pair of
///   entries; that is the only way the memo could wrongly skip a configuration.
#[derive(Clone, Debug)]
pub(crate) struct PlacedSet {
    bounded_count: usize,
    bounded: Vec<u64>,
    /// The smallest bounded operation not placed; `bounded_count` if all are.
    first_unplaced: usize,
    /// The largest bounded operation placed, if any.
    last_placed: Option<usize>,
    /// A hash of the bounded part, kept up to date in O(1) per change.
    bounded_fingerprint: u64,
    /// Membership of the timed-out operations, for [`PlacedSet::contains`].
    timed_out: Vec<u64>,
    timed_out_fingerprint: u128,
}

/// What the memo table stores of a [`PlacedSet`]: enough to tell any two sets apart (up to the
/// fingerprint of the timed-out part).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PlacedKey {
    first_unplaced: usize,
    window: Box<[u64]>,
    timed_out_fingerprint: u128,
}

impl PlacedSet {
    /// An empty set of `bounded_count` bounded operations followed by `timed_out_count`
    /// timed-out ones.
    pub(crate) fn new(bounded_count: usize, timed_out_count: usize) -> Self {
        Self {
            bounded_count,
            bounded: vec![0; bounded_count.div_ceil(64)],
            first_unplaced: 0,
            last_placed: None,
            bounded_fingerprint: 0,
            timed_out: vec![0; timed_out_count.div_ceil(64)],
            timed_out_fingerprint: 0,
        }
    }

    /// Whether `operation` is placed.
    pub(crate) fn contains(&self, operation: usize) -> bool {
        match operation.checked_sub(self.bounded_count) {
            None => bit(&self.bounded, operation),
            Some(timed_out) => bit(&self.timed_out, timed_out),
        }
    }

    /// Adds `operation`, which must be absent.
    pub(crate) fn insert(&mut self, operation: usize) {
        debug_assert!(!self.contains(operation), "{operation} is already placed");
        let Some(timed_out) = operation.checked_sub(self.bounded_count) else {
            flip(&mut self.bounded, operation);
            self.bounded_fingerprint ^= member_hash(operation as u64, 0);
            if self.last_placed.is_none_or(|last| operation > last) {
                self.last_placed = Some(operation);
            }
            if operation == self.first_unplaced {
                self.first_unplaced = (operation + 1..self.bounded_count)
                    .find(|&next| !bit(&self.bounded, next))
                    .unwrap_or(self.bounded_count);
            }
            return;
        };
        flip(&mut self.timed_out, timed_out);
        self.timed_out_fingerprint ^= timed_out_hash(timed_out);
    }

    /// Removes `operation`, which must be present.
    pub(crate) fn remove(&mut self, operation: usize) {
        debug_assert!(self.contains(operation), "{operation} is not placed");
        let Some(timed_out) = operation.checked_sub(self.bounded_count) else {
            flip(&mut self.bounded, operation);
            self.bounded_fingerprint ^= member_hash(operation as u64, 0);
            self.first_unplaced = self.first_unplaced.min(operation);
            if self.last_placed == Some(operation) {
                self.last_placed = (0..operation)
                    .rev()
                    .find(|&previous| bit(&self.bounded, previous));
            }
            return;
        };
        flip(&mut self.timed_out, timed_out);
        self.timed_out_fingerprint ^= timed_out_hash(timed_out);
    }

    /// A hash of the whole set, equal for equal sets.
    pub(crate) fn fingerprint(&self) -> u64 {
        self.bounded_fingerprint
            ^ (self.timed_out_fingerprint as u64)
            ^ ((self.timed_out_fingerprint >> 64) as u64)
    }

    /// Whether `key` was made from a set equal to this one.
    pub(crate) fn matches(&self, key: &PlacedKey) -> bool {
        key.first_unplaced == self.first_unplaced
            && key.timed_out_fingerprint == self.timed_out_fingerprint
            && *key.window == *self.window()
    }

    /// The compact copy to store in the memo table.
    pub(crate) fn key(&self) -> PlacedKey {
        PlacedKey {
            first_unplaced: self.first_unplaced,
            window: self.window().into(),
            timed_out_fingerprint: self.timed_out_fingerprint,
        }
    }

    /// The words from the one holding the first unplaced operation to the one holding the last
    /// placed one; empty if nothing after the first unplaced one is placed.
    fn window(&self) -> &[u64] {
        match self.last_placed {
            Some(last) if last > self.first_unplaced => {
                &self.bounded[self.first_unplaced / 64..=last / 64]
            }
            _ => &[],
        }
    }
}

fn bit(words: &[u64], index: usize) -> bool {
    words[index / 64] & (1 << (index % 64)) != 0
}

fn flip(words: &mut [u64], index: usize) {
    words[index / 64] ^= 1 << (index % 64);
}

fn timed_out_hash(member: usize) -> u128 {
    (u128::from(member_hash(member as u64, 1)) << 64) | u128::from(member_hash(member as u64, 2))
}

/// SplitMix64 of the member number in one of several independent streams: cheap, and well
/// spread even for consecutive numbers.
fn member_hash(member: u64, stream: u64) -> u64 {
    let mut value = member
        .wrapping_mul(3)
        .wrapping_add(stream)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_sets_give_equal_keys_whatever_the_order() {
        let mut first = PlacedSet::new(200, 10);
        let mut second = PlacedSet::new(200, 10);
        for operation in [0, 1, 2, 3, 150, 205] {
            first.insert(operation);
        }
        for operation in [205, 150, 3, 2, 7, 1, 0] {
            second.insert(operation);
        }
        second.remove(7);
        assert_eq!(first.key(), second.key());
        assert!(first.matches(&second.key()));
        assert_eq!(first.fingerprint(), second.fingerprint());
        assert_eq!(first.first_unplaced, 4);
        assert_eq!(first.last_placed, Some(150));
    }

    #[test]
    fn any_difference_changes_the_key() {
        let mut set = PlacedSet::new(130, 10);
        let empty = set.key();
        set.insert(0);
        let zero = set.key();
        assert_ne!(zero, empty);
        set.insert(129);
        assert!(!set.matches(&zero));
        set.remove(129);
        assert!(set.matches(&zero));
        set.insert(131);
        assert!(!set.matches(&zero));
        assert!(set.contains(131) && !set.contains(130) && set.contains(0));
        set.remove(131);
        set.remove(0);
        assert!(set.matches(&empty));
        assert_eq!(set.last_placed, None);
    }

    #[test]
    fn the_window_spans_only_what_follows_the_first_gap() {
        let mut set = PlacedSet::new(1000, 0);
        for operation in 0..700 {
            set.insert(operation);
        }
        set.insert(705);
        assert_eq!(set.first_unplaced, 700);
        // Bits 640..768: the word holding 700 and the one holding 705.
        assert_eq!(set.window().len(), 2);
        set.insert(900);
        assert_eq!(set.window().len(), 5);
    }
}
