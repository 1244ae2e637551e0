//! Property tests of the shared map (issue 15): replicas that received the same deltas, in any
//! order and with duplicates, hold equal state; counters equal the sum of acknowledged
//! increments; last-writer-wins picks the same winner everywhere, the largest stamp; the join
//! is commutative, associative and idempotent; a deleted key stays deleted until a write that
//! came after the delete; and a single replica behaves like a `BTreeMap` model.
//!
//! Replicas run in one thread on virtual wall time with per-node clock skew; "sync" steps
//! deliver one replica's whole state to another (anti-entropy) and "deliver" steps hand one
//! logged delta to a replica (a push, possibly a duplicate or out of order).

use std::collections::{BTreeMap, BTreeSet};

use ha_core::NodeId;
use ha_gossip::{
    Body, Delta, Entry, Hlc, PnCounter, SharedMap, Stamp, StateData, StateError, StateLimits,
};
use proptest::prelude::*;

const NODES: usize = 3;
const KEYS: u8 = 4;
/// Wall-clock skew of each node against virtual time, in milliseconds (within the default
/// one-minute drift bound, so no delta is refused).
const SKEW_MS: [i64; NODES] = [0, 700, -300];
const START_MS: u64 = 1_700_000_000_000;

#[derive(Clone, Debug)]
enum Step {
    Put {
        node: usize,
        key: u8,
        value: u8,
    },
    Delete {
        node: usize,
        key: u8,
    },
    Increment {
        node: usize,
        key: u8,
        by: i64,
    },
    /// `to` merges every entry `from` holds.
    Sync {
        from: usize,
        to: usize,
    },
    /// `to` merges the logged delta at `index` (modulo the log's length).
    Deliver {
        to: usize,
        index: usize,
    },
    Advance {
        ms: u64,
    },
    /// `node` collects its expired tombstones.
    Collect {
        node: usize,
    },
}

fn node_index() -> impl Strategy<Value = usize> {
    0..NODES
}

fn step(
    puts: bool,
    deletes: bool,
    increments: bool,
    collects: bool,
) -> impl Strategy<Value = Step> {
    let key = 0..KEYS;
    let mut choices: Vec<BoxedStrategy<Step>> = vec![
        (node_index(), node_index())
            .prop_map(|(from, to)| Step::Sync { from, to })
            .boxed(),
        (node_index(), any::<usize>())
            .prop_map(|(to, index)| Step::Deliver { to, index })
            .boxed(),
        (0u64..2_000).prop_map(|ms| Step::Advance { ms }).boxed(),
    ];
    if collects {
        choices.push(node_index().prop_map(|node| Step::Collect { node }).boxed());
    }
    if puts {
        choices.push(
            (node_index(), key.clone(), any::<u8>())
                .prop_map(|(node, key, value)| Step::Put { node, key, value })
                .boxed(),
        );
    }
    if deletes {
        choices.push(
            (node_index(), key.clone())
                .prop_map(|(node, key)| Step::Delete { node, key })
                .boxed(),
        );
    }
    if increments {
        // Twice: counters need many increments to be interesting.
        for _ in 0..2 {
            choices.push(
                (node_index(), key.clone(), -5i64..=5)
                    .prop_map(|(node, key, by)| Step::Increment { node, key, by })
                    .boxed(),
            );
        }
    }
    proptest::strategy::Union::new(choices)
}

fn steps(puts: bool, deletes: bool, increments: bool) -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec(step(puts, deletes, increments, false), 1..120)
}

fn node_id(index: usize) -> NodeId {
    NodeId::new(format!("n{index}")).unwrap()
}

fn key_name(key: u8) -> String {
    format!("k{key}")
}

/// A write the test acknowledged: the delta the map returned.
#[derive(Clone, Debug)]
struct Acknowledged {
    delta: Delta,
    /// For increments, the amount.
    by: Option<i64>,
}

struct Cluster {
    replicas: Vec<SharedMap>,
    /// Every delta a local write produced, in order.
    log: Vec<Acknowledged>,
    /// Per replica, the log indexes it has taken in (directly or through a sync).
    received: Vec<BTreeSet<usize>>,
    now_ms: u64,
    /// The tombstone grace period, when the test collects tombstones.
    grace_ms: Option<u64>,
}

