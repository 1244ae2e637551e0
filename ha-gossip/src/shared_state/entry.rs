//! One key's state (an [`Entry`]), what it holds (a [`Body`]), the PN-counter, and the join
//! that merges two entries of the same key.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use ha_core::NodeId;
use serde::{Deserialize, Serialize};

use super::limits::COUNTER_NODES_MAX;
use super::{Stamp, StateError};

/// A PN-counter: each node's total of increments and of decrements. Each node only adds to
/// its own totals, so merging two copies takes each node's larger total (the join), and no
/// increment is counted twice or lost, in any order or with duplicates.
///
/// ```
/// use ha_core::NodeId;
/// use ha_gossip::PnCounter;
/// let (a, b) = (NodeId::new("a").unwrap(), NodeId::new("b").unwrap());
/// let mut left = PnCounter::default();
/// left.add(&a, 5).unwrap();
/// let mut right = PnCounter::default();
/// right.add(&b, -2).unwrap();
/// left.join(&right);
/// left.join(&right); // idempotent
/// assert_eq!(left.value(), 3);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PnCounter {
    /// Per node, the sum of its positive increments.
    increments: BTreeMap<NodeId, u64>,
    /// Per node, the sum of the magnitudes of its negative increments.
    decrements: BTreeMap<NodeId, u64>,
}

impl PnCounter {
    /// The counter's value: all increments minus all decrements, saturated to 64 bits (peers
    /// can hold totals whose difference does not fit; local writes never create one).
    pub fn value(&self) -> i64 {
        let value = Self::sum(&self.increments) - Self::sum(&self.decrements);
        value.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    fn sum(totals: &BTreeMap<NodeId, u64>) -> i128 {
        // At most COUNTER_NODES_MAX (or a decoded map's length) totals of 64 bits each: an
        // i128 cannot overflow.
        totals.values().map(|total| i128::from(*total)).sum()
    }

    /// Joins `other` into `self`: each node's larger totals. Commutative, associative,
    /// idempotent.
    pub fn join(&mut self, other: &PnCounter) {
        for (node, total) in &other.increments {
            let mine = self.increments.entry(node.clone()).or_insert(0);
            *mine = (*mine).max(*total);
        }
        for (node, total) in &other.decrements {
            let mine = self.decrements.entry(node.clone()).or_insert(0);
            *mine = (*mine).max(*total);
        }
    }

    /// Adds `by` (may be negative) to `node`'s totals and returns the new value.
    ///
    /// # Errors
    /// [`StateError::CounterOverflow`] when the node's total or the value would leave 64 bits;
    /// [`StateError::CounterTooWide`] when `node` would be writer number
    /// [`COUNTER_NODES_MAX`] + 1. The counter is unchanged on error.
    pub fn add(&mut self, node: &NodeId, by: i64) -> Result<i64, StateError> {
        let writers = self.writers_with(node);
        if writers > COUNTER_NODES_MAX {
            return Err(StateError::CounterTooWide {
                nodes: writers,
                max: COUNTER_NODES_MAX,
            });
        }
        let totals = if by >= 0 {
            &self.increments
        } else {
            &self.decrements
        };
        let current = totals.get(node).copied().unwrap_or(0);
        let total = current
            .checked_add(by.unsigned_abs())
            .ok_or(StateError::CounterOverflow)?;
        let value = Self::sum(&self.increments) - Self::sum(&self.decrements) + i128::from(by);
        let value = i64::try_from(value).map_err(|_| StateError::CounterOverflow)?;
        let totals = if by >= 0 {
            &mut self.increments
        } else {
            &mut self.decrements
        };
        totals.insert(node.clone(), total);
        Ok(value)
    }

    /// How many distinct nodes have written this counter.
    pub fn writers(&self) -> usize {
        let only_decrementing = self
            .decrements
            .keys()
            .filter(|node| !self.increments.contains_key(*node))
            .count();
        self.increments.len() + only_decrementing
    }

    /// Writers after `node` writes.
    fn writers_with(&self, node: &NodeId) -> usize {
        let known = self.increments.contains_key(node) || self.decrements.contains_key(node);
        self.writers() + usize::from(!known)
    }

    /// Per node, the sum of its positive increments.
    pub fn increments(&self) -> &BTreeMap<NodeId, u64> {
        &self.increments
    }

    /// Per node, the sum of the magnitudes of its negative increments.
    pub fn decrements(&self) -> &BTreeMap<NodeId, u64> {
        &self.decrements
    }

    /// Approximate bytes held (node ids and totals), for [`MapStats`](crate::MapStats).
    pub fn bytes(&self) -> usize {
        let side = |totals: &BTreeMap<NodeId, u64>| {
            totals
                .keys()
                .map(|node| node.as_str().len() + 8)
                .sum::<usize>()
        };
        side(&self.increments) + side(&self.decrements)
    }
}

/// What a key holds: a register (a value or a tombstone) or a counter.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Body {
    /// A register holding bytes.
    Value(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A deleted register, kept for `tombstone_grace_ms` so the delete reaches every replica.
    Tombstone,
    /// A PN-counter.
    Counter(PnCounter),
}

impl Body {
    /// Order between the kinds of entries of one generation: a counter was created after it
    /// saw the register whose stamp is its generation, so it ranks above registers. Values
    /// rank above tombstones only to make the (never legitimate) tie deterministic.
    fn rank(&self) -> u8 {
        match self {
            Body::Tombstone => 0,
            Body::Value(_) => 1,
            Body::Counter(_) => 2,
        }
    }

