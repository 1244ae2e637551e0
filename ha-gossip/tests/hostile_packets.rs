//! Hostile packets at the sans-IO gossip core (issue 7, "Hostile input").
//!
//! Why: the gossip port takes UDP datagrams from anyone who can reach it, so every byte that
//! arrives is hostile until the envelope (and, with a cluster key, the AEAD) says otherwise.
//! These tests capture real packets from real cores joining each other, plain and sealed, and
//! feed the receiving core random bytes and mutations of them (bit flips, truncations,
//! extensions, splices of two packets, overwrites, valid headers over random bodies, replays):
//! - nothing panics;
//! - each packet is counted at most once, as a drop by cause, or accepted; with a key a packet
//!   is only ever accepted when it is byte for byte one a member sent (a replay, which SWIM
//!   tolerates);
//! - a packet never makes the core hold more than a small, fixed amount of memory while it is
//!   handled (measured with a counting allocator);
//! - afterwards the core still sees its real peer and lets a new member join.
//!
//! A second test floods a plain (keyless) core with forged metadata announcements from
//! distinct addresses and checks what it keeps stays bounded.
//!
//! Cases: 24 proptest cases of up to 64 hostile packets each, plus two fixed floods; the file
//! runs in about 2 s in the debug profile (the gossip crates are optimised in dev).

use std::alloc::System;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Mutex;

use ha_core::codec::GOSSIP_PACKET_BYTES_MAX;
use ha_core::keyring::ClusterKey;
use ha_core::{Config, Millis, NodeId, NodeMetadata, Priority};
use ha_gossip::DATAGRAM_BYTES_MAX;
use ha_gossip::{
    DropCause, DropCounts, Envelope, GossipCore, GossipEffect, GossipIdentity, GossipSettings,
    GossipTimer, MEMBERS_MAX, MetadataAnnouncement, PacketKind,
};
use peakmem_alloc::{INSTRUMENTED_SYSTEM, PeakMemAlloc, PeakMemAllocTrait};
use proptest::prelude::*;

#[global_allocator]
static ALLOCATOR: &PeakMemAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The allocation peak is global to the process: tests in this file run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// The most a single hostile packet may make the core allocate while handling it (the packet
/// copy, the decoded SWIM message and any answers it sends): a few packets' worth.
const PACKET_HANDLING_BYTES_MAX: usize = 64 * 1024;

const CLUSTER: &str = "hostile";

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn core(name: &str, port: u16, seeds: Vec<SocketAddr>, keyed: bool, seed: u64) -> GossipCore {
    core_in_incarnation(name, port, seeds, keyed, seed, 1)
}

fn core_in_incarnation(
    name: &str,
    port: u16,
    seeds: Vec<SocketAddr>,
    keyed: bool,
    seed: u64,
    incarnation: u64,
) -> GossipCore {
    let mut config = Config::single(NodeId::new(name).expect("valid id"), addr(port));
    config.seeds = seeds;
    config.cluster.name = CLUSTER.to_string();
    if keyed {
        config.security.cluster_keys = vec![ClusterKey::from_bytes([7; 32])];
    }
    let metadata = NodeMetadata::new(Priority(1), addr(port));
    GossipCore::new(
        GossipSettings::from_config(&config, incarnation, metadata),
        seed,
    )
    .expect("valid keys")
}

/// A packet one core sent to another.
#[derive(Clone, Debug)]
struct Sent {
    from: SocketAddr,
    to: SocketAddr,
    packet: Vec<u8>,
}

/// A tiny deterministic network of cores on virtual time: packets are delivered at once and
/// in order, timers fire in deadline order.
#[derive(Default)]
struct Network {
    cores: BTreeMap<SocketAddr, GossipCore>,
    now_ms: u64,
    scheduled: u64,
    timers: Vec<(u64, u64, SocketAddr, GossipTimer)>,
    in_flight: VecDeque<Sent>,
    sent: Vec<Sent>,
}

impl Network {
    fn add(&mut self, core: GossipCore) {
        let at = core.identity().addr;
        self.cores.insert(at, core);
        self.absorb(at);
    }

    fn core(&mut self, at: SocketAddr) -> &mut GossipCore {
        self.cores.get_mut(&at).expect("a core at that address")
    }

    /// Hand `packet`, claiming to come from `from`, to the core at `at` (its answers stay
    /// queued in the core until [`absorb`](Self::absorb)).
    fn receive(&mut self, at: SocketAddr, from: SocketAddr, packet: &[u8]) {
        let now = Millis(self.now_ms);
        self.core(at).on_packet(now, from, packet);
    }

