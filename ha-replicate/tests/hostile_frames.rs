//! Hostile RPC frames (issue 7, "Hostile input"): the replication transport and the message
//! decoders against bytes no real peer sends, with the memory they take measured.
//!
//! Why: `transport_frame_properties.rs` already feeds the frame and handshake codecs random
//! bytes and bit flips, and `transport_bad_input.rs` sends oversized prefixes and noise to a
//! listener. What they do not show, and this file does:
//! - a real listener of the real message type (`Rpc`) given *mutations of valid traffic*
//!   (a real handshake, then real frames flipped, cut, spliced, overwritten, or with a huge
//!   length prefix inserted), plain and sealed, closes the connection with at most one counted
//!   refusal, never delivers a sealed message that was not sent, and keeps serving a
//!   well-behaved peer;
//! - the allocation peak while refusing hostile input stays within the documented limits: a
//!   length prefix claiming 4 GiB or 16 MiB allocates at most one read chunk (64 KiB), and no
//!   frame within the 16 MiB limit can make the message decoder allocate more than
//!   `APPEND_DECODED_BYTES_MAX` plus one frame (it could allocate over 500 MB before the fix
//!   that came with this file: a bug, see `a_frame_within_the_limit_cannot_decode_into_hundreds_of_megabytes`);
//! - arbitrary bytes decoded as every message type of the crate (`Rpc`, `Message`, client
//!   requests and replies, entries, snapshot metas, memberships, session commands) are refused
//!   or decoded, never a panic, within a small allocation.
//!
//! Cases: 32 listener cases (each one TCP connection), 2 x 256 decoder cases; the file runs in
//! about 2 s in the debug profile.

mod transport_support;

use std::alloc::System;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ha_core::codec::{self, RPC_FRAME_BYTES_MAX};
use ha_core::keyring::Keyring;
use ha_core::{Consistency, LogIndex, NodeId, Priority, SessionId, Term};
use ha_replicate::engine::{APPEND_DECODED_BYTES_MAX, APPEND_ENTRIES_WIRE_MAX, Message};
use ha_replicate::entry::{ElectionCause, Entry, LeaderStart, Payload};
use ha_replicate::membership::{MEMBERSHIP_SET_MAX, VoterSet};
use ha_replicate::replica::{
    ApplyOutcome, ClientReply, ClientRequest, ReadRequest, Rpc, SessionCommand, WriteRequest,
};
use ha_replicate::snapshot_meta::{SnapshotId, SnapshotMeta};
use ha_replicate::transport::frame::{FrameKind, append_frame};
use ha_replicate::transport::handshake::{HANDSHAKE_BYTES_MAX, HandshakeCodec};
use ha_replicate::transport::{Inbound, RejectCause, TcpTransport, TransportSettings};
use peakmem_alloc::{INSTRUMENTED_SYSTEM, PeakMemAlloc, PeakMemAllocTrait};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use transport_support::{RawClient, closed_within, count_panics, keyring, node, panics, settings};

#[global_allocator]
static ALLOCATOR: &PeakMemAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The allocation peak is global to the process: tests in this file run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// One read chunk of the frame reader: the most it allocates ahead of bytes that arrived.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// The most decoding one frame may allocate: the entries budget of an append plus one frame
/// of bytes (a snapshot's data, or the last entry that crossed the budget).
const FRAME_DECODE_PEAK_BYTES_MAX: usize = APPEND_DECODED_BYTES_MAX + RPC_FRAME_BYTES_MAX;

type RpcTransport = TcpTransport<Rpc>;
type RpcInbox = mpsc::Receiver<Inbound<Rpc>>;

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

fn id(name: &str) -> NodeId {
    NodeId::new(name).expect("valid id")
}