    /// Whether this is a value or a counter (not a tombstone).
    pub fn is_live(&self) -> bool {
        !matches!(self, Body::Tombstone)
    }
}

/// One key's whole state. A delta is a (key, entry) pair, and merging is [`Entry::join`].
///
/// `generation` decides which writes an entry replaced: for a value or a tombstone it is the
/// entry's own stamp; for a counter it is the stamp of the register the counter replaced when
/// it was created (or [`Stamp::zero`] on an absent key). See [`Entry::join`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    /// The last write to this entry (for a counter, the latest increment).
    pub stamp: Stamp,
    /// The entry's generation (see above).
    pub generation: Stamp,
    /// What the key holds.
    pub body: Body,
}

/// A change to send to peers or to store: one key and its whole entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Delta {
    /// The key.
    pub key: String,
    /// The key's entry after the change.
    pub entry: Entry,
}

impl Entry {
    /// A value written at `stamp`.
    pub fn value(stamp: Stamp, value: Vec<u8>) -> Entry {
        Entry {
            generation: stamp.clone(),
            stamp,
            body: Body::Value(value),
        }
    }

    /// A tombstone written at `stamp`.
    pub fn tombstone(stamp: Stamp) -> Entry {
        Entry {
            generation: stamp.clone(),
            stamp,
            body: Body::Tombstone,
        }
    }

    /// Checks the entry rules a peer or a file could break: a nonzero stamp; a register's
    /// generation is its stamp; a counter's generation is below its stamp and it has at most
    /// [`COUNTER_NODES_MAX`] writers.
    ///
    /// # Errors
    /// [`StateError::InvalidEntry`] or [`StateError::CounterTooWide`].
    pub fn check(&self) -> Result<(), StateError> {
        if self.stamp.is_zero() {
            return Err(StateError::InvalidEntry {
                reason: "zero stamp",
            });
        }
        match &self.body {
            Body::Value(_) | Body::Tombstone if self.generation != self.stamp => {
                Err(StateError::InvalidEntry {
                    reason: "register generation is not its stamp",
                })
            }
            Body::Counter(_) if self.generation >= self.stamp => Err(StateError::InvalidEntry {
                reason: "counter generation not before its stamp",
            }),
            Body::Counter(counter) if counter.writers() > COUNTER_NODES_MAX => {
                Err(StateError::CounterTooWide {
                    nodes: counter.writers(),
                    max: COUNTER_NODES_MAX,
                })
            }
            _ => Ok(()),
        }
    }

    /// How two entries of the same key compare in the join: by generation, then by kind
    /// ([`Body::rank`]). `Equal` means the same generation and kind: two counters to join, or
    /// two copies of one register write.
    fn class_order(&self, other: &Entry) -> Ordering {
        self.generation
            .cmp(&other.generation)
            .then_with(|| self.body.rank().cmp(&other.body.rank()))
    }

