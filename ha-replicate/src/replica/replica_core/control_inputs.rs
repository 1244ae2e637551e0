//! The replica's named inputs besides messages, timers and client requests: founding with an
//! explicit voter set, an operator's campaign or leadership transfer, this node's health, a
//! peer's facts, a membership proposal.
//!
//! Each is one call that hands the event to the engine and carries out what it produced, so a
//! caller cannot forget the second step (issue 17: these replace `engine_mut()` followed by
//! `after_command()`). The tokio driver and the simulators call exactly these.

use ha_core::{HealthStatus, LogIndex, Millis, NodeId, StateMachine};

use super::{ReplicaCore, ReplicaEffect};
use crate::engine::{PeerInfo, ProposeError, TransferError};
use crate::entry::ElectionCause;
use crate::membership::VoterSet;
use crate::storage::LogStore;

impl<S: StateMachine, L: LogStore> ReplicaCore<S, L> {
    /// Found a brand-new cluster with `voters` (the same set on every founding node), as
    /// `Engine::bootstrap` does: only a node that has
    /// never stored anything founds. Returns whether this node founded; when it did, a
    /// [`ReplicaEffect::Founded`] says so. A stopped or stalled replica founds nothing (the
    /// founding entry could not be stored).
    pub fn on_bootstrap(&mut self, now: Millis, voters: VoterSet) -> bool {
        if self.fatal.is_some() || self.stall.is_some() {
            return false;
        }
        let founded = self.found(now, voters);
        self.after_input(now);
        founded
    }

    /// An operator asks this node to campaign now (also in manual failover mode). Returns
    /// whether an election started: not on a leader, a witness, a node of priority 0 or a
    /// stopped replica.
    pub fn on_campaign(&mut self, now: Millis) -> bool {
        if self.fatal.is_some() {
            return false;
        }
        let started = self.engine.campaign(now);
        self.after_input(now);
        started
    }

    /// Hand leadership to `target`, or to the best other voter when `None`; `cause` is what
    /// the failover history records. Returns the chosen target.
    ///
    /// # Errors
    /// [`TransferError`] from the engine (nothing changed); `NotLeader` with no leader when
    /// the replica has stopped.
    pub fn on_transfer(
        &mut self,
        now: Millis,
        target: Option<NodeId>,
        cause: ElectionCause,
    ) -> Result<NodeId, TransferError> {
        if self.fatal.is_some() {
            return Err(TransferError::Stopped);
        }
        let result = self.engine.transfer_leadership(now, target, cause);
        self.after_input(now);
        result
    }

    /// This node's own health changed: an unhealthy leader hands over, an unhealthy or
    /// degraded node does not campaign.
    pub fn on_local_health(&mut self, now: Millis, health: HealthStatus) {
        if self.fatal.is_some() {
            return;
        }
        self.engine.set_local_health(now, health);
        self.after_input(now);
    }

    /// A peer's metadata or reachability, given directly (gossip's member events go through
    /// [`on_member_event`](Self::on_member_event) instead, which derives the same facts).
    pub fn on_peer_info(&mut self, now: Millis, node: NodeId, info: PeerInfo) {
        if self.fatal.is_some() {
            return;
        }
        self.engine.set_peer_info(now, node, info);
        self.after_input(now);
    }

    /// Propose a configuration that differs from the current one by one node, as
    /// `Engine::propose_membership` does (an
    /// operator's request goes through [`submit`](Self::submit) with a
    /// [`ClientRequest::Member`](crate::replica::ClientRequest::Member) instead, which a
    /// follower forwards). Returns the configuration entry's index.
    ///
    /// # Errors
    /// [`ProposeError`] from the engine (nothing was appended); `NotLeader` with no leader
    /// when the replica has stopped.
    pub fn on_propose_membership(
        &mut self,
        now: Millis,
        membership: VoterSet,
    ) -> Result<LogIndex, ProposeError> {
        if self.fatal.is_some() {
            return Err(ProposeError::NotLeader { leader: None });
        }
        let result = self.engine.propose_membership(now, membership);
        self.after_input(now);
        result
    }

    /// Found with `voters` if the engine takes them, and say so. The caller carries out the
    /// engine's effects (the founding entry's append).
    pub(super) fn found(&mut self, now: Millis, voters: VoterSet) -> bool {
        if !self.engine.bootstrap(now, voters.clone()) {
            return false;
        }
        tracing::info!(voters = ?voters.voters, "founded the cluster");
        self.outputs.push(ReplicaEffect::Founded { voters });
        true
    }
}
