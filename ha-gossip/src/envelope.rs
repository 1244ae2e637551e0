//! The outer layer of every gossip packet: cluster name check and optional encryption.
//!
//! ```text
//! 0      1        2      3          7
//! | 0xA7 | version | flags | cluster tag (crc32c of the name, BE) | body
//! body (plain)  = kind (1) | payload
//! body (sealed) = keyring seal of the plain body, associated data = header + cluster name
//! ```
//!
//! The cluster tag lets a node drop packets from another cluster cheaply even without a key;
//! with a key, the whole cluster name is authenticated as associated data.

use ha_core::codec::GOSSIP_PACKET_BYTES_MAX;
use ha_core::keyring::{Keyring, NONCE_BYTES, OpenError, SEAL_OVERHEAD_BYTES};

use crate::drops::DropCause;
use crate::shared_state::PAYLOAD_BYTES_MAX;

const MAGIC: u8 = 0xA7;
const PROTOCOL_VERSION: u8 = 1;
const FLAG_SEALED: u8 = 0b0000_0001;
const HEADER_BYTES: usize = 7;

/// Bytes the envelope adds around a payload in the worst case (sealed).
pub const ENVELOPE_OVERHEAD_BYTES: usize = HEADER_BYTES + SEAL_OVERHEAD_BYTES + 1;

/// The largest datagram a node accepts: a shared state packet (payload up to
/// [`PAYLOAD_BYTES_MAX`]: batches stay under 8 KiB, only one entry wider than that goes alone
/// in a larger packet) in its envelope. SWIM and metadata packets stay within
/// [`GOSSIP_PACKET_BYTES_MAX`]; a larger one of those kinds is dropped as oversized.
pub const DATAGRAM_BYTES_MAX: usize = PAYLOAD_BYTES_MAX + ENVELOPE_OVERHEAD_BYTES;

/// What a packet carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketKind {
    /// A SWIM message for foca.
    Swim,
    /// A node's metadata sent directly to one member.
    Metadata,
    /// A message of the shared map's replicator (issue 15), up to [`PAYLOAD_BYTES_MAX`]
    /// bytes.
    State,
    /// A push-pull anti-entropy message ([`crate::anti_entropy`]). Members without it drop
    /// the packet as malformed, which costs only the exchange.
    AntiEntropy,
    /// A suspicion check or confirmation ([`crate::suspicion`]). Members without it drop the
    /// packet; suspicions then run their full length, as before.
    Suspicion,
}

impl PacketKind {
    fn to_byte(self) -> u8 {
        match self {
            PacketKind::Swim => 0,
            PacketKind::Metadata => 1,
            PacketKind::State => 2,
            PacketKind::AntiEntropy => 3,
            PacketKind::Suspicion => 4,
        }
    }

    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(PacketKind::Swim),
            1 => Some(PacketKind::Metadata),
            2 => Some(PacketKind::State),
            3 => Some(PacketKind::AntiEntropy),
            4 => Some(PacketKind::Suspicion),
            _ => None,
        }
    }
}

/// Wraps and unwraps packets for one cluster name and (optional) keyring.
#[derive(Debug)]
pub struct Envelope {
    cluster_name: String,
    cluster_tag: [u8; 4],
    keyring: Option<Keyring>,
}

impl Envelope {
    /// An envelope for `cluster_name`, sealing with `keyring` when given.
    pub fn new(cluster_name: &str, keyring: Option<Keyring>) -> Self {
        Self {
            cluster_name: cluster_name.to_string(),
            cluster_tag: crc32c::crc32c(cluster_name.as_bytes()).to_be_bytes(),
            keyring,
        }
    }

    fn header(&self, sealed: bool) -> [u8; HEADER_BYTES] {
        let flags = if sealed { FLAG_SEALED } else { 0 };
        let tag = self.cluster_tag;
        [
            MAGIC,
            PROTOCOL_VERSION,
            flags,
            tag[0],
            tag[1],
            tag[2],
            tag[3],
        ]
    }

    fn associated_data(&self, header: &[u8]) -> Vec<u8> {
        let mut associated = Vec::with_capacity(header.len() + self.cluster_name.len());
        associated.extend_from_slice(header);
        associated.extend_from_slice(self.cluster_name.as_bytes());
        associated
    }

    /// Wrap `payload`. `nonce` must be fresh random bytes (used only when sealing).
    pub fn wrap(&self, kind: PacketKind, payload: &[u8], nonce: [u8; NONCE_BYTES]) -> Vec<u8> {
        let header = self.header(self.keyring.is_some());
        let mut packet = Vec::with_capacity(ENVELOPE_OVERHEAD_BYTES + payload.len());
        packet.extend_from_slice(&header);
        match &self.keyring {
            None => {
                packet.push(kind.to_byte());
                packet.extend_from_slice(payload);
            }
            Some(keyring) => {
                let mut body = Vec::with_capacity(1 + payload.len());
                body.push(kind.to_byte());
                body.extend_from_slice(payload);
                let sealed = keyring.seal(nonce, &self.associated_data(&header), &body);
                packet.extend_from_slice(&sealed);
            }
        }
        packet
    }

