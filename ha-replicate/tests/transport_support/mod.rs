//! Helpers shared by the `transport_*` test files: a small message type, settings on
//! 127.0.0.1:0, bounded waits, and a raw client that speaks the wire format by hand.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use ha_core::NodeId;
use ha_core::keyring::{ClusterKey, Keyring};
use ha_replicate::transport::frame::{FrameCodec, append_frame, split_frame};
use ha_replicate::transport::handshake::{HANDSHAKE_BYTES_MAX, HandshakeCodec};
use ha_replicate::transport::{Inbound, TcpTransport, TransportSettings};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The longest any single wait in these tests may take.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// The messages the tests exchange.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TestMessage {
    /// A numbered message; the tests check numbers arrive in order.
    Data { sequence: u64, text: String },
    /// A probe, sent until one arrives (for example after a restart).
    Ping(u64),
    /// Bytes of a chosen size.
    Blob(Vec<u8>),
}

pub type Transport = TcpTransport<TestMessage>;
pub type Receiver = mpsc::Receiver<Inbound<TestMessage>>;

pub fn node(name: &str) -> NodeId {
    NodeId::new(name).expect("test node ids are valid")
}

pub fn key(byte: u8) -> ClusterKey {
    ClusterKey::from_bytes([byte; 32])
}

pub fn keyring(byte: u8) -> Arc<Keyring> {
    Arc::new(Keyring::new(vec![key(byte)]).expect("one key is a valid keyring"))
}

pub fn local() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Settings for `name` in `cluster` on a free local port, reconnecting quickly.
pub fn settings(name: &str, cluster: &str) -> TransportSettings {
    let mut settings = TransportSettings::new(node(name), local(), cluster);
    settings.reconnect_backoff_ms_min = 10;
    settings.reconnect_backoff_ms_max = 200;
    settings
}

pub async fn start(settings: TransportSettings) -> (Transport, Receiver) {
    Transport::start(settings)
        .await
        .expect("a transport on 127.0.0.1:0 starts")
}

pub fn data(sequence: u64) -> TestMessage {
    TestMessage::Data {
        sequence,
        text: format!("message number {sequence}"),
    }
}

/// Receive exactly `count` messages, or fail at the deadline.
pub async fn receive(receiver: &mut Receiver, count: usize) -> Vec<Inbound<TestMessage>> {
    let deadline = Instant::now() + DEADLINE;
    let mut received = Vec::with_capacity(count);
    while received.len() < count {
        match tokio::time::timeout_at(deadline, receiver.recv()).await {
            Ok(Some(inbound)) => received.push(inbound),
            Ok(None) => panic!("inbound channel closed after {} messages", received.len()),
            Err(_) => panic!(
                "only {} of {count} messages arrived before the deadline",
                received.len()
            ),
        }
    }
    received
}

/// Wait until `condition` holds, polling, or fail at the deadline with `what`.
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Assert that nothing arrives for `quiet`.
pub async fn assert_nothing_arrives(receiver: &mut Receiver, quiet: Duration) {
    if let Ok(Some(inbound)) = tokio::time::timeout(quiet, receiver.recv()).await {
        panic!(
            "unexpected delivery from {}: {:?}",
            inbound.from, inbound.message
        );
    }
}

/// Check that each sender's `Data` messages arrived numbered 0, 1, 2, ... in order.
pub fn assert_in_order_per_sender(received: &[Inbound<TestMessage>], senders: &[&str], count: u64) {
    for sender in senders {
        let sequences: Vec<u64> = received
            .iter()
            .filter(|inbound| inbound.from.as_str() == *sender)
            .filter_map(|inbound| match &inbound.message {
                TestMessage::Data { sequence, .. } => Some(*sequence),
                _ => None,
            })
            .collect();
        let expected: Vec<u64> = (0..count).collect();
        assert_eq!(sequences, expected, "messages from {sender}");
    }
}

/// Read and discard everything until the other side closes the socket; false if it is still
/// open at `within`.
pub async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// A client that speaks the wire format by hand, to send what a real transport never would.
pub struct RawClient {
    pub stream: TcpStream,
    /// Seals frames this client sends after the handshake.
    pub outgoing: FrameCodec,
}

impl RawClient {
    /// Connect to `addr` and complete a handshake as `name` in `cluster`.
    pub async fn handshake(
        addr: SocketAddr,
        cluster: &str,
        name: &str,
        keyring: Option<Arc<Keyring>>,
    ) -> RawClient {
        let mut stream = tokio::time::timeout(DEADLINE, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        let codec = HandshakeCodec::new(cluster, node(name), keyring.clone());
        let own_nonce = [42; 16];
        let mut frame = Vec::new();
        append_frame(
            &mut frame,
            &codec.encode_initiator(own_nonce, [1; 24]),
            HANDSHAKE_BYTES_MAX,
        )
        .expect("a hello fits");
        stream.write_all(&frame).await.expect("write hello");
        let mut buffer = Vec::new();
        let deadline = Instant::now() + DEADLINE;
        let answer = loop {
            if let Some((body, _)) = split_frame(&buffer, HANDSHAKE_BYTES_MAX).expect("answer size")
            {
                break body.to_vec();
            }
            let mut chunk = [0u8; 1024];
            let count = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
                .await
                .expect("answer in time")
                .expect("read answer");
            assert!(
                count > 0,
                "the transport closed the connection during the handshake"
            );
            buffer.extend_from_slice(&chunk[..count]);
        };
        let hello = codec
            .decode_responder(&answer, own_nonce)
            .expect("the transport's answer is valid");
        let outgoing = FrameCodec::new(
            cluster,
            &node(name),
            hello.connection_nonce,
            keyring,
            ha_core::codec::RPC_FRAME_BYTES_MAX,
        );
        RawClient { stream, outgoing }
    }

    /// Encode `message` as the next frame, the way a transport would.
    pub fn message_frame(&mut self, message: &TestMessage) -> Vec<u8> {
        let payload = ha_core::codec::encode("test message", message, 1 << 20).expect("encodes");
        let mut frame = Vec::new();
        self.outgoing
            .encode(
                ha_replicate::transport::frame::FrameKind::Message,
                &payload,
                [7; 24],
                &mut frame,
            )
            .expect("fits");
        frame
    }
}

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Count every panic in this test binary from now on, including inside the transport's tasks
/// (which tokio would otherwise swallow); read the count with [`panics`].
pub fn count_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
}

/// Panics counted since [`count_panics`] was first called in this test binary.
pub fn panics() -> usize {
    PANICS.load(Ordering::SeqCst)
}
