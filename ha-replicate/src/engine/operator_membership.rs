//! Membership changes an operator asks for (the admin API's `POST /v1/members` and
//! `DELETE /v1/members/<id>`), on the same single-server path as the automatic ones in
//! `membership_change.rs`.
//!
//! The engine decides, from what only the leader knows, whether a change is safe and useful
//! now, and refuses with a [`MembershipRefusal`] that names the reason otherwise:
//!
//! - one change at a time: refused while an earlier change is uncommitted, or before this
//!   leader's own first entry has committed (the dissertation's errata);
//! - the last voter is never removed;
//! - a voter is removed only if the voters that remain and that the leader heard from within
//!   the longest election timeout still form a quorum of the new voter set (otherwise the
//!   cluster would stop committing the moment the change applies);
//! - a node that gossip reaches and that is configured to vote (`wants_vote`) is not removed:
//!   the leader's automatic path would add it back as a learner at the next heartbeat. Stop
//!   it first (or restart it with `voter = false`), then remove it;
//! - removing the leader itself starts a leadership transfer instead; the caller asks again,
//!   and the new leader removes it.
//!
//! Promoting a learner added with `voter: true` is the leader's intent: it is kept in memory
//! for the term it was given in ([`OperatorIntents`]) and lost on a leader change. Asking to
//! add the same node again is idempotent and gives the new leader the intent back (the ha
//! node's `add_member` does so until the node votes or its deadline passes).

use std::collections::BTreeSet;
use std::net::SocketAddr;

use ha_core::{LogIndex, Millis, NodeId, Term};
use serde::{Deserialize, Serialize};

use crate::engine::engine::Engine;
use crate::engine::error::{ProposeError, TransferError};
use crate::entry::ElectionCause;

/// A membership change an operator asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberRequest {
    /// Add `node` as a learner; promote it to voter once caught up when `voter`.
    Add {
        /// The node to add.
        node: NodeId,
        /// Its replication (RPC) address, so that the leader can reach it before gossip has
        /// seen it. The engine does not use it; the driver records it.
        addr: Option<SocketAddr>,
        /// Whether to promote it to voter once it has caught up.
        voter: bool,
    },
    /// Remove `node` (voter or learner).
    Remove {
        /// The node to remove.
        node: NodeId,
    },
}

impl MemberRequest {
    /// The node the request is about.
    pub fn node(&self) -> &NodeId {
        match self {
            MemberRequest::Add { node, .. } | MemberRequest::Remove { node } => node,
        }
    }
}

/// What the leader did for a [`MemberRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberChangeStep {
    /// The new configuration was appended at this index (it takes effect at once and is
    /// safe once committed).
    Proposed(LogIndex),
    /// The configuration already says so; this is the index of the entry that does (an add
    /// of a learner with `voter` recorded the promotion intent again).
    AlreadyDone(LogIndex),
    /// The node to remove is this leader: leadership is being handed to this voter. Ask
    /// again once it leads; it removes the old leader.
    TransferStarted(NodeId),
}

/// Why a [`MemberRequest`] was not carried out. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberChangeError {
    /// The ordinary proposal refusals: not the leader, transfer in progress, busy.
    Propose(ProposeError),
    /// The change itself is refused, for the reason given.
    Refused(MembershipRefusal),
}

/// Why the leader refused a membership change an operator asked for. Nothing changed; each
/// variant says what to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum MembershipRefusal {
    /// An earlier change (at `index`) has not committed yet: one change at a time. Retry
    /// once it has (usually within a round trip; promotion of a learner is a change too).
    #[error("a membership change is still pending (index {index}); retry once it commits")]
    ChangePending {
        /// The pending configuration's index.
        index: LogIndex,
    },
    /// This leader was just elected and its first entry has not committed: it may not change
    /// the membership yet. Retry shortly.
    #[error("the leader's first entry of its term has not committed yet; retry shortly")]
    LeaderTermUncommitted,
    /// Removing this node would leave no voter at all.
    #[error("{node} is the last voter; a cluster needs at least one")]
    LastVoter {
        /// The node asked to be removed.
        node: NodeId,
    },
    /// Removing this voter would leave fewer reachable voters than a quorum of the remaining
    /// voter set, and the cluster would stop committing. Bring the unreachable voters back
    /// (or remove them first), then retry.
    #[error(
        "removing {node} would leave {reachable} reachable voter(s) of {voters}, fewer than \
         a quorum of {quorum}"
    )]
    QuorumUnreachable {
        /// The node asked to be removed.
        node: NodeId,
        /// Voters of the new set the leader heard from within the longest election timeout.
        reachable: usize,
        /// Voters of the new set.
        voters: usize,
        /// The new set's quorum.
        quorum: usize,
    },
    /// The node is running and configured to vote: the leader's automatic membership would
    /// add it back. Stop it (or restart it with `voter = false`) first, then remove it.
    #[error(
        "{node} is running and configured to vote, so the leader would add it back at once; \
         stop it (or restart it with voter = false), then remove it"
    )]
    WouldRejoin {
        /// The node asked to be removed.
        node: NodeId,
    },
    /// The node is neither a voter nor a learner.
    #[error("{node} is not a member")]
    NotAMember {
        /// The node named.
        node: NodeId,
    },
    /// The node already votes; adding it as a learner would demote it, which this API does
    /// not do. Remove it first if that is what you want.
    #[error("{node} is already a voter; it cannot be added as a learner")]
    AlreadyVoter {
        /// The node named.
        node: NodeId,
    },
    /// The node to remove is the leader and no other voter can take over (priority 0,
    /// unhealthy or unreachable). Make another voter eligible first.
    #[error("{node} leads and no other voter can take over; it cannot be removed now")]
    NoTransferTarget {
        /// The leader asked to be removed.
        node: NodeId,
    },
}

