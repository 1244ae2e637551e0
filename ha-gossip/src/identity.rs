//! Who a member is on the wire.

use std::borrow::Cow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;

use foca::DigestElement;
use ha_core::NodeId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::anti_entropy;
use crate::intern::Interner;

/// Every identity in this process, shared (see [`crate::intern`]).
static IDENTITIES: Interner<Interned> = Interner::new();

/// An identity's fields, and its place in anti-entropy digests computed once from them: a
/// digest is kept as members come and go (foca's `active_digest`), and hashing the address
/// and incarnation again at every change cost more than reading them here.
///
/// Equality and hashing are the fields' alone (the element is a function of them), so a
/// borrowed [`FieldsRef`] finds an interned identity without building one.
#[derive(Debug)]
struct Interned {
    fields: IdentityFields,
    digest: DigestElement,
}

impl Interned {
    fn new(fields: IdentityFields) -> Self {
        let digest = DigestElement {
            bucket: anti_entropy::bucket_of(&fields.addr),
            hash: anti_entropy::element_hash(&fields.addr, fields.incarnation),
        };
        Self { fields, digest }
    }
}

impl PartialEq for Interned {
    fn eq(&self, other: &Self) -> bool {
        self.fields == other.fields
    }
}

impl Eq for Interned {}

impl Hash for Interned {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.fields.hash(state);
    }
}

/// The fields of an identity as they are decoded, borrowing the node id from the packet.
///
/// Its `Hash` must equal [`IdentityFields`]'s: the derived impls hash the same fields in the
/// same order (`NodeId` hashes as its `String`, which hashes as its `str`).
#[derive(Hash)]
struct FieldsRef<'a> {
    node_id: &'a str,
    addr: SocketAddr,
    incarnation: u64,
}

impl hashbrown::Equivalent<Arc<Interned>> for FieldsRef<'_> {
    fn equivalent(&self, key: &Arc<Interned>) -> bool {
        let fields = &key.fields;
        fields.addr == self.addr
            && fields.incarnation == self.incarnation
            && fields.node_id.as_str() == self.node_id
    }
}

/// [`IdentityFields`] on the wire (the same encoding), with the node id borrowed when the
/// input allows it: decoding an identity already known (nearly every one, during a join's
/// 10^8 updates in a 10,000-member simulation) then allocates nothing.
#[derive(Deserialize)]
struct WireFields<'a> {
    #[serde(borrow)]
    node_id: Cow<'a, str>,
    addr: SocketAddr,
    incarnation: u64,
}

/// A member's gossip identity: its node id, its gossip address and its incarnation.
///
/// The address is foca's notion of "the same member": a node that restarts on the same address
/// with a higher incarnation replaces its old identity at once (foca's `Rename`), instead of
/// waiting for the old one to be forgotten. When the cluster wrongly declares a live node down,
/// foca renews the identity with `incarnation + 1` and the node rejoins by itself; when it
/// hears of an identity at its own address that beats its own, it jumps past that one.
///
/// The incarnation here counts process lifetimes and renewals; it is separate from SWIM's
/// small per-suspicion counter that foca keeps internally.
///
/// One pointer wide: equal identities share one immutable [`IdentityFields`] (every member
/// keeps one per other member, in foca's list and in the member table). Read the fields
/// through `Deref` (`identity.addr`); build one with [`GossipIdentity::new`]. On the wire it
/// is exactly its fields, as before.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct GossipIdentity(Arc<Interned>);

/// The fields of a [`GossipIdentity`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdentityFields {
    /// The operator-chosen node id.
    pub node_id: NodeId,
    /// Where the member receives gossip.
    pub addr: SocketAddr,
    /// Higher wins when two identities share an address.
    pub incarnation: u64,
}

impl GossipIdentity {
    /// The identity of `node_id` at `addr` in its `incarnation`.
    pub fn new(node_id: NodeId, addr: SocketAddr, incarnation: u64) -> Self {
        Self::from_fields(IdentityFields {
            node_id,
            addr,
            incarnation,
        })
    }

    fn from_fields(fields: IdentityFields) -> Self {
        Self(IDENTITIES.intern(Interned::new(fields)))
    }

    /// The anti-entropy digest bucket of this identity's address (computed once).
    pub(crate) fn digest_bucket(&self) -> usize {
        self.0.digest.bucket
    }

    /// An identity that stands for "whoever listens at `addr`", used to announce to a seed
    /// whose node id is not known yet. foca accepts an announce addressed to any identity with
    /// the receiver's address.
    pub fn seed(addr: SocketAddr) -> Self {
        Self::new(
            NodeId::new("seed").expect("\"seed\" is a valid node id"),
            addr,
            0,
        )
    }
}