/// A few real messages of every shape, as replicas send them.
fn valid_messages() -> Vec<Rpc> {
    let entries = vec![
        Entry {
            term: Term(3),
            index: LogIndex(8),
            payload: Payload::LeaderStart(LeaderStart {
                leader: id("n1"),
                previous: Some(id("n2")),
                cause: ElectionCause::LeaderLost,
                leaderless_ms: 250,
                at_unix_ms: 1_700_000_000_000,
            }),
        },
        Entry {
            term: Term(3),
            index: LogIndex(9),
            payload: Payload::Command(b"a command for the state machine".to_vec()),
        },
        Entry {
            term: Term(3),
            index: LogIndex(10),
            payload: Payload::Membership(VoterSet::with_voters([id("n1"), id("n2")])),
        },
    ];
    vec![
        Rpc::Raft(Message::AppendRequest {
            term: Term(3),
            prev_log_index: LogIndex(7),
            prev_log_term: Term(2),
            entries,
            leader_commit: LogIndex(7),
            read_round: 4,
        }),
        Rpc::Raft(Message::VoteRequest {
            term: Term(4),
            last_log_index: LogIndex(10),
            last_log_term: Term(3),
            priority: Priority(5),
            transfer: false,
        }),
        Rpc::Raft(Message::InstallSnapshot {
            term: Term(3),
            meta: SnapshotMeta {
                last_index: LogIndex(6),
                last_term: Term(2),
                membership: VoterSet::with_voters([id("n1")]),
            },
        }),
        Rpc::SnapshotChunk {
            term: Term(3),
            meta: SnapshotMeta {
                last_index: LogIndex(6),
                last_term: Term(2),
                membership: VoterSet::with_voters([id("n1")]),
            },
            id: SnapshotId {
                last_index: LogIndex(6),
                last_term: Term(2),
                size: 900,
                crc32c: 0x1234_5678,
            },
            offset: 600,
            round: 3,
            data: vec![7; 300],
        },
        Rpc::SnapshotAck {
            term: Term(3),
            id: SnapshotId::default(),
            chunk_offset: 600,
            round: 3,
            next_offset: 900,
        },
        Rpc::Forward {
            forward_id: 12,
            request: ClientRequest::Write(WriteRequest {
                session: SessionId(99),
                sequence: 3,
                lowest_unanswered: 1,
                command: b"set x".to_vec(),
                consistency: Consistency::Strong,
            }),
        },
        Rpc::Forward {
            forward_id: 13,
            request: ClientRequest::Read(ReadRequest {
                query: b"get x".to_vec(),
                consistency: Consistency::Eventual,
            }),
        },
        Rpc::ForwardReply {
            forward_id: 12,
            reply: ClientReply::Written {
                index: LogIndex(11),
                outcome: ApplyOutcome::Applied(b"ok".to_vec()),
            },
        },
    ]
}

fn patient_settings(name: &str, keys: Option<u8>) -> TransportSettings {
    let mut settings = settings(name, "c");
    settings.handshake_timeout_ms = 5_000;
    settings.idle_timeout_ms = 5_000;
    if let Some(byte) = keys {
        settings.cluster_keys = vec![transport_support::key(byte)];
    }
    settings
}

async fn start(settings: TransportSettings) -> (RpcTransport, RpcInbox) {
    RpcTransport::start(settings)
        .await
        .expect("a transport on 127.0.0.1:0 starts")
}

/// `sender` still delivers to `receiver`, in order.
async fn still_serving(sender: &RpcTransport, receiver: &RpcTransport, inbox: &mut RpcInbox) {
    // Anything a hostile connection left behind is from the hostile node, never from `sender`.
    while let Ok(inbound) = inbox.try_recv() {
        assert_ne!(inbound.from, *sender.node_id());
    }
    let messages = valid_messages();
    for message in &messages {
        sender.send(receiver.node_id(), receiver.local_addr(), message.clone());
    }
    let mut received = Vec::new();
    while received.len() < messages.len() {
        let inbound = tokio::time::timeout(transport_support::DEADLINE, inbox.recv())
            .await
            .expect("a well-behaved peer is still served")
            .expect("the inbox is open");
        if inbound.from == *sender.node_id() {
            received.push(inbound.message);
        }
    }
    assert_eq!(received, messages);
}

/// What is done to the bytes of a valid connection (positions modulo the lengths).
#[derive(Clone, Debug)]
enum StreamMutation {
    /// One bit of the frames flipped.
    FlipBit { position: usize, bit: u8 },
    /// The frames cut short.
    Truncate { keep: usize },
    /// Random bytes over a stretch of the frames.
    Overwrite { position: usize, bytes: Vec<u8> },
    /// A length prefix inserted between frames (or anywhere), claiming `length` bytes.
    InsertPrefix { position: usize, length: u32 },
    /// The first part of the frames twice (a replay of frames already sent).
    Repeat { cut: usize },
    /// One bit of the hello flipped (no frames follow).
    FlipHello { position: usize, bit: u8 },
}

