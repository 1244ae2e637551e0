//! Cluster keys and names: who may talk, and how every refusal is counted by cause.

use crate::transport_support;

use std::time::Duration;

use ha_replicate::transport::frame::append_frame;
use ha_replicate::transport::handshake::{
    HANDSHAKE_BYTES_MAX, HEADER_BYTES, MAGIC, PROTOCOL_VERSION,
};
use ha_replicate::transport::{RejectCause, TransportSettings};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use transport_support::{
    DEADLINE, RawClient, TestMessage, assert_in_order_per_sender, assert_nothing_arrives,
    closed_within, data, key, keyring, node, receive, settings, start, wait_until,
};

fn keyed(name: &str, cluster: &str, keys: &[u8]) -> TransportSettings {
    settings(name, cluster).with_cluster_keys(keys.iter().map(|byte| key(*byte)).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sealed_transports_with_the_same_key_talk_both_ways() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    let (first, mut first_inbox) = start(keyed("n1", "c", &[1])).await;
    let (second, mut second_inbox) = start(keyed("n2", "c", &[1])).await;
    for sequence in 0..1_000 {
        first.send(&node("n2"), second.local_addr(), data(sequence));
        second.send(&node("n1"), first.local_addr(), data(sequence));
    }
    assert_in_order_per_sender(&receive(&mut second_inbox, 1_000).await, &["n1"], 1_000);
    assert_in_order_per_sender(&receive(&mut first_inbox, 1_000).await, &["n2"], 1_000);
    assert_eq!(first.reject_counts().total(), 0);
    assert_eq!(second.reject_counts().total(), 0);
    first.shutdown().await;
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_rotation_keeps_nodes_talking() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    // The receiver already accepts the new key; the sender seals with it.
    let (receiver, mut inbox) = start(keyed("n1", "c", &[1, 2])).await;
    let (sender, _sender_inbox) = start(keyed("n2", "c", &[2, 1])).await;
    for sequence in 0..100 {
        sender.send(&node("n1"), receiver.local_addr(), data(sequence));
    }
    assert_in_order_per_sender(&receive(&mut inbox, 100).await, &["n2"], 100);
    receiver.shutdown().await;
    sender.shutdown().await;
}

/// Start a receiver with `receiving` and a sender with `sending`, have the sender try, and
/// check nothing is delivered and the receiver counts `cause`.
async fn refused(receiving: TransportSettings, sending: TransportSettings, cause: RejectCause) {
    let receiver_name = receiving.node_id.clone();
    let (receiver, mut inbox) = start(receiving).await;
    let (sender, _sender_inbox) = start(sending).await;
    for sequence in 0..10 {
        sender.send(&receiver_name, receiver.local_addr(), data(sequence));
    }
    wait_until(&format!("the receiver counts {cause}"), || {
        receiver.reject_counts().get(cause) >= 1
    })
    .await;
    // The sender keeps retrying with backoff; every attempt is refused the same way.
    assert_nothing_arrives(&mut inbox, Duration::from_millis(300)).await;
    let counts = receiver.reject_counts();
    assert_eq!(
        counts.total(),
        counts.get(cause),
        "only {cause} is counted: {counts:?}"
    );
    receiver.shutdown().await;
    sender.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_key_is_refused_and_counted() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    refused(
        keyed("n1", "c", &[1]),
        keyed("n2", "c", &[9]),
        RejectCause::WrongKey,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_key_is_refused_and_counted() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    refused(
        keyed("n1", "c", &[1]),
        settings("n2", "c"),
        RejectCause::WrongKey,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sealed_sender_is_refused_by_a_node_without_a_key() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    refused(
        settings("n1", "c"),
        keyed("n2", "c", &[1]),
        RejectCause::WrongKey,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_cluster_name_is_refused_and_counted() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    refused(
        settings("n1", "blue"),
        settings("n2", "green"),
        RejectCause::WrongCluster,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_cluster_name_is_refused_even_with_the_same_key() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    refused(
        keyed("n1", "blue", &[1]),
        keyed("n2", "green", &[1]),
        RejectCause::WrongCluster,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_protocol_version_is_refused_and_counted() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    let (receiver, mut inbox) = start(settings("n1", "c")).await;
    let mut hello = MAGIC.to_vec();
    hello.push(PROTOCOL_VERSION + 1);
    hello.extend_from_slice(&[0; HEADER_BYTES - 5]);
    hello.extend_from_slice(b"whatever a future version says");
    let mut frame = Vec::new();
    append_frame(&mut frame, &hello, HANDSHAKE_BYTES_MAX).expect("fits");
    let mut stream = TcpStream::connect(receiver.local_addr())
        .await
        .expect("connect");
    stream.write_all(&frame).await.expect("write");
    assert!(
        closed_within(&mut stream, DEADLINE).await,
        "connection left open"
    );
    assert_eq!(receiver.reject_counts().get(RejectCause::Version), 1);
    assert_nothing_arrives(&mut inbox, Duration::from_millis(50)).await;
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_frame_after_a_sealed_handshake_is_counted_as_forged() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    let (receiver, mut inbox) = start(keyed("n1", "c", &[1])).await;
    let mut client = RawClient::handshake(receiver.local_addr(), "c", "n2", Some(keyring(1))).await;
    let good = client.message_frame(&data(0));
    client.stream.write_all(&good).await.expect("write");
    let delivered = receive(&mut inbox, 1).await;
    assert_eq!(
        (delivered[0].from.as_str(), &delivered[0].message),
        ("n2", &data(0))
    );
    let mut tampered = client.message_frame(&data(1));
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    client.stream.write_all(&tampered).await.expect("write");
    assert!(
        closed_within(&mut client.stream, DEADLINE).await,
        "connection left open"
    );
    assert_eq!(receiver.reject_counts().get(RejectCause::Forged), 1);
    assert_nothing_arrives(&mut inbox, Duration::from_millis(50)).await;
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_frame_is_counted_as_forged() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    let (receiver, mut inbox) = start(keyed("n1", "c", &[1])).await;
    let mut client = RawClient::handshake(receiver.local_addr(), "c", "n2", Some(keyring(1))).await;
    let frame = client.message_frame(&data(0));
    client.stream.write_all(&frame).await.expect("write");
    client
        .stream
        .write_all(&frame)
        .await
        .expect("write the same frame again");
    assert_eq!(receive(&mut inbox, 1).await[0].message, data(0));
    assert!(
        closed_within(&mut client.stream, DEADLINE).await,
        "connection left open"
    );
    assert_eq!(receiver.reject_counts().get(RejectCause::Forged), 1);
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_address_answering_with_another_node_id_gets_nothing() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    let (sender, _sender_inbox) = start(settings("n1", "c")).await;
    let (impostor, mut impostor_inbox) = start(settings("n3", "c")).await;
    // The sender believes n2 lives at n3's address.
    for sequence in 0..10 {
        sender.send(&node("n2"), impostor.local_addr(), data(sequence));
    }
    wait_until("the sender counts the unexpected peer", || {
        sender.reject_counts().get(RejectCause::UnexpectedPeer) >= 1
    })
    .await;
    assert_nothing_arrives(&mut impostor_inbox, Duration::from_millis(200)).await;
    sender.shutdown().await;
    impostor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_refused_when_the_handshake_times_out() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    let mut quick = settings("n1", "c");
    quick.handshake_timeout_ms = 100;
    let (receiver, _inbox) = start(quick).await;
    let mut stream = TcpStream::connect(receiver.local_addr())
        .await
        .expect("connect");
    assert!(
        closed_within(&mut stream, DEADLINE).await,
        "connection left open"
    );
    assert_eq!(
        receiver.reject_counts().get(RejectCause::HandshakeTimeout),
        1
    );
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_closed_at_once() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    let mut few = settings("n1", "c");
    few.inbound_connections_max = 2;
    let (receiver, mut inbox) = start(few).await;
    let mut first = RawClient::handshake(receiver.local_addr(), "c", "n2", None).await;
    let _second = RawClient::handshake(receiver.local_addr(), "c", "n3", None).await;
    let mut third = TcpStream::connect(receiver.local_addr())
        .await
        .expect("connect");
    assert!(
        closed_within(&mut third, DEADLINE).await,
        "connection left open"
    );
    assert_eq!(
        receiver.reject_counts().get(RejectCause::ConnectionLimit),
        1
    );
    // The connections within the limit still work.
    let frame = first.message_frame(&TestMessage::Ping(1));
    first.stream.write_all(&frame).await.expect("write");
    assert_eq!(
        receive(&mut inbox, 1).await[0].message,
        TestMessage::Ping(1)
    );
    receiver.shutdown().await;
}
