//! The shared map's replicator (`StateReplicator`) one input at a time: each test feeds an
//! event and asserts the whole list of effects it produced (openraft style), then hostile
//! packets: random bytes and mutations of real packets never panic, are counted, change
//! nothing, and never make the replicator allocate more than a few packets' worth.

use std::alloc::System;
use std::net::SocketAddr;
use std::sync::Mutex;

use ha_core::{Millis, NodeId};
use ha_gossip::{
    Delta, ReplicatorSettings, SharedMap, StateEffect, StateLimits, StateMessage, StateReplicator,
};
use peakmem_alloc::{INSTRUMENTED_SYSTEM, PeakMemAlloc, PeakMemAllocTrait};
use proptest::prelude::*;

#[global_allocator]
static ALLOCATOR: &PeakMemAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The allocation peak is global to the process: tests in this file run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Most a hostile packet may make the replicator allocate while handling it: the decoded
/// message plus an answer (a digest, or a bounded repair of a small map).
const PACKET_HANDLING_BYTES_MAX: usize = 256 * 1024;

const WALL_MS: u64 = 1_764_000_000_000;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn replicator(name: &str, seed: u64) -> StateReplicator {
    let map = SharedMap::new(NodeId::new(name).expect("valid id"), StateLimits::default());
    StateReplicator::new(map, ReplicatorSettings::default(), seed)
}

/// The sends among `effects`, decoded, in order; panics on a Persist (callers check those).
fn sends(effects: Vec<StateEffect>) -> Vec<(SocketAddr, StateMessage)> {
    effects
        .into_iter()
        .map(|effect| match effect {
            StateEffect::Send { to, payload } => (
                to,
                StateMessage::decode(&payload).expect("we decode what we send"),
            ),
            StateEffect::Persist(deltas) => panic!("unexpected Persist({deltas:?})"),
        })
        .collect()
}

fn push(hops_left: u8, deltas: Vec<Delta>) -> Vec<u8> {
    StateMessage::Push { hops_left, deltas }.encode()
}

#[test]
fn a_local_write_is_pushed_to_fanout_distinct_peers_after_the_push_interval() {
    let _serial = serial();
    let mut a = replicator("a", 1);
    let peers: Vec<SocketAddr> = (7001..7006).map(addr).collect();
    a.set_peers(peers.clone());
    let delta = a.put(Millis(0), WALL_MS, "k", b"v".to_vec()).expect("put");
    assert_eq!(a.drain_effects(), vec![], "a write sends nothing by itself");
    // The first tick only schedules the first anti-entropy round.
    a.on_tick(Millis(0), WALL_MS);
    a.on_tick(Millis(19), WALL_MS + 19);
    assert_eq!(a.drain_effects(), vec![]);
    a.on_tick(Millis(20), WALL_MS + 20);
    let sent = sends(a.drain_effects());
    // 5 peers + this node = 6 members: ceil(log2 6) + 2 = 5 hops.
    let expected = StateMessage::Push {
        hops_left: 5,
        deltas: vec![delta],
    };
    assert_eq!(sent.len(), 3, "fanout 3: {sent:?}");
    let mut targets: Vec<SocketAddr> = sent.iter().map(|(to, _)| *to).collect();
    targets.sort_unstable();
    targets.dedup();
    assert_eq!(targets.len(), 3, "three distinct peers");
    assert!(targets.iter().all(|to| peers.contains(to)));
    for (_, message) in sent {
        assert_eq!(message, expected);
    }
    assert_eq!(a.queued_keys(), 0);
}

#[test]
fn writes_to_one_key_within_a_push_interval_leave_as_one_delta() {
    let _serial = serial();
    let mut a = replicator("a", 1);
    a.set_peers(vec![addr(7001)]);
    a.put(Millis(0), WALL_MS, "k", b"1".to_vec()).expect("put");
    a.put(Millis(5), WALL_MS + 5, "k", b"2".to_vec())
        .expect("put");
    let last = a
        .put(Millis(9), WALL_MS + 9, "k", b"3".to_vec())
        .expect("put");
    a.on_tick(Millis(20), WALL_MS + 20);
    assert_eq!(
        sends(a.drain_effects()),
        vec![(
            addr(7001),
            StateMessage::Push {
                hops_left: 3,
                deltas: vec![last]
            }
        )]
    );
}

