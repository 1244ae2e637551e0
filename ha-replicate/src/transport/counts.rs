//! Counting what the transport refuses and drops, by cause.
//!
//! Two families: [`RejectCause`] for what a *peer* sent that this node refused (the connection
//! is closed), and [`SendDropCause`] for messages *this node* asked to send but dropped without
//! a socket write (the replication protocol retries them). Tasks bump shared atomic counters;
//! callers read a copy with [`TcpTransport::reject_counts`](super::TcpTransport::reject_counts)
//! and [`TcpTransport::send_drop_counts`](super::TcpTransport::send_drop_counts).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Why a connection, or a frame on it, was refused. The connection is closed; no message on it
/// after the refused frame is delivered, and nothing else changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RejectCause {
    /// A length prefix above the frame limit (the handshake limit before the handshake).
    Oversized,
    /// Not an ha replication frame: bad magic, truncated, unknown frame kind, a message that
    /// does not decode, or a frame the protocol does not allow in that direction.
    Malformed,
    /// The handshake names another cluster.
    WrongCluster,
    /// Sealed with a key this node does not hold, or sealed when this node has no key, or in
    /// the clear when this node requires a key.
    WrongKey,
    /// Sealed with a known key but the authentication tag does not verify: tampered,
    /// corrupted, replayed from another connection, or attributed to another sender.
    Forged,
    /// The handshake speaks a protocol version this node does not.
    Version,
    /// An outbound connection reached a node other than the one it was opened for (the
    /// address now belongs to someone else).
    UnexpectedPeer,
    /// The peer did not complete the handshake in time.
    HandshakeTimeout,
    /// Too many inbound connections are open; the new one was closed at once.
    ConnectionLimit,
    /// This node requires TLS and the peer sent a plaintext hello.
    Plaintext,
    /// The TLS handshake failed: garbage or truncated records, another protocol, or a TLS
    /// error without a more specific cause here.
    TlsHandshake,
    /// The peer's certificate does not chain to a CA this node trusts (unknown issuer or a
    /// bad signature in the chain).
    WrongCa,
    /// The peer's certificate is expired (or not valid yet).
    CertExpired,
    /// The connecting peer presented no client certificate.
    NoCertificate,
    /// A valid certificate that does not name the node: it claims another node id in its
    /// hello, or the server at an address is not the node that was dialled.
    IdentityMismatch,
}

impl RejectCause {
    /// How many causes there are.
    pub const COUNT: usize = 15;

    /// Every cause, in a fixed order.
    pub const ALL: [RejectCause; Self::COUNT] = [
        RejectCause::Oversized,
        RejectCause::Malformed,
        RejectCause::WrongCluster,
        RejectCause::WrongKey,
        RejectCause::Forged,
        RejectCause::Version,
        RejectCause::UnexpectedPeer,
        RejectCause::HandshakeTimeout,
        RejectCause::ConnectionLimit,
        RejectCause::Plaintext,
        RejectCause::TlsHandshake,
        RejectCause::WrongCa,
        RejectCause::CertExpired,
        RejectCause::NoCertificate,
        RejectCause::IdentityMismatch,
    ];

