//! What the membership layer tells the rest of the node.
//!
//! `ha-gossip` produces these; `ha-replicate` consumes them without depending on gossip, so the
//! simulator can feed it membership changes directly.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::health::HealthStatus;
use crate::ids::{NodeId, Priority};
use crate::node_state::NodeState;

/// What a node tells the cluster about itself. Disseminated by gossip; the latest `sequence`
/// wins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMetadata {
    /// Leadership priority; 0 never leads.
    pub priority: Priority,
    /// Where the replication RPC listens (TCP). Usually the gossip address.
    pub rpc_addr: SocketAddr,
    /// Where the admin HTTP API listens, when it does.
    pub http_addr: Option<SocketAddr>,
    /// The node's own aggregated health.
    pub health: HealthStatus,
    /// The node's lifecycle state as it sees itself.
    pub state: NodeState,
    /// Whether the node is (or wants to be) a voter rather than a learner.
    pub voter: bool,
    /// Whether the node is a witness (issue 15): it votes but holds no state machine and
    /// never leads. The replicated configuration lists a witness among the voters; this
    /// flag is how the other nodes tell it apart (`/v1/members` lists it under
    /// `witnesses`, `/v1/cluster` shows role `witness`).
    pub witness: bool,
    /// The software version, for rolling-upgrade visibility.
    pub version: String,
    /// Bumped on every change by the node itself; receivers keep the highest.
    pub sequence: u64,
}

impl NodeMetadata {
    /// Metadata for a fresh node: joining, health unknown, sequence 0.
    pub fn new(priority: Priority, rpc_addr: SocketAddr) -> Self {
        Self {
            priority,
            rpc_addr,
            http_addr: None,
            health: HealthStatus::Unknown,
            state: NodeState::Joining,
            voter: true,
            witness: false,
            version: env!("CARGO_PKG_VERSION").to_string(),
            sequence: 0,
        }
    }
}

/// A member as the local node currently sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// The member's node id.
    pub id: NodeId,
    /// Its gossip address.
    pub gossip_addr: SocketAddr,
    /// Distinguishes restarts of the same node: a restarted node comes back with a higher one.
    pub incarnation: u64,
    /// Its latest metadata, once received.
    pub metadata: Option<NodeMetadata>,
    /// Whether the failure detector currently considers it reachable.
    pub reachable: bool,
}

impl MemberInfo {
    /// The state to show for this member: `Unreachable` when the failure detector says so,
    /// else what the member advertises (`Joining` until its metadata arrives).
    pub fn state(&self) -> NodeState {
        if !self.reachable {
            return NodeState::Unreachable;
        }
        self.metadata
            .as_ref()
            .map(|metadata| metadata.state)
            .unwrap_or(NodeState::Joining)
    }
}

/// A change in cluster membership, as seen by the local node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberEvent {
    /// A member became reachable (joined, or came back).
    Up(MemberInfo),
    /// A member's metadata changed (priority, health, state, addresses).
    Updated(MemberInfo),
    /// A member announced a graceful leave (state LEAVING) and is gone.
    Left(MemberInfo),
    /// The failure detector declared a member down (UNREACHABLE).
    Unreachable(MemberInfo),
    /// The local node is known by at least one other member.
    SelfActive,
    /// The local node knows no reachable member.
    SelfIdle,
    /// The cluster declared the local node down; it rejoins under a new incarnation.
    SelfRejoined {
        /// The new incarnation.
        incarnation: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_overrides_advertised_state() {
        let addr: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        let mut metadata = NodeMetadata::new(Priority(5), addr);
        metadata.state = NodeState::Leader;
        let mut member = MemberInfo {
            id: NodeId::new("n1").unwrap(),
            gossip_addr: addr,
            incarnation: 1,
            metadata: Some(metadata),
            reachable: true,
        };
        assert_eq!(member.state(), NodeState::Leader);
        member.reachable = false;
        assert_eq!(member.state(), NodeState::Unreachable);
        member.reachable = true;
        member.metadata = None;
        assert_eq!(member.state(), NodeState::Joining);
    }
}