fn stream_mutation() -> impl Strategy<Value = StreamMutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8)
            .prop_map(|(position, bit)| StreamMutation::FlipBit { position, bit }),
        any::<usize>().prop_map(|keep| StreamMutation::Truncate { keep }),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(position, bytes)| StreamMutation::Overwrite { position, bytes }),
        (
            any::<usize>(),
            prop_oneof![
                Just(u32::MAX),
                Just(RPC_FRAME_BYTES_MAX as u32 + 1),
                Just(RPC_FRAME_BYTES_MAX as u32),
                0u32..1024
            ]
        )
            .prop_map(|(position, length)| StreamMutation::InsertPrefix { position, length }),
        any::<usize>().prop_map(|cut| StreamMutation::Repeat { cut }),
        (any::<usize>(), 0u8..8)
            .prop_map(|(position, bit)| StreamMutation::FlipHello { position, bit }),
    ]
}

fn mutate(frames: &[u8], mutation: &StreamMutation) -> Vec<u8> {
    let mut bytes = frames.to_vec();
    match mutation {
        StreamMutation::FlipBit { position, bit } => bytes[position % frames.len()] ^= 1 << bit,
        StreamMutation::Truncate { keep } => bytes.truncate(keep % frames.len()),
        StreamMutation::Overwrite {
            position,
            bytes: noise,
        } => {
            let start = position % frames.len();
            for (offset, byte) in noise.iter().enumerate() {
                if let Some(slot) = bytes.get_mut(start + offset) {
                    *slot = *byte;
                }
            }
        }
        StreamMutation::InsertPrefix { position, length } => {
            let at = position % (frames.len() + 1);
            bytes.splice(at..at, length.to_be_bytes());
        }
        StreamMutation::Repeat { cut } => {
            let cut = cut % (frames.len() + 1);
            bytes.extend_from_slice(&frames[..cut]);
        }
        StreamMutation::FlipHello { .. } => {}
    }
    bytes
}

/// Send a mutated connection to `receiver` as node "n3", then close the write side and wait
/// for the receiver to close. Returns how many of the valid messages were delivered and how
/// the refusal counts moved.
async fn hostile_connection(
    receiver: &RpcTransport,
    inbox: &mut RpcInbox,
    keys: Option<Arc<Keyring>>,
    mutation: &StreamMutation,
) -> Result<(), TestCaseError> {
    let before = receiver.reject_counts();
    let messages = valid_messages();
    let mut stream = if let StreamMutation::FlipHello { position, bit } = mutation {
        let codec = HandshakeCodec::new("c", node("n3"), keys.clone());
        let mut hello = Vec::new();
        append_frame(
            &mut hello,
            &codec.encode_initiator([42; 16], [1; 24]),
            HANDSHAKE_BYTES_MAX,
        )
        .expect("a hello fits");
        // Past the length prefix: a flipped prefix is another test's oversized case.
        let at = 4 + position % (hello.len() - 4);
        hello[at] ^= 1 << bit;
        let mut stream = TcpStream::connect(receiver.local_addr())
            .await
            .expect("connect");
        let _ = stream.write_all(&hello).await;
        stream
    } else {
        let mut client = RawClient::handshake(receiver.local_addr(), "c", "n3", keys.clone()).await;
        let mut frames = Vec::new();
        for message in &messages {
            let payload = codec::encode("rpc", message, RPC_FRAME_BYTES_MAX).expect("encodes");
            client
                .outgoing
                .encode(FrameKind::Message, &payload, rand::random(), &mut frames)
                .expect("fits");
        }
        let bytes = mutate(&frames, mutation);
        // The receiver may close before everything is written.
        let _ = client.stream.write_all(&bytes).await;
        client.stream
    };
    let _ = stream.shutdown().await;
    prop_assert!(
        closed_within(&mut stream, transport_support::DEADLINE).await,
        "the receiver kept a hostile connection open: {:?}",
        mutation
    );
    let after = receiver.reject_counts();
    prop_assert!(
        after.total() <= before.total() + 1,
        "one connection was refused more than once: {:?} -> {:?}",
        before,
        after
    );
    let mut delivered = Vec::new();
    // Deliveries reach the inbox before the connection closes; give a moment for ordering.
    tokio::time::sleep(Duration::from_millis(5)).await;
    while let Ok(inbound) = inbox.try_recv() {
        prop_assert_eq!(&inbound.from, &node("n3"));
        delivered.push(inbound.message);
    }
    if keys.is_some() {
        // Sealed frames open only in order, unmodified: what arrived is what was sent,
        // perhaps cut short (a replayed frame fails: its sequence number is out of step).
        prop_assert!(
            delivered.len() <= messages.len() && delivered[..] == messages[..delivered.len()],
            "a sealed connection delivered messages that were not sent: {:?}",
            mutation
        );
    }
    Ok(())
}

