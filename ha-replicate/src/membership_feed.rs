//! Gossip's view of the cluster, turned into what replication needs: peers' RPC addresses and
//! metadata, and when to found a new cluster (`bootstrap_expect`).
//!
//! It consumes [`MemberEvent`]s, an `ha-core` type, so replication still does not depend on
//! gossip: the facade forwards events, and tests can feed them directly.
//!
//! The replica core owns one ([`ReplicaSettings::bootstrap_expect`] configures it) and takes
//! each event through [`ReplicaCore::on_member_event`]: peer facts to the engine, then the
//! founding decision, also re-checked on the core's housekeeping tick. The tokio driver
//! ([`ReplicaNode`](crate::driver::ReplicaNode)) and the simulator's founding test both feed
//! the core that same input, so the simulated sweeps check the rule users run.
//!
//! [`ReplicaSettings::bootstrap_expect`]: crate::replica::ReplicaSettings::bootstrap_expect
//! [`ReplicaCore::on_member_event`]: crate::replica::ReplicaCore::on_member_event

use std::collections::BTreeMap;
use std::net::SocketAddr;

use ha_core::{LogIndex, MemberEvent, MemberInfo, Millis, NodeId, NodeState, Term};

use crate::engine::{EngineSettings, PeerInfo};
use crate::membership::VoterSet;

/// How many of the longest election timeouts the founding set must stay unchanged before a
/// node founds with it (see [`MembershipFeed::founding_voters`]): 1.5 s with LAN timing.
/// With 2 the founding simulation still saw a latecomer found a second cluster once in 2,000
/// seeds (gossip took 2.2 s to connect it with the leader); with 5, 3,000 seeds ran clean.
pub const FOUNDING_SETTLE_ELECTION_TIMEOUTS: u64 = 5;

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
    /// How long [`bootstrap_voters`](Self::bootstrap_voters) must have answered the same set
    /// before this node founds with it.
    founding_settle_ms: u64,
    /// That set, and since when it has been the answer.
    candidate: Option<(VoterSet, Millis)>,
}

impl MembershipFeed {
    /// A feed for `node_id`, which wants to vote when `voter`, in a cluster founded by
    /// `bootstrap_expect` voters (0: this node never founds one; it waits to be added).
    pub fn new(node_id: NodeId, voter: bool, bootstrap_expect: usize) -> Self {
        Self {
            node_id,
            voter,
            bootstrap_expect,
            peers: BTreeMap::new(),
            founding_settle_ms: 0,
            candidate: None,
        }
    }

    /// The feed a replica core with `engine` settings runs (built in
    /// [`ReplicaCore::new`](crate::replica::ReplicaCore::new)): a voter when given `bootstrap_expect`, founding
    /// once the founding set has stayed the same for [`FOUNDING_SETTLE_ELECTION_TIMEOUTS`]
    /// longest election timeouts. Without `bootstrap_expect` it never founds.
    pub fn for_replica(engine: &EngineSettings, bootstrap_expect: Option<usize>) -> Self {
        Self::new(engine.node_id.clone(), true, bootstrap_expect.unwrap_or(0))
            .with_founding_settle_ms(
                engine
                    .election_timeout_max_ms
                    .saturating_mul(FOUNDING_SETTLE_ELECTION_TIMEOUTS),
            )
    }

