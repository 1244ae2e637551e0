//! Who a member is on the wire.

use std::fmt;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;

use ha_core::NodeId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::intern::Interner;

/// Every identity in this process, shared (see [`crate::intern`]).
static IDENTITIES: Interner<IdentityFields> = Interner::new();

/// A member's gossip identity: its node id, its gossip address and its incarnation.
///
/// The address is foca's notion of "the same member": a node that restarts on the same address
/// with a higher incarnation replaces its old identity at once (foca's `Rename`), instead of
/// waiting for the old one to be forgotten. When the cluster wrongly declares a live node down,
/// foca renews the identity with `incarnation + 1` and the node rejoins by itself.
///
/// The incarnation here counts process lifetimes and renewals; it is separate from SWIM's
/// small per-suspicion counter that foca keeps internally.
///
/// One pointer wide: equal identities share one immutable [`IdentityFields`] (every member
/// keeps one per other member, in foca's list and in the member table). Read the fields
/// through `Deref` (`identity.addr`); build one with [`GossipIdentity::new`]. On the wire it
/// is exactly its fields, as before.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct GossipIdentity(Arc<IdentityFields>);

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
        Self(IDENTITIES.intern(fields))
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
        &self.0
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
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for GossipIdentity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        IdentityFields::deserialize(deserializer).map(Self::from_fields)
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
        assert!(
            Arc::ptr_eq(&first.0, &second.0),
            "one allocation for equal identities"
        );
        assert_eq!(
            std::mem::size_of::<GossipIdentity>(),
            std::mem::size_of::<usize>()
        );
    }
}