/// Mutated valid traffic at a real listener of `Rpc`, plain and sealed: every connection is
/// closed, refused at most once, sealed deliveries are exactly what was sent, and a
/// well-behaved peer is served before and after.
#[test]
fn mutated_valid_traffic_is_refused_and_the_listener_keeps_serving() {
    let _serial = serial();
    count_panics();
    let runtime = runtime();
    for keyed in [None, Some(1u8)] {
        let keys = keyed.map(keyring);
        let (receiver, mut inbox) = runtime.block_on(start(patient_settings("n1", keyed)));
        let (sender, _sender_inbox) = runtime.block_on(start(patient_settings("n2", keyed)));
        runtime.block_on(still_serving(&sender, &receiver, &mut inbox));
        let hostile_inbox = std::cell::RefCell::new(inbox);
        let mut runner = TestRunner::new(RunnerConfig {
            cases: 16,
            failure_persistence: None,
            ..RunnerConfig::default()
        });
        runner
            .run(&stream_mutation(), |mutation| {
                runtime.block_on(hostile_connection(
                    &receiver,
                    &mut hostile_inbox.borrow_mut(),
                    keys.clone(),
                    &mutation,
                ))
            })
            .unwrap_or_else(|failure| panic!("keyed {keyed:?}: {failure}"));
        let mut inbox = hostile_inbox.into_inner();
        runtime.block_on(still_serving(&sender, &receiver, &mut inbox));
        println!("keyed {keyed:?}: refusals {:?}", receiver.reject_counts());
        runtime.block_on(async {
            receiver.shutdown().await;
            sender.shutdown().await;
        });
    }
    assert_eq!(panics(), 0, "a task panicked");
}