#[test]
fn a_new_delta_is_stored_and_relayed_once_with_one_hop_less() {
    let _serial = serial();
    let mut writer = replicator("w", 1);
    let delta = writer
        .put(Millis(0), WALL_MS, "k", b"v".to_vec())
        .expect("put");
    let mut b = replicator("b", 2);
    b.set_peers(vec![addr(7003)]);
    b.on_packet(
        Millis(1),
        WALL_MS + 1,
        addr(7001),
        &push(4, vec![delta.clone()]),
    );
    assert_eq!(
        b.drain_effects(),
        vec![StateEffect::Persist(vec![delta.clone()])]
    );
    // The same delta again (a duplicate, or from another relay) changes nothing.
    b.on_packet(
        Millis(2),
        WALL_MS + 2,
        addr(7002),
        &push(4, vec![delta.clone()]),
    );
    assert_eq!(b.drain_effects(), vec![]);
    b.on_tick(Millis(21), WALL_MS + 21);
    assert_eq!(
        sends(b.drain_effects()),
        vec![(
            addr(7003),
            StateMessage::Push {
                hops_left: 3,
                deltas: vec![delta]
            }
        )]
    );
    assert_eq!(b.stats().deltas_merged, 1);
}

#[test]
fn a_delta_with_no_hops_left_is_stored_but_not_relayed() {
    let _serial = serial();
    let mut writer = replicator("w", 1);
    let delta = writer
        .put(Millis(0), WALL_MS, "k", b"v".to_vec())
        .expect("put");
    let mut b = replicator("b", 2);
    b.set_peers(vec![addr(7003)]);
    b.on_packet(
        Millis(1),
        WALL_MS + 1,
        addr(7001),
        &push(0, vec![delta.clone()]),
    );
    assert_eq!(b.drain_effects(), vec![StateEffect::Persist(vec![delta])]);
    b.on_tick(Millis(0), WALL_MS);
    b.on_tick(Millis(30), WALL_MS + 30);
    assert_eq!(b.drain_effects(), vec![]);
    assert_eq!(b.queued_keys(), 0);
}

#[test]
fn anti_entropy_is_silent_between_equal_maps_and_repairs_both_ways_otherwise() {
    let _serial = serial();
    let (a_addr, b_addr) = (addr(7001), addr(7002));
    let mut a = replicator("a", 1);
    let mut b = replicator("b", 2);
    a.set_peers(vec![b_addr]);
    b.set_peers(vec![a_addr]);
    // Equal (empty) maps: a probe gets no answer.
    let mut probe_time = Millis(0);
    a.on_tick(probe_time, WALL_MS);
    probe_time = a.next_tick_at();
    a.on_tick(probe_time, WALL_MS + probe_time.0);
    let probe = sends(a.drain_effects());
    assert_eq!(probe.len(), 1);
    let StateMessage::Probe { root } = probe[0].1 else {
        panic!("expected a probe, got {probe:?}");
    };
    b.on_packet(
        probe_time,
        WALL_MS,
        a_addr,
        &StateMessage::Probe { root }.encode(),
    );
    assert_eq!(b.drain_effects(), vec![]);

    // Each side writes a key the other lacks.
    let from_a = a
        .put(Millis(0), WALL_MS, "from-a", b"1".to_vec())
        .expect("put");
    let from_b = b
        .put(Millis(0), WALL_MS, "from-b", b"2".to_vec())
        .expect("put");
    let _ = a.drain_effects();
    let _ = b.drain_effects();
    let root = ha_gossip::shared_state::digest_root(&a.map().digest().buckets);
    b.on_packet(
        Millis(1),
        WALL_MS,
        a_addr,
        &StateMessage::Probe { root }.encode(),
    );
    let answer = sends(b.drain_effects());
    assert_eq!(
        answer,
        vec![(
            a_addr,
            StateMessage::Digest {
                buckets: b.map().digest().buckets
            }
        )]
    );
    // A names the differing buckets and sends its entries there.
    a.on_packet(Millis(2), WALL_MS, b_addr, &answer[0].1.encode());
    let mut buckets = vec![
        SharedMap::bucket_of("from-a"),
        SharedMap::bucket_of("from-b"),
    ];
    buckets.sort_unstable();
    buckets.dedup();
    let request = sends(a.drain_effects());
    assert_eq!(
        request,
        vec![
            (
                b_addr,
                StateMessage::Pull {
                    buckets: buckets.clone()
                }
            ),
            (
                b_addr,
                StateMessage::Repair {
                    deltas: vec![from_a.clone()]
                }
            ),
        ]
    );
    // B takes A's entry and answers the pull with its own.
    b.on_packet(Millis(3), WALL_MS, a_addr, &request[1].1.encode());
    assert_eq!(b.drain_effects(), vec![StateEffect::Persist(vec![from_a])]);
    b.on_packet(Millis(3), WALL_MS, a_addr, &request[0].1.encode());
    let repair = sends(b.drain_effects());
    assert_eq!(repair.len(), 1);
    a.on_packet(Millis(4), WALL_MS, b_addr, &repair[0].1.encode());
    let effects = a.drain_effects();
    assert_eq!(effects[0], StateEffect::Persist(vec![from_b]));
    assert_eq!(a.map().digest(), b.map().digest());
    assert_eq!(a.stats().repaired_keys, 1);
    assert_eq!(b.stats().repaired_keys, 1);
}

