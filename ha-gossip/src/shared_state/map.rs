//! The shared map: a state-based CRDT of registers and counters, one node's replica.
//!
//! # Merge rule
//!
//! Each key holds one [`Entry`]; merging a peer's entry is [`Entry::join`], a join-semilattice
//! (commutative, associative, idempotent), so replicas that received the same deltas, in any
//! order and with duplicates, hold the same map:
//!
//! - Registers (values and tombstones) are last-writer-wins by [`Stamp`]: the writer's hybrid
//!   logical clock, ties broken by node id. A delete is a tombstone with its own stamp, so a
//!   deleted key stays deleted until a write with a later stamp.
//! - Counters are PN-counters. A counter's generation is the stamp of the register it replaced
//!   (zero on an absent key): counters of one generation join (no increment lost, none counted
//!   twice); a put or delete whose stamp is after the generation replaces the counter with its
//!   concurrent increments (delete wins), and an increment after a delete starts a new counter
//!   at 0.
//! - Tombstones are kept `tombstone_grace_ms` by the wall time of their stamp, then collected
//!   ([`SharedMap::collect_tombstones`]). A replica that was away longer than that can bring
//!   back a value deleted while it was away: its old entry looks new to replicas that forgot
//!   the tombstone.
//!
//! # Costs
//!
//! Entries live in one `BTreeMap` per digest bucket (`slots.rs`). A write is one SHA-256 of
//! the key (its bucket), one lookup in a map of about n/256 keys, one clock tick, one SHA-256
//! of the entry (its digest hash) and an O(1) XOR update of the digest: the digest is never
//! recomputed. Measured at 100,000 keys: put, get and merge p50 about 2 µs
//! (`ha-gossip/tests/shared_state_cost.rs`).

use std::collections::BTreeSet;

use ha_core::NodeId;
use serde::{Deserialize, Serialize};

use super::digest::{self, BUCKETS, Digest};
use super::slots::{Slot, Slots};
use super::{Body, Delta, Entry, Hlc, HlcClock, PnCounter, Stamp, StateError, StateLimits};

/// What a read returns: a register's bytes or a counter's value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StateData {
    /// A register's value.
    Bytes(Vec<u8>),
    /// A counter's value.
    Counter(i64),
}

/// A read: the data, and the stamp of the last write (who wrote it, and when).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateValue {
    /// The value.
    pub data: StateData,
    /// The last write: for a counter, its latest increment.
    pub stamp: Stamp,
}

/// Sizes of a map, for metrics and limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapStats {
    /// Live keys: values and counters.
    pub live: usize,
    /// Tombstones not yet collected.
    pub tombstones: usize,
    /// Live keys that are counters.
    pub counters: usize,
    /// Approximate bytes of keys, values and counter totals.
    pub bytes: usize,
    /// Entries from peers refused (invalid, too large, over twice the limits, clock ahead).
    pub remote_refused: u64,
}

/// The counts an entry contributes to the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Shape {
    live: bool,
    counter: bool,
    bytes: usize,
}

impl Shape {
    fn of(key: &str, entry: &Entry) -> Shape {
        Shape {
            live: entry.body.is_live(),
            counter: matches!(entry.body, Body::Counter(_)),
            bytes: key.len() + entry.body_bytes(),
        }
    }
}

