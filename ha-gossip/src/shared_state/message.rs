//! The replicator's wire format: one postcard-encoded [`StateMessage`] per state packet,
//! after a protocol version byte.
//!
//! ```text
//! 0         1
//! | version | postcard(StateMessage)
//! ```
//!
//! Decoding never panics and never allocates more than the packet's size allows: the payload
//! is refused above [`PAYLOAD_BYTES_MAX`], postcard checks every length against the bytes that
//! remain, and the decoded message is checked for the shapes the replicator relies on (a
//! digest of exactly [`DIGEST_BUCKETS`] hashes, bucket numbers below it, no empty batches).

use serde::{Deserialize, Serialize};

use super::{BUCKETS, Delta, StateError};

/// The protocol version this build speaks; a packet with another version is refused.
pub const STATE_PROTOCOL_VERSION: u8 = 1;

/// Buckets of a map digest (the map's `Digest` has exactly this many hashes).
pub const DIGEST_BUCKETS: usize = BUCKETS;

/// Largest payload [`StateMessage::decode`] accepts and the replicator ever sends, in bytes:
/// under a UDP datagram's 65,507 with room for the gossip envelope. Batches stay under
/// `packet_bytes_max`; only a single entry larger than that (a counter with hundreds of
/// writers) goes alone in a packet up to this size, so the driver's receive buffer must hold
/// `PAYLOAD_BYTES_MAX + ENVELOPE_OVERHEAD_BYTES`.
pub const PAYLOAD_BYTES_MAX: usize = 65_000;

/// One state packet.
///
/// An anti-entropy exchange between `A` (who starts it) and `B`:
/// ```text
/// A ── Probe { root } ──────────────────▶ B   equal roots: B stays silent (at rest, 1 small packet)
/// A ◀──────────── Digest { buckets } ─── B   B's 256 bucket hashes
/// A ── Pull { buckets } + Repair {..} ──▶ B   A names the differing buckets, sends its entries there
/// A ◀──────────────────── Repair {..} ── B   B answers with its entries of those buckets
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StateMessage {
    /// New deltas pushed by their writer or relayed: the receiver relays those that changed
    /// its map to `fanout` random peers with `hops_left - 1`, while `hops_left > 0`.
    Push {
        /// Relays still allowed after this one.
        hops_left: u8,
        /// Whole entries (a delta is a key's entry; merging is a join).
        deltas: Vec<Delta>,
    },
    /// Entries sent by anti-entropy. Those that change the receiver's map are relayed like a
    /// fresh write, so what one member repairs spreads epidemically.
    Repair {
        /// Whole entries of the buckets the two digests disagreed on.
        deltas: Vec<Delta>,
    },
    /// Start of an anti-entropy round: a hash of the sender's whole digest.
    Probe {
        /// [`digest_root`] of the sender's bucket hashes.
        root: u64,
    },
    /// Answer to a [`StateMessage::Probe`] whose root differed: the sender's bucket hashes.
    Digest {
        /// Exactly [`DIGEST_BUCKETS`] hashes.
        buckets: Vec<u64>,
    },
    /// Ask the receiver for its entries of these buckets (the digests differed there).
    Pull {
        /// Bucket numbers, each below [`DIGEST_BUCKETS`], at most [`DIGEST_BUCKETS`] of them.
        buckets: Vec<u16>,
    },
}

impl StateMessage {
    /// The packet payload: the version byte, then postcard.
    pub fn encode(&self) -> Vec<u8> {
        let bytes = vec![STATE_PROTOCOL_VERSION];
        // Serialising these plain data types into a Vec cannot fail: postcard fails only on
        // a full fixed buffer or a type serde cannot describe.
        match postcard::to_extend(self, bytes) {
            Ok(encoded) => encoded,
            Err(_) => vec![STATE_PROTOCOL_VERSION],
        }
    }

    /// Read a payload received from a peer.
    ///
    /// # Errors
    /// [`StateError::InvalidEntry`] when the payload is too large, has another protocol version,
    /// does not decode, has trailing bytes or breaks a shape rule. Nothing changed.
    pub fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        if bytes.len() > PAYLOAD_BYTES_MAX {
            return Err(malformed("state packet above PAYLOAD_BYTES_MAX"));
        }
        let Some((&version, body)) = bytes.split_first() else {
            return Err(malformed("empty state packet"));
        };
        if version != STATE_PROTOCOL_VERSION {
            return Err(malformed("state packet of another protocol version"));
        }
        let (message, rest) = postcard::take_from_bytes::<StateMessage>(body)
            .map_err(|_| malformed("state packet does not decode"))?;
        if !rest.is_empty() {
            return Err(malformed("trailing bytes after a state message"));
        }
        message.check()?;
        Ok(message)
    }

    fn check(&self) -> Result<(), StateError> {
        match self {
            StateMessage::Push { deltas, .. } | StateMessage::Repair { deltas } => {
                if deltas.is_empty() {
                    return Err(malformed("a batch without deltas"));
                }
            }
            StateMessage::Probe { .. } => {}
            StateMessage::Digest { buckets } => {
                if buckets.len() != DIGEST_BUCKETS {
                    return Err(malformed("a digest without exactly DIGEST_BUCKETS hashes"));
                }
            }
            StateMessage::Pull { buckets } => {
                if buckets.is_empty() || buckets.len() > DIGEST_BUCKETS {
                    return Err(malformed("a pull of no buckets or too many"));
                }
                if buckets
                    .iter()
                    .any(|bucket| usize::from(*bucket) >= DIGEST_BUCKETS)
                {
                    return Err(malformed("a pull of a bucket that does not exist"));
                }
            }
        }
        Ok(())
    }
}

/// A 64-bit hash of a digest's bucket hashes (position-dependent), so two members compare
/// whole maps with one small packet. Stable across builds and platforms.
pub fn digest_root(buckets: &[u64]) -> u64 {
    // splitmix64 finaliser over (position, hash) pairs, folded: cheap, well mixed, and a
    // change in any bucket changes the root with probability 1 - 2^-64.
    let mut root: u64 = 0x9E37_79B9_7F4A_7C15;
    for (position, hash) in buckets.iter().enumerate() {
        let mut mixed = hash ^ (position as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9) ^ root;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        root = mixed ^ (mixed >> 31);
    }
    root
}

/// A malformed packet is reported as [`StateError::InvalidEntry`]: a peer sent bytes that
/// break the rules; it is dropped and counted, and nothing changed.
fn malformed(reason: &'static str) -> StateError {
    StateError::InvalidEntry { reason }
}