#[test]
fn a_repair_answer_is_bounded_and_a_large_difference_repairs_over_rounds() {
    let _serial = serial();
    let settings = ReplicatorSettings {
        packet_bytes_max: 1_024,
        repair_packets_max: 2,
        ..ReplicatorSettings::default()
    };
    let node = |name: &str| SharedMap::new(NodeId::new(name).expect("id"), StateLimits::default());
    let mut big = StateReplicator::new(node("big"), settings.clone(), 1);
    let mut empty = StateReplicator::new(node("empty"), settings, 2);
    for index in 0..2_000 {
        big.put(
            Millis(0),
            WALL_MS,
            &format!("key-{index:04}"),
            vec![b'x'; 40],
        )
        .expect("put");
    }
    let _ = big.drain_effects();
    let all: Vec<u16> = (0..256).collect();
    let mut rounds = 0;
    while empty.map().digest() != big.map().digest() {
        rounds += 1;
        assert!(rounds <= 2_000, "no progress after {rounds} rounds");
        // A new anti-entropy interval: the repair budget is whole again.
        let now = Millis(rounds * 2_000);
        big.on_tick(now, WALL_MS);
        big.on_packet(
            now,
            WALL_MS,
            addr(7002),
            &StateMessage::Pull {
                buckets: all.clone(),
            }
            .encode(),
        );
        let answer = sends(big.drain_effects());
        assert!(answer.len() <= 2, "{} packets in one answer", answer.len());
        for (_, message) in answer {
            let payload = message.encode();
            assert!(payload.len() <= 1_024, "{} bytes", payload.len());
            empty.on_packet(Millis(rounds), WALL_MS, addr(7001), &payload);
        }
        let _ = empty.drain_effects();
    }
    println!("2,000 keys repaired in {rounds} bounded answers");
}

#[test]
fn a_flood_of_pulls_gets_at_most_four_answers_per_interval() {
    let _serial = serial();
    let settings = ReplicatorSettings {
        packet_bytes_max: 1_024,
        repair_packets_max: 2,
        ..ReplicatorSettings::default()
    };
    let map = SharedMap::new(NodeId::new("big").expect("id"), StateLimits::default());
    let mut big = StateReplicator::new(map, settings, 1);
    for index in 0..500 {
        big.put(
            Millis(0),
            WALL_MS,
            &format!("key-{index:04}"),
            vec![b'x'; 40],
        )
        .expect("put");
    }
    let pull = StateMessage::Pull {
        buckets: (0..256).collect(),
    }
    .encode();
    let mut packets = 0;
    for _ in 0..20 {
        big.on_packet(Millis(1), WALL_MS, addr(7002), &pull);
        packets += sends(big.drain_effects()).len();
    }
    assert_eq!(packets, 8, "4 answers of at most 2 packets");
    assert_eq!(big.stats().repairs_throttled, 16);
}

#[test]
fn a_refused_delta_is_counted_and_the_rest_of_the_packet_applies() {
    let _serial = serial();
    let mut writer = replicator("w", 1);
    let good = writer
        .put(Millis(0), WALL_MS, "good", b"v".to_vec())
        .expect("put");
    // Written by a clock two minutes ahead: over drift_ms_max (60 s).
    let ahead = writer
        .put(Millis(0), WALL_MS + 120_000, "ahead", b"v".to_vec())
        .expect("put");
    let mut b = replicator("b", 2);
    b.on_packet(
        Millis(0),
        WALL_MS,
        addr(7001),
        &push(0, vec![ahead, good.clone()]),
    );
    assert_eq!(b.drain_effects(), vec![StateEffect::Persist(vec![good])]);
    assert_eq!(b.stats().deltas_refused, 1);
    assert_eq!(b.stats().dropped, 0);
}