    /// Whether joining `other` into `self` would leave `self` unchanged.
    pub fn absorbs(&self, other: &Entry) -> bool {
        match self.class_order(other) {
            Ordering::Greater => true,
            Ordering::Less => false,
            Ordering::Equal => match (&self.body, &other.body) {
                (Body::Counter(mine), Body::Counter(theirs)) => {
                    self.stamp >= other.stamp && counter_absorbs(mine, theirs)
                }
                (Body::Value(mine), Body::Value(theirs)) => mine >= theirs,
                _ => true,
            },
        }
    }

    /// The join of two entries of one key (a join-semilattice: commutative, associative,
    /// idempotent, so replicas that received the same deltas in any order, with duplicates,
    /// hold the same entry):
    ///
    /// 1. The larger generation wins the whole entry. A value or tombstone's generation is its
    ///    stamp, so registers are last-writer-wins by (HLC, node id); a write or delete after a
    ///    counter's creation replaces the counter and its concurrent increments (delete wins).
    /// 2. Same generation, two counters: each node's larger totals; the stamp is the larger.
    /// 3. Same generation, a counter and a register: the counter, which was created on top of
    ///    that register.
    /// 4. Same generation, two registers: the same write (stamps are unique); bytes that differ
    ///    (only a faulty peer sends those) are settled by the larger value.
    ///
    /// Returns whether `self` changed.
    ///
    /// ```
    /// use ha_core::NodeId;
    /// use ha_gossip::{Entry, Hlc, Stamp};
    /// let stamp = |ms, node: &str| Stamp { hlc: Hlc { wall_ms: ms, logical: 0 }, node: NodeId::new(node).unwrap() };
    /// let mut older = Entry::value(stamp(10, "b"), b"old".to_vec());
    /// let newer = Entry::value(stamp(11, "a"), b"new".to_vec());
    /// assert!(older.join(&newer));
    /// assert_eq!(older, newer);
    /// assert!(!older.join(&Entry::value(stamp(10, "z"), b"late".to_vec())));
    /// ```
    pub fn join(&mut self, other: &Entry) -> bool {
        if self.absorbs(other) {
            return false;
        }
        match (&mut self.body, &other.body) {
            (Body::Counter(mine), Body::Counter(theirs)) if self.generation == other.generation => {
                mine.join(theirs);
                if other.stamp > self.stamp {
                    self.stamp = other.stamp.clone();
                }
            }
            _ => *self = other.clone(),
        }
        true
    }

    /// The join of `self` and `other` as a new entry (see [`Entry::join`]).
    pub fn joined(&self, other: &Entry) -> Entry {
        let mut joined = self.clone();
        joined.join(other);
        joined
    }

    /// Approximate bytes held by the body.
    pub fn body_bytes(&self) -> usize {
        match &self.body {
            Body::Value(value) => value.len(),
            Body::Tombstone => 0,
            Body::Counter(counter) => counter.bytes(),
        }
    }
}

