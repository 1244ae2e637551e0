//! Unit tests of [`SharedMap`]: reads and writes, every limit and error, merge refusals,
//! tombstone collection. Each test checks the map's invariants after it changes.

use ha_core::NodeId;

use super::*;

fn node(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

fn map(name: &str) -> SharedMap {
    SharedMap::new(node(name), StateLimits::default())
}

fn small_map(name: &str, keys_max: usize, tombstones_max: usize) -> SharedMap {
    let limits = StateLimits {
        keys_max,
        tombstones_max,
        ..StateLimits::default()
    };
    SharedMap::new(node(name), limits)
}

fn checked(map: &SharedMap) {
    if let Err(problem) = map.check_invariants() {
        panic!("invariant broken: {problem}");
    }
}

fn bytes(value: &str) -> Option<StateData> {
    Some(StateData::Bytes(value.as_bytes().to_vec()))
}

#[test]
fn put_get_delete_and_list() {
    let mut map = map("a");
    let delta = map.put(1_000, "app/one", b"1".to_vec()).unwrap();
    assert_eq!(delta.key, "app/one");
    assert_eq!(delta.entry.stamp.node, node("a"));
    map.put(1_001, "app/two", b"2".to_vec()).unwrap();
    map.put(1_002, "other", b"3".to_vec()).unwrap();
    assert_eq!(map.get("app/one").map(|read| read.data), bytes("1"));
    assert_eq!(map.get("app/one").unwrap().stamp, delta.entry.stamp);
    assert_eq!(map.get("missing"), None);

    let deleted = map.delete(1_003, "app/one").unwrap().unwrap();
    assert_eq!(deleted.entry.body, Body::Tombstone);
    assert!(deleted.entry.stamp > delta.entry.stamp);
    assert_eq!(map.get("app/one"), None);
    assert_eq!(map.delete(1_004, "app/one"), Ok(None), "already deleted");
    assert_eq!(map.delete(1_004, "never"), Ok(None), "absent");

    let (listed, truncated) = map.list("app/", 10);
    let keys: Vec<&str> = listed.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!((keys, truncated), (vec!["app/two"], false));
    let (listed, truncated) = map.list("", 1);
    assert_eq!((listed.len(), truncated), (1, true));
    let (listed, truncated) = map.list("", 2);
    assert_eq!((listed.len(), truncated), (2, false));
    assert_eq!(
        map.stats(),
        MapStats {
            live: 2,
            tombstones: 1,
            counters: 0,
            bytes: 7 + 1 + 5 + 1 + 7,
            remote_refused: 0
        }
    );
    checked(&map);
}

#[test]
fn keys_are_checked() {
    let mut map = map("a");
    for key in ["", "tab\there", "new\nline"] {
        assert!(
            matches!(map.put(1, key, vec![]), Err(StateError::InvalidKey { .. })),
            "{key:?}"
        );
        assert!(matches!(
            map.increment(1, key, 1),
            Err(StateError::InvalidKey { .. })
        ));
        assert!(matches!(
            map.delete(1, key),
            Err(StateError::InvalidKey { .. })
        ));
    }
    let longest = "k".repeat(256);
    assert!(map.put(1, &longest, vec![]).is_ok());
    let error = map.put(1, &"k".repeat(257), vec![]).unwrap_err();
    assert!(error.to_string().contains("key_bytes_max"), "{error}");
    assert_eq!(error.limit_name(), None);
    assert!(map.put(1, "ünïcode/ключ 🔑", vec![]).is_ok());
    checked(&map);
}

#[test]
fn values_over_the_limit_are_refused_locally_and_at_twice_it_from_peers() {
    let mut map = map("a");
    assert!(map.put(1, "k", vec![0; 4096]).is_ok());
    let error = map.put(1, "k", vec![0; 4097]).unwrap_err();
    assert_eq!(
        error,
        StateError::ValueTooLarge {
            bytes: 4097,
            max: 4096
        }
    );
    assert_eq!(error.limit_name(), Some("shared_state.value_bytes_max"));

    let mut peer = SharedMap::new(
        node("b"),
        StateLimits {
            value_bytes_max: 10_000,
            ..StateLimits::default()
        },
    );
    let fits = peer.put(2, "fits", vec![0; 8192]).unwrap();
    let too_big = peer.put(3, "too-big", vec![0; 8193]).unwrap();
    assert_eq!(map.merge(10, fits), Ok(true));
    assert_eq!(
        map.merge(10, too_big),
        Err(StateError::ValueTooLarge {
            bytes: 8193,
            max: 8192
        })
    );
    assert_eq!(map.stats().remote_refused, 1);
    assert_eq!(map.get("too-big"), None);
    checked(&map);
}

#[test]
fn live_keys_are_bounded_locally_and_at_twice_the_bound_from_peers() {
    let mut map = small_map("a", 2, 10);
    map.put(1, "one", vec![]).unwrap();
    map.increment(2, "two", 1).unwrap();
    let full = StateError::TooManyKeys { max: 2 };
    assert_eq!(map.put(3, "three", vec![]), Err(full.clone()));
    assert_eq!(
        map.increment(3, "three", 1).map(|(value, _)| value),
        Err(full.clone())
    );
    assert_eq!(full.limit_name(), Some("shared_state.keys_max"));
    // Overwriting a live key and incrementing a live counter are not new keys.
    assert!(map.put(4, "one", b"again".to_vec()).is_ok());
    assert!(map.increment(5, "two", 1).is_ok());
    // A deleted key written again is a new live key.
    map.delete(6, "one").unwrap();
    map.put(7, "three", vec![]).unwrap();
    assert_eq!(map.put(8, "one", vec![]), Err(full));

    let mut peer = map_with_keys("b", 5);
    let deltas: Vec<Delta> = peer_deltas(&mut peer);
    let results: Vec<bool> = deltas
        .into_iter()
        .map(|delta| map.merge(100, delta).is_ok())
        .collect();
    // 2 live here; peers may fill up to 4.
    assert_eq!(results.iter().filter(|accepted| **accepted).count(), 2);
    assert_eq!(map.stats().live, 4);
    assert_eq!(map.stats().remote_refused, 3);
    checked(&map);
}

fn map_with_keys(name: &str, keys: usize) -> SharedMap {
    let mut map = map(name);
    for index in 0..keys {
        map.put(10 + index as u64, &format!("peer-{index}"), vec![1])
            .unwrap();
    }
    map
}

fn peer_deltas(map: &mut SharedMap) -> Vec<Delta> {
    map.entries()
        .map(|(key, entry)| Delta {
            key: key.clone(),
            entry: entry.clone(),
        })
        .collect()
}

#[test]
fn tombstones_are_bounded_and_collected_after_the_grace_period() {
    let limits = StateLimits {
        tombstones_max: 2,
        tombstone_grace_ms: 1_000,
        ..StateLimits::default()
    };
    let mut map = SharedMap::new(node("a"), limits);
    for key in ["x", "y", "z"] {
        map.put(100, key, vec![]).unwrap();
    }
    map.delete(200, "x").unwrap();
    map.delete(300, "y").unwrap();
    let full = StateError::TooManyTombstones { max: 2 };
    assert_eq!(map.delete(400, "z"), Err(full.clone()));
    assert_eq!(full.limit_name(), Some("shared_state.tombstones_max"));
    assert_eq!(
        map.get("z").map(|read| read.data),
        Some(StateData::Bytes(vec![]))
    );

    let before = map.digest();
    assert_eq!(map.collect_tombstones(1_199), 0);
    assert_eq!(map.collect_tombstones(1_200), 1, "x was deleted at 200");
    assert_ne!(map.digest(), before);
    assert_eq!(map.entry("x"), None);
    assert!(map.entry("y").is_some());
    checked(&map);
    assert!(map.delete(1_201, "z").unwrap().is_some());
    assert_eq!(map.collect_tombstones(u64::MAX), 2);
    assert_eq!(map.stats().tombstones, 0);
    checked(&map);
}

#[test]
fn an_expired_tombstone_for_an_absent_key_is_skipped_but_still_deletes_a_value() {
    let limits = StateLimits {
        tombstone_grace_ms: 1_000,
        ..StateLimits::default()
    };
    let mut writer = SharedMap::new(node("w"), limits.clone());
    let mut map = SharedMap::new(node("a"), limits);
    let old_value = writer.put(100, "held", b"v".to_vec()).unwrap();
    map.merge(100, old_value).unwrap();
    writer.put(100, "gone", b"v".to_vec()).unwrap();
    let delete_held = writer.delete(200, "held").unwrap().unwrap();
    let delete_gone = writer.delete(200, "gone").unwrap().unwrap();
    assert_eq!(
        map.merge(5_000, delete_gone),
        Ok(false),
        "collected here already"
    );
    assert_eq!(map.entry("gone"), None);
    assert_eq!(
        map.merge(5_000, delete_held),
        Ok(true),
        "the delete still wins over the value"
    );
    assert_eq!(map.get("held"), None);
    checked(&map);
}

#[test]
fn increment_creates_counters_and_refuses_values() {
    let mut map = map("a");
    assert_eq!(map.increment(1, "c", 5).map(|(value, _)| value), Ok(5));
    assert_eq!(map.increment(2, "c", -7).map(|(value, _)| value), Ok(-2));
    assert_eq!(map.increment(3, "c", 0).map(|(value, _)| value), Ok(-2));
    assert_eq!(
        map.get("c").map(|read| read.data),
        Some(StateData::Counter(-2))
    );
    assert_eq!(map.entry("c").unwrap().generation, Stamp::zero());
    map.put(4, "v", b"x".to_vec()).unwrap();
    let error = map.increment(5, "v", 1).unwrap_err();
    assert_eq!(
        error,
        StateError::NotACounter {
            key: "v".to_string()
        }
    );
    // A counter overwritten by a put is a register.
    map.put(6, "c", b"now a value".to_vec()).unwrap();
    assert!(map.increment(7, "c", 1).is_err());
    assert_eq!(map.stats().counters, 0);
    checked(&map);
}

#[test]
fn an_increment_after_a_delete_starts_a_new_counter_at_zero() {
    let mut map = map("a");
    map.increment(1, "c", 10).unwrap();
    let deleted = map.delete(2, "c").unwrap().unwrap();
    let (value, delta) = map.increment(3, "c", 1).unwrap();
    assert_eq!(value, 1);
    assert_eq!(delta.entry.generation, deleted.entry.stamp);
    checked(&map);
}

#[test]
fn counter_overflow_leaves_the_map_unchanged() {
    let mut map = map("a");
    map.increment(1, "c", i64::MAX).unwrap();
    let digest = map.digest();
    assert_eq!(
        map.increment(2, "c", 1).map(|(value, _)| value),
        Err(StateError::CounterOverflow)
    );
    assert_eq!(map.digest(), digest);
    assert_eq!(
        map.get("c").map(|read| read.data),
        Some(StateData::Counter(i64::MAX))
    );
    checked(&map);
}

#[test]
fn a_delete_wins_over_increments_it_did_not_see_and_later_increments_survive() {
    let mut left = map("left");
    let mut right = map("right");
    let (_, created) = left.increment(10, "c", 1).unwrap();
    right.merge(10, created).unwrap();
    // Partition: left deletes, right keeps incrementing the old counter.
    let deleted = left.delete(20, "c").unwrap().unwrap();
    let (_, concurrent) = right.increment(30, "c", 100).unwrap();
    left.merge(40, concurrent).unwrap();
    right.merge(40, deleted).unwrap();
    assert_eq!(left.get("c"), None);
    assert_eq!(right.get("c"), None);
    // After the heal, an increment on either side starts over.
    let (_, fresh) = right.increment(50, "c", 2).unwrap();
    left.merge(50, fresh).unwrap();
    assert_eq!(
        left.get("c").map(|read| read.data),
        Some(StateData::Counter(2))
    );
    assert_eq!(left.digest(), right.digest());
    checked(&left);
    checked(&right);
}

#[test]
fn a_stamp_too_far_ahead_is_refused_counted_and_changes_nothing() {
    let mut future = map("future");
    let delta = future.put(1_000_000, "k", vec![]).unwrap();
    let mut map = map("a");
    assert_eq!(
        map.merge(900_000, delta.clone()),
        Err(StateError::ClockAhead { ahead_ms: 100_000 })
    );
    assert_eq!(map.entry("k"), None);
    assert_eq!(map.clock().last(), Hlc::ZERO);
    assert_eq!(map.stats().remote_refused, 1);
    assert_eq!(map.merge(940_000, delta), Ok(true), "within one minute");
    // Local writes now stamp after the peer's.
    let after = map.put(940_000, "k", b"mine".to_vec()).unwrap();
    assert!(
        after.entry.stamp.hlc
            > Hlc {
                wall_ms: 1_000_000,
                logical: 0
            }
    );
    checked(&map);
}

#[test]
fn restore_skips_the_drift_check_and_advances_the_clock() {
    let mut writer = map("a");
    let stored = writer.put(5_000_000, "k", b"v".to_vec()).unwrap();
    let mut map = map("a");
    assert_eq!(map.restore(stored.clone()), Ok(true));
    assert_eq!(map.restore(stored.clone()), Ok(false));
    assert_eq!(map.stats().remote_refused, 0);
    let next = map.put(1, "k", b"w".to_vec()).unwrap();
    assert!(next.entry.stamp > stored.entry.stamp);
    checked(&map);
}

#[test]
fn invalid_entries_from_peers_are_refused() {
    let mut map = map("a");
    let mut writer = self::map("w");
    let mut forged = writer.put(10, "k", vec![]).unwrap();
    forged.entry.generation = Stamp::zero();
    assert!(matches!(
        map.merge(10, forged),
        Err(StateError::InvalidEntry { .. })
    ));
    let bad_key = Delta {
        key: String::new(),
        entry: writer.put(11, "x", vec![]).unwrap().entry,
    };
    assert!(matches!(
        map.merge(11, bad_key),
        Err(StateError::InvalidKey { .. })
    ));
    assert_eq!(map.stats().remote_refused, 2);
    assert_eq!(map.stats().live, 0);
    checked(&map);
}

#[test]
fn a_joined_counter_wider_than_the_maximum_is_refused() {
    let mut map = map("a");
    let mut half = PnCounter::default();
    let mut other_half = PnCounter::default();
    for index in 0..COUNTER_NODES_MAX {
        let target = if index % 2 == 0 {
            &mut half
        } else {
            &mut other_half
        };
        target.add(&node(&format!("n{index}")), 1).unwrap();
    }
    other_half.add(&node("one-more"), 1).unwrap();
    let stamp = |ms| Stamp {
        hlc: Hlc {
            wall_ms: ms,
            logical: 0,
        },
        node: node("n0"),
    };
    let delta = |ms, counter: PnCounter| Delta {
        key: "wide".to_string(),
        entry: Entry {
            stamp: stamp(ms),
            generation: Stamp::zero(),
            body: Body::Counter(counter),
        },
    };
    assert_eq!(map.merge(10, delta(10, half)), Ok(true));
    assert!(matches!(
        map.merge(11, delta(11, other_half)),
        Err(StateError::CounterTooWide { nodes, max: COUNTER_NODES_MAX }) if nodes == COUNTER_NODES_MAX + 1
    ));
    checked(&map);
}

#[test]
fn entries_in_buckets_continue_from_a_cursor() {
    let map = map_with_keys("a", 300);
    let all: Vec<u16> = (0..BUCKETS as u16).collect();
    let everything: Vec<&String> = map
        .entries_in_buckets(&all, None)
        .map(|(key, _)| key)
        .collect();
    assert_eq!(everything.len(), 300);
    let second_half: Vec<&String> = map
        .entries_in_buckets(&all, Some(everything[149].as_str()))
        .map(|(key, _)| key)
        .collect();
    assert_eq!(second_half, everything[150..].to_vec());
    let bucket = SharedMap::bucket_of("peer-7");
    let in_bucket = map.deltas_in_buckets(&[bucket]);
    assert!(in_bucket.iter().any(|delta| delta.key == "peer-7"));
    assert!(
        in_bucket
            .iter()
            .all(|delta| SharedMap::bucket_of(&delta.key) == bucket)
    );
    assert!(
        map.deltas_in_buckets(&[u16::MAX]).is_empty(),
        "an unknown bucket matches nothing"
    );
}

#[test]
fn digests_find_exactly_the_differing_buckets() {
    let mut left = map_with_keys("a", 50);
    let mut right = map("b");
    for delta in peer_deltas(&mut left) {
        right.merge(100, delta).unwrap();
    }
    assert_eq!(left.digest(), right.digest());
    let delta = right.put(200, "peer-3", b"changed".to_vec()).unwrap();
    assert_eq!(
        left.differing_buckets(&right.digest()),
        vec![SharedMap::bucket_of("peer-3")]
    );
    left.merge(200, delta).unwrap();
    assert!(left.differing_buckets(right.digest_ref()).is_empty());
    checked(&left);
    checked(&right);
}

#[test]
fn listings_merge_the_buckets_in_key_order() {
    let mut map = map("a");
    let mut expected = Vec::new();
    for index in 0..1_000 {
        let key = format!("{}/{index:04}", ["alpha", "beta", "alphabet"][index % 3]);
        map.put(1, &key, vec![]).unwrap();
        if key.starts_with("alpha") {
            expected.push(key);
        }
    }
    map.delete(2, "alpha/0000").unwrap();
    expected.retain(|key| key != "alpha/0000");
    expected.sort();
    let (listed, truncated) = map.list("alpha", 10_000);
    let keys: Vec<String> = listed.into_iter().map(|(key, _)| key).collect();
    assert_eq!((keys, truncated), (expected.clone(), false));
    let (listed, truncated) = map.list("alpha", 5);
    let keys: Vec<String> = listed.into_iter().map(|(key, _)| key).collect();
    assert_eq!((keys, truncated), (expected[..5].to_vec(), true));
    assert_eq!(map.list("gamma", 10), (vec![], false));
}

#[test]
fn a_refused_delta_leaves_the_clock_alone() {
    let mut map = small_map("a", 1, 10);
    map.put(1_000, "mine", vec![]).unwrap();
    let before = map.clock().last();
    let mut peer = small_map("b", 10, 10);
    peer.put(1_000, "one", vec![]).unwrap();
    let too_many = peer.put(50_000, "two", vec![]).unwrap();
    map.merge(
        50_000,
        Delta {
            key: "one".into(),
            entry: peer.entry("one").unwrap().clone(),
        },
    )
    .unwrap();
    let after_one = map.clock().last();
    assert!(after_one >= before);
    assert_eq!(
        map.merge(50_000, too_many),
        Err(StateError::TooManyKeys { max: 2 })
    );
    assert_eq!(
        map.clock().last(),
        after_one,
        "the refused stamp was not observed"
    );
    checked(&map);
}

#[test]
fn a_replica_that_lost_its_increments_counts_again_under_a_new_writer() {
    let mut a = map("a");
    let mut b = map("b");
    let (_, delta) = a.increment(10, "c", 5).unwrap();
    b.merge(10, delta).unwrap();
    // `a` loses its store (a new disk): restarted under the same writer name, its next
    // increment is hidden by the total of 5 its peer holds.
    let mut same = map("a");
    let (_, delta) = same.increment(20, "c", 1).unwrap();
    let mut hidden = b.clone();
    hidden.merge(20, delta).unwrap();
    assert_eq!(
        hidden.get("c").map(|value| value.data),
        Some(StateData::Counter(5))
    );
    // Under a fresh writer name, every increment counts.
    let mut fresh = map("a");
    fresh.set_counter_writer(node("a.0000beef"));
    assert_eq!(fresh.counter_writer().as_str(), "a.0000beef");
    let (_, delta) = fresh.increment(20, "c", 1).unwrap();
    b.merge(20, delta).unwrap();
    assert_eq!(
        b.get("c").map(|value| value.data),
        Some(StateData::Counter(6))
    );
    assert_eq!(b.get("c").map(|value| value.stamp.node), Some(node("a")));
    checked(&b);
}