#[test]
fn malformed_packets_are_counted_and_change_nothing() {
    let _serial = serial();
    let mut b = replicator("b", 2);
    b.set_peers(vec![addr(7001)]);
    let good = push(
        1,
        vec![
            replicator("w", 1)
                .put(Millis(0), WALL_MS, "k", b"v".to_vec())
                .expect("put"),
        ],
    );
    let mut other_version = good.clone();
    other_version[0] = 2;
    let mut trailing = good.clone();
    trailing.push(0);
    let cases: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![1],
        other_version,
        trailing,
        good[..good.len() - 1].to_vec(),
        StateMessage::Push {
            hops_left: 1,
            deltas: vec![],
        }
        .encode(),
        StateMessage::Digest {
            buckets: vec![0; 255],
        }
        .encode(),
        StateMessage::Pull { buckets: vec![256] }.encode(),
        StateMessage::Pull { buckets: vec![] }.encode(),
        vec![0xFF; 70_000],
    ];
    let count = cases.len() as u64;
    for case in cases {
        b.on_packet(Millis(0), WALL_MS, addr(7001), &case);
    }
    assert_eq!(b.drain_effects(), vec![]);
    assert_eq!(b.stats().dropped, count);
    assert_eq!(b.map().stats().live, 0);
}

#[test]
fn every_message_round_trips() {
    let _serial = serial();
    let delta = replicator("w", 1)
        .put(Millis(0), WALL_MS, "k", b"v".to_vec())
        .expect("put");
    for message in [
        StateMessage::Push {
            hops_left: 7,
            deltas: vec![delta.clone()],
        },
        StateMessage::Repair {
            deltas: vec![delta],
        },
        StateMessage::Probe { root: u64::MAX },
        StateMessage::Digest {
            buckets: (0..256).collect(),
        },
        StateMessage::Pull {
            buckets: vec![0, 255],
        },
    ] {
        assert_eq!(StateMessage::decode(&message.encode()), Ok(message));
    }
}

/// Real packets of a small exchange, to mutate.
fn real_packets() -> Vec<Vec<u8>> {
    let mut a = replicator("a", 1);
    let mut packets = Vec::new();
    for index in 0..20 {
        let delta = a
            .put(
                Millis(0),
                WALL_MS,
                &format!("k{index}"),
                vec![b'v'; index * 10],
            )
            .expect("put");
        packets.push(push(3, vec![delta]));
    }
    let (_, counter) = a.increment(Millis(0), WALL_MS, "c", 5).expect("increment");
    packets.push(
        StateMessage::Repair {
            deltas: vec![counter],
        }
        .encode(),
    );
    packets.push(
        StateMessage::Digest {
            buckets: a.map().digest().buckets,
        }
        .encode(),
    );
    packets.push(
        StateMessage::Pull {
            buckets: (0..256).collect(),
        }
        .encode(),
    );
    packets.push(StateMessage::Probe { root: 42 }.encode());
    packets
}

fn mutate(packet: &[u8], position: usize, byte: u8, cut: usize) -> Vec<u8> {
    let mut mutated = packet.to_vec();
    if !mutated.is_empty() {
        let at = position % mutated.len();
        mutated[at] ^= byte | 1;
        mutated.truncate(mutated.len() - cut % mutated.len());
    }
    mutated
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn hostile_packets_never_panic_and_stay_bounded(
        random in proptest::collection::vec(any::<u8>(), 0..2_000),
        choice in any::<usize>(),
        position in any::<usize>(),
        byte in any::<u8>(),
        cut in any::<usize>(),
    ) {
        let _serial = serial();
        let packets = real_packets();
        let mutated = mutate(&packets[choice % packets.len()], position, byte, cut);
        let mut b = replicator("b", 2);
        b.set_peers(vec![addr(7001)]);
        for _ in 0..30 {
            b.put(Millis(0), WALL_MS, &format!("own-{choice}"), b"x".to_vec()).expect("put");
        }
        let _ = b.drain_effects();
        for payload in [random, mutated] {
            let before = b.stats();
            ALLOCATOR.reset_peak_memory();
            b.on_packet(Millis(1), WALL_MS, addr(7001), &payload);
            let effects = b.drain_effects();
            let peak = ALLOCATOR.get_peak_memory();
            prop_assert!(peak <= PACKET_HANDLING_BYTES_MAX, "{peak} bytes for one packet");
            let after = b.stats();
            prop_assert_eq!(after.packets_received, before.packets_received + 1);
            if after.dropped > before.dropped {
                prop_assert!(effects.is_empty(), "a dropped packet produced {:?}", effects);
            }
            for effect in effects {
                if let StateEffect::Send { payload, .. } = effect {
                    prop_assert!(StateMessage::decode(&payload).is_ok());
                }
            }
        }
    }
}
