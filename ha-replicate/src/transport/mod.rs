//! The TCP transport between nodes, generic over the replication message type.
//!
//! ```text
//!  engine ──send(to, addr, M)──▶ [queue per peer] ──▶ outbound task ══TCP══▶ peer's reader
//!                                 bounded, drops                              task
//!  engine ◀──Inbound { from, M }── [inbound queue] ◀── reader task per connection ◀══TCP══ peers
//!                                   bounded, pushes back
//! ```
//!
//! A connection carries one peer's messages one way: the side that connects writes messages,
//! the side that accepts writes only keepalives. Each node therefore has one outbound
//! connection per peer it sends to, and accepts one from each peer that sends to it.
//!
//! # Wire format
//!
//! Every frame is `length (u32, big-endian) | body`, the length at most
//! [`TransportSettings::frame_bytes_max`] (at most [`ha_core::codec::RPC_FRAME_BYTES_MAX`]),
//! and at most [`handshake::HANDSHAKE_BYTES_MAX`] before the handshake completes. A larger
//! length closes the connection before anything is allocated for it.
//!
//! 1. The first frame each way is a hello ([`handshake`]): a clear header with magic, protocol
//!    version, flags and a tag of the cluster name, then the cluster name, node id and a
//!    random connection nonce, sealed with the cluster key when there is one.
//! 2. Every later frame is a data frame ([`frame`]): a kind byte (message or keepalive) and,
//!    for a message, `postcard(M)`; sealed when there is a key, with associated data binding
//!    it to the cluster name, the sender's node id, the receiver's connection nonce and the
//!    frame's sequence number.
//!
//! # Wire format with TLS
//!
//! With [`TransportSettings::tls`] set, every connection, both ways, is mutual TLS 1.3 (see
//! [`crate::tls`]); the framing above runs unchanged inside it:
//!
//! ```text
//! TCP | TLS 1.3 handshake (server and client certificates from the cluster CA)
//!     | inside TLS: hello each way (flags: not sealed) | data frames (plain bodies)
//! ```
//!
//! 0. Before anything else, the connecting side opens TLS, verifying that the accepting
//!    side's certificate names `<expected node id>.<cluster>`; the accepting side requires a
//!    client certificate from the CA bundle. Both happen within the handshake timeout and,
//!    on the accepting side, within the inbound connection cap.
//! 1. The hellos are exchanged inside TLS, not sealed. The accepting side refuses a hello
//!    whose node id the client certificate does not name; the connecting side refuses an
//!    answer from another node id than the one it dialled (both `identity_mismatch`).
//! 2. Data frames are plain bodies (kind byte and payload): TLS already encrypts and
//!    authenticates them, so they are not sealed again with the cluster keys (which still
//!    seal gossip).
//!
//! The accepting side reads the first byte before running TLS: `0x16` starts a TLS record;
//! anything else is refused without TLS, as `plaintext` when it is a plaintext hello (a
//! 4-byte length prefix, then `"haRP"`), else as `tls_handshake`. A plaintext node that
//! receives a TLS ClientHello (a length prefix starting `0x16 0x03`) refuses it as
//! `malformed`, with a detail saying the peer speaks TLS.
//!
//! # Refusals
//!
//! A wrong protocol version, cluster name or key, a forged or malformed frame, an oversized
//! length, a slow handshake or too many connections close the connection, are logged at WARN
//! with their cause, and counted in [`RejectCounts`]. With TLS, so are a plaintext peer, a
//! failed TLS handshake, a certificate from an unknown CA, an expired certificate, no client
//! certificate, and a certificate used for a node it does not name. Nothing a peer sends can
//! panic a task.

mod backoff;
mod connection;
mod context;
mod counts;
mod error;
pub mod frame;
pub mod handshake;
mod inbound;
mod outbound;
mod secure;
mod settings;
mod tcp_transport;

pub use counts::{RejectCause, RejectCounts, SendDropCause, SendDropCounts};
pub use error::TransportError;
pub use settings::{
    FRAME_BYTES_MIN, HANDSHAKE_TIMEOUT_MS_DEFAULT, IDLE_TIMEOUT_MS_DEFAULT,
    INBOUND_CONNECTIONS_MAX_DEFAULT, INBOUND_QUEUE_MAX_DEFAULT, KEEPALIVE_INTERVAL_MS_DEFAULT,
    OUTBOUND_QUEUE_MAX_DEFAULT, PEERS_MAX_DEFAULT, RECONNECT_BACKOFF_MS_MAX_DEFAULT,
    RECONNECT_BACKOFF_MS_MIN_DEFAULT, TransportSettings,
};
pub use tcp_transport::{Inbound, TcpTransport};
