//! The handshake: the first frame each way on every connection.
//!
//! ```text
//! hello body   = header (10, in the clear) | payload
//! header       = magic "haRP" (4) | protocol version (1) | flags (1)
//!                | cluster tag (crc32c of the cluster name, u32 big-endian)
//! flags        = bit 0 sealed, bit 1 sent by the responder (the side that accepted)
//! payload      = postcard(cluster name, node id, connection nonce (16 random bytes))
//!                or, sealed, Keyring::seal(random nonce, associated, that postcard)
//! associated   = "ha-replicate/handshake/1" | header | len | cluster name
//!                | initiator's connection nonce (the responder's hello), or 16 zero bytes
//! ```
//!
//! The side that connects (the initiator) sends its hello; the side that accepted (the
//! responder) checks it, answers with its own, and the initiator checks that. The clear header
//! lets a node refuse another protocol version or cluster cheaply and count why; with a key,
//! the sealed payload proves the sender holds a cluster key. The responder's hello is bound to
//! the initiator's fresh nonce, so an old recorded answer cannot be replayed; every later frame
//! is bound to the receiver's nonce (see [`frame`](super::frame)), so a replayed initiator
//! hello leads nowhere.
//!
//! With TLS ([`TransportSettings::tls`](super::TransportSettings::tls)) the hellos travel
//! inside the TLS session and are never sealed (flag bit 0 clear): the cluster keys play no
//! part in RPC. The node id a hello claims is then bound to the peer's certificate by the
//! transport: the accepting side checks that the client certificate names
//! `<node id>.<cluster>`, the connecting side that the answer comes from the node whose
//! certificate it verified. The nonces still bind the frames to the connection.
//!
//! Everything here is synchronous and does no IO.

use std::sync::Arc;

use ha_core::NodeId;
use ha_core::codec;
use ha_core::keyring::{Keyring, NONCE_BYTES, OpenError};
use serde::{Deserialize, Serialize};

use super::counts::RejectCause;
use super::frame::push_short_text;

/// The first bytes of every hello.
pub const MAGIC: [u8; 4] = *b"haRP";
/// The protocol version this build speaks. A hello with another version is refused.
///
/// 2 since pipelined sessions (issue 17): a client write carries the session's lowest
/// unanswered sequence (command format tag `[0x80, 0x00, 2]`) and snapshots are data format 3.
/// A version-1 node reads neither: as a follower it skipped the new commands as invalid and
/// refused the new snapshots, silently diverging (`ha-replicate/tests/upgrade_fixture.rs`,
/// docs/ARCHITECTURE.md). Refusing each other at the handshake turns that into a visible
/// connection error; upgrade by stopping writes, upgrading every node, then writing.
pub const PROTOCOL_VERSION: u8 = 2;
/// The largest hello body, in bytes. Before the handshake a peer is unauthenticated, so a
/// connection may announce no more than this.
pub const HANDSHAKE_BYTES_MAX: usize = 512;
/// Bytes of a connection nonce.
pub const CONNECTION_NONCE_BYTES: usize = 16;
/// Bytes of the clear header of a hello.
pub const HEADER_BYTES: usize = 10;

const FLAG_SEALED: u8 = 0b0000_0001;
const FLAG_RESPONDER: u8 = 0b0000_0010;
const HANDSHAKE_CONTEXT: &[u8] = b"ha-replicate/handshake/1";

/// Which side of a connection sent a hello.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The side that connected.
    Initiator,
    /// The side that accepted.
    Responder,
}

/// What a checked hello says about the other side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The other side's node id (authenticated when the cluster has a key).
    pub node_id: NodeId,
    /// The random nonce the other side chose for this connection; frames sent to it are
    /// bound to it.
    pub connection_nonce: [u8; CONNECTION_NONCE_BYTES],
}

#[derive(Serialize, Deserialize)]
struct HelloPayload {
    cluster_name: String,
    node_id: NodeId,
    connection_nonce: [u8; CONNECTION_NONCE_BYTES],
}

/// Writes and checks hellos for one node in one cluster.
///
/// ```
/// use ha_replicate::transport::handshake::HandshakeCodec;
/// use ha_replicate::transport::RejectCause;
///
/// let initiator = HandshakeCodec::new("c", "n1".parse().unwrap(), None);
/// let responder = HandshakeCodec::new("c", "n2".parse().unwrap(), None);
/// let hello = initiator.encode_initiator([1; 16], [0; 24]);
/// let seen = responder.decode_initiator(&hello).unwrap();
/// assert_eq!(seen.node_id.as_str(), "n1");
/// let answer = responder.encode_responder([2; 16], seen.connection_nonce, [0; 24]);
/// assert_eq!(initiator.decode_responder(&answer, [1; 16]).unwrap().node_id.as_str(), "n2");
///
/// let elsewhere = HandshakeCodec::new("other", "n3".parse().unwrap(), None);
/// assert_eq!(elsewhere.decode_initiator(&hello), Err(RejectCause::WrongCluster));
/// ```
pub struct HandshakeCodec {
    cluster_name: String,
    cluster_tag: [u8; 4],
    node_id: NodeId,
    keyring: Option<Arc<Keyring>>,
}