impl Cluster {
    fn new() -> Self {
        Self::with_grace(None)
    }

    fn with_grace(grace_ms: Option<u64>) -> Self {
        let mut limits = StateLimits::default();
        if let Some(grace_ms) = grace_ms {
            limits.tombstone_grace_ms = grace_ms;
        }
        Self {
            replicas: (0..NODES)
                .map(|index| SharedMap::new(node_id(index), limits.clone()))
                .collect(),
            log: Vec::new(),
            received: vec![BTreeSet::new(); NODES],
            now_ms: START_MS,
            grace_ms,
        }
    }

    fn wall_ms(&self, node: usize) -> u64 {
        self.now_ms.saturating_add_signed(SKEW_MS[node])
    }

    fn acknowledge(&mut self, node: usize, delta: Delta, by: Option<i64>) {
        self.received[node].insert(self.log.len());
        self.log.push(Acknowledged { delta, by });
    }

    fn run(&mut self, step: &Step) -> Result<(), TestCaseError> {
        match *step {
            Step::Put { node, key, value } => {
                let wall_ms = self.wall_ms(node);
                let delta = self.replicas[node]
                    .put(wall_ms, &key_name(key), vec![value])
                    .map_err(fail)?;
                // A local write is stamped after everything this replica has seen, so it wins
                // here at once (the clock observed every merged stamp).
                let read = self.replicas[node]
                    .get(&key_name(key))
                    .map(|read| read.data);
                prop_assert_eq!(read, Some(StateData::Bytes(vec![value])));
                self.acknowledge(node, delta, None);
            }
            Step::Delete { node, key } => {
                let wall_ms = self.wall_ms(node);
                if let Some(delta) = self.replicas[node].delete(wall_ms, &key_name(key)).unwrap() {
                    self.acknowledge(node, delta, None);
                }
            }
            Step::Increment { node, key, by } => {
                let wall_ms = self.wall_ms(node);
                match self.replicas[node].increment(wall_ms, &key_name(key), by) {
                    Ok((value, delta)) => {
                        let read = self.replicas[node]
                            .get(&key_name(key))
                            .map(|read| read.data);
                        prop_assert_eq!(read, Some(StateData::Counter(value)));
                        self.acknowledge(node, delta, Some(by));
                    }
                    Err(StateError::NotACounter { .. }) => {}
                    Err(other) => return Err(TestCaseError::fail(format!("increment: {other}"))),
                }
            }
            Step::Sync { from, to } => {
                let deltas: Vec<Delta> = self.replicas[from]
                    .entries()
                    .map(|(key, entry)| Delta {
                        key: key.clone(),
                        entry: entry.clone(),
                    })
                    .collect();
                let wall_ms = self.wall_ms(to);
                for delta in deltas {
                    self.replicas[to].merge(wall_ms, delta).map_err(fail)?;
                }
                let taken: Vec<usize> = self.received[from].iter().copied().collect();
                self.received[to].extend(taken);
            }
            Step::Deliver { to, index } => {
                if !self.log.is_empty() {
                    let index = index % self.log.len();
                    let wall_ms = self.wall_ms(to);
                    self.replicas[to]
                        .merge(wall_ms, self.log[index].delta.clone())
                        .map_err(fail)?;
                    self.received[to].insert(index);
                }
            }
            Step::Advance { ms } => self.now_ms += ms,
            Step::Collect { node } => {
                let wall_ms = self.wall_ms(node);
                self.replicas[node].collect_tombstones(wall_ms);
            }
        }
        for (index, replica) in self.replicas.iter().enumerate() {
            replica.check_invariants().map_err(fail)?;
            self.deleted_keys_stay_deleted(index)?;
        }
        Ok(())
    }