impl MembershipRefusal {
    /// A short stable code for the reason (the admin API's `reason` field).
    pub fn code(&self) -> &'static str {
        match self {
            MembershipRefusal::ChangePending { .. } => "change_pending",
            MembershipRefusal::LeaderTermUncommitted => "leader_term_uncommitted",
            MembershipRefusal::LastVoter { .. } => "last_voter",
            MembershipRefusal::QuorumUnreachable { .. } => "quorum_unreachable",
            MembershipRefusal::WouldRejoin { .. } => "would_rejoin",
            MembershipRefusal::NotAMember { .. } => "not_a_member",
            MembershipRefusal::AlreadyVoter { .. } => "already_voter",
            MembershipRefusal::NoTransferTarget { .. } => "no_transfer_target",
        }
    }
}

/// Learners the operator asked to promote, valid only in the term they were asked in (a new
/// leader starts without them). Holds only current learners, so it is bounded by the
/// membership's size.
#[derive(Clone, Debug, Default)]
pub(crate) struct OperatorIntents {
    term: Term,
    promote: BTreeSet<NodeId>,
}

impl OperatorIntents {
    /// Whether the operator asked, in `term`, to promote `node`.
    pub(crate) fn wants_promotion(&self, term: Term, node: &NodeId) -> bool {
        self.term == term && self.promote.contains(node)
    }

    fn record(&mut self, term: Term, node: NodeId, learners: &BTreeSet<NodeId>) {
        if self.term != term {
            self.term = term;
            self.promote.clear();
        }
        self.promote.retain(|learner| learners.contains(learner));
        self.promote.insert(node);
    }

    fn forget(&mut self, node: &NodeId) {
        self.promote.remove(node);
    }
}

impl Engine {
    /// Carry out a membership change an operator asked for, if it is safe now (see the
    /// module documentation for the rules).
    ///
    /// # Errors
    /// [`MemberChangeError::Propose`] when this node cannot propose (not the leader, a
    /// transfer under way, too much uncommitted); [`MemberChangeError::Refused`] with the
    /// reason when the change is refused. Nothing changes in either case.
    pub fn request_member_change(
        &mut self,
        now: Millis,
        request: &MemberRequest,
    ) -> Result<MemberChangeStep, MemberChangeError> {
        self.observe(now);
        self.check_can_propose()
            .map_err(MemberChangeError::Propose)?;
        if !self.committed_in_own_term() {
            return Err(MemberChangeError::Refused(
                MembershipRefusal::LeaderTermUncommitted,
            ));
        }
        match request {
            MemberRequest::Add { node, voter, .. } => self.operator_add(now, node, *voter),
            MemberRequest::Remove { node } => self.operator_remove(now, node),
        }
    }

    fn operator_add(
        &mut self,
        now: Millis,
        node: &NodeId,
        voter: bool,
    ) -> Result<MemberChangeStep, MemberChangeError> {
        let current = self.log.membership().clone();
        let membership_index = self.log.membership_index();
        if current.is_voter(node) {
            return if voter {
                Ok(MemberChangeStep::AlreadyDone(membership_index))
            } else {
                Err(MemberChangeError::Refused(
                    MembershipRefusal::AlreadyVoter { node: node.clone() },
                ))
            };
        }
        if current.learners.contains(node) {
            if voter {
                self.operator_intents
                    .record(self.term, node.clone(), &current.learners);
            }
            return Ok(MemberChangeStep::AlreadyDone(membership_index));
        }
        self.check_no_change_pending()?;
        let mut next = current;
        next.learners.insert(node.clone());
        let index = self
            .propose_membership(now, next.clone())
            .map_err(refusal)?;
        if voter {
            self.operator_intents
                .record(self.term, node.clone(), &next.learners);
        }
        tracing::info!(%node, voter, %index, "operator added a learner");
        Ok(MemberChangeStep::Proposed(index))
    }