/// A peer that announces a large frame and sends a few bytes, or announces 4 GiB, costs the
/// listener at most one read chunk, however much it claims.
#[test]
fn a_huge_length_prefix_allocates_at_most_one_read_chunk() {
    let _serial = serial();
    count_panics();
    let runtime = runtime();
    runtime.block_on(async {
        let (receiver, mut inbox) = start(patient_settings("n1", None)).await;
        let (sender, _sender_inbox) = start(patient_settings("n2", None)).await;
        still_serving(&sender, &receiver, &mut inbox).await;
        for (claimed, refused) in [
            (RPC_FRAME_BYTES_MAX as u32, false),
            (u32::MAX, true),
            (RPC_FRAME_BYTES_MAX as u32 + 1, true),
        ] {
            let mut client = RawClient::handshake(receiver.local_addr(), "c", "n3", None).await;
            let oversized_before = receiver.reject_counts().get(RejectCause::Oversized);
            // Let the handshake's own allocations settle before measuring.
            tokio::time::sleep(Duration::from_millis(50)).await;
            ALLOCATOR.reset_peak_memory();
            client
                .stream
                .write_all(&claimed.to_be_bytes())
                .await
                .expect("write");
            client.stream.write_all(&[0; 10]).await.ok();
            if refused {
                assert!(closed_within(&mut client.stream, transport_support::DEADLINE).await);
            } else {
                // The receiver waits for the rest; give it time to allocate what it would.
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            let peak_bytes = ALLOCATOR.get_peak_memory();
            println!("a prefix claiming {claimed} bytes: allocation peak {peak_bytes} bytes");
            assert!(
                peak_bytes <= 4 * READ_CHUNK_BYTES,
                "a prefix claiming {claimed} bytes made the process allocate {peak_bytes} bytes"
            );
            let oversized_after = receiver.reject_counts().get(RejectCause::Oversized);
            assert_eq!(oversized_after - oversized_before, u64::from(refused));
        }
        still_serving(&sender, &receiver, &mut inbox).await;
        receiver.shutdown().await;
        sender.shutdown().await;
    });
    assert_eq!(panics(), 0, "a task panicked");
}

fn varint(mut value: u64, out: &mut Vec<u8>) {
    loop {
        let low = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

/// `Rpc::Raft(AppendRequest { term 1, prev 0, prev term 0, entries, commit 0, round 0 })` with
/// `count` entries each encoded as `entry` (postcard, by hand: the point is bytes no encoder
/// of ours would produce).
fn append_of(count: u64, entry: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0, 4, 1, 0, 0];
    varint(count, &mut bytes);
    for _ in 0..count {
        bytes.extend_from_slice(entry);
    }
    bytes.extend_from_slice(&[0, 0]);
    bytes
}

/// `count` distinct four-character node ids, encoded (length, then the bytes).
fn encoded_ids(count: usize) -> Vec<u8> {
    let alphabet: Vec<u8> = (b'a'..=b'z')
        .chain(b'A'..=b'Z')
        .chain(b'0'..=b'9')
        .collect();
    let base = alphabet.len();
    let mut bytes = Vec::with_capacity(count * 5);
    for number in 0..count {
        bytes.push(4);
        for place in [base * base * base, base * base, base, 1] {
            bytes.push(alphabet[number / place % base]);
        }
    }
    bytes
}

/// Regression test for the bug this file found: an append of 4 million empty commands fits the
/// 16 MiB frame limit (4 bytes each) but decoded into 88-byte entries, and the vector's growth,
/// it took 537 MB; half of it, cut off, still took 268 MB before failing. Entries of leader
/// starts took 15 times their bytes, memberships of short ids 15 times (250 MB per frame). Now every such frame is
/// refused within the append budget.
#[test]
fn a_frame_within_the_limit_cannot_decode_into_hundreds_of_megabytes() {
    let _serial = serial();
    let empty_command = [1, 1, 1, 0];
    let leader_start = [1, 1, 0, 1, b'a', 0, 0, 0, 0];
    let membership_entry = {
        let ids = encoded_ids(3_800);
        let mut entry = vec![1, 1, 2];
        varint(3_800, &mut entry);
        entry.extend_from_slice(&ids);
        entry.push(0);
        entry
    };
    let huge_membership_snapshot = {
        let count = (RPC_FRAME_BYTES_MAX - 64) / 5;
        let mut bytes = vec![0, 6, 1, 1, 1];
        varint(count as u64, &mut bytes);
        bytes.extend_from_slice(&encoded_ids(count));
        bytes.extend_from_slice(&[0, 0]);
        bytes
    };
    let claims_four_billion = append_of(0, &[])
        .into_iter()
        .take(5)
        .chain([0xff, 0xff, 0xff, 0xff, 0x0f])
        .collect::<Vec<u8>>();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "4,000,000 empty commands",
            append_of(4_000_000, &empty_command),
        ),
        (
            "the first half of 4,000,000 empty commands",
            append_of(4_000_000, &empty_command)[..8_000_000].to_vec(),
        ),
        (
            "1,800,000 leader starts",
            append_of(1_800_000, &leader_start),
        ),
        (
            "800 memberships of 3,800 ids",
            append_of(800, &membership_entry),
        ),
        (
            "a snapshot meta of 3.3 million voters",
            huge_membership_snapshot,
        ),
        ("a claim of 4 billion entries", claims_four_billion),
    ];
    for (what, bytes) in cases {
        assert!(bytes.len() <= RPC_FRAME_BYTES_MAX, "{what} fits a frame");
        ALLOCATOR.reset_peak_memory();
        let decoded = codec::decode::<Rpc>("rpc", &bytes, RPC_FRAME_BYTES_MAX);
        let peak_bytes = ALLOCATOR.get_peak_memory();
        println!(
            "{what}: {} bytes on the wire, refused: {}, allocation peak {peak_bytes} bytes",
            bytes.len(),
            decoded.is_err()
        );
        assert!(decoded.is_err(), "{what} was accepted");
        assert!(
            peak_bytes <= FRAME_DECODE_PEAK_BYTES_MAX,
            "{what}: decoding allocated {peak_bytes} bytes"
        );
    }

    // The limits leave room for what replicas really send: the longest append the engine
    // sends, and a membership of the largest size.
    let longest = append_of(
        APPEND_ENTRIES_WIRE_MAX as u64,
        &[1, 1, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8],
    );
    assert!(codec::decode::<Rpc>("rpc", &longest, RPC_FRAME_BYTES_MAX).is_ok());
    let one_more = append_of(APPEND_ENTRIES_WIRE_MAX as u64 + 1, &empty_command);
    assert!(codec::decode::<Rpc>("rpc", &one_more, RPC_FRAME_BYTES_MAX).is_err());
    let largest = VoterSet {
        voters: (0..MEMBERSHIP_SET_MAX)
            .map(|number| id(&format!("v{number}")))
            .collect(),
        learners: Default::default(),
    };
    let encoded = codec::encode("membership", &largest, RPC_FRAME_BYTES_MAX).expect("fits");
    assert_eq!(
        codec::decode::<VoterSet>("membership", &encoded, RPC_FRAME_BYTES_MAX).ok(),
        Some(largest.clone())
    );
    let mut too_large = largest;
    too_large.voters.insert(id("one-more"));
    let encoded = codec::encode("membership", &too_large, RPC_FRAME_BYTES_MAX).expect("fits");
    assert!(codec::decode::<VoterSet>("membership", &encoded, RPC_FRAME_BYTES_MAX).is_err());
}