    /// Take the effects of the core at `at` into the network.
    fn absorb(&mut self, at: SocketAddr) {
        let effects = self.core(at).drain_effects();
        for effect in effects {
            match effect {
                GossipEffect::Send { to, packet } => {
                    let sent = Sent {
                        from: at,
                        to,
                        packet,
                    };
                    self.sent.push(sent.clone());
                    self.in_flight.push_back(sent);
                }
                GossipEffect::Schedule { after_ms, timer } => {
                    self.scheduled += 1;
                    self.timers
                        .push((self.now_ms + after_ms, self.scheduled, at, timer));
                }
                GossipEffect::Event(_) | GossipEffect::State { .. } => {}
            }
        }
    }

    fn deliver_all(&mut self) {
        // Bounded: every packet delivered can only cause a few answers.
        for _ in 0..100_000 {
            let Some(sent) = self.in_flight.pop_front() else {
                return;
            };
            let now = Millis(self.now_ms);
            if let Some(core) = self.cores.get_mut(&sent.to) {
                core.on_packet(now, sent.from, &sent.packet);
                self.absorb(sent.to);
            }
        }
        panic!("the network did not settle");
    }

    fn run_for(&mut self, duration_ms: u64) {
        let end_ms = self.now_ms + duration_ms;
        loop {
            self.deliver_all();
            let next = self
                .timers
                .iter()
                .enumerate()
                .filter(|(_, (deadline, ..))| *deadline <= end_ms)
                .min_by_key(|(_, (deadline, order, ..))| (*deadline, *order))
                .map(|(position, _)| position);
            let Some(position) = next else {
                self.now_ms = end_ms;
                return;
            };
            let (deadline, _, at, timer) = self.timers.swap_remove(position);
            self.now_ms = deadline;
            if let Some(core) = self.cores.get_mut(&at) {
                core.on_timer(Millis(deadline), timer);
                self.absorb(at);
            }
        }
    }

    /// Whether the core at `from` sees the core at `to` reachable, with its metadata.
    fn sees(&self, from: SocketAddr, to: SocketAddr) -> bool {
        self.cores[&from]
            .member(&to)
            .is_some_and(|member| member.reachable && member.metadata.is_some())
    }
}

/// Two cores that found each other; the first is the target of the hostile packets.
fn joined_pair(keyed: bool) -> Network {
    let mut network = Network::default();
    network.add(core("target", 7001, vec![], keyed, 1));
    network.add(core("peer", 7002, vec![addr(7001)], keyed, 2));
    network.run_for(5_000);
    assert!(
        network.sees(addr(7001), addr(7002)),
        "the pair did not join"
    );
    assert!(
        network.sees(addr(7002), addr(7001)),
        "the pair did not join"
    );
    network
}