impl Deref for GossipIdentity {
    type Target = IdentityFields;

    fn deref(&self) -> &IdentityFields {
        &self.0.fields
    }
}

impl fmt::Debug for GossipIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GossipIdentity")
            .field("node_id", &self.node_id)
            .field("addr", &self.addr)
            .field("incarnation", &self.incarnation)
            .finish()
    }
}

impl Serialize for GossipIdentity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.fields.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for GossipIdentity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = WireFields::deserialize(deserializer)?;
        let key = FieldsRef {
            node_id: &wire.node_id,
            addr: wire.addr,
            incarnation: wire.incarnation,
        };
        // The node id is checked (as `NodeId`'s own `Deserialize` does) only when it is new:
        // an interned one was checked when it was first made.
        IDENTITIES
            .intern_borrowed(&key, || {
                NodeId::new(wire.node_id.as_ref()).map(|node_id| {
                    Interned::new(IdentityFields {
                        node_id,
                        addr: wire.addr,
                        incarnation: wire.incarnation,
                    })
                })
            })
            .map(Self)
            .map_err(serde::de::Error::custom)
    }
}

impl foca::Identity for GossipIdentity {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Self::new(
            self.node_id.clone(),
            self.addr,
            self.incarnation.wrapping_add(1),
        ))
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.incarnation > adversary.incarnation
    }

    /// Jump past an identity at this address that beats this one: `None` only when it holds
    /// the last incarnation there is (then only its removal, `remove_down_after`, lets this
    /// member back).
    fn renew_past(&self, winner: &Self) -> Option<Self> {
        let incarnation = self.incarnation.max(winner.incarnation).checked_add(1)?;
        Some(Self::new(self.node_id.clone(), self.addr, incarnation))
    }

    fn digest_element(&self) -> Option<DigestElement> {
        Some(self.0.digest)
    }

    /// Equal identities share one allocation (interned), so the same pointer is the same
    /// identity; different pointers may still be equal only in theory (never while both
    /// are held), and foca then compares addresses.
    fn is_certainly(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity;

    #[test]
    fn renewed_identity_wins_the_address() {
        let old = GossipIdentity::new(
            NodeId::new("n1").unwrap(),
            "127.0.0.1:1".parse().unwrap(),
            7,
        );
        let new = old.renew().unwrap();
        assert_eq!(new.incarnation, 8);
        assert_eq!(new.addr(), old.addr());
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
    }

    #[test]
    fn decoded_identities_are_shared_and_encode_as_their_fields() {
        let identity = GossipIdentity::new(
            NodeId::new("shared-1").unwrap(),
            "127.0.0.1:9".parse().unwrap(),
            3,
        );
        let bytes = postcard::to_allocvec(&identity).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&*identity).unwrap());
        let first: GossipIdentity = postcard::from_bytes(&bytes).unwrap();
        let second: GossipIdentity = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(first, identity);
        // Found through the borrowed fields: their hash agrees with the owned fields'.
        assert!(
            Arc::ptr_eq(&first.0, &identity.0) && Arc::ptr_eq(&first.0, &second.0),
            "one allocation for equal identities"
        );
        assert_eq!(
            std::mem::size_of::<GossipIdentity>(),
            std::mem::size_of::<usize>()
        );
    }

    #[test]
    fn a_decoded_node_id_is_still_checked() {
        // The same encoding as `IdentityFields`, with a node id `NodeId::new` refuses.
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let bytes = postcard::to_allocvec(&("bad id", addr, 3u64)).unwrap();
        assert!(postcard::from_bytes::<GossipIdentity>(&bytes).is_err());
        let good = postcard::to_allocvec(&("good-id", addr, 3u64)).unwrap();
        let decoded: GossipIdentity = postcard::from_bytes(&good).unwrap();
        assert_eq!(decoded.node_id.as_str(), "good-id");
    }

    #[test]
    fn the_digest_element_is_the_anti_entropy_hash() {
        let identity = GossipIdentity::new(
            NodeId::new("d1").unwrap(),
            "127.0.0.1:11".parse().unwrap(),
            5,
        );
        let element = identity.digest_element().unwrap();
        assert_eq!(element.bucket, anti_entropy::bucket_of(&identity.addr));
        assert_eq!(
            element.hash,
            anti_entropy::element_hash(&identity.addr, identity.incarnation)
        );
    }
}