/// Whether every total of `theirs` is at most the same node's total in `mine`.
fn counter_absorbs(mine: &PnCounter, theirs: &PnCounter) -> bool {
    let covers = |mine: &BTreeMap<NodeId, u64>, theirs: &BTreeMap<NodeId, u64>| {
        theirs
            .iter()
            .all(|(node, total)| mine.get(node).is_some_and(|own| own >= total))
    };
    covers(&mine.increments, &theirs.increments) && covers(&mine.decrements, &theirs.decrements)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Hlc;

    fn stamp(wall_ms: u64, node: &str) -> Stamp {
        Stamp {
            hlc: Hlc {
                wall_ms,
                logical: 0,
            },
            node: NodeId::new(node).unwrap(),
        }
    }

    fn counter(generation: Stamp, stamp: Stamp, totals: &[(&str, i64)]) -> Entry {
        let mut counter = PnCounter::default();
        for (node, by) in totals {
            counter.add(&NodeId::new(*node).unwrap(), *by).unwrap();
        }
        Entry {
            stamp,
            generation,
            body: Body::Counter(counter),
        }
    }

    fn value_of(entry: &Entry) -> i64 {
        match &entry.body {
            Body::Counter(counter) => counter.value(),
            other => panic!("not a counter: {other:?}"),
        }
    }

    /// The merge rule as a table, one case per line: (case, left, right, the join). `v(ms,
    /// node)` is a value, `t(ms, node)` a tombstone, `c(generation, stamp, totals)` a counter;
    /// every case is also checked in the other order.
    #[test]
    fn join_table() {
        let v = |ms, node| Entry::value(stamp(ms, node), format!("{ms}{node}").into_bytes());
        let t = |ms, node| Entry::tombstone(stamp(ms, node));
        let zero = Stamp::zero;
        let c = counter;
        #[rustfmt::skip]
        let cases: Vec<(&str, Entry, Entry, Entry)> = vec![
            ("later value wins",                      v(5, "a"), v(6, "a"), v(6, "a")),
            ("equal clocks: larger node id wins",     v(5, "a"), v(5, "b"), v(5, "b")),
            ("later delete wins over a value",        v(5, "a"), t(6, "a"), t(6, "a")),
            ("later value wins over a delete",        t(5, "a"), v(6, "b"), v(6, "b")),
            ("same write twice",                      t(5, "a"), t(5, "a"), t(5, "a")),
            ("fresh counters add up",                 c(zero(), stamp(5, "a"), &[("a", 3)]), c(zero(), stamp(6, "b"), &[("b", 4)]), c(zero(), stamp(6, "b"), &[("a", 3), ("b", 4)])),
            ("per node, the larger total",            c(zero(), stamp(5, "a"), &[("a", 3)]), c(zero(), stamp(4, "a"), &[("a", 1)]), c(zero(), stamp(5, "a"), &[("a", 3)])),
            ("decrements join separately",            c(zero(), stamp(5, "a"), &[("a", 3)]), c(zero(), stamp(6, "a"), &[("a", 3), ("a", -2)]), c(zero(), stamp(6, "a"), &[("a", 3), ("a", -2)])),
            ("delete after creation beats increments",c(zero(), stamp(9, "b"), &[("b", 7)]), t(6, "a"), t(6, "a")),
            ("put after creation beats increments",   c(zero(), stamp(9, "b"), &[("b", 7)]), v(6, "a"), v(6, "a")),
            ("counter created on the delete wins",    t(6, "a"), c(stamp(6, "a"), stamp(7, "b"), &[("b", 1)]), c(stamp(6, "a"), stamp(7, "b"), &[("b", 1)])),
            ("older generations lose",                c(stamp(6, "a"), stamp(7, "b"), &[("b", 1)]), c(zero(), stamp(20, "c"), &[("c", 50)]), c(stamp(6, "a"), stamp(7, "b"), &[("b", 1)])),
            ("a later delete ends that generation",   c(stamp(6, "a"), stamp(7, "b"), &[("b", 1)]), t(8, "c"), t(8, "c")),
        ];
        for (case, left, right, expected) in cases {
            assert_eq!(left.joined(&right), expected, "{case}");
            assert_eq!(right.joined(&left), expected, "{case} (other order)");
        }
    }

    #[test]
    fn counters_of_one_generation_add_up() {
        let left = counter(Stamp::zero(), stamp(5, "a"), &[("a", 3)]);
        let right = counter(Stamp::zero(), stamp(6, "b"), &[("b", 4), ("b", -1)]);
        let joined = left.joined(&right);
        assert_eq!(value_of(&joined), 6);
        assert_eq!(joined.stamp, stamp(6, "b"));
        assert_eq!(joined, right.joined(&left));
    }

    #[test]
    fn a_delete_after_the_counter_was_created_wins_over_concurrent_increments() {
        let created = counter(Stamp::zero(), stamp(5, "a"), &[("a", 3)]);
        let incremented_later = counter(Stamp::zero(), stamp(9, "b"), &[("a", 3), ("b", 10)]);
        let deleted = Entry::tombstone(stamp(6, "a"));
        assert_eq!(incremented_later.joined(&deleted), deleted);
        assert_eq!(deleted.joined(&incremented_later), deleted);
        assert_eq!(created.joined(&deleted), deleted);
    }

    #[test]
    fn a_counter_created_on_a_tombstone_beats_it_and_older_writes() {
        let deleted = Entry::tombstone(stamp(6, "a"));
        let reborn = counter(stamp(6, "a"), stamp(7, "b"), &[("b", 1)]);
        assert_eq!(deleted.joined(&reborn), reborn);
        assert_eq!(reborn.joined(&deleted), reborn);
        let older_value = Entry::value(stamp(5, "z"), b"x".to_vec());
        assert_eq!(reborn.joined(&older_value), reborn);
        let later_value = Entry::value(stamp(6, "b"), b"y".to_vec());
        assert_eq!(
            reborn.joined(&later_value),
            later_value,
            "a put after its generation wins"
        );
    }

    #[test]
    fn registers_are_last_writer_wins_with_ties_broken_by_node() {
        let a = Entry::value(stamp(5, "a"), b"from a".to_vec());
        let b = Entry::value(stamp(5, "b"), b"from b".to_vec());
        assert_eq!(a.joined(&b), b);
        assert_eq!(b.joined(&a), b);
    }

    #[test]
    fn same_stamp_different_bytes_settles_deterministically() {
        let small = Entry::value(stamp(5, "a"), b"1".to_vec());
        let large = Entry::value(stamp(5, "a"), b"2".to_vec());
        assert_eq!(small.joined(&large), large);
        assert_eq!(large.joined(&small), large);
    }

    #[test]
    fn check_refuses_broken_entries() {
        let mut bad = Entry::value(stamp(5, "a"), vec![]);
        bad.generation = stamp(4, "a");
        assert!(matches!(bad.check(), Err(StateError::InvalidEntry { .. })));
        assert!(matches!(
            Entry::tombstone(Stamp::zero()).check(),
            Err(StateError::InvalidEntry { .. })
        ));
        let future_generation = counter(stamp(9, "a"), stamp(8, "a"), &[("a", 1)]);
        assert!(matches!(
            future_generation.check(),
            Err(StateError::InvalidEntry { .. })
        ));
        assert_eq!(
            counter(Stamp::zero(), stamp(8, "a"), &[("a", 1)]).check(),
            Ok(())
        );
    }

    #[test]
    fn add_refuses_overflow_and_leaves_the_counter_unchanged() {
        let node = NodeId::new("a").unwrap();
        let mut counter = PnCounter::default();
        assert_eq!(counter.add(&node, i64::MAX), Ok(i64::MAX));
        assert_eq!(counter.add(&node, 1), Err(StateError::CounterOverflow));
        assert_eq!(counter.value(), i64::MAX);
        assert_eq!(counter.add(&node, i64::MIN), Ok(-1));
        assert_eq!(
            counter.add(&node, i64::MIN),
            Err(StateError::CounterOverflow)
        );
        assert_eq!(counter.value(), -1);
    }

    #[test]
    fn add_refuses_one_writer_too_many() {
        let mut counter = PnCounter::default();
        for index in 0..COUNTER_NODES_MAX {
            counter
                .add(&NodeId::new(format!("n{index}")).unwrap(), 1)
                .unwrap();
        }
        let extra = NodeId::new("extra").unwrap();
        assert_eq!(
            counter.add(&extra, -1),
            Err(StateError::CounterTooWide {
                nodes: COUNTER_NODES_MAX + 1,
                max: COUNTER_NODES_MAX
            })
        );
        assert_eq!(
            counter.add(&NodeId::new("n0").unwrap(), -1),
            Ok(COUNTER_NODES_MAX as i64 - 1)
        );
    }

    #[test]
    fn value_saturates_on_totals_a_peer_could_send() {
        let mut left = PnCounter::default();
        left.add(&NodeId::new("a").unwrap(), i64::MAX).unwrap();
        let mut right = PnCounter::default();
        right.add(&NodeId::new("b").unwrap(), i64::MAX).unwrap();
        left.join(&right);
        assert_eq!(left.value(), i64::MAX);
    }
}