/// What is done to a captured packet (indexes and positions are taken modulo the lengths).
#[derive(Clone, Debug)]
enum Mutation {
    /// One bit flipped.
    FlipBit {
        packet: usize,
        position: usize,
        bit: u8,
    },
    /// Only the first `keep` bytes.
    Truncate { packet: usize, keep: usize },
    /// Random bytes appended.
    Extend { packet: usize, tail: Vec<u8> },
    /// The start of one packet and the end of another.
    Splice {
        first: usize,
        second: usize,
        cut_first: usize,
        cut_second: usize,
    },
    /// Random bytes written over a stretch.
    Overwrite {
        packet: usize,
        position: usize,
        bytes: Vec<u8>,
    },
    /// A valid plain header of this cluster, a packet kind byte, then random bytes: reaches
    /// the SWIM and metadata decoders of a keyless core.
    HeaderedGarbage { kind: u8, body: Vec<u8> },
    /// Random bytes, from a random address.
    Random { bytes: Vec<u8>, port: u16 },
    /// The packet again, unchanged.
    Replay { packet: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let index = any::<usize>();
    let noise = |most: usize| proptest::collection::vec(any::<u8>(), 0..most);
    prop_oneof![
        (index, any::<usize>(), 0u8..8).prop_map(|(packet, position, bit)| {
            Mutation::FlipBit {
                packet,
                position,
                bit,
            }
        }),
        (index, any::<usize>()).prop_map(|(packet, keep)| Mutation::Truncate { packet, keep }),
        (index, noise(1_600)).prop_map(|(packet, tail)| Mutation::Extend { packet, tail }),
        (index, index, any::<usize>(), any::<usize>()).prop_map(
            |(first, second, cut_first, cut_second)| Mutation::Splice {
                first,
                second,
                cut_first,
                cut_second,
            }
        ),
        (index, any::<usize>(), noise(24)).prop_map(|(packet, position, bytes)| {
            Mutation::Overwrite {
                packet,
                position,
                bytes,
            }
        }),
        (0u8..3, noise(1_400)).prop_map(|(kind, body)| Mutation::HeaderedGarbage { kind, body }),
        (noise(2_000), 1u16..u16::MAX).prop_map(|(bytes, port)| Mutation::Random { bytes, port }),
        index.prop_map(|packet| Mutation::Replay { packet }),
    ]
}

/// The hostile packet and the address it claims to come from.
fn apply(mutation: &Mutation, corpus: &[Sent]) -> (SocketAddr, Vec<u8>) {
    let pick = |index: usize| &corpus[index % corpus.len()];
    match mutation {
        Mutation::FlipBit {
            packet,
            position,
            bit,
        } => {
            let sent = pick(*packet);
            let mut bytes = sent.packet.clone();
            let length = bytes.len();
            bytes[position % length] ^= 1 << bit;
            (sent.from, bytes)
        }
        Mutation::Truncate { packet, keep } => {
            let sent = pick(*packet);
            let keep = keep % (sent.packet.len() + 1);
            (sent.from, sent.packet[..keep].to_vec())
        }
        Mutation::Extend { packet, tail } => {
            let sent = pick(*packet);
            let mut bytes = sent.packet.clone();
            bytes.extend_from_slice(tail);
            (sent.from, bytes)
        }
        Mutation::Splice {
            first,
            second,
            cut_first,
            cut_second,
        } => {
            let (first, second) = (pick(*first), pick(*second));
            let cut_first = cut_first % (first.packet.len() + 1);
            let cut_second = cut_second % (second.packet.len() + 1);
            let mut bytes = first.packet[..cut_first].to_vec();
            bytes.extend_from_slice(&second.packet[cut_second..]);
            (first.from, bytes)
        }
        Mutation::Overwrite {
            packet,
            position,
            bytes: noise,
        } => {
            let sent = pick(*packet);
            let mut bytes = sent.packet.clone();
            let start = position % bytes.len();
            for (offset, byte) in noise.iter().enumerate() {
                if let Some(slot) = bytes.get_mut(start + offset) {
                    *slot = *byte;
                }
            }
            (sent.from, bytes)
        }
        Mutation::HeaderedGarbage { kind, body } => {
            let sent = pick(0);
            let mut bytes = sent.packet[..7].to_vec();
            bytes[2] = 0;
            bytes.push(*kind);
            bytes.extend_from_slice(body);
            (sent.from, bytes)
        }
        Mutation::Random { bytes, port } => (addr(*port), bytes.clone()),
        Mutation::Replay { packet } => {
            let sent = pick(*packet);
            (sent.from, sent.packet.clone())
        }
    }
}

/// Which cause went up by one between `before` and `after`, if any; fails if the counts moved
/// in any other way.
fn counted_cause(before: &DropCounts, after: &DropCounts) -> Result<Option<DropCause>, String> {
    let mut raised = Vec::new();
    for (cause, count) in after.iter() {
        let earlier = before.get(cause);
        if count == earlier + 1 {
            raised.push(cause);
        } else if count != earlier {
            return Err(format!("{cause} went from {earlier} to {count}"));
        }
    }
    match raised.as_slice() {
        [] => Ok(None),
        [cause] => Ok(Some(*cause)),
        more => Err(format!("one packet counted under several causes: {more:?}")),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn hostile_packets_are_counted_and_the_core_keeps_working(
        keyed in any::<bool>(),
        mutations in proptest::collection::vec(mutation(), 1..64),
    ) {
        let _serial = SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let target = addr(7001);
        let mut network = joined_pair(keyed);
        let corpus: Vec<Sent> = network.sent.clone();
        let mut handling_peak_bytes = 0;
        for mutation in &mutations {
            let (from, packet) = apply(mutation, &corpus);
            let before = network.core(target).drop_counts();
            ALLOCATOR.reset_peak_memory();
            network.receive(target, from, &packet);
            handling_peak_bytes = handling_peak_bytes.max(ALLOCATOR.get_peak_memory());
            let after = network.core(target).drop_counts();
            let cause = counted_cause(&before, &after).map_err(TestCaseError::fail)?;
            // Issue 15: a shared state packet may be larger than a SWIM datagram, so past
            // GOSSIP_PACKET_BYTES_MAX only a plain packet of the state kind (byte 7 = 2) may
            // get through the envelope (to the replicator, which judges it); anything else is
            // refused, by size at once beyond DATAGRAM_BYTES_MAX.
            if packet.len() > DATAGRAM_BYTES_MAX {
                prop_assert_eq!(cause, Some(DropCause::Oversized), "{:?}", mutation);
            } else if packet.len() > GOSSIP_PACKET_BYTES_MAX && (keyed || packet.get(7) != Some(&2)) {
                prop_assert!(cause.is_some(), "an oversized packet was accepted: {:?}", mutation);
            }
            if keyed && cause.is_none() {
                prop_assert!(
                    corpus.iter().any(|sent| sent.packet == packet),
                    "a sealed core accepted a packet no member sent: {:?}",
                    mutation
                );
            }
            // Whatever the target answers goes out on the network like any other packet.
            network.absorb(target);
            network.deliver_all();
        }
        prop_assert!(
            handling_peak_bytes <= PACKET_HANDLING_BYTES_MAX,
            "handling one hostile packet allocated {} bytes",
            handling_peak_bytes
        );

        // Still a working member: the pair sees each other (a forged plain packet may have
        // made them suspect each other for a while; SWIM refutes it), and a newcomer joins.
        network.run_for(30_000);
        prop_assert!(network.sees(target, addr(7002)), "the target lost its peer");
        prop_assert!(network.sees(addr(7002), target), "the peer lost the target");
        network.add(core("newcomer", 7003, vec![target], keyed, 3));
        network.run_for(10_000);
        for (from, to) in [(target, addr(7003)), (addr(7003), target), (addr(7003), addr(7002))] {
            prop_assert!(network.sees(from, to), "{} does not see {} after the attack", from, to);
        }
    }
}

/// The case CI's random search found (the regression file keeps its inputs): in a cluster
/// without a key, a corrupted packet made the target hold its peer under the peer's own
/// name and address at a far higher incarnation. The target then refused everything the real
/// peer sent, and told it only "you are down", which renewed it one incarnation at a time
/// (and left it not probing at all after the first renewal). Here the forged identity comes
/// whole, announced from a second core that claims the peer's name and address at
/// incarnation 65; the real peer must rejoin past it.
#[test]
fn a_forged_identity_that_beats_a_member_is_overcome() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (target, peer) = (addr(7001), addr(7002));
    let mut network = joined_pair(false);
    let mut forger = core_in_incarnation("peer", 7002, vec![target], false, 9, 65);
    forger.drain_effects();
    forger.on_timer(Millis(network.now_ms), GossipTimer::Reannounce);
    let announces: Vec<Vec<u8>> = forger
        .drain_effects()
        .into_iter()
        .filter_map(|effect| match effect {
            GossipEffect::Send { to, packet } if to == target => Some(packet),
            _ => None,
        })
        .collect();
    assert!(!announces.is_empty(), "the forger announced nothing");
    for packet in &announces {
        network.receive(target, peer, packet);
        network.absorb(target);
    }
    network.deliver_all();
    assert_eq!(
        network
            .core(target)
            .member(&peer)
            .map(|member| member.incarnation),
        Some(65),
        "the forged identity did not take the peer's place (the test proves nothing)"
    );

    network.run_for(10_000);
    let renewed = network.core(peer).identity().incarnation;
    assert!(
        renewed > 65,
        "the peer is at incarnation {renewed}, not past 65"
    );
    assert!(network.sees(target, peer), "the target lost its peer");
    assert!(network.sees(peer, target), "the peer lost the target");
}

/// Every kind of refusal, once each, with its own cause; and a packet larger than a datagram
/// is refused before anything is copied.
#[test]
fn each_refusal_is_counted_under_its_cause() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut plain = joined_pair(false);
    let mut sealed = joined_pair(true);
    let plain_packet = plain.sent[0].packet.clone();
    let sealed_packet = sealed.sent[0].packet.clone();
    let from = addr(7002);
    let other_cluster = Envelope::new("other", None).wrap(PacketKind::Swim, b"x", [0; 24]);
    let mut forged = sealed_packet.clone();
    let last = forged.len() - 1;
    forged[last] ^= 0x01;
    let unknown_key = Envelope::new(
        CLUSTER,
        Some(ha_core::keyring::Keyring::new(vec![ClusterKey::from_bytes([8; 32])]).expect("key")),
    )
    .wrap(PacketKind::Swim, b"x", [0; 24]);
    let oversized = vec![0xA7; 1 << 20];
    let cases = [
        (false, oversized.clone(), DropCause::Oversized),
        (false, b"GET / HTTP/1.1\r\n".to_vec(), DropCause::Malformed),
        (false, other_cluster, DropCause::WrongCluster),
        (false, sealed_packet.clone(), DropCause::WrongKey),
        (true, plain_packet, DropCause::WrongKey),
        (true, unknown_key, DropCause::WrongKey),
        (true, forged, DropCause::Forged),
    ];
    for (keyed, packet, expected) in cases {
        let network = if keyed { &mut sealed } else { &mut plain };
        let before = network.core(addr(7001)).drop_counts();
        ALLOCATOR.reset_peak_memory();
        network.receive(addr(7001), from, &packet);
        let peak_bytes = ALLOCATOR.get_peak_memory();
        let after = network.core(addr(7001)).drop_counts();
        assert_eq!(counted_cause(&before, &after), Ok(Some(expected)));
        assert!(
            peak_bytes <= PACKET_HANDLING_BYTES_MAX,
            "refusing a {expected} packet of {} bytes allocated {peak_bytes} bytes",
            packet.len()
        );
    }
    // The 1 MiB packet was refused without a copy of it.
    let before = plain.core(addr(7001)).drop_counts();
    ALLOCATOR.reset_peak_memory();
    plain.receive(addr(7001), from, &oversized);
    let peak_bytes = ALLOCATOR.get_peak_memory();
    assert!(
        peak_bytes < 4096,
        "an oversized packet allocated {peak_bytes} bytes"
    );
    let after = plain.core(addr(7001)).drop_counts();
    assert_eq!(
        counted_cause(&before, &after),
        Ok(Some(DropCause::Oversized))
    );
    println!("refusing a 1 MiB datagram allocated {peak_bytes} bytes");
}