    fn operator_remove(
        &mut self,
        now: Millis,
        node: &NodeId,
    ) -> Result<MemberChangeStep, MemberChangeError> {
        let current = self.log.membership().clone();
        if !current.contains(node) {
            return Err(MemberChangeError::Refused(MembershipRefusal::NotAMember {
                node: node.clone(),
            }));
        }
        self.check_no_change_pending()?;
        let refuse = |refusal: MembershipRefusal| Err(MemberChangeError::Refused(refusal));
        let mut next = current.clone();
        if current.is_voter(node) {
            next.voters.remove(node);
            if next.voters.is_empty() {
                return refuse(MembershipRefusal::LastVoter { node: node.clone() });
            }
            let reachable = self.recently_heard_voters(now, &next.voters);
            if reachable < next.quorum() {
                return refuse(MembershipRefusal::QuorumUnreachable {
                    node: node.clone(),
                    reachable,
                    voters: next.voters.len(),
                    quorum: next.quorum(),
                });
            }
        } else {
            next.learners.remove(node);
        }
        // This node's own wish comes from its settings: the next leader would see it in
        // gossip and add it back, after a needless leadership transfer.
        let rejoins = if *node == self.settings.node_id {
            self.settings.wants_vote
        } else {
            self.peers
                .get(node)
                .is_some_and(|peer| peer.reachable && peer.wants_vote)
        };
        if rejoins {
            return refuse(MembershipRefusal::WouldRejoin { node: node.clone() });
        }
        if *node == self.settings.node_id {
            return match self.transfer_leadership(now, None, ElectionCause::ManualTransfer) {
                Ok(target) => Ok(MemberChangeStep::TransferStarted(target)),
                Err(TransferError::NoEligibleTarget | TransferError::IneligibleTarget(_)) => {
                    refuse(MembershipRefusal::NoTransferTarget { node: node.clone() })
                }
                Err(TransferError::InProgress) => {
                    Err(MemberChangeError::Propose(ProposeError::TransferInProgress))
                }
                Err(TransferError::NotLeader { leader }) => {
                    Err(MemberChangeError::Propose(ProposeError::NotLeader {
                        leader,
                    }))
                }
                // Only the replica around the engine answers `Stopped`; the engine never does.
                Err(TransferError::Stopped) => {
                    Err(MemberChangeError::Propose(ProposeError::NotLeader {
                        leader: None,
                    }))
                }
            };
        }
        let index = self.propose_membership(now, next).map_err(refusal)?;
        self.operator_intents.forget(node);
        tracing::info!(%node, %index, "operator removed a member");
        Ok(MemberChangeStep::Proposed(index))
    }

    fn check_no_change_pending(&self) -> Result<(), MemberChangeError> {
        let index = self.log.membership_index();
        if index > self.commit_index {
            return Err(MemberChangeError::Refused(
                MembershipRefusal::ChangePending { index },
            ));
        }
        Ok(())
    }

    /// How many of `voters` this leader counts as reachable: itself, and those that answered
    /// it within the longest election timeout (the window check-quorum uses). Gossip's view
    /// is not used here: it lags a crash by seconds, and the question is whether the new set
    /// would commit at once.
    fn recently_heard_voters(&self, now: Millis, voters: &BTreeSet<NodeId>) -> usize {
        let window_ms = self.settings.election_timeout_max_ms;
        voters
            .iter()
            .filter(|voter| {
                **voter == self.settings.node_id
                    || self.progress.get(*voter).is_some_and(|progress| {
                        progress
                            .last_ack_at
                            .is_some_and(|at| now.saturating_since(at) <= window_ms)
                    })
            })
            .count()
    }
}

/// `propose_membership`'s refusals, in the operator's terms. The checks above run first, so
/// only the generic proposal errors reach here.
fn refusal(error: ProposeError) -> MemberChangeError {
    match error {
        ProposeError::LeaderTermUncommitted => {
            MemberChangeError::Refused(MembershipRefusal::LeaderTermUncommitted)
        }
        other => MemberChangeError::Propose(other),
    }
}
