//! Periodic push-pull anti-entropy: two members compare digests of who they know and swap the
//! members one of them lacks.
//!
//! SWIM disseminates each update a bounded number of times (`4 log10(N + 1)` in foca), so in a
//! big cluster a few (observer, member) pairs are never reached by a join's gossip; before this
//! exchange they waited for a probe (one round is N probe periods: minutes at 1,000 members).
//! Like memberlist's push-pull, every member now syncs with one random member per interval,
//! but with digests instead of full state, so a cluster at rest sends one tiny packet:
//!
//! ```text
//! A -> B  Summary(count, hash of A's whole member set)        every interval; at rest: nothing more
//! B -> A  Digest([count, hash] per bucket of B's set)          only when the summaries differ
//! A -> B  Members(A's members in differing buckets, send_back)
//! B -> A  Members(B's members in those buckets)
//! ```
//!
//! A member set is the members foca holds as active (alive or suspect) plus the member itself,
//! each as `(gossip address, incarnation)`. `Members` carries a bucket's active members as
//! alive and its down members as down (a member that missed a down hears of it this way), and
//! they are applied to foca without re-broadcast: the hole was this observer's alone.

use std::net::SocketAddr;

#[cfg(test)]
use foca::State;
use foca::{Identity, Member};
use ha_core::CodecError;
use ha_core::codec::{self, GOSSIP_PACKET_BYTES_MAX};
use serde::{Deserialize, Serialize};

use crate::envelope::ENVELOPE_OVERHEAD_BYTES;
use crate::identity::GossipIdentity;

/// Buckets a member set is split into for a digest. 64 buckets of at most 14 bytes each fit one
/// packet; at 1,000 members a bucket holds about 16 members (one packet of `Members`). foca
/// keeps the digest of its active members in as many buckets (`Foca::active_digest`).
pub const DIGEST_BUCKETS: usize = foca::DIGEST_BUCKETS;

/// Most `Members` packets one side sends in one exchange; the rest waits for the next
/// interval. Bounds what one exchange costs when two views differ a lot (during a join storm).
pub const MEMBERS_PACKETS_PER_EXCHANGE_MAX: usize = 8;

/// Largest encoded anti-entropy message, in bytes: one gossip packet minus the envelope.
pub const ANTI_ENTROPY_BYTES_MAX: usize = GOSSIP_PACKET_BYTES_MAX - ENVELOPE_OVERHEAD_BYTES;

/// The count and the XOR of the element hashes of a set of members (or of one bucket of it).
/// Two sets with equal summaries are taken to be equal (a false match needs a 64-bit hash
/// collision; the next exchange with another member has other odds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetSummary {
    /// How many members.
    pub count: u32,
    /// XOR of [`element_hash`] over the members.
    pub hash: u64,
}

impl SetSummary {
    fn add(&mut self, element: u64) {
        self.count = self.count.saturating_add(1);
        self.hash ^= element;
    }
}

impl From<&foca::BucketDigest> for SetSummary {
    fn from(digest: &foca::BucketDigest) -> Self {
        Self {
            count: digest.count,
            hash: digest.hash,
        }
    }
}

/// One anti-entropy message (the body of a [`crate::PacketKind::AntiEntropy`] packet).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AntiEntropyMessage {
    /// The sender's whole member set, summarized. Answered with a [`Self::Digest`] only when
    /// it differs from the receiver's.
    Summary(SetSummary),
    /// The sender's member set, summarized per bucket ([`DIGEST_BUCKETS`] entries).
    Digest(Vec<SetSummary>),
    /// Members of the sender in some buckets.
    Members {
        /// The members (alive or down, with their SWIM incarnation).
        members: Vec<Member<GossipIdentity>>,
        /// Buckets whose members the receiver should send back (empty: no answer wanted).
        send_back: Vec<u8>,
    },
}

impl AntiEntropyMessage {
    /// Encode within [`ANTI_ENTROPY_BYTES_MAX`].
    ///
    /// # Errors
    /// [`CodecError::TooLarge`] when it does not fit one packet.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode("anti-entropy message", self, ANTI_ENTROPY_BYTES_MAX)
    }

    /// Decode one message.
    ///
    /// # Errors
    /// [`CodecError`] on malformed or oversized input.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        codec::decode("anti-entropy message", bytes, ANTI_ENTROPY_BYTES_MAX)
    }
}