    /// A replica that took in a delete holds, for that key, the tombstone or a later write: a
    /// value stamped after it, or a counter created after seeing it (generation at least the
    /// delete's stamp). With collection on, for the deletes still inside the grace period on
    /// every node's clock.
    fn deleted_keys_stay_deleted(&self, node: usize) -> Result<(), TestCaseError> {
        let latest_wall_ms = self
            .now_ms
            .saturating_add_signed(SKEW_MS.iter().copied().max().unwrap_or(0));
        let in_grace = |stamp: &Stamp| {
            self.grace_ms
                .is_none_or(|grace_ms| stamp.hlc.wall_ms.saturating_add(grace_ms) > latest_wall_ms)
        };
        let mut latest_delete: BTreeMap<&str, &Stamp> = BTreeMap::new();
        for index in &self.received[node] {
            let delta = &self.log[*index].delta;
            if delta.entry.body == Body::Tombstone && in_grace(&delta.entry.stamp) {
                let latest = latest_delete
                    .entry(delta.key.as_str())
                    .or_insert(&delta.entry.stamp);
                *latest = (*latest).max(&delta.entry.stamp);
            }
        }
        for (key, deleted_at) in latest_delete {
            let entry = self.replicas[node].entry(key);
            let later = match entry.map(|entry| (&entry.body, entry)) {
                Some((Body::Tombstone, entry)) => entry.stamp >= *deleted_at,
                Some((Body::Value(_), entry)) => entry.stamp > *deleted_at,
                Some((Body::Counter(_), entry)) => entry.generation >= *deleted_at,
                None => false,
            };
            prop_assert!(
                later,
                "node {node} key {key}: {entry:?} does not follow the delete at {deleted_at:?}"
            );
        }
        Ok(())
    }

    /// Every replica takes in every logged delta.
    fn heal(&mut self) -> Result<(), TestCaseError> {
        self.now_ms += 1_000;
        for node in 0..NODES {
            let wall_ms = self.wall_ms(node);
            for acknowledged in &self.log {
                self.replicas[node]
                    .merge(wall_ms, acknowledged.delta.clone())
                    .map_err(fail)?;
            }
            self.received[node] = (0..self.log.len()).collect();
        }
        Ok(())
    }
}

fn fail(error: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(error.to_string())
}

fn snapshot(map: &SharedMap) -> Vec<(String, Entry)> {
    map.entries()
        .map(|(key, entry)| (key.clone(), entry.clone()))
        .collect()
}

/// A fresh replica that takes in `deltas` in the order `order` gives (indexes may repeat).
fn replica_from(
    deltas: &[Delta],
    order: &[usize],
    wall_ms: u64,
) -> Result<SharedMap, TestCaseError> {
    let mut map = SharedMap::new(NodeId::new("fresh").unwrap(), StateLimits::default());
    for index in order {
        map.merge(wall_ms, deltas[*index].clone()).map_err(fail)?;
    }
    map.check_invariants().map_err(fail)?;
    Ok(map)
}

/// Every index of `0..len` at least once, shuffled by `seed`, plus `duplicates` repeats.
fn shuffled_with_duplicates(len: usize, seed: u64, duplicates: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    let mut state = seed | 1;
    let mut next = move || {
        // xorshift64: deterministic from the proptest-chosen seed.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    if len > 0 {
        for _ in 0..duplicates {
            order.push((next() % len as u64) as usize);
        }
    }
    for index in (1..order.len()).rev() {
        let other = (next() % (index as u64 + 1)) as usize;
        order.swap(index, other);
    }
    order
}