/// One node's replica of the shared map. Pure data: no IO, no clock reads (callers pass the
/// wall time as `wall_ms`), deterministic.
///
/// ```
/// use ha_core::NodeId;
/// use ha_gossip::{SharedMap, StateData, StateLimits};
/// let mut left = SharedMap::new(NodeId::new("left").unwrap(), StateLimits::default());
/// let mut right = SharedMap::new(NodeId::new("right").unwrap(), StateLimits::default());
/// // Both sides of a partition write the same key and increment the same counter.
/// let a = left.put(1_000, "colour", b"red".to_vec()).unwrap();
/// let b = right.put(1_001, "colour", b"blue".to_vec()).unwrap();
/// let (_, c) = left.increment(1_002, "hits", 2).unwrap();
/// let (_, d) = right.increment(1_003, "hits", 3).unwrap();
/// // Healed: each receives the other's deltas.
/// for delta in [b, d] { left.merge(1_010, delta).unwrap(); }
/// for delta in [a, c] { right.merge(1_010, delta).unwrap(); }
/// assert_eq!(left.get("colour").unwrap().data, StateData::Bytes(b"blue".to_vec()));
/// assert_eq!(right.get("hits").unwrap().data, StateData::Counter(5));
/// assert_eq!(left.digest(), right.digest());
/// ```
#[derive(Clone, Debug)]
pub struct SharedMap {
    node: NodeId,
    /// Whose per-writer counter totals this replica's increments add to: see
    /// [`SharedMap::set_counter_writer`].
    counter_writer: NodeId,
    limits: StateLimits,
    clock: HlcClock,
    slots: Slots,
    digest: Digest,
    /// Tombstones by (stamp clock, key), oldest first, for collection; its length is the
    /// number of tombstones.
    tombstones_by_age: BTreeSet<(Hlc, String)>,
    counters: usize,
    bytes: usize,
    remote_refused: u64,
}

impl SharedMap {
    /// An empty map for `node`, bounded by `limits`.
    pub fn new(node: NodeId, limits: StateLimits) -> Self {
        Self {
            counter_writer: node.clone(),
            node,
            clock: HlcClock::new(limits.drift_ms_max),
            limits,
            slots: Slots::new(),
            digest: Digest::default(),
            tombstones_by_age: BTreeSet::new(),
            counters: 0,
            bytes: 0,
            remote_refused: 0,
        }
    }

    /// This replica's node id (the writer in its stamps).
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// The name under which this replica's counter increments are kept (its node id unless
    /// [`set_counter_writer`](Self::set_counter_writer) gave another).
    pub fn counter_writer(&self) -> &NodeId {
        &self.counter_writer
    }

    /// Keep this replica's counter increments under `writer` from now on. A node whose store
    /// may have lost its own increments (a new disk, a memory-only node, `fsync` not
    /// `always`) must not continue its old per-writer totals: peers hold larger ones, and
    /// the join (per-writer max) would hide its new increments until its total passed theirs.
    /// Under a writer name never used before, every new increment counts.
    pub fn set_counter_writer(&mut self, writer: NodeId) {
        self.counter_writer = writer;
    }

    /// The limits given to [`SharedMap::new`].
    pub fn limits(&self) -> &StateLimits {
        &self.limits
    }

    /// The hybrid logical clock that stamps local writes.
    pub fn clock(&self) -> &HlcClock {
        &self.clock
    }

    /// Writes `value` under `key` (a register), replacing a value, a tombstone or a counter.
    /// Returns the delta to store and send to peers.
    ///
    /// # Errors
    /// [`StateError::InvalidKey`], [`StateError::ValueTooLarge`], or
    /// [`StateError::TooManyKeys`] for a new key when `keys_max` keys are live. Nothing
    /// changed.
    pub fn put(&mut self, wall_ms: u64, key: &str, value: Vec<u8>) -> Result<Delta, StateError> {
        self.limits.check_key(key)?;
        if value.len() > self.limits.value_bytes_max {
            return Err(StateError::ValueTooLarge {
                bytes: value.len(),
                max: self.limits.value_bytes_max,
            });
        }
        let bucket = digest::bucket_of(key);
        if !self.is_live(bucket, key) {
            self.check_room_for_key(1)?;
        }
        let entry = Entry::value(self.tick(wall_ms), value);
        let delta = Delta {
            key: key.to_string(),
            entry: entry.clone(),
        };
        self.install(bucket, key, entry);
        Ok(delta)
    }