/// A keyless cluster accepts metadata from anyone: forged announcements from ever new
/// addresses must not grow what the core keeps without bound. Members (and metadata of
/// members not seen yet) are capped at `MEMBERS_MAX`; once that is reached, twice as many
/// more forged announcements must not grow memory further.
#[test]
fn forged_metadata_from_ever_new_addresses_is_bounded() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut network = joined_pair(false);
    let target = addr(7001);
    let envelope = Envelope::new(CLUSTER, None);
    let forge = |network: &mut Network, number: u32| {
        let [a, b, c, d] = number.to_be_bytes();
        let forged_addr = SocketAddr::from(([10, a, b, c], 1000 + u16::from(d)));
        let identity = GossipIdentity::new(
            NodeId::new(format!("forged-{number}")).expect("valid id"),
            forged_addr,
            1,
        );
        let announcement =
            MetadataAnnouncement::new(&identity, NodeMetadata::new(Priority(1), forged_addr));
        let packet = envelope.wrap(
            PacketKind::Metadata,
            &announcement.encode().expect("fits"),
            [0; 24],
        );
        network.receive(target, forged_addr, &packet);
        // The core never answers forged metadata; drop whatever it may schedule.
        network.absorb(target);
        network.in_flight.clear();
    };
    let filled = MEMBERS_MAX as u32 + 1_000;
    for number in 0..filled {
        forge(&mut network, number);
    }
    ALLOCATOR.reset_peak_memory();
    for number in filled..filled + 2 * MEMBERS_MAX as u32 {
        forge(&mut network, number);
    }
    let growth_bytes = ALLOCATOR.get_peak_memory();
    println!(
        "{} more forged announcements after the tables filled grew memory by {growth_bytes} bytes",
        2 * MEMBERS_MAX
    );
    assert!(
        growth_bytes < 1024 * 1024,
        "forged metadata keeps growing memory: {growth_bytes} bytes for {} packets",
        2 * MEMBERS_MAX
    );
    assert_eq!(network.core(target).drop_counts().total(), 0);
    // The real peer is still seen.
    network
        .timers
        .retain(|(_, _, at, _)| *at == target || *at == addr(7002));
    network.run_for(5_000);
    assert!(network.sees(target, addr(7002)));
}