    /// Unwrap a received packet into its kind and payload.
    ///
    /// # Errors
    /// The [`DropCause`] to count; the packet is dropped.
    pub fn unwrap(&self, packet: &[u8]) -> Result<(PacketKind, Vec<u8>), DropCause> {
        if packet.len() > DATAGRAM_BYTES_MAX {
            return Err(DropCause::Oversized);
        }
        if packet.len() < HEADER_BYTES + 1
            || packet[0] != MAGIC
            || packet[1] != PROTOCOL_VERSION
            || packet[2] & !FLAG_SEALED != 0
        {
            return Err(DropCause::Malformed);
        }
        let (header, body) = packet.split_at(HEADER_BYTES);
        if header[3..7] != self.cluster_tag {
            return Err(DropCause::WrongCluster);
        }
        let sealed = header[2] & FLAG_SEALED != 0;
        let body =
            match (&self.keyring, sealed) {
                (None, false) => body.to_vec(),
                (Some(keyring), true) => keyring
                    .open(&self.associated_data(header), body)
                    .map_err(|error| match error {
                        OpenError::UnknownKey { .. } => DropCause::WrongKey,
                        OpenError::TooShort => DropCause::Malformed,
                        _ => DropCause::Forged,
                    })?,
                // A plain packet where we require a seal, or a sealed one we cannot open.
                _ => return Err(DropCause::WrongKey),
            };
        let (&kind, payload) = body.split_first().ok_or(DropCause::Malformed)?;
        let kind = PacketKind::from_byte(kind).ok_or(DropCause::Malformed)?;
        // Only state packets may be larger than a SWIM datagram.
        if kind != PacketKind::State && packet.len() > GOSSIP_PACKET_BYTES_MAX {
            return Err(DropCause::Oversized);
        }
        Ok((kind, payload.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ha_core::keyring::ClusterKey;
    use proptest::prelude::*;

    fn keyed(name: &str, key: u8) -> Envelope {
        Envelope::new(
            name,
            Some(Keyring::new(vec![ClusterKey::from_bytes([key; 32])]).unwrap()),
        )
    }

    #[test]
    fn plain_and_sealed_round_trip() {
        for envelope in [Envelope::new("c", None), keyed("c", 1)] {
            let packet = envelope.wrap(PacketKind::Metadata, b"abc", [5; 24]);
            assert_eq!(
                envelope.unwrap(&packet).unwrap(),
                (PacketKind::Metadata, b"abc".to_vec())
            );
        }
    }

    #[test]
    fn each_mismatch_has_its_cause() {
        let plain = Envelope::new("c", None);
        let packet = plain.wrap(PacketKind::Swim, b"x", [0; 24]);
        assert_eq!(
            Envelope::new("other", None).unwrap(&packet),
            Err(DropCause::WrongCluster)
        );
        assert_eq!(keyed("c", 1).unwrap(&packet), Err(DropCause::WrongKey));
        let sealed = keyed("c", 1).wrap(PacketKind::Swim, b"x", [0; 24]);
        assert_eq!(keyed("c", 2).unwrap(&sealed), Err(DropCause::WrongKey));
        assert_eq!(plain.unwrap(&sealed), Err(DropCause::WrongKey));
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 0x40;
        assert_eq!(keyed("c", 1).unwrap(&tampered), Err(DropCause::Forged));
        assert_eq!(
            plain.unwrap(&vec![MAGIC; DATAGRAM_BYTES_MAX + 1]),
            Err(DropCause::Oversized)
        );
        // A SWIM or metadata packet larger than a SWIM datagram is oversized even though a
        // state packet of that size would pass.
        for kind in [PacketKind::Swim, PacketKind::Metadata] {
            let big = plain.wrap(kind, &[0; GOSSIP_PACKET_BYTES_MAX], [0; 24]);
            assert_eq!(plain.unwrap(&big), Err(DropCause::Oversized));
        }
        let state = vec![3; PAYLOAD_BYTES_MAX];
        for envelope in [Envelope::new("c", None), keyed("c", 1)] {
            let packet = envelope.wrap(PacketKind::State, &state, [1; 24]);
            assert!(packet.len() <= DATAGRAM_BYTES_MAX);
            assert_eq!(
                envelope.unwrap(&packet),
                Ok((PacketKind::State, state.clone()))
            );
        }
        assert_eq!(plain.unwrap(b"GET / HTTP/1.1"), Err(DropCause::Malformed));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
            let _ = Envelope::new("c", None).unwrap(&bytes);
            let _ = keyed("c", 1).unwrap(&bytes);
        }

        #[test]
        fn flipped_bits_in_sealed_packets_are_detected(position in 0usize..60, bit in 0u8..8) {
            let envelope = keyed("c", 1);
            let mut packet = envelope.wrap(PacketKind::Swim, b"some swim payload", [9; 24]);
            let position = position % packet.len();
            packet[position] ^= 1 << bit;
            prop_assert!(envelope.unwrap(&packet).is_err());
        }
    }
}
