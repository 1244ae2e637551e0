//! The membership API on [`Node`]: list the members, add a node (as a learner, promoted to
//! voter once caught up), remove one. The admin HTTP routes (`GET`/`POST /v1/members`,
//! `DELETE /v1/members/<id>`) and `bot members` call these.
//!
//! Any node can be asked: a follower forwards the change to the leader like a write, and the
//! leader decides (`Engine::request_member_change`
//! documents the rules and refusals). One change at a time, on the single-server path.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ha_core::{LogIndex, NodeId, StateMachine};
use ha_replicate::engine::{MemberRequest, MembershipRefusal};
use ha_replicate::replica::ClientError;
use serde::Serialize;

use crate::error::NodeError;
use crate::node::Node;

/// How often a membership call looks at the replica's status while it waits for a commit or a
/// promotion.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How often an add that waits for promotion asks the leader again: a new leader does not
/// know an earlier leader's intent to promote, and asking again (idempotent) gives it back.
const PROMOTION_REQUEST_INTERVAL: Duration = Duration::from_millis(1_000);

/// One member and its replication address (null when this node does not know it yet).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberAddress {
    /// The member's id.
    pub id: NodeId,
    /// Its replication (RPC) address, when known.
    pub addr: Option<SocketAddr>,
}

/// The cluster's configuration as this node knows it (`GET /v1/members`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberList {
    /// Members that vote.
    pub voters: Vec<MemberAddress>,
    /// Members that replicate without voting.
    pub learners: Vec<MemberAddress>,
    /// Voters that are witnesses (issue 15): they vote but hold no state and never lead.
    /// The replicated configuration counts them among the voters; they are listed here
    /// instead of under `voters`, as this node knows them (itself from its config, the
    /// others from their gossip metadata: a witness gossip has not described yet shows under
    /// `voters` until it does).
    pub witnesses: Vec<MemberAddress>,
}

/// What [`Node::add_member`] achieved by its deadline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberAdded {
    /// The node added.
    pub id: NodeId,
    /// What it is now: `"learner"` or `"voter"`.
    pub state: &'static str,
    /// Whether it was asked to become a voter.
    pub voter: bool,
    /// The configuration entry that added it (or already held it).
    pub index: LogIndex,
    /// True when it should become a voter but has not yet (still catching up, or not
    /// running): the leader promotes it once it has caught up.
    pub promotion_pending: bool,
}

/// What [`Node::remove_member`] achieved by its deadline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberRemoved {
    /// The node removed.
    pub id: NodeId,
    /// The configuration entry that removed it.
    pub index: LogIndex,
    /// Whether this node saw that entry commit before answering (a node that removed itself
    /// may not hear of the commit).
    pub committed: bool,
}

impl<S: StateMachine> Node<S> {
    /// The voters, learners and witnesses in force on this node, with their replication
    /// addresses.
    ///
    /// # Errors
    /// [`NodeError::Replication`] with `Stopped` after shutdown.
    pub async fn member_list(&self) -> Result<MemberList, NodeError> {
        let status = self.status().await?;
        let addresses = self.shared.replica.peer_addresses().await?;
        let describe = |id: &NodeId| MemberAddress {
            id: id.clone(),
            addr: if *id == status.node_id {
                Some(self.rpc_addr())
            } else {
                addresses.get(id).copied()
            },
        };
        let witnesses = self.witness_ids();
        let (witness_voters, data_voters): (Vec<&NodeId>, Vec<&NodeId>) = status
            .membership
            .voters
            .iter()
            .partition(|id| witnesses.contains(*id));
        Ok(MemberList {
            voters: data_voters.into_iter().map(describe).collect(),
            learners: status.membership.learners.iter().map(describe).collect(),
            witnesses: witness_voters.into_iter().map(describe).collect(),
        })
    }

    /// The nodes this node knows to be witnesses: itself when its config says so, and every
    /// member whose gossip metadata says so.
    pub fn witness_ids(&self) -> BTreeSet<NodeId> {
        let mut witnesses: BTreeSet<NodeId> = self
            .members()
            .into_iter()
            .filter(|member| {
                member
                    .metadata
                    .as_ref()
                    .is_some_and(|metadata| metadata.witness)
            })
            .map(|member| member.id)
            .collect();
        if self.is_witness() {
            witnesses.insert(self.id().clone());
        }
        witnesses
    }