impl HandshakeCodec {
    /// The codec of node `node_id` in `cluster_name`, sealing with `keyring` when given.
    pub fn new(cluster_name: &str, node_id: NodeId, keyring: Option<Arc<Keyring>>) -> Self {
        Self {
            cluster_name: cluster_name.to_string(),
            cluster_tag: crc32c::crc32c(cluster_name.as_bytes()).to_be_bytes(),
            node_id,
            keyring,
        }
    }

    /// The initiator's hello body (without the length prefix). `own_nonce` is this side's
    /// fresh connection nonce; `seal_nonce` fresh random bytes for the seal.
    pub fn encode_initiator(
        &self,
        own_nonce: [u8; CONNECTION_NONCE_BYTES],
        seal_nonce: [u8; NONCE_BYTES],
    ) -> Vec<u8> {
        self.encode(
            Role::Initiator,
            own_nonce,
            [0; CONNECTION_NONCE_BYTES],
            seal_nonce,
        )
    }

    /// The responder's hello body, bound to the `initiator_nonce` it just received.
    pub fn encode_responder(
        &self,
        own_nonce: [u8; CONNECTION_NONCE_BYTES],
        initiator_nonce: [u8; CONNECTION_NONCE_BYTES],
        seal_nonce: [u8; NONCE_BYTES],
    ) -> Vec<u8> {
        self.encode(Role::Responder, own_nonce, initiator_nonce, seal_nonce)
    }

    /// Check an initiator's hello (what a responder receives first).
    ///
    /// # Errors
    /// The [`RejectCause`] to count; the caller closes the connection.
    pub fn decode_initiator(&self, body: &[u8]) -> Result<Hello, RejectCause> {
        self.decode(Role::Initiator, body, [0; CONNECTION_NONCE_BYTES])
    }

    /// Check a responder's hello against the nonce this initiator sent.
    ///
    /// # Errors
    /// The [`RejectCause`] to count; the caller closes the connection.
    pub fn decode_responder(
        &self,
        body: &[u8],
        own_nonce: [u8; CONNECTION_NONCE_BYTES],
    ) -> Result<Hello, RejectCause> {
        self.decode(Role::Responder, body, own_nonce)
    }

    fn header(&self, role: Role) -> [u8; HEADER_BYTES] {
        let mut flags = 0;
        if self.keyring.is_some() {
            flags |= FLAG_SEALED;
        }
        if role == Role::Responder {
            flags |= FLAG_RESPONDER;
        }
        let [magic0, magic1, magic2, magic3] = MAGIC;
        let [tag0, tag1, tag2, tag3] = self.cluster_tag;
        [
            magic0,
            magic1,
            magic2,
            magic3,
            PROTOCOL_VERSION,
            flags,
            tag0,
            tag1,
            tag2,
            tag3,
        ]
    }

    fn associated(&self, header: &[u8], bound_nonce: [u8; CONNECTION_NONCE_BYTES]) -> Vec<u8> {
        let mut associated = Vec::with_capacity(
            HANDSHAKE_CONTEXT.len() + header.len() + 1 + self.cluster_name.len() + 16,
        );
        associated.extend_from_slice(HANDSHAKE_CONTEXT);
        associated.extend_from_slice(header);
        push_short_text(&mut associated, &self.cluster_name);
        associated.extend_from_slice(&bound_nonce);
        associated
    }

    fn encode(
        &self,
        role: Role,
        own_nonce: [u8; CONNECTION_NONCE_BYTES],
        bound_nonce: [u8; CONNECTION_NONCE_BYTES],
        seal_nonce: [u8; NONCE_BYTES],
    ) -> Vec<u8> {
        let header = self.header(role);
        let payload = HelloPayload {
            cluster_name: self.cluster_name.clone(),
            node_id: self.node_id.clone(),
            connection_nonce: own_nonce,
        };
        // A cluster name and node id are at most 64 bytes each (validated in the settings),
        // so the payload always fits; an empty payload would only make the peer refuse us.
        let payload = codec::encode("hello", &payload, HANDSHAKE_BYTES_MAX).unwrap_or_default();
        let mut body = Vec::with_capacity(HANDSHAKE_BYTES_MAX);
        body.extend_from_slice(&header);
        match &self.keyring {
            None => body.extend_from_slice(&payload),
            Some(keyring) => {
                let associated = self.associated(&header, bound_nonce);
                body.extend_from_slice(&keyring.seal(seal_nonce, &associated, &payload));
            }
        }
        body
    }

