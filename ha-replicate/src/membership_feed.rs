//! Gossip's view of the cluster, turned into what replication needs: peers' RPC addresses and
//! metadata, and when to found a new cluster (`bootstrap_expect`).
//!
//! It consumes [`MemberEvent`]s, an `ha-core` type, so replication still does not depend on
//! gossip: the facade forwards events, and tests can feed them directly.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use ha_core::{MemberEvent, MemberInfo, Millis, NodeId, NodeState};

use crate::engine::PeerInfo;
use crate::membership::Membership;

/// One peer's replication-relevant facts, derived from a member event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerUpdate {
    /// The peer.
    pub node: NodeId,
    /// Its RPC address, once its metadata is known.
    pub rpc_addr: Option<SocketAddr>,
    /// What the engine should know about it.
    pub info: PeerInfo,
}

#[derive(Clone, Debug)]
struct KnownPeer {
    info: MemberInfo,
    unreachable_since: Option<Millis>,
}

/// Tracks members from gossip events for one node.
///
/// ```
/// use ha_core::{MemberEvent, MemberInfo, Millis, NodeId, NodeMetadata, NodeState, Priority};
/// use ha_replicate::membership_feed::MembershipFeed;
///
/// let me = NodeId::new("n1").unwrap();
/// let mut feed = MembershipFeed::new(me.clone(), true, 2);
/// let addr = "127.0.0.1:7102".parse().unwrap();
/// let mut metadata = NodeMetadata::new(Priority(5), addr);
/// metadata.state = NodeState::Active;
/// let member = MemberInfo {
///     id: NodeId::new("n2").unwrap(),
///     gossip_addr: addr,
///     incarnation: 1,
///     metadata: Some(metadata),
///     reachable: true,
/// };
/// let update = feed.on_event(Millis(0), &MemberEvent::Up(member)).unwrap();
/// assert_eq!(update.info.priority, Priority(5));
/// let voters = feed.bootstrap_voters().unwrap();
/// assert_eq!(voters.voters.len(), 2);
/// ```
#[derive(Clone, Debug)]
pub struct MembershipFeed {
    node_id: NodeId,
    voter: bool,
    bootstrap_expect: usize,
    peers: BTreeMap<NodeId, KnownPeer>,
}

impl MembershipFeed {
    /// A feed for `node_id`, which wants to vote when `voter`, in a cluster founded by
    /// `bootstrap_expect` voters.
    pub fn new(node_id: NodeId, voter: bool, bootstrap_expect: usize) -> Self {
        Self {
            node_id,
            voter,
            bootstrap_expect,
            peers: BTreeMap::new(),
        }
    }

    /// Take one event; returns the update to hand to the engine (none for events about this
    /// node itself).
    pub fn on_event(&mut self, now: Millis, event: &MemberEvent) -> Option<PeerUpdate> {
        let (member, reachable) = match event {
            MemberEvent::Up(member) | MemberEvent::Updated(member) => (member, true),
            MemberEvent::Unreachable(member) | MemberEvent::Left(member) => (member, false),
            MemberEvent::SelfActive | MemberEvent::SelfIdle | MemberEvent::SelfRejoined { .. } => {
                return None;
            }
        };
        if member.id == self.node_id {
            return None;
        }
        let previous = self
            .peers
            .get(&member.id)
            .and_then(|peer| peer.unreachable_since);
        let unreachable_since = if reachable {
            None
        } else {
            previous.or(Some(now))
        };
        let mut info = member.clone();
        info.reachable = reachable && member.reachable;
        self.peers.insert(
            member.id.clone(),
            KnownPeer {
                info,
                unreachable_since,
            },
        );
        let peer = self.peers.get(&member.id)?;
        Some(Self::update_for(peer))
    }

    fn update_for(peer: &KnownPeer) -> PeerUpdate {
        let metadata = peer.info.metadata.as_ref();
        PeerUpdate {
            node: peer.info.id.clone(),
            rpc_addr: metadata.map(|metadata| metadata.rpc_addr),
            info: PeerInfo {
                priority: metadata
                    .map(|metadata| metadata.priority)
                    .unwrap_or_default(),
                health: metadata
                    .map(|metadata| metadata.health)
                    .unwrap_or(ha_core::HealthStatus::Unknown),
                reachable: peer.info.reachable,
                wants_vote: metadata.is_some_and(|metadata| metadata.voter),
                unreachable_since: peer.unreachable_since,
            },
        }
    }

    /// The founding voters, once exactly `bootstrap_expect` voters (this node included) are
    /// reachable with known metadata and none of them says it already leads a cluster. Every
    /// founding node computes the same set from the same members. `None` while fewer are
    /// known, when more are (this node joins an existing cluster instead, as a learner), while
    /// a reachable member's metadata has not arrived (it may be one voter too many), or when
    /// this node does not vote.
    ///
    /// Founding is only safe when `bootstrap_expect` is the number of voters started together:
    /// with more, two nodes that each saw a different `bootstrap_expect` of them at once could
    /// found two clusters (the chaos tests saw it: 5 nodes with the default of 3). Waiting for
    /// every reachable member's metadata closes the usual window (a member seen up a moment
    /// before its metadata), and a node that sees more voters than expected does not found.
    ///
    /// Use it only for a node whose log is empty: a cluster that exists never re-founds.
    pub fn bootstrap_voters(&self) -> Option<Membership> {
        if !self.voter {
            return None;
        }
        let voters: Vec<&KnownPeer> = self
            .peers
            .values()
            .filter(|peer| peer.info.reachable)
            .filter(|peer| {
                peer.info
                    .metadata
                    .as_ref()
                    .is_some_and(|metadata| metadata.voter)
            })
            .collect();
        let metadata_pending = self
            .peers
            .values()
            .any(|peer| peer.info.reachable && peer.info.metadata.is_none());
        if metadata_pending {
            return None;
        }
        let anyone_leads = voters.iter().any(|peer| {
            peer.info.metadata.as_ref().map(|metadata| metadata.state) == Some(NodeState::Leader)
        });
        if anyone_leads || voters.len() + 1 != self.bootstrap_expect {
            return None;
        }
        let ids = voters
            .iter()
            .map(|peer| peer.info.id.clone())
            .chain(std::iter::once(self.node_id.clone()));
        Some(Membership::with_voters(ids))
    }

    /// Every known peer's latest update.
    pub fn peers(&self) -> Vec<PeerUpdate> {
        self.peers.values().map(Self::update_for).collect()
    }
}
