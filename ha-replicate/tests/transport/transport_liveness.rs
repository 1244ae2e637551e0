//! Dead and idle connections: keepalives keep a quiet link open; silence closes it; a sender
//! whose peer goes silent abandons the connection and reconnects.

use crate::transport_support;

use std::time::Duration;

use ha_replicate::transport::TransportSettings;
use ha_replicate::transport::frame::{FrameCodec, FrameKind, append_frame, split_frame};
use ha_replicate::transport::handshake::{HANDSHAKE_BYTES_MAX, HandshakeCodec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;
use transport_support::{
    DEADLINE, RawClient, TestMessage, closed_within, data, local, node, receive, settings, start,
};

fn brisk(name: &str) -> TransportSettings {
    let mut brisk = settings(name, "c");
    brisk.keepalive_interval_ms = 50;
    brisk.idle_timeout_ms = 300;
    brisk
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_inbound_connection_is_closed_after_the_idle_timeout() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    let (receiver, _inbox) = start(brisk("n1")).await;
    let mut client = RawClient::handshake(receiver.local_addr(), "c", "n2", None).await;
    let started = Instant::now();
    // The client never writes again; the receiver's keepalives arrive and are discarded.
    assert!(
        closed_within(&mut client.stream, DEADLINE).await,
        "idle connection left open"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed before the idle timeout"
    );
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalives_keep_a_quiet_connection_open() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    let (receiver, mut inbox) = start(brisk("n1")).await;
    let mut client = RawClient::handshake(receiver.local_addr(), "c", "n2", None).await;
    // Stay quiet but alive for several idle timeouts, reading the receiver's keepalives.
    let mut received_bytes = 0;
    for _ in 0..20 {
        let mut keepalive = Vec::new();
        client
            .outgoing
            .encode(FrameKind::Keepalive, &[], [0; 24], &mut keepalive)
            .expect("fits");
        client
            .stream
            .write_all(&keepalive)
            .await
            .expect("connection still open");
        let mut buffer = [0u8; 256];
        if let Ok(Ok(count)) =
            tokio::time::timeout(Duration::from_millis(60), client.stream.read(&mut buffer)).await
        {
            assert!(
                count > 0,
                "the receiver closed a connection that sent keepalives"
            );
            received_bytes += count;
        }
    }
    assert!(received_bytes > 0, "the receiver sent no keepalives");
    let frame = client.message_frame(&TestMessage::Ping(9));
    client
        .stream
        .write_all(&frame)
        .await
        .expect("connection still open");
    assert_eq!(
        receive(&mut inbox, 1).await[0].message,
        TestMessage::Ping(9)
    );
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sender_abandons_a_silent_peer_and_reconnects() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    // A fake n2 that answers the handshake correctly, then never says another word.
    let listener = TcpListener::bind(local()).await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let fake = tokio::spawn(async move {
        let codec = HandshakeCodec::new("c", node("n2"), None);
        let mut accepted = 0;
        let mut open = Vec::new();
        while accepted < 2 {
            let (mut stream, _) = listener.accept().await.expect("accept");
            accepted += 1;
            let mut buffer = Vec::new();
            let hello = loop {
                if let Some((body, _)) = split_frame(&buffer, HANDSHAKE_BYTES_MAX).expect("size") {
                    break codec.decode_initiator(body).expect("a valid hello");
                }
                let mut chunk = [0u8; 512];
                let count = stream.read(&mut chunk).await.expect("read hello");
                assert!(count > 0, "sender closed during the handshake");
                buffer.extend_from_slice(&chunk[..count]);
            };
            let answer = codec.encode_responder([8; 16], hello.connection_nonce, [0; 24]);
            let mut frame = Vec::new();
            append_frame(&mut frame, &answer, HANDSHAKE_BYTES_MAX).expect("fits");
            stream.write_all(&frame).await.expect("answer");
            // Keep the socket open (and silent) so only the idle timeout can end it.
            open.push(stream);
        }
        accepted
    });
    let (sender, _inbox) = start(brisk("n1")).await;
    sender.send(&node("n2"), addr, data(0));
    let accepted = tokio::time::timeout(DEADLINE, fake)
        .await
        .expect("the sender reconnected in time")
        .expect("fake peer task");
    assert_eq!(accepted, 2);
    sender.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sender_keeps_a_quiet_live_connection_with_keepalives() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    // A fake n2 that answers the handshake and sends keepalives, like a real receiver.
    let listener = TcpListener::bind(local()).await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let fake = tokio::spawn(async move {
        let codec = HandshakeCodec::new("c", node("n2"), None);
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut buffer = Vec::new();
        let hello = loop {
            if let Some((body, _)) = split_frame(&buffer, HANDSHAKE_BYTES_MAX).expect("size") {
                let hello = codec.decode_initiator(body).expect("a valid hello");
                let consumed = 4 + body.len();
                buffer.drain(..consumed);
                break hello;
            }
            let mut chunk = [0u8; 512];
            let count = stream.read(&mut chunk).await.expect("read hello");
            assert!(count > 0, "sender closed during the handshake");
            buffer.extend_from_slice(&chunk[..count]);
        };
        let answer = codec.encode_responder([8; 16], hello.connection_nonce, [0; 24]);
        let mut frame = Vec::new();
        append_frame(&mut frame, &answer, HANDSHAKE_BYTES_MAX).expect("fits");
        stream.write_all(&frame).await.expect("answer");
        let limit = ha_core::codec::RPC_FRAME_BYTES_MAX;
        let mut outgoing = FrameCodec::new("c", &node("n2"), hello.connection_nonce, None, limit);
        let mut incoming = FrameCodec::new("c", &node("n1"), [8; 16], None, limit);
        let mut kinds = Vec::new();
        // Four idle timeouts without a message either way.
        let until = Instant::now() + Duration::from_millis(1_200);
        while Instant::now() < until {
            let mut keepalive = Vec::new();
            outgoing
                .encode(FrameKind::Keepalive, &[], [0; 24], &mut keepalive)
                .expect("fits");
            stream
                .write_all(&keepalive)
                .await
                .expect("the sender kept the connection");
            let mut chunk = [0u8; 512];
            if let Ok(read) =
                tokio::time::timeout(Duration::from_millis(50), stream.read(&mut chunk)).await
            {
                let count = read.expect("read");
                assert!(count > 0, "the sender closed a live connection");
                buffer.extend_from_slice(&chunk[..count]);
            }
            while let Some((body, _)) = split_frame(&buffer, limit).expect("size") {
                let consumed = 4 + body.len();
                kinds.push(incoming.decode(body).expect("a valid frame").0);
                buffer.drain(..consumed);
            }
        }
        let reconnected = tokio::time::timeout(Duration::from_millis(50), listener.accept())
            .await
            .is_ok();
        (kinds, reconnected)
    });
    let (sender, _inbox) = start(brisk("n1")).await;
    sender.send(&node("n2"), addr, data(0));
    let (kinds, reconnected) = tokio::time::timeout(DEADLINE, fake)
        .await
        .expect("the fake peer finished in time")
        .expect("fake peer task");
    assert!(!reconnected, "the sender replaced a live connection");
    assert_eq!(kinds.first(), Some(&FrameKind::Message));
    let keepalives = kinds
        .iter()
        .filter(|kind| **kind == FrameKind::Keepalive)
        .count();
    assert!(
        keepalives >= 5,
        "only {keepalives} keepalives in 1.2 s at a 50 ms interval"
    );
    sender.shutdown().await;
}