    fn decode(
        &self,
        role: Role,
        body: &[u8],
        bound_nonce: [u8; CONNECTION_NONCE_BYTES],
    ) -> Result<Hello, RejectCause> {
        if body.len() > HANDSHAKE_BYTES_MAX {
            return Err(RejectCause::Oversized);
        }
        let Some((header, payload)) = body.split_first_chunk::<HEADER_BYTES>() else {
            return Err(RejectCause::Malformed);
        };
        if header[..4] != MAGIC {
            return Err(RejectCause::Malformed);
        }
        if header[4] != PROTOCOL_VERSION {
            return Err(RejectCause::Version);
        }
        let flags = header[5];
        let from_responder = flags & FLAG_RESPONDER != 0;
        if flags & !(FLAG_SEALED | FLAG_RESPONDER) != 0
            || from_responder != (role == Role::Responder)
        {
            return Err(RejectCause::Malformed);
        }
        if header[6..10] != self.cluster_tag {
            return Err(RejectCause::WrongCluster);
        }
        let sealed = flags & FLAG_SEALED != 0;
        let payload = match (&self.keyring, sealed) {
            (None, false) => payload.to_vec(),
            (Some(keyring), true) => keyring
                .open(&self.associated(header, bound_nonce), payload)
                .map_err(|error| match error {
                    OpenError::UnknownKey { .. } => RejectCause::WrongKey,
                    OpenError::TooShort => RejectCause::Malformed,
                    _ => RejectCause::Forged,
                })?,
            // In the clear where a key is required, or sealed where this node has none.
            _ => return Err(RejectCause::WrongKey),
        };
        let hello: HelloPayload = codec::decode("hello", &payload, HANDSHAKE_BYTES_MAX)
            .map_err(|_| RejectCause::Malformed)?;
        // The tag is only 32 bits; the full name settles it.
        if hello.cluster_name != self.cluster_name {
            return Err(RejectCause::WrongCluster);
        }
        Ok(Hello {
            node_id: hello.node_id,
            connection_nonce: hello.connection_nonce,
        })
    }
}

impl std::fmt::Debug for HandshakeCodec {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("HandshakeCodec")
            .field("cluster_name", &self.cluster_name)
            .field("node_id", &self.node_id)
            .field("sealed", &self.keyring.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ha_core::keyring::ClusterKey;

    fn codec(cluster: &str, node: &str, key: Option<u8>) -> HandshakeCodec {
        let keyring = key.and_then(|byte| {
            Keyring::new(vec![ClusterKey::from_bytes([byte; 32])])
                .ok()
                .map(Arc::new)
        });
        HandshakeCodec::new(cluster, NodeId::new(node).expect("valid id"), keyring)
    }

    #[test]
    fn sealed_handshake_round_trips() {
        let initiator = codec("c", "a", Some(1));
        let responder = codec("c", "b", Some(1));
        let hello = initiator.encode_initiator([5; 16], [1; 24]);
        let seen = responder.decode_initiator(&hello).expect("accepted");
        assert_eq!(seen.node_id.as_str(), "a");
        assert_eq!(seen.connection_nonce, [5; 16]);
        let answer = responder.encode_responder([6; 16], [5; 16], [2; 24]);
        let seen = initiator
            .decode_responder(&answer, [5; 16])
            .expect("accepted");
        assert_eq!(
            (seen.node_id.as_str(), seen.connection_nonce),
            ("b", [6; 16])
        );
    }

    #[test]
    fn each_mismatch_has_its_cause() {
        let plain = codec("c", "a", None).encode_initiator([5; 16], [1; 24]);
        let sealed = codec("c", "a", Some(1)).encode_initiator([5; 16], [1; 24]);
        assert_eq!(
            codec("d", "b", None).decode_initiator(&plain),
            Err(RejectCause::WrongCluster)
        );
        assert_eq!(
            codec("c", "b", Some(1)).decode_initiator(&plain),
            Err(RejectCause::WrongKey)
        );
        assert_eq!(
            codec("c", "b", None).decode_initiator(&sealed),
            Err(RejectCause::WrongKey)
        );
        assert_eq!(
            codec("c", "b", Some(2)).decode_initiator(&sealed),
            Err(RejectCause::WrongKey)
        );
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(
            codec("c", "b", Some(1)).decode_initiator(&tampered),
            Err(RejectCause::Forged)
        );
        let mut other_version = plain.clone();
        other_version[4] = PROTOCOL_VERSION + 1;
        assert_eq!(
            codec("c", "b", None).decode_initiator(&other_version),
            Err(RejectCause::Version)
        );
        // An initiator's hello reflected back as if it were the answer.
        assert_eq!(
            codec("c", "a", None).decode_responder(&plain, [5; 16]),
            Err(RejectCause::Malformed)
        );
        assert_eq!(
            codec("c", "b", None).decode_initiator(b"GET / HTTP/1.1\r\n"),
            Err(RejectCause::Malformed)
        );
    }

    #[test]
    fn a_recorded_answer_cannot_be_replayed_to_a_new_connection() {
        let initiator = codec("c", "a", Some(1));
        let responder = codec("c", "b", Some(1));
        let answer = responder.encode_responder([6; 16], [5; 16], [2; 24]);
        assert_eq!(
            initiator.decode_responder(&answer, [7; 16]),
            Err(RejectCause::Forged)
        );
    }
}