/// What the merge rule says each key reads once every write is known, computed from the
/// acknowledged writes alone: the largest generation wins; in it, the counter (the sum of the
/// increments made in that generation) if there is one, otherwise the register written at it.
fn expected_reads(log: &[Acknowledged]) -> BTreeMap<String, Option<StateData>> {
    let mut by_key: BTreeMap<&str, Vec<&Acknowledged>> = BTreeMap::new();
    for acknowledged in log {
        by_key
            .entry(acknowledged.delta.key.as_str())
            .or_default()
            .push(acknowledged);
    }
    let mut expected = BTreeMap::new();
    for (key, writes) in by_key {
        let Some(generation) = writes
            .iter()
            .map(|write| &write.delta.entry.generation)
            .max()
        else {
            continue;
        };
        let in_generation: Vec<&&Acknowledged> = writes
            .iter()
            .filter(|write| write.delta.entry.generation == *generation)
            .collect();
        let counted: Vec<i64> = in_generation.iter().filter_map(|write| write.by).collect();
        let read = if !counted.is_empty() {
            Some(StateData::Counter(counted.iter().sum()))
        } else {
            match in_generation.first().map(|write| &write.delta.entry.body) {
                Some(Body::Value(value)) => Some(StateData::Bytes(value.clone())),
                _ => None,
            }
        };
        expected.insert(key.to_string(), read);
    }
    expected
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any interleaving of puts, deletes, increments, syncs and deliveries: after every replica
    /// took in every delta, all replicas hold equal entries and digests, and so do fresh
    /// replicas fed the same deltas in two other orders with duplicates.
    #[test]
    fn same_deltas_in_any_order_with_duplicates_give_equal_maps(
        steps in steps(true, true, true),
        first_seed in any::<u64>(),
        second_seed in any::<u64>(),
        duplicates in 0usize..40,
    ) {
        let mut cluster = Cluster::new();
        for step in &steps {
            cluster.run(step)?;
        }
        cluster.heal()?;
        let reference = snapshot(&cluster.replicas[0]);
        for replica in &cluster.replicas {
            prop_assert_eq!(&snapshot(replica), &reference);
            prop_assert_eq!(replica.digest(), cluster.replicas[0].digest());
            replica.check_invariants().map_err(fail)?;
        }
        for (key, expected) in expected_reads(&cluster.log) {
            prop_assert_eq!(cluster.replicas[0].get(&key).map(|read| read.data), expected, "key {}", key);
        }
        let deltas: Vec<Delta> = cluster.log.iter().map(|ack| ack.delta.clone()).collect();
        let wall_ms = cluster.now_ms;
        for seed in [first_seed, second_seed] {
            let order = shuffled_with_duplicates(deltas.len(), seed, duplicates);
            let fresh = replica_from(&deltas, &order, wall_ms)?;
            prop_assert_eq!(&snapshot(&fresh), &reference);
            prop_assert_eq!(fresh.digest(), cluster.replicas[0].digest());
        }
    }

    /// Only increments (and syncs): once healed, every replica's counter is the sum of the
    /// acknowledged increments of that key, whatever the interleaving.
    #[test]
    fn counters_equal_the_sum_of_acknowledged_increments(steps in steps(false, false, true)) {
        let mut cluster = Cluster::new();
        for step in &steps {
            cluster.run(step)?;
        }
        cluster.heal()?;
        let mut sums: BTreeMap<String, i64> = BTreeMap::new();
        for acknowledged in &cluster.log {
            *sums.entry(acknowledged.delta.key.clone()).or_default() += acknowledged.by.unwrap_or(0);
        }
        for replica in &cluster.replicas {
            for key in 0..KEYS {
                let key = key_name(key);
                let expected = sums.get(&key).map(|sum| StateData::Counter(*sum));
                prop_assert_eq!(replica.get(&key).map(|read| read.data), expected, "key {}", key);
            }
        }
    }

    /// Puts and deletes: every replica picks the same winner per key, the write with the largest
    /// (HLC, node) stamp; a key whose winner is a delete reads as absent. Stamps are unique.
    #[test]
    fn last_writer_wins_picks_the_largest_stamp_everywhere(steps in steps(true, true, false)) {
        let mut cluster = Cluster::new();
        for step in &steps {
            cluster.run(step)?;
        }
        cluster.heal()?;
        let stamps: BTreeSet<&Stamp> = cluster.log.iter().map(|ack| &ack.delta.entry.stamp).collect();
        prop_assert_eq!(stamps.len(), cluster.log.len(), "every write has its own stamp");
        let mut winners: BTreeMap<&str, &Entry> = BTreeMap::new();
        for acknowledged in &cluster.log {
            let delta = &acknowledged.delta;
            let winner = winners.entry(delta.key.as_str()).or_insert(&delta.entry);
            if delta.entry.stamp > winner.stamp {
                *winner = &delta.entry;
            }
        }
        for replica in &cluster.replicas {
            for (key, winner) in &winners {
                prop_assert_eq!(replica.entry(key), Some(*winner));
                let expected = match &winner.body {
                    Body::Value(value) => Some(StateData::Bytes(value.clone())),
                    _ => None,
                };
                prop_assert_eq!(replica.get(key).map(|read| read.data), expected);
            }
        }
    }
}