/// FNV-1a, 64 bits: stable across processes, versions and platforms (unlike std's hasher),
/// which digests compared between members need.
fn fnv1a(bytes: &[u8], mut hash: u64) -> u64 {
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn addr_bytes(addr: &SocketAddr) -> ([u8; 18], usize) {
    let mut bytes = [0u8; 18];
    let length = match addr {
        SocketAddr::V4(v4) => {
            bytes[..4].copy_from_slice(&v4.ip().octets());
            bytes[4..6].copy_from_slice(&v4.port().to_be_bytes());
            6
        }
        SocketAddr::V6(v6) => {
            bytes[..16].copy_from_slice(&v6.ip().octets());
            bytes[16..18].copy_from_slice(&v6.port().to_be_bytes());
            18
        }
    };
    (bytes, length)
}

/// The bucket of a member: from its address only, so every incarnation of a member falls in
/// the same bucket.
pub fn bucket_of(addr: &SocketAddr) -> usize {
    let (bytes, length) = addr_bytes(addr);
    // Finalize (xorshift-multiply) so the high bits depend on every byte.
    let mut hash = fnv1a(&bytes[..length], FNV_OFFSET);
    hash ^= hash >> 29;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 32;
    (hash % DIGEST_BUCKETS as u64) as usize
}

/// The hash of one member of a set: its address and incarnation. Computed once per identity
/// (see `identity.rs`), and kept in foca's digest.
pub fn element_hash(addr: &SocketAddr, incarnation: u64) -> u64 {
    let (bytes, length) = addr_bytes(addr);
    let hash = fnv1a(&bytes[..length], FNV_OFFSET);
    let mut hash = fnv1a(&incarnation.to_le_bytes(), hash);
    hash ^= hash >> 31;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 29)
}

/// The whole-set summary and the per-bucket digest of `members`, computed afresh (O(N); the
/// core keeps its own up to date instead, see [`digest_with`]).
pub fn summarize<'a>(
    members: impl Iterator<Item = &'a GossipIdentity>,
) -> (SetSummary, Vec<SetSummary>) {
    let mut whole = SetSummary::default();
    let mut buckets = vec![SetSummary::default(); DIGEST_BUCKETS];
    for identity in members {
        let element = element_hash(&identity.addr, identity.incarnation);
        whole.add(element);
        buckets[bucket_of(&identity.addr)].add(element);
    }
    (whole, buckets)
}

/// The whole-set summary and the per-bucket digest of foca's active members (`active`, kept up
/// to date by foca) plus `own`: what [`summarize`] gives for the same set, in O(buckets).
pub fn digest_with(
    active: &foca::ActiveDigest,
    own: &GossipIdentity,
) -> (SetSummary, Vec<SetSummary>) {
    let mut buckets: Vec<SetSummary> = active.buckets().iter().map(SetSummary::from).collect();
    buckets[bucket_of(&own.addr)].add(element_hash(&own.addr, own.incarnation));
    let whole = buckets
        .iter()
        .fold(SetSummary::default(), |whole, bucket| SetSummary {
            count: whole.count.saturating_add(bucket.count),
            hash: whole.hash ^ bucket.hash,
        });
    (whole, buckets)
}

/// Buckets where `ours` and `theirs` differ. A digest of the wrong length (a peer with another
/// bucket count) differs everywhere it does not match.
pub fn differing_buckets(ours: &[SetSummary], theirs: &[SetSummary]) -> Vec<u8> {
    (0..DIGEST_BUCKETS)
        .filter(|&bucket| ours.get(bucket) != theirs.get(bucket))
        .filter_map(|bucket| u8::try_from(bucket).ok())
        .collect()
}

/// `Members` messages carrying `members` (already filtered to the wanted buckets), at most
/// [`MEMBERS_PACKETS_PER_EXCHANGE_MAX`] of them, each within [`ANTI_ENTROPY_BYTES_MAX`];
/// `send_back` goes in the first one only, so the receiver answers once.
pub fn members_messages(members: Vec<Member<GossipIdentity>>, send_back: Vec<u8>) -> Vec<Vec<u8>> {
    // Sizes are summed per member (postcard encodes a sequence as a length and its items), so
    // packing is linear; the margin covers the enum tag and the two sequence lengths.
    const MARGIN_BYTES: usize = 16;
    let mut packets = Vec::new();
    let mut send_back = Some(send_back);
    let mut pending: Vec<Member<GossipIdentity>> = Vec::new();
    let mut pending_bytes = 0;
    let flush = |pending: &mut Vec<Member<GossipIdentity>>,
                 send_back: &mut Option<Vec<u8>>,
                 packets: &mut Vec<Vec<u8>>| {
        let message = AntiEntropyMessage::Members {
            members: std::mem::take(pending),
            send_back: send_back.take().unwrap_or_default(),
        };
        match message.encode() {
            Ok(bytes) => packets.push(bytes),
            Err(error) => tracing::debug!(%error, "anti-entropy members do not fit"),
        }
    };
    for member in members {
        if packets.len() >= MEMBERS_PACKETS_PER_EXCHANGE_MAX {
            break;
        }
        let Ok(bytes) = codec::encode("anti-entropy member", &member, ANTI_ENTROPY_BYTES_MAX)
        else {
            // One member alone too big (a very long node id): skip it.
            continue;
        };
        let budget = ANTI_ENTROPY_BYTES_MAX - MARGIN_BYTES - send_back.as_ref().map_or(0, Vec::len);
        if !pending.is_empty() && pending_bytes + bytes.len() > budget {
            flush(&mut pending, &mut send_back, &mut packets);
            pending_bytes = 0;
            if packets.len() >= MEMBERS_PACKETS_PER_EXCHANGE_MAX {
                break;
            }
        }
        pending_bytes += bytes.len();
        pending.push(member);
    }
    let wants_answer = send_back
        .as_ref()
        .is_some_and(|buckets| !buckets.is_empty());
    if (!pending.is_empty() || wants_answer) && packets.len() < MEMBERS_PACKETS_PER_EXCHANGE_MAX {
        // The rest, or nothing of ours in those buckets while the peer still has to answer.
        flush(&mut pending, &mut send_back, &mut packets);
    }
    packets
}

