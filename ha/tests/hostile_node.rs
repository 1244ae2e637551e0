//! A real node under hostile traffic (issue 7, "Hostile input"): oversized length-prefixed
//! frames and garbage on its RPC port, and a flood of garbage datagrams on its gossip port.
//!
//! Why: `ha-replicate/tests/transport/transport_bad_input.rs` and `udp_cluster.rs` show the transport and the gossip driver
//! shrug these off on their own; this shows the same for an `ha::Node` built the way a host
//! builds one, where both listen on the one bind port: afterwards the node reports itself
//! healthy and in a quorum, a write succeeds, and no forged member appeared. The allocation
//! peak of the whole process during the RPC attack (connections claiming 4 GiB and 16 MiB
//! frames) is measured: it stays far below one frame limit.
//!
//! Cases: 48 hostile connections and 5,000 datagrams, every one counted as a drop.

mod support;

use std::alloc::System;
use std::time::{Duration, Instant};

use ha::core::codec::RPC_FRAME_BYTES_MAX;
use ha::replicate::transport::frame::append_frame;
use ha::replicate::transport::handshake::{HANDSHAKE_BYTES_MAX, HandshakeCodec};
use ha::{Consistency, NodeId};
use peakmem_alloc::{INSTRUMENTED_SYSTEM, PeakMemAlloc, PeakMemAllocTrait};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use support::one_node;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

#[global_allocator]
static ALLOCATOR: &PeakMemAlloc<System> = &INSTRUMENTED_SYSTEM;

/// What the node may allocate, in all, while 48 connections claim frames of up to 4 GiB: a
/// read chunk or two per connection, far below a single 16 MiB frame.
const ATTACK_PEAK_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Garbage datagrams sent to the gossip port; every one must be counted as a drop.
const GARBAGE_DATAGRAMS: u64 = 5_000;
/// Datagrams sent before waiting for them to be counted (50 KiB at most: far below a socket's
/// receive buffer).
const GARBAGE_BATCH: u64 = 25;

/// Whether the peer closed `stream` within `within` (reading and discarding what it sends).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_and_a_garbage_flood_leave_a_node_healthy() {
    let node = one_node().await;
    let cluster_name = node.config().cluster.name.clone();
    node.propose((), Consistency::Quorum)
        .await
        .expect("a write before the attack");
    let rpc = node.rpc_addr();
    let gossip = node.gossip_addr();

    // RPC: length prefixes claiming 4 GiB, one byte over the hello limit, and, after a
    // valid hello, one byte over the frame limit and a full frame of which 10 bytes come.
    let mut hello = Vec::new();
    let codec = HandshakeCodec::new(&cluster_name, NodeId::new("attacker").expect("valid"), None);
    append_frame(
        &mut hello,
        &codec.encode_initiator([3; 16], [4; 24]),
        HANDSHAKE_BYTES_MAX,
    )
    .expect("a hello fits");
    ALLOCATOR.reset_peak_memory();
    let mut attackers = Vec::new();
    for round in 0..48u32 {
        let mut bytes = Vec::new();
        match round % 4 {
            0 => bytes.extend_from_slice(&u32::MAX.to_be_bytes()),
            1 => bytes.extend_from_slice(&(HANDSHAKE_BYTES_MAX as u32 + 1).to_be_bytes()),
            2 => {
                bytes.extend_from_slice(&hello);
                bytes.extend_from_slice(&(RPC_FRAME_BYTES_MAX as u32 + 1).to_be_bytes());
            }
            _ => {
                bytes.extend_from_slice(&hello);
                bytes.extend_from_slice(&(RPC_FRAME_BYTES_MAX as u32).to_be_bytes());
                bytes.extend_from_slice(&[0; 10]);
            }
        }
        attackers.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(rpc).await.expect("connect");
            let _ = stream.write_all(&bytes).await;
            if round % 4 == 3 {
                // The node waits for the rest of the frame; leave without sending it.
                tokio::time::sleep(Duration::from_millis(200)).await;
                let _ = stream.shutdown().await;
            }
            closed_within(&mut stream, Duration::from_secs(10)).await
        }));
    }
    for attacker in attackers {
        assert!(
            attacker.await.expect("attacker task"),
            "the node kept a hostile connection open"
        );
    }
    let attack_peak_bytes = ALLOCATOR.get_peak_memory();
    println!(
        "allocation peak of the whole process during the RPC attack: {attack_peak_bytes} bytes"
    );
    assert!(
        attack_peak_bytes <= ATTACK_PEAK_BYTES_MAX,
        "the RPC attack made the process allocate {attack_peak_bytes} bytes"
    );

    // Gossip: 5,000 datagrams of up to 2 KiB, a third with a valid magic and version, every
    // one of them counted as a drop. They go in batches far smaller than a socket's receive
    // buffer, each counted before the next leaves, so the kernel has no reason to drop any
    // and the count can be exact.
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let mut rng = StdRng::seed_from_u64(0x0bad_9055);
    let drops_before = node.gossip_drops().total();
    let mut sent = 0u64;
    for _ in 0..GARBAGE_DATAGRAMS / GARBAGE_BATCH {
        for _ in 0..GARBAGE_BATCH {
            let mut packet = vec![0u8; rng.random_range(0usize..2_048)];
            rng.fill(&mut packet[..]);
            if sent.is_multiple_of(3) && packet.len() > 8 {
                packet[..3].copy_from_slice(&[0xA7, 1, 0]);
            }
            socket
                .send_to(&packet, gossip)
                .await
                .expect("a datagram to loopback");
            sent += 1;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while node.gossip_drops().total() - drops_before < sent {
            assert!(
                Instant::now() < deadline,
                "{sent} garbage datagrams sent, {} counted: {:?}",
                node.gossip_drops().total() - drops_before,
                node.gossip_drops()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    println!("gossip drops after the flood: {:?}", node.gossip_drops());
    assert_eq!(
        node.gossip_drops().total() - drops_before,
        GARBAGE_DATAGRAMS,
        "every garbage datagram counted once"
    );

    // Still a healthy leader in a quorum that takes writes, and nobody joined.
    let health = node.health().await.expect("running");
    assert!(health.is_ok(), "{health:?}");
    assert_eq!(health.leader, Some(node.id().clone()));
    node.propose((), Consistency::Strong)
        .await
        .expect("a write after the attack");
    assert!(node.members().is_empty(), "{:?}", node.members());
    node.shutdown().await;
}