/// Grace period of the collection property: a few of the test's time steps, so tombstones
/// expire and are collected during a case.
const GRACE_MS: u64 = 3_000;

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// With tombstones collected after a short grace period on each node's own clock: every
    /// delete still inside the grace period (on every clock) keeps its key deleted on every
    /// replica that took it in, whatever old writes arrive later; the invariants hold after
    /// each collection.
    #[test]
    fn deleted_keys_stay_deleted_within_the_grace_period(
        steps in proptest::collection::vec(step(true, true, true, true), 1..160),
    ) {
        let mut cluster = Cluster::with_grace(Some(GRACE_MS));
        for step in &steps {
            cluster.run(step)?;
        }
        // Past the grace period everywhere, collection empties every tombstone.
        cluster.now_ms += GRACE_MS + 1_000;
        for node in 0..NODES {
            let wall_ms = cluster.wall_ms(node);
            cluster.replicas[node].collect_tombstones(wall_ms);
            prop_assert_eq!(cluster.replicas[node].stats().tombstones, 0);
            cluster.replicas[node].check_invariants().map_err(fail)?;
        }
    }
}

fn stamp_strategy() -> impl Strategy<Value = Stamp> {
    (1u64..4, 0u32..2, 0usize..3).prop_map(|(wall_ms, logical, node)| Stamp {
        hlc: Hlc { wall_ms, logical },
        node: node_id(node),
    })
}

fn counter_strategy() -> impl Strategy<Value = PnCounter> {
    proptest::collection::vec((0usize..3, -4i64..=4), 0..5).prop_map(|adds| {
        let mut counter = PnCounter::default();
        for (node, by) in adds {
            counter.add(&node_id(node), by).unwrap();
        }
        counter
    })
}