    /// The snake_case name used in logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectCause::Oversized => "oversized",
            RejectCause::Malformed => "malformed",
            RejectCause::WrongCluster => "wrong_cluster",
            RejectCause::WrongKey => "wrong_key",
            RejectCause::Forged => "forged",
            RejectCause::Version => "version",
            RejectCause::UnexpectedPeer => "unexpected_peer",
            RejectCause::HandshakeTimeout => "handshake_timeout",
            RejectCause::ConnectionLimit => "connection_limit",
            RejectCause::Plaintext => "plaintext",
            RejectCause::TlsHandshake => "tls_handshake",
            RejectCause::WrongCa => "wrong_ca",
            RejectCause::CertExpired => "cert_expired",
            RejectCause::NoCertificate => "no_certificate",
            RejectCause::IdentityMismatch => "identity_mismatch",
        }
    }

    /// A sentence for logs: what the peer did wrong.
    pub fn describe(self) -> &'static str {
        match self {
            RejectCause::Oversized => "a frame announces more bytes than the frame limit",
            RejectCause::Malformed => "the bytes are not a valid ha replication frame",
            RejectCause::WrongCluster => "the peer belongs to another cluster (the name differs)",
            RejectCause::WrongKey => {
                "the peer's cluster key differs, or only one side has a key configured"
            }
            RejectCause::Forged => "a sealed frame failed authentication (tampered or replayed)",
            RejectCause::Version => "the peer speaks another protocol version",
            RejectCause::UnexpectedPeer => "the address answered with another node id",
            RejectCause::HandshakeTimeout => "the handshake did not complete in time",
            RejectCause::ConnectionLimit => "too many inbound connections are open",
            RejectCause::Plaintext => "this node requires TLS and the peer spoke plaintext",
            RejectCause::TlsHandshake => "the TLS handshake failed",
            RejectCause::WrongCa => "the peer's certificate is not signed by a CA this node trusts",
            RejectCause::CertExpired => "the peer's certificate is expired or not yet valid",
            RejectCause::NoCertificate => "the peer presented no client certificate",
            RejectCause::IdentityMismatch => {
                "the peer's certificate does not name the node it claims or was dialled as"
            }
        }
    }

    fn slot(self) -> usize {
        match self {
            RejectCause::Oversized => 0,
            RejectCause::Malformed => 1,
            RejectCause::WrongCluster => 2,
            RejectCause::WrongKey => 3,
            RejectCause::Forged => 4,
            RejectCause::Version => 5,
            RejectCause::UnexpectedPeer => 6,
            RejectCause::HandshakeTimeout => 7,
            RejectCause::ConnectionLimit => 8,
            RejectCause::Plaintext => 9,
            RejectCause::TlsHandshake => 10,
            RejectCause::WrongCa => 11,
            RejectCause::CertExpired => 12,
            RejectCause::NoCertificate => 13,
            RejectCause::IdentityMismatch => 14,
        }
    }
}

impl fmt::Display for RejectCause {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Refusal counters, one per [`RejectCause`], since the transport started.
///
/// ```
/// use ha_replicate::transport::{RejectCause, RejectCounts};
/// let mut counts = RejectCounts::default();
/// counts.record(RejectCause::WrongKey);
/// assert_eq!(counts.get(RejectCause::WrongKey), 1);
/// assert_eq!(counts.total(), 1);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectCounts {
    counts: [u64; RejectCause::COUNT],
}

impl RejectCounts {
    /// Count one refusal.
    pub fn record(&mut self, cause: RejectCause) {
        let slot = &mut self.counts[cause.slot()];
        *slot = slot.saturating_add(1);
    }

    /// Refusals for one cause.
    pub fn get(&self, cause: RejectCause) -> u64 {
        self.counts[cause.slot()]
    }

    /// Refusals for every cause.
    pub fn total(&self) -> u64 {
        self.counts
            .iter()
            .fold(0, |sum, count| sum.saturating_add(*count))
    }

    /// Each cause with its count.
    pub fn iter(&self) -> impl Iterator<Item = (RejectCause, u64)> + '_ {
        RejectCause::ALL
            .into_iter()
            .map(|cause| (cause, self.get(cause)))
    }
}

/// Why a message given to [`TcpTransport::send`](super::TcpTransport::send) was dropped
/// before reaching a socket. The caller's protocol is expected to retry; nothing else changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SendDropCause {
    /// The peer's outbound queue was full (the peer is slow, unreachable or reconnecting).
    QueueFull,
    /// The message encodes to more than a frame may carry; split it (smaller batches). The
    /// protocol retries such a message forever, so the drops are counted here each time but
    /// logged at most once a minute per peer, with the count since the previous line (the
    /// `ha_transport_oversize_dropped_total` metric).
    TooLarge,
    /// The message could not be encoded at all (a serde error in the message type).
    Unencodable,
    /// The transport already has the most peers it allows; forget a peer first.
    PeerLimit,
    /// A message to this node itself found the inbound queue full.
    InboundQueueFull,
    /// The transport is shutting down.
    Stopped,
}