    /// Deletes `key`: a tombstone stamped now. Returns `None` (and changes nothing) when the key
    /// is absent or already deleted.
    ///
    /// # Errors
    /// [`StateError::InvalidKey`], or [`StateError::TooManyTombstones`] when
    /// `tombstones_max` tombstones are waiting for collection. Nothing changed.
    pub fn delete(&mut self, wall_ms: u64, key: &str) -> Result<Option<Delta>, StateError> {
        self.limits.check_key(key)?;
        let bucket = digest::bucket_of(key);
        if !self.is_live(bucket, key) {
            return Ok(None);
        }
        if self.tombstones_by_age.len() >= self.limits.tombstones_max {
            return Err(StateError::TooManyTombstones {
                max: self.limits.tombstones_max,
            });
        }
        let entry = Entry::tombstone(self.tick(wall_ms));
        let delta = Delta {
            key: key.to_string(),
            entry: entry.clone(),
        };
        self.install(bucket, key, entry);
        Ok(Some(delta))
    }

    /// Adds `by` (may be negative) to the counter `key`, creating it at 0 on an absent or
    /// deleted key. Returns the counter's new value here and the delta.
    ///
    /// # Errors
    /// [`StateError::NotACounter`] when the key holds a value; [`StateError::InvalidKey`];
    /// [`StateError::TooManyKeys`] for a new key; [`StateError::CounterOverflow`];
    /// [`StateError::CounterTooWide`]. Nothing changed.
    pub fn increment(
        &mut self,
        wall_ms: u64,
        key: &str,
        by: i64,
    ) -> Result<(i64, Delta), StateError> {
        self.limits.check_key(key)?;
        let bucket = digest::bucket_of(key);
        let (generation, mut counter) = match self.slots.get(bucket, key).map(|slot| &slot.entry) {
            Some(Entry {
                generation,
                body: Body::Counter(counter),
                ..
            }) => (generation.clone(), counter.clone()),
            Some(Entry {
                body: Body::Value(_),
                ..
            }) => {
                return Err(StateError::NotACounter {
                    key: key.to_string(),
                });
            }
            // A counter on a tombstone is a new generation: it replaces the delete it saw and
            // loses to any write after it.
            Some(Entry {
                stamp,
                body: Body::Tombstone,
                ..
            }) => {
                self.check_room_for_key(1)?;
                (stamp.clone(), PnCounter::default())
            }
            None => {
                self.check_room_for_key(1)?;
                (Stamp::zero(), PnCounter::default())
            }
        };
        let value = counter.add(&self.counter_writer, by)?;
        let entry = Entry {
            stamp: self.tick(wall_ms),
            generation,
            body: Body::Counter(counter),
        };
        let delta = Delta {
            key: key.to_string(),
            entry: entry.clone(),
        };
        self.install(bucket, key, entry);
        Ok((value, delta))
    }

    /// Reads `key`: `None` when absent or deleted.
    pub fn get(&self, key: &str) -> Option<StateValue> {
        self.slots
            .get(digest::bucket_of(key), key)
            .and_then(|slot| read(&slot.entry))
    }

    /// Live keys starting with `prefix`, in key order, at most `limit`; `true` when more
    /// matched.
    pub fn list(&self, prefix: &str, limit: usize) -> (Vec<(String, StateValue)>, bool) {
        let mut listed = Vec::new();
        for (key, slot) in self.slots.prefixed(prefix) {
            let Some(value) = read(&slot.entry) else {
                continue;
            };
            if listed.len() == limit {
                return (listed, true);
            }
            listed.push((key.clone(), value));
        }
        (listed, false)
    }

    /// Merges a peer's delta (the join, see the module documentation), after checking it and
    /// observing its clock. Returns whether the map changed (the caller relays and stores only
    /// changes). A tombstone older than the grace period for a key this map does not hold is
    /// skipped: it was collected here already.
    ///
    /// For deltas from peers only: a node replaying its own store uses
    /// [`SharedMap::restore`], which skips the drift check (a clock set back between two runs
    /// must not refuse writes this node acknowledged).
    ///
    /// # Errors
    /// The delta is refused, counted in [`MapStats::remote_refused`], and nothing changed:
    /// [`StateError::InvalidKey`], [`StateError::InvalidEntry`], [`StateError::CounterTooWide`],
    /// [`StateError::ValueTooLarge`], [`StateError::TooManyKeys`] or
    /// [`StateError::TooManyTombstones`] at twice the local limits, [`StateError::ClockAhead`].
    pub fn merge(&mut self, wall_ms: u64, delta: Delta) -> Result<bool, StateError> {
        let result = self.check_remote(&delta).and_then(|()| {
            self.clock.check_drift(delta.entry.stamp.hlc, wall_ms)?;
            self.join_in(delta, Some(wall_ms))
        });
        if result.is_err() {
            self.remote_refused = self.remote_refused.saturating_add(1);
        }
        result
    }