/// Valid entries of one key, drawn from a small space so equal generations and stamps happen.
fn entry_strategy() -> impl Strategy<Value = Entry> {
    prop_oneof![
        (stamp_strategy(), 0u8..3).prop_map(|(stamp, value)| Entry::value(stamp, vec![value])),
        stamp_strategy().prop_map(Entry::tombstone),
        (
            stamp_strategy(),
            proptest::option::of(stamp_strategy()),
            counter_strategy()
        )
            .prop_filter_map("generation before stamp", |(stamp, generation, counter)| {
                let generation = generation.unwrap_or_else(Stamp::zero);
                (generation < stamp).then_some(Entry {
                    stamp,
                    generation,
                    body: Body::Counter(counter),
                })
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    /// The join of entries is commutative, associative and idempotent, and `absorbs` says
    /// exactly whether a join changes anything.
    #[test]
    fn the_entry_join_is_a_semilattice(a in entry_strategy(), b in entry_strategy(), c in entry_strategy()) {
        prop_assert_eq!(a.joined(&b), b.joined(&a));
        prop_assert_eq!(a.joined(&b).joined(&c), a.joined(&b.joined(&c)));
        prop_assert_eq!(a.joined(&a), a.clone());
        prop_assert_eq!(a.absorbs(&b), a.joined(&b) == a);
        let mut changed = a.clone();
        prop_assert_eq!(changed.join(&b), a.joined(&b) != a);
        prop_assert!(a.joined(&b).check().is_ok());
    }
}

#[derive(Clone, Debug)]
enum ModelStep {
    Put(u8, Vec<u8>),
    Delete(u8),
    Increment(u8, i64),
    List(u8, usize),
}

fn model_step() -> impl Strategy<Value = ModelStep> {
    prop_oneof![
        (0u8..6, proptest::collection::vec(any::<u8>(), 0..8))
            .prop_map(|(key, value)| ModelStep::Put(key, value)),
        (0u8..6).prop_map(ModelStep::Delete),
        (0u8..6, -3i64..=3).prop_map(|(key, by)| ModelStep::Increment(key, by)),
        (0u8..3, 0usize..5).prop_map(|(prefix, limit)| ModelStep::List(prefix, limit)),
    ]
}

/// Keys `a0`, `a1`, `ab2`, ... share prefixes, so listings by prefix cut across them.
fn model_key(key: u8) -> String {
    ["a0", "a1", "ab2", "ab3", "b4", "b5"][usize::from(key)].to_string()
}

fn model_prefix(prefix: u8) -> &'static str {
    ["", "a", "ab"][usize::from(prefix)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// One replica against a `BTreeMap` model: reads, listings, errors and sizes match.
    #[test]
    fn a_replica_behaves_like_a_btreemap(steps in proptest::collection::vec(model_step(), 1..80)) {
        let mut map = SharedMap::new(NodeId::new("m").unwrap(), StateLimits::default());
        let mut model: BTreeMap<String, StateData> = BTreeMap::new();
        let mut wall_ms = START_MS;
        for step in steps {
            wall_ms += 1;
            match step {
                ModelStep::Put(key, value) => {
                    map.put(wall_ms, &model_key(key), value.clone()).map_err(fail)?;
                    model.insert(model_key(key), StateData::Bytes(value));
                }
                ModelStep::Delete(key) => {
                    let deleted = map.delete(wall_ms, &model_key(key)).map_err(fail)?;
                    prop_assert_eq!(deleted.is_some(), model.remove(&model_key(key)).is_some());
                }
                ModelStep::Increment(key, by) => {
                    let result = map.increment(wall_ms, &model_key(key), by).map(|(value, _)| value);
                    match model.get(&model_key(key)) {
                        Some(StateData::Bytes(_)) => {
                            let refused = matches!(result, Err(StateError::NotACounter { .. }));
                            prop_assert!(refused, "increment on a value: {:?}", result);
                        }
                        Some(StateData::Counter(current)) => {
                            prop_assert_eq!(result, Ok(current + by));
                            model.insert(model_key(key), StateData::Counter(current + by));
                        }
                        None => {
                            prop_assert_eq!(result, Ok(by));
                            model.insert(model_key(key), StateData::Counter(by));
                        }
                    }
                }
                ModelStep::List(prefix, limit) => {
                    let prefix = model_prefix(prefix);
                    let (listed, truncated) = map.list(prefix, limit);
                    let expected: Vec<(String, StateData)> = model
                        .iter()
                        .filter(|(key, _)| key.starts_with(prefix))
                        .map(|(key, data)| (key.clone(), data.clone()))
                        .collect();
                    let listed: Vec<(String, StateData)> =
                        listed.into_iter().map(|(key, read)| (key, read.data)).collect();
                    prop_assert_eq!(&listed[..], &expected[..expected.len().min(limit)]);
                    prop_assert_eq!(truncated, expected.len() > limit);
                }
            }
            for key in 0..6 {
                let key = model_key(key);
                prop_assert_eq!(map.get(&key).map(|read| read.data), model.get(&key).cloned());
            }
            let stats = map.stats();
            prop_assert_eq!(stats.live, model.len());
            prop_assert_eq!(
                stats.counters,
                model.values().filter(|data| matches!(data, StateData::Counter(_))).count()
            );
            map.check_invariants().map_err(fail)?;
        }
    }

    /// Deltas survive a postcard round trip (the wire and store encoding) unchanged.
    #[test]
    fn deltas_round_trip_through_postcard(key in "[a-z/]{1,20}", entry in entry_strategy()) {
        let delta = Delta { key, entry };
        let bytes = postcard::to_allocvec(&delta).map_err(fail)?;
        let decoded: Delta = postcard::from_bytes(&bytes).map_err(fail)?;
        prop_assert_eq!(decoded, delta);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    /// Deltas decoded from corrupted bytes (a valid encoding with bytes overwritten) are merged
    /// or refused, never a panic, and the map keeps its invariants either way.
    #[test]
    fn corrupted_deltas_are_merged_or_refused_without_breaking_the_map(
        key in "[a-z]{1,8}",
        entry in entry_strategy(),
        corruptions in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
    ) {
        let mut bytes = postcard::to_allocvec(&Delta { key, entry }).map_err(fail)?;
        for (position, byte) in corruptions {
            let index = position % bytes.len();
            bytes[index] = byte;
        }
        let mut map = SharedMap::new(NodeId::new("target").unwrap(), StateLimits::default());
        map.put(5, "existing/0", b"v".to_vec()).map_err(fail)?;
        if let Ok(delta) = postcard::from_bytes::<Delta>(&bytes) {
            let refused_before = map.stats().remote_refused;
            match map.merge(10, delta) {
                Ok(_) => prop_assert_eq!(map.stats().remote_refused, refused_before),
                Err(_) => prop_assert_eq!(map.stats().remote_refused, refused_before + 1),
            }
        }
        map.check_invariants().map_err(fail)?;
        prop_assert_eq!(map.get("existing/0").map(|read| read.data), Some(StateData::Bytes(b"v".to_vec())));
    }
}
