//! Changing who votes: bootstrap, learners, promotion, dead-voter removal.

use ha_core::{LogIndex, Millis, NodeId, Term};

use crate::engine::effect::Persist;
use crate::engine::engine::Engine;
use crate::engine::error::ProposeError;
use crate::engine::progress::Progress;
use crate::engine::role::Role;
use crate::entry::{Entry, Payload};
use crate::membership::VoterSet;

impl Engine {
    /// Start a brand-new cluster with these voters. Only on a node with an empty log; every
    /// founding node must be given the same set (the first entry, term 0, is identical on
    /// all of them). Returns false when the node already has state.
    pub fn bootstrap(&mut self, _now: Millis, voters: VoterSet) -> bool {
        if self.log.last_index() != LogIndex(0) || self.term != Term(0) || voters.voters.is_empty()
        {
            return false;
        }
        let entry = Entry {
            term: Term(0),
            index: LogIndex(1),
            payload: Payload::Membership(voters),
        };
        self.log.push(entry.clone());
        self.persist(Persist::Append(vec![entry]));
        let role = self.follower_role();
        if role != self.role {
            self.role = role;
            self.notify_role();
        }
        self.reset_election_timer();
        true
    }

    /// Propose a new configuration that differs from the current one by one node (added as
    /// learner, promoted, demoted or removed). It takes effect when appended.
    ///
    /// A leader changes the membership only once an entry of its own term has committed (its
    /// `LeaderStart`), and only once the previous change has committed: then any two
    /// configurations that can decide anything in the same or consecutive terms share a
    /// majority (the single-server change rule with the errata of the Raft dissertation;
    /// the simulator checks it, `configurations_share_a_majority`).
    ///
    /// # Errors
    /// [`ProposeError::LeaderTermUncommitted`] until this leader's first entry commits;
    /// [`ProposeError::MembershipChangePending`] while an earlier change is uncommitted;
    /// [`ProposeError::InvalidMembershipChange`] for a multi-node change or one that would
    /// remove the leader itself (transfer leadership first).
    pub fn propose_membership(
        &mut self,
        now: Millis,
        membership: VoterSet,
    ) -> Result<LogIndex, ProposeError> {
        self.observe(now);
        self.check_can_propose()?;
        if !self.committed_in_own_term() {
            return Err(ProposeError::LeaderTermUncommitted);
        }
        if self.log.membership_index() > self.commit_index {
            return Err(ProposeError::MembershipChangePending);
        }
        let current = self.log.membership().clone();
        let changed_voters = current
            .voters
            .symmetric_difference(&membership.voters)
            .count();
        let changed_members: usize = current
            .members()
            .filter(|member| !membership.contains(member))
            .count()
            + membership
                .members()
                .filter(|member| !current.contains(member))
                .count();
        if changed_voters > 1
            || changed_members > 1
            || (changed_voters == 0 && changed_members == 0)
        {
            return Err(ProposeError::InvalidMembershipChange(
                "change exactly one node at a time".to_string(),
            ));
        }
        if !membership.is_voter(&self.settings.node_id) {
            return Err(ProposeError::InvalidMembershipChange(
                "the leader cannot remove or demote itself; transfer leadership first".to_string(),
            ));
        }
        let last_index = self.log.last_index();
        for member in membership.members() {
            if *member != self.settings.node_id && !self.progress.contains_key(member) {
                let mut progress = Progress::new(last_index);
                progress.last_ack_at = Some(now);
                self.progress.insert(member.clone(), progress);
            }
        }
        self.progress.retain(|node, _| membership.contains(node));
        tracing::info!(voters = ?membership.voters, learners = ?membership.learners, "membership change");
        Ok(self.append_local(now, Payload::Membership(membership)))
    }

    /// Whether an entry of the current term has committed (on a leader: its `LeaderStart`).
    /// Until then the commit index may be behind what an earlier leader committed.
    pub(crate) fn committed_in_own_term(&self) -> bool {
        self.log.term_at(self.commit_index) == Some(self.term)
    }

    /// Leader housekeeping: add voters-to-be as learners, promote caught-up learners,
    /// remove voters dead for long enough when a majority stays reachable.
    pub(crate) fn membership_tick(&mut self, now: Millis) {
        if self.role != Role::Leader
            || !self.committed_in_own_term()
            || self.log.membership_index() > self.commit_index
        {
            return;
        }
        let current = self.log.membership().clone();
        // 1. A node that wants to vote and is unknown joins as a learner.
        let newcomer = self
            .peers
            .iter()
            .find(|(node, peer)| peer.wants_vote && peer.reachable && !current.contains(node))
            .map(|(node, _)| node.clone());
        if let Some(node) = newcomer {
            let mut next = current.clone();
            next.learners.insert(node);
            let _ = self.propose_membership(now, next);
            return;
        }
        // 2. A learner that has caught up with the commit index becomes a voter, if it wants to
        //    vote (gossip) or an operator asked this leader to promote it.
        let commit = self.commit_index;
        let promotable = current
            .learners
            .iter()
            .find(|learner| {
                let wanted = self.peers.get(*learner).is_some_and(|peer| peer.wants_vote)
                    || self.operator_intents.wants_promotion(self.term, learner);
                wanted
                    && self
                        .progress
                        .get(*learner)
                        .is_some_and(|progress| progress.match_index >= commit)
            })
            .cloned();
        if let Some(node) = promotable {
            let mut next = current.clone();
            next.learners.remove(&node);
            next.voters.insert(node);
            let _ = self.propose_membership(now, next);
            return;
        }
        // 3. A voter unreachable for `dead_voter_after` goes, if the rest keep a majority.
        let Some(dead_after_ms) = self.settings.dead_voter_after_ms else {
            return;
        };
        let dead: Option<NodeId> = current
            .voters
            .iter()
            .filter(|voter| **voter != self.settings.node_id)
            .find(|voter| {
                self.peers.get(*voter).is_some_and(|peer| {
                    peer.unreachable_since
                        .is_some_and(|since| now.saturating_since(since) >= dead_after_ms)
                })
            })
            .cloned();
        if let Some(node) = dead {
            let mut next = current.clone();
            next.voters.remove(&node);
            let reachable: Vec<NodeId> = next
                .voters
                .iter()
                .filter(|voter| {
                    **voter == self.settings.node_id
                        || self.peers.get(*voter).is_some_and(|peer| peer.reachable)
                })
                .cloned()
                .collect();
            if next.is_quorum(&reachable) && !next.voters.is_empty() {
                tracing::warn!(%node, "removing a voter that has been unreachable too long");
                let _ = self.propose_membership(now, next);
            }
        }
    }
}
