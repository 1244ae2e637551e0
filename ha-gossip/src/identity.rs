//! Who a member is on the wire.

use std::net::SocketAddr;

use ha_core::NodeId;
use serde::{Deserialize, Serialize};

/// A member's gossip identity: its node id, its gossip address and its incarnation.
///
/// The address is foca's notion of "the same member": a node that restarts on the same address
/// with a higher incarnation replaces its old identity at once (foca's `Rename`), instead of
/// waiting for the old one to be forgotten. When the cluster wrongly declares a live node down,
/// foca renews the identity with `incarnation + 1` and the node rejoins by itself.
///
/// The incarnation here counts process lifetimes and renewals; it is separate from SWIM's
/// small per-suspicion counter that foca keeps internally.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GossipIdentity {
    /// The operator-chosen node id.
    pub node_id: NodeId,
    /// Where the member receives gossip.
    pub addr: SocketAddr,
    /// Higher wins when two identities share an address.
    pub incarnation: u64,
}

impl GossipIdentity {
    /// An identity that stands for "whoever listens at `addr`", used to announce to a seed
    /// whose node id is not known yet. foca accepts an announce addressed to any identity with
    /// the receiver's address.
    pub fn seed(addr: SocketAddr) -> Self {
        Self {
            node_id: NodeId::new("seed").expect("\"seed\" is a valid node id"),
            addr,
            incarnation: 0,
        }
    }
}

impl foca::Identity for GossipIdentity {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Self {
            node_id: self.node_id.clone(),
            addr: self.addr,
            incarnation: self.incarnation.wrapping_add(1),
        })
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
        let old = GossipIdentity {
            node_id: NodeId::new("n1").unwrap(),
            addr: "127.0.0.1:1".parse().unwrap(),
            incarnation: 7,
        };
        let new = old.renew().unwrap();
        assert_eq!(new.incarnation, 8);
        assert_eq!(new.addr(), old.addr());
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
    }
}