    /// Add `id` as a learner (its replication address `addr`, if given, lets the leader reach
    /// it before gossip has seen it). With `voter`, the leader promotes it once it has caught
    /// up; this call waits for that up to the node's request timeout and says whether it
    /// happened (`promotion_pending`). Asking again is harmless: an existing learner or voter
    /// is answered as it is (and a pending promotion is asked for again, which a new leader
    /// needs: the intent to promote lives in the leader's memory).
    ///
    /// # Errors
    /// [`NodeError::Replication`] with [`ClientError::MembershipRefused`] and the reason
    /// (nothing changed), or the usual write errors (no leader, timeout: the change may or
    /// may not have been made; read [`member_list`](Self::member_list)).
    pub async fn add_member(
        &self,
        id: NodeId,
        addr: Option<SocketAddr>,
        voter: bool,
    ) -> Result<MemberAdded, NodeError> {
        let deadline = Instant::now() + self.shared.request_timeout;
        let request = MemberRequest::Add {
            node: id.clone(),
            addr,
            voter,
        };
        let mut index = self.change_members(&request, deadline).await?;
        self.wait_for_commit(index, deadline).await?;
        let mut asked_at = Instant::now();
        loop {
            let status = self.status().await?;
            // A configuration takes effect when appended: wait for the promotion to commit
            // (it is at or below this node's last index), so the next change is not refused
            // as pending.
            let is_voter = status.membership.is_voter(&id)
                && self
                    .wait_for_commit(status.last_index, deadline)
                    .await
                    .is_ok();
            if is_voter || !voter || Instant::now() >= deadline {
                return Ok(MemberAdded {
                    id,
                    state: if is_voter { "voter" } else { "learner" },
                    voter,
                    index,
                    promotion_pending: voter && !is_voter,
                });
            }
            if asked_at.elapsed() >= PROMOTION_REQUEST_INTERVAL {
                // Best effort: a refusal here (a change pending: the promotion itself) or a
                // lost leader changes nothing that the next look at the status would not see.
                if let Ok(latest) = self.change_members(&request, deadline).await {
                    index = index.max(latest);
                }
                asked_at = Instant::now();
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Remove `id` (a voter or a learner). The leader refuses with the reason when that would
    /// leave no voter, fewer reachable voters than a quorum of the rest, or a node configured
    /// to vote that gossip still reaches (the automatic membership would add it back), or
    /// while another change is pending. Removing the leader hands leadership over first; the
    /// new leader then removes it.
    ///
    /// # Errors
    /// As for [`add_member`](Self::add_member).
    pub async fn remove_member(&self, id: NodeId) -> Result<MemberRemoved, NodeError> {
        let deadline = Instant::now() + self.shared.request_timeout;
        let was_member = self.status().await?.membership.contains(&id);
        let request = MemberRequest::Remove { node: id.clone() };
        let index = match self.change_members(&request, deadline).await {
            Ok(index) => index,
            // An attempt that timed out may have removed it already; the retry then finds it
            // gone. Answer with this node's commit index, at or past the configuration that
            // no longer holds it.
            Err(NodeError::Replication(ClientError::MembershipRefused(
                MembershipRefusal::NotAMember { .. },
            ))) if was_member => self.status().await?.commit_index,
            Err(error) => return Err(error),
        };
        let committed = self.wait_for_commit(index, deadline).await.is_ok();
        Ok(MemberRemoved {
            id,
            index,
            committed,
        })
    }

    /// Send `request` through this node's replica until `deadline`, asking again while the
    /// leader is too new to change the membership (its first entry commits within a round
    /// trip).
    async fn change_members(
        &self,
        request: &MemberRequest,
        deadline: Instant,
    ) -> Result<LogIndex, NodeError> {
        let client = self.shared.writer.replica();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let answer = client.change_members(request.clone(), remaining).await;
            match answer {
                Err(ClientError::MembershipRefused(MembershipRefusal::LeaderTermUncommitted))
                    if Instant::now() + POLL_INTERVAL < deadline =>
                {
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
                other => return Ok(other?),
            }
        }
    }

    /// Wait until this node's commit index reaches `index`.
    async fn wait_for_commit(&self, index: LogIndex, deadline: Instant) -> Result<(), NodeError> {
        loop {
            if self.status().await?.commit_index >= index {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(NodeError::Replication(ClientError::Timeout));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}