impl SendDropCause {
    /// How many causes there are.
    pub const COUNT: usize = 6;

    /// Every cause, in a fixed order.
    pub const ALL: [SendDropCause; Self::COUNT] = [
        SendDropCause::QueueFull,
        SendDropCause::TooLarge,
        SendDropCause::Unencodable,
        SendDropCause::PeerLimit,
        SendDropCause::InboundQueueFull,
        SendDropCause::Stopped,
    ];

    /// The snake_case name used in logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            SendDropCause::QueueFull => "queue_full",
            SendDropCause::TooLarge => "too_large",
            SendDropCause::Unencodable => "unencodable",
            SendDropCause::PeerLimit => "peer_limit",
            SendDropCause::InboundQueueFull => "inbound_queue_full",
            SendDropCause::Stopped => "stopped",
        }
    }

    fn slot(self) -> usize {
        match self {
            SendDropCause::QueueFull => 0,
            SendDropCause::TooLarge => 1,
            SendDropCause::Unencodable => 2,
            SendDropCause::PeerLimit => 3,
            SendDropCause::InboundQueueFull => 4,
            SendDropCause::Stopped => 5,
        }
    }
}

impl fmt::Display for SendDropCause {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Dropped-message counters, one per [`SendDropCause`], since the transport started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendDropCounts {
    counts: [u64; SendDropCause::COUNT],
}

impl SendDropCounts {
    /// Count one dropped message.
    pub fn record(&mut self, cause: SendDropCause) {
        let slot = &mut self.counts[cause.slot()];
        *slot = slot.saturating_add(1);
    }

    /// Drops for one cause.
    pub fn get(&self, cause: SendDropCause) -> u64 {
        self.counts[cause.slot()]
    }

    /// Drops for every cause.
    pub fn total(&self) -> u64 {
        self.counts
            .iter()
            .fold(0, |sum, count| sum.saturating_add(*count))
    }

    /// Each cause with its count.
    pub fn iter(&self) -> impl Iterator<Item = (SendDropCause, u64)> + '_ {
        SendDropCause::ALL
            .into_iter()
            .map(|cause| (cause, self.get(cause)))
    }
}

/// The live counters every task of one transport bumps.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    rejects: [AtomicU64; RejectCause::COUNT],
    send_drops: [AtomicU64; SendDropCause::COUNT],
}

impl Counters {
    pub(crate) fn reject(&self, cause: RejectCause) {
        // Relaxed: counters are statistics; nothing is ordered by them.
        self.rejects[cause.slot()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn send_drop(&self, cause: SendDropCause) {
        self.send_drops[cause.slot()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn reject_counts(&self) -> RejectCounts {
        let mut counts = RejectCounts::default();
        for cause in RejectCause::ALL {
            counts.counts[cause.slot()] = self.rejects[cause.slot()].load(Ordering::Relaxed);
        }
        counts
    }

    pub(crate) fn send_drop_counts(&self) -> SendDropCounts {
        let mut counts = SendDropCounts::default();
        for cause in SendDropCause::ALL {
            counts.counts[cause.slot()] = self.send_drops[cause.slot()].load(Ordering::Relaxed);
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cause_has_its_own_slot() {
        let counters = Counters::default();
        for (position, cause) in RejectCause::ALL.into_iter().enumerate() {
            assert_eq!(cause.slot(), position);
            counters.reject(cause);
        }
        for (position, cause) in SendDropCause::ALL.into_iter().enumerate() {
            assert_eq!(cause.slot(), position);
            counters.send_drop(cause);
        }
        assert!(counters.reject_counts().iter().all(|(_, count)| count == 1));
        assert!(
            counters
                .send_drop_counts()
                .iter()
                .all(|(_, count)| count == 1)
        );
        assert_eq!(counters.reject_counts().total(), RejectCause::COUNT as u64);
    }
}