/// Decode `bytes` as every message type of the crate; returns the allocation peak.
fn decode_as_everything(bytes: &[u8]) -> usize {
    let limit = RPC_FRAME_BYTES_MAX;
    ALLOCATOR.reset_peak_memory();
    let _ = codec::decode::<Rpc>("rpc", bytes, limit);
    let _ = codec::decode::<Message>("message", bytes, limit);
    let _ = codec::decode::<ClientRequest>("client request", bytes, limit);
    let _ = codec::decode::<ClientReply>("client reply", bytes, limit);
    let _ = codec::decode::<Entry>("entry", bytes, limit);
    let _ = codec::decode::<SnapshotMeta>("snapshot meta", bytes, limit);
    let _ = codec::decode::<VoterSet>("membership", bytes, limit);
    let _ = codec::decode::<SessionCommand>("session command", bytes, limit);
    let _ = SessionCommand::decode(bytes);
    let _ = codec::decode::<ApplyOutcome>("apply outcome", bytes, limit);
    ALLOCATOR.get_peak_memory()
}

/// The most decoding a short hostile input may allocate: serde preallocates at most 1 MiB for
/// a sequence whose claimed length is not there yet (one such sequence fails at a time), plus
/// what the bytes really describe.
fn small_input_peak_bytes_max(input_bytes: usize) -> usize {
    2 * 1024 * 1024 + 128 * input_bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_decode_as_any_message_type_without_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048)
    ) {
        let _serial = serial();
        let peak_bytes = decode_as_everything(&bytes);
        prop_assert!(peak_bytes <= small_input_peak_bytes_max(bytes.len()), "peak {}", peak_bytes);
    }

    #[test]
    fn mutated_valid_messages_decode_without_panic(
        which in any::<usize>(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let _serial = serial();
        let messages = valid_messages();
        let message = &messages[which % messages.len()];
        let mut bytes = codec::encode("rpc", message, RPC_FRAME_BYTES_MAX).expect("encodes");
        for (position, value) in flips {
            let length = bytes.len();
            bytes[position % length] = value;
        }
        bytes.truncate(cut % (bytes.len() + 1) + bytes.len() / 2);
        let peak_bytes = decode_as_everything(&bytes);
        prop_assert!(peak_bytes <= small_input_peak_bytes_max(bytes.len()), "peak {}", peak_bytes);
    }
}