/// Whether a received member may be applied: not about the receiver's own address (what the
/// cluster thinks of us reaches us through SWIM, where foca refutes it), unless it is an
/// identity there that beats ours. Whoever holds that one refuses everything we send, so
/// foca must hear of it to rejoin past it (`Identity::renew_past`).
pub fn is_applicable(member: &Member<GossipIdentity>, own: &GossipIdentity) -> bool {
    member.id().addr != own.addr || member.id().win_addr_conflict(own)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ha_core::NodeId;

    #[test]
    fn only_a_winning_identity_at_our_own_address_is_applied() {
        let own = identity(7000, 5);
        let member = |id: GossipIdentity| Member::new(id, 0, State::Down);
        assert!(
            is_applicable(&member(identity(7001, 1)), &own),
            "another address"
        );
        assert!(
            !is_applicable(&member(identity(7000, 4)), &own),
            "an older identity of ours: SWIM's business"
        );
        assert!(
            is_applicable(&member(identity(7000, 6)), &own),
            "an identity that beats ours: foca must hear of it to rejoin past it"
        );
    }

    fn identity(port: u16, incarnation: u64) -> GossipIdentity {
        GossipIdentity::new(
            NodeId::new(format!("n{port}")).unwrap(),
            SocketAddr::from(([127, 0, 0, 1], port)),
            incarnation,
        )
    }

    #[test]
    fn equal_sets_in_any_order_have_equal_digests() {
        let a: Vec<_> = (1..200).map(|port| identity(port, 7)).collect();
        let mut b = a.clone();
        b.reverse();
        assert_eq!(summarize(a.iter()), summarize(b.iter()));
    }

    #[test]
    fn one_missing_member_differs_in_exactly_its_bucket() {
        let a: Vec<_> = (1..200).map(|port| identity(port, 7)).collect();
        let b: Vec<_> = a[1..].to_vec();
        let (whole_a, buckets_a) = summarize(a.iter());
        let (whole_b, buckets_b) = summarize(b.iter());
        assert_ne!(whole_a, whole_b);
        let expected = u8::try_from(bucket_of(&a[0].addr)).unwrap();
        assert_eq!(differing_buckets(&buckets_a, &buckets_b), vec![expected]);
    }

    #[test]
    fn a_new_incarnation_changes_the_digest() {
        let a = [identity(1, 7)];
        let b = [identity(1, 8)];
        assert_ne!(summarize(a.iter()).0, summarize(b.iter()).0);
    }

    #[test]
    fn members_are_split_into_bounded_packets() {
        let members: Vec<_> = (1..2_000)
            .map(|port| Member::new(identity(port, 1_700_000_000_000), 3, State::Alive))
            .collect();
        let packets = members_messages(members, vec![1, 2]);
        assert_eq!(packets.len(), MEMBERS_PACKETS_PER_EXCHANGE_MAX);
        let decoded: Vec<_> = packets
            .iter()
            .map(|bytes| AntiEntropyMessage::decode(bytes).unwrap())
            .collect();
        for (index, message) in decoded.iter().enumerate() {
            let AntiEntropyMessage::Members { members, send_back } = message else {
                panic!("not a Members message");
            };
            assert!(members.len() > 10, "packets are filled");
            assert_eq!(
                send_back.is_empty(),
                index > 0,
                "send_back only in the first"
            );
        }
    }

    #[test]
    fn nothing_to_send_still_asks_for_the_peers_members() {
        let packets = members_messages(Vec::new(), vec![5]);
        assert_eq!(
            packets
                .iter()
                .map(|bytes| AntiEntropyMessage::decode(bytes).unwrap())
                .collect::<Vec<_>>(),
            vec![AntiEntropyMessage::Members {
                members: Vec::new(),
                send_back: vec![5]
            }]
        );
        assert!(members_messages(Vec::new(), Vec::new()).is_empty());
    }

    #[test]
    fn a_full_digest_fits_one_packet() {
        let digest = AntiEntropyMessage::Digest(vec![
            SetSummary {
                count: u32::MAX,
                hash: u64::MAX
            };
            DIGEST_BUCKETS
        ]);
        assert!(digest.encode().is_ok());
    }
}