    /// Merges a delta this node stored itself (replay of its own log on start): the checks of
    /// [`SharedMap::merge`] except the clock-drift check and the skipping of old tombstones;
    /// the clock advances past its stamp, so later local writes stamp after it.
    ///
    /// # Errors
    /// As [`SharedMap::merge`] without [`StateError::ClockAhead`]; refusals are not counted as
    /// remote.
    pub fn restore(&mut self, delta: Delta) -> Result<bool, StateError> {
        self.check_remote(&delta)?;
        self.join_in(delta, None)
    }

    /// The entry of `key`, tombstones included.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.slots
            .get(digest::bucket_of(key), key)
            .map(|slot| &slot.entry)
    }

    /// Every entry, tombstones included, bucket by bucket (key order within a bucket): the
    /// same order on every replica that holds the same entries.
    pub fn entries(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.slots.iter().map(|(_, key, slot)| (key, &slot.entry))
    }

    /// The digest (a copy; see [`SharedMap::digest_ref`]). Kept up to date on every change.
    pub fn digest(&self) -> Digest {
        self.digest.clone()
    }

    /// The digest, borrowed.
    pub fn digest_ref(&self) -> &Digest {
        &self.digest
    }

    /// The buckets where this map's digest differs from `theirs`.
    pub fn differing_buckets(&self, theirs: &Digest) -> Vec<u16> {
        self.digest.differing_buckets(theirs)
    }

    /// The digest bucket of `key` (stable across nodes, platforms and versions).
    pub fn bucket_of(key: &str) -> u16 {
        digest::bucket_of(key)
    }

    /// Every entry in `buckets`, as deltas (tombstones included). The whole of those buckets:
    /// callers that must bound a reply use [`SharedMap::entries_in_buckets`] with a cursor.
    pub fn deltas_in_buckets(&self, buckets: &[u16]) -> Vec<Delta> {
        self.entries_in_buckets(buckets, None)
            .map(|(key, entry)| Delta {
                key: key.clone(),
                entry: entry.clone(),
            })
            .collect()
    }

    /// The entries in `buckets` after the key `after_key` (all when `None`), bucket by bucket
    /// and in key order within a bucket, lazily: take as many as fit in a reply and continue
    /// after the last key sent. Costs the size of those buckets, not of the map. Bucket
    /// numbers of [`BUCKETS`] or more match nothing.
    pub fn entries_in_buckets<'a>(
        &'a self,
        buckets: &[u16],
        after_key: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a String, &'a Entry)> + 'a {
        let mut wanted = [false; BUCKETS];
        for bucket in buckets {
            if let Some(flag) = wanted.get_mut(usize::from(*bucket)) {
                *flag = true;
            }
        }
        let after = after_key.map(|key| (digest::bucket_of(key), key));
        self.slots
            .in_buckets(wanted, after)
            .map(|(key, slot)| (key, &slot.entry))
    }

    /// Removes tombstones whose stamp's wall time is `tombstone_grace_ms` or more before
    /// `wall_ms`; returns how many. Costs O(removed · log n): tombstones are kept by age.
    pub fn collect_tombstones(&mut self, wall_ms: u64) -> usize {
        let grace_ms = self.limits.tombstone_grace_ms;
        let mut removed = 0;
        while let Some((hlc, _)) = self.tombstones_by_age.first() {
            if hlc.wall_ms.saturating_add(grace_ms) > wall_ms {
                break;
            }
            let Some((_, key)) = self.tombstones_by_age.pop_first() else {
                break;
            };
            let bucket = digest::bucket_of(&key);
            if let Some(slot) = self.slots.remove(bucket, &key) {
                self.digest.toggle(bucket, slot.hash);
                self.bytes -= Shape::of(&key, &slot.entry).bytes;
                removed += 1;
            }
        }
        removed
    }

    /// Sizes of the map.
    pub fn stats(&self) -> MapStats {
        let tombstones = self.tombstones_by_age.len();
        MapStats {
            live: self.slots.len() - tombstones,
            tombstones,
            counters: self.counters,
            bytes: self.bytes,
            remote_refused: self.remote_refused,
        }
    }

    /// Recomputes every derived figure (counts, bytes, digest, tombstone index, cached
    /// hashes) from the entries and compares: O(n), for tests and the simulator.
    ///
    /// # Errors
    /// A description of the first mismatch.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut digest = Digest::default();
        let (mut counters, mut bytes) = (0, 0);
        let mut tombstones = BTreeSet::new();
        for (bucket, key, slot) in self.slots.iter() {
            if slot.hash != digest::entry_hash(key, &slot.entry) {
                return Err(format!("stale hash for {key:?}"));
            }
            if bucket != digest::bucket_of(key) {
                return Err(format!("wrong bucket for {key:?}"));
            }
            slot.entry
                .check()
                .map_err(|error| format!("{key:?}: {error}"))?;
            digest.toggle(bucket, slot.hash);
            let shape = Shape::of(key, &slot.entry);
            counters += usize::from(shape.counter);
            bytes += shape.bytes;
            if !shape.live {
                tombstones.insert((slot.entry.stamp.hlc, key.clone()));
            }
        }
        if digest != self.digest {
            return Err("digest differs from the recomputed one".to_string());
        }
        if (counters, bytes) != (self.counters, self.bytes) {
            return Err(format!(
                "counters/bytes {}/{} recomputed as {counters}/{bytes}",
                self.counters, self.bytes
            ));
        }
        if tombstones != self.tombstones_by_age {
            return Err("tombstone index differs from the entries".to_string());
        }
        if self
            .slots
            .iter()
            .any(|(_, _, slot)| slot.entry.stamp.hlc > self.clock.last())
        {
            return Err("an entry's stamp is ahead of the clock".to_string());
        }
        Ok(())
    }

    fn tick(&mut self, wall_ms: u64) -> Stamp {
        Stamp {
            hlc: self.clock.tick(wall_ms),
            node: self.node.clone(),
        }
    }

    fn is_live(&self, bucket: u16, key: &str) -> bool {
        self.slots
            .get(bucket, key)
            .is_some_and(|slot| slot.entry.body.is_live())
    }

    /// Refuses a new live key when `keys_max · factor` are live.
    fn check_room_for_key(&self, factor: usize) -> Result<(), StateError> {
        let max = self.limits.keys_max.saturating_mul(factor);
        if self.stats().live >= max {
            return Err(StateError::TooManyKeys { max });
        }
        Ok(())
    }

    /// The checks on a delta from outside this process (a peer or the store).
    fn check_remote(&self, delta: &Delta) -> Result<(), StateError> {
        self.limits.check_key(&delta.key)?;
        if let Body::Value(value) = &delta.entry.body {
            let max = self
                .limits
                .value_bytes_max
                .saturating_mul(StateLimits::REMOTE_FACTOR);
            if value.len() > max {
                return Err(StateError::ValueTooLarge {
                    bytes: value.len(),
                    max,
                });
            }
        }
        delta.entry.check()
    }

    /// Joins a checked delta into the map, within twice the limits, and has the clock observe
    /// its stamp unless it is refused. `wall_ms` is `None` on restore (old tombstones are not
    /// skipped then).
    fn join_in(&mut self, delta: Delta, wall_ms: Option<u64>) -> Result<bool, StateError> {
        let Delta { key, entry } = delta;
        let bucket = digest::bucket_of(&key);
        let old_live = match self.slots.get(bucket, &key) {
            Some(slot) => {
                if slot.entry.absorbs(&entry) {
                    self.clock.advance_to(entry.stamp.hlc);
                    return Ok(false);
                }
                Some(slot.entry.body.is_live())
            }
            None => None,
        };
        let joined = match (self.slots.get(bucket, &key), &entry.body) {
            (Some(slot), Body::Counter(_))
                if matches!(slot.entry.body, Body::Counter(_))
                    && slot.entry.generation == entry.generation =>
            {
                let joined = slot.entry.joined(&entry);
                joined.check()?;
                joined
            }
            // Not absorbed and not two counters of one generation: the delta wins whole.
            _ => entry,
        };
        let new_live = joined.body.is_live();
        if old_live.is_none()
            && !new_live
            && wall_ms.is_some_and(|now| {
                joined
                    .stamp
                    .hlc
                    .wall_ms
                    .saturating_add(self.limits.tombstone_grace_ms)
                    <= now
            })
        {
            self.clock.advance_to(joined.stamp.hlc);
            return Ok(false);
        }
        if new_live && old_live != Some(true) {
            self.check_room_for_key(StateLimits::REMOTE_FACTOR)?;
        }
        if !new_live && old_live != Some(false) {
            let max = self
                .limits
                .tombstones_max
                .saturating_mul(StateLimits::REMOTE_FACTOR);
            if self.tombstones_by_age.len() >= max {
                return Err(StateError::TooManyTombstones { max });
            }
        }
        // The joined stamp is the larger of ours and the delta's.
        self.clock.advance_to(joined.stamp.hlc);
        self.install(bucket, &key, joined);
        Ok(true)
    }

    /// Puts `entry` under `key` (in `bucket`, its bucket) and updates the digest, counts and
    /// tombstone index. Limits are the caller's business.
    fn install(&mut self, bucket: u16, key: &str, entry: Entry) {
        // O(1) checks after every input (the simulator runs with debug assertions);
        // `check_invariants` is the O(n) version.
        debug_assert_eq!(bucket, digest::bucket_of(key));
        debug_assert!(entry.check().is_ok(), "installing a broken entry {entry:?}");
        debug_assert!(
            entry.stamp.hlc <= self.clock.last(),
            "a stamp ahead of the clock"
        );
        let hash = digest::entry_hash(key, &entry);
        let new_shape = Shape::of(key, &entry);
        let new_tombstone = (!new_shape.live).then_some(entry.stamp.hlc);
        let old = match self.slots.get_mut(bucket, key) {
            Some(slot) => {
                let old_hash = std::mem::replace(&mut slot.hash, hash);
                self.digest.toggle(bucket, old_hash);
                Some(std::mem::replace(&mut slot.entry, entry))
            }
            None => {
                self.slots
                    .insert_new(bucket, key.to_string(), Slot { entry, hash });
                None
            }
        };
        self.digest.toggle(bucket, hash);
        if let Some(old) = &old {
            let old_shape = Shape::of(key, old);
            self.bytes -= old_shape.bytes;
            self.counters -= usize::from(old_shape.counter);
            if !old_shape.live {
                self.tombstones_by_age
                    .remove(&(old.stamp.hlc, key.to_string()));
            }
        }
        self.bytes += new_shape.bytes;
        self.counters += usize::from(new_shape.counter);
        if let Some(hlc) = new_tombstone {
            self.tombstones_by_age.insert((hlc, key.to_string()));
        }
        debug_assert!(self.tombstones_by_age.len() <= self.slots.len());
        debug_assert!(self.counters <= self.slots.len() - self.tombstones_by_age.len());
    }
}

/// The read of an entry: `None` for a tombstone.
fn read(entry: &Entry) -> Option<StateValue> {
    let data = match &entry.body {
        Body::Value(value) => StateData::Bytes(value.clone()),
        Body::Counter(counter) => StateData::Counter(counter.value()),
        Body::Tombstone => return None,
    };
    Some(StateValue {
        data,
        stamp: entry.stamp.clone(),
    })
}
