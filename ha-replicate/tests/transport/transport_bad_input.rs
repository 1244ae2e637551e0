//! Bytes no real peer sends: oversized lengths, garbage, half frames. The transport closes the
//! offending connection, counts it, never panics, and keeps serving everyone else.

use crate::transport_support;

use std::time::Duration;

use ha_replicate::transport::frame::append_frame;
use ha_replicate::transport::handshake::{HANDSHAKE_BYTES_MAX, HandshakeCodec};
use ha_replicate::transport::{RejectCause, TransportSettings};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use transport_support::{
    DEADLINE, RawClient, Transport, closed_within, count_panics, data, node, panics, receive,
    settings, start,
};

/// A receiver that would wait a long time for a body: a fast close proves the length alone
/// was refused.
fn patient(name: &str) -> TransportSettings {
    let mut patient = settings(name, "c");
    patient.handshake_timeout_ms = 30_000;
    patient.idle_timeout_ms = 30_000;
    patient.frame_bytes_max = 4096;
    patient
}

/// Check `sender` still delivers to `receiver` in order.
async fn still_serving(
    sender: &Transport,
    receiver: &Transport,
    inbox: &mut transport_support::Receiver,
    from: u64,
) {
    for sequence in from..from + 100 {
        sender.send(receiver.node_id(), receiver.local_addr(), data(sequence));
    }
    let received = receive(inbox, 100).await;
    let sequences: Vec<u64> = received
        .iter()
        .map(|inbound| match inbound.message {
            transport_support::TestMessage::Data { sequence, .. } => sequence,
            _ => u64::MAX,
        })
        .collect();
    assert_eq!(sequences, (from..from + 100).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_oversized_length_before_the_handshake_closes_only_that_connection() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    count_panics();
    let (receiver, mut inbox) = start(patient("n1")).await;
    let (sender, _sender_inbox) = start(settings("n2", "c")).await;
    still_serving(&sender, &receiver, &mut inbox, 0).await;

    for prefix in [[0xff; 4], [0, 0, 2, 1]] {
        // u32::MAX, then one byte more than a hello may be.
        let mut stream = TcpStream::connect(receiver.local_addr())
            .await
            .expect("connect");
        stream.write_all(&prefix).await.expect("write");
        assert!(
            closed_within(&mut stream, Duration::from_secs(5)).await,
            "a length prefix alone must close the connection, long before any timeout"
        );
    }
    assert_eq!(receiver.reject_counts().get(RejectCause::Oversized), 2);
    // The established connection from the sender was not disturbed.
    still_serving(&sender, &receiver, &mut inbox, 100).await;
    assert_eq!(panics(), 0);
    receiver.shutdown().await;
    sender.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_oversized_length_after_the_handshake_closes_only_that_connection() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    count_panics();
    let (receiver, mut inbox) = start(patient("n1")).await;
    let (sender, _sender_inbox) = start(settings("n2", "c")).await;
    still_serving(&sender, &receiver, &mut inbox, 0).await;

    // u32::MAX, then one byte over the configured frame limit of 4096.
    for length in [u32::MAX, 4097] {
        let mut client = RawClient::handshake(receiver.local_addr(), "c", "n3", None).await;
        let frame = client.message_frame(&data(0));
        client.stream.write_all(&frame).await.expect("write");
        client
            .stream
            .write_all(&length.to_be_bytes())
            .await
            .expect("write");
        assert!(
            closed_within(&mut client.stream, Duration::from_secs(5)).await,
            "an oversized length must close the connection at once"
        );
    }
    let from_raw = receive(&mut inbox, 2).await;
    assert!(from_raw.iter().all(|inbound| inbound.from == node("n3")));
    assert_eq!(receiver.reject_counts().get(RejectCause::Oversized), 2);
    still_serving(&sender, &receiver, &mut inbox, 100).await;
    assert_eq!(panics(), 0);
    receiver.shutdown().await;
    sender.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_on_the_socket_never_panics_and_the_transport_keeps_serving() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    count_panics();
    let mut quick = settings("n1", "c");
    quick.handshake_timeout_ms = 500;
    let (receiver, mut inbox) = start(quick).await;
    let (sender, _sender_inbox) = start(settings("n2", "c")).await;
    still_serving(&sender, &receiver, &mut inbox, 0).await;

    let hello = HandshakeCodec::new("c", node("n9"), None).encode_initiator([3; 16], [0; 24]);
    let mut valid_hello = Vec::new();
    append_frame(&mut valid_hello, &hello, HANDSHAKE_BYTES_MAX).expect("fits");
    let mut rng = StdRng::seed_from_u64(0x6a11_bade);
    let mut attackers = Vec::new();
    for round in 0..60u32 {
        let mut bytes = Vec::new();
        match round % 4 {
            // Pure noise.
            0 => {}
            // A plausible small length, then noise.
            1 => bytes.extend_from_slice(&rng.random_range(0u32..600).to_be_bytes()),
            // A valid hello, then noise where frames should be.
            2 => bytes.extend_from_slice(&valid_hello),
            // A valid hello, then plausible frames of noise.
            _ => {
                bytes.extend_from_slice(&valid_hello);
                for _ in 0..4 {
                    let length = rng.random_range(0usize..64);
                    bytes.extend_from_slice(&(length as u32).to_be_bytes());
                    let mut body = vec![0u8; length];
                    rng.fill(&mut body[..]);
                    bytes.extend_from_slice(&body);
                }
            }
        }
        let mut noise = vec![0u8; rng.random_range(1usize..2048)];
        rng.fill(&mut noise[..]);
        bytes.extend_from_slice(&noise);
        let addr = receiver.local_addr();
        attackers.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            // The transport may close the connection before everything is written.
            let _ = stream.write_all(&bytes).await;
            closed_within(&mut stream, DEADLINE).await
        }));
    }
    for attacker in attackers {
        assert!(
            attacker.await.expect("attacker task"),
            "garbage left a connection open"
        );
    }
    let counts = receiver.reject_counts();
    assert!(
        counts.total() >= 45,
        "every garbage connection is refused: {counts:?}"
    );
    // Noise may decode as a message now and then; whatever arrived came from the fake node.
    while let Ok(inbound) = inbox.try_recv() {
        assert_eq!(inbound.from, node("n9"));
    }
    still_serving(&sender, &receiver, &mut inbox, 100).await;
    assert_eq!(panics(), 0, "a task panicked on garbage");
    receiver.shutdown().await;
    sender.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_that_vanishes_mid_frame_is_dropped_and_others_continue() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    count_panics();
    let (receiver, mut inbox) = start(patient("n1")).await;
    let (sender, _sender_inbox) = start(settings("n2", "c")).await;
    let mut client = RawClient::handshake(receiver.local_addr(), "c", "n3", None).await;
    let frame = client.message_frame(&data(7));
    client
        .stream
        .write_all(&frame[..frame.len() / 2])
        .await
        .expect("write");
    drop(client);
    still_serving(&sender, &receiver, &mut inbox, 0).await;
    assert_eq!(panics(), 0);
    receiver.shutdown().await;
    sender.shutdown().await;
}