    /// Found only once the founding set has stayed the same for `settle_ms` (0 by default:
    /// at once).
    pub fn with_founding_settle_ms(mut self, settle_ms: u64) -> Self {
        self.founding_settle_ms = settle_ms;
        self
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
        let candidate = self.bootstrap_voters();
        let unchanged = matches!(
            (&self.candidate, &candidate),
            (Some((previous, _)), Some(current)) if previous == current
        );
        if !unchanged {
            self.candidate = candidate.map(|voters| (voters, now));
        }
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
    pub fn bootstrap_voters(&self) -> Option<VoterSet> {
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
        Some(VoterSet::with_voters(ids))
    }

    /// The founding rule for a node whose log ends at `last_index` in `term`, at `now`: the
    /// voters to found a cluster with, or `None`. Only a node that has never stored anything
    /// (empty log, term 0) founds: a cluster that exists never re-founds, and a node that has
    /// heard from any leader or candidate (its term moved) joins rather than founds. The set
    /// is [`bootstrap_voters`](Self::bootstrap_voters)'s, and it must have stayed the same for
    /// the settle time.
    ///
    /// Why the settle time: a voter that starts next to a running cluster learns its members
    /// one by one. Having met exactly `bootstrap_expect - 1` of them, none advertising LEADER
    /// yet, it would found a second cluster with them (the founding simulation found it: a
    /// latecomer founded {n0, n1, n5} next to the running {n0, n1, n2}). Within the settle time
    /// it meets one voter more, or sees the LEADER, or the leader adds it (its term moves).
    /// This is a wait, not a proof: gossip slower than the settle time leaves the window open
    /// (HAZARDS.md, Bootstrap).
    pub fn founding_voters(
        &self,
        now: Millis,
        last_index: LogIndex,
        term: Term,
    ) -> Option<VoterSet> {
        if last_index != LogIndex(0) || term != Term(0) {
            return None;
        }
        let (voters, since) = self.candidate.as_ref()?;
        if now.saturating_since(*since) < self.founding_settle_ms {
            return None;
        }
        // The candidate is recomputed on every event, so it is the current answer.
        debug_assert_eq!(self.bootstrap_voters().as_ref(), Some(voters));
        Some(voters.clone())
    }

    /// Every known peer's latest update.
    pub fn peers(&self) -> Vec<PeerUpdate> {
        self.peers.values().map(Self::update_for).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use ha_core::{HealthStatus, NodeMetadata, Priority};

    use super::*;

    fn up(name: &str, port: u16) -> MemberEvent {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut metadata = NodeMetadata::new(Priority(1), addr);
        metadata.state = NodeState::Active;
        metadata.health = HealthStatus::Healthy;
        MemberEvent::Up(MemberInfo {
            id: NodeId::new(name).unwrap(),
            gossip_addr: addr,
            incarnation: 1,
            metadata: Some(metadata),
            reachable: true,
        })
    }

    fn left(name: &str, port: u16) -> MemberEvent {
        match up(name, port) {
            MemberEvent::Up(mut member) => {
                member.reachable = false;
                MemberEvent::Left(member)
            }
            _ => unreachable!("up() makes an Up event"),
        }
    }

    /// One line per step: time, the event (if any), and whether the node may found then (in a
    /// fresh state, and in one whose term moved).
    #[test]
    fn founds_only_once_the_set_has_settled_and_never_after_hearing_a_term() {
        let mut feed =
            MembershipFeed::new(NodeId::new("n1").unwrap(), true, 3).with_founding_settle_ms(600);
        let steps: &[(u64, Option<MemberEvent>, bool)] = &[
            (0, Some(up("n2", 7002)), false),
            (10, Some(up("n3", 7003)), false),
            (609, None, false),
            (610, None, true),
            // A fourth voter: no founding; it leaves, and the set must settle again.
            (700, Some(up("n4", 7004)), false),
            (800, Some(left("n4", 7004)), false),
            // The same set again (an update that changes nothing) does not restart the wait.
            (1_200, Some(up("n3", 7003)), false),
            (1_399, None, false),
            (1_400, None, true),
        ];
        for (now, event, may_found) in steps {
            if let Some(event) = event {
                feed.on_event(Millis(*now), event);
            }
            let voters = feed.founding_voters(Millis(*now), LogIndex(0), Term(0));
            assert_eq!(voters.is_some(), *may_found, "at {now}");
            assert_eq!(
                feed.founding_voters(Millis(*now), LogIndex(0), Term(1)),
                None,
                "a node whose term moved joins, at {now}"
            );
            assert_eq!(
                feed.founding_voters(Millis(*now), LogIndex(1), Term(0)),
                None,
                "a node with a log never founds, at {now}"
            );
        }
        let founded = feed
            .founding_voters(Millis(1_400), LogIndex(0), Term(0))
            .unwrap();
        let names: Vec<&str> = founded.voters.iter().map(NodeId::as_str).collect();
        assert_eq!(names, ["n1", "n2", "n3"]);
    }
}
