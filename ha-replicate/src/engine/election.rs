//! Elections: pre-vote, vote, priorities, stickiness, becoming leader.

use std::collections::BTreeSet;

use ha_core::{FailoverMode, HealthStatus, LogIndex, Millis, NodeId, Priority, Term};

use crate::engine::effect::{Persist, TimerKind};
use crate::engine::engine::Engine;
use crate::engine::message::Message;
use crate::engine::progress::Progress;
use crate::engine::role::Role;
use crate::entry::{ElectionCause, Entry, LeaderStart, Payload};

impl Engine {
    /// Whether this node may stand for election now.
    pub(crate) fn may_campaign(&self) -> bool {
        self.may_ever_lead() && self.local_health.may_campaign()
    }

    /// Whether this node may ever lead, whatever its health: a voter with a priority that
    /// can lead, not diverged (consistency monitor) and not a witness. Every path to a
    /// campaign (election timeout, unwell wait, operator, `TimeoutNow`) checks it, and so
    /// does [`start_election`](Self::start_election) itself: a witness holds no command
    /// payloads, so as leader it would replicate empty commands.
    pub(crate) fn may_ever_lead(&self) -> bool {
        self.is_voter()
            && self.settings.priority.can_lead()
            && !self.diverged
            && !self.settings.witness
    }

    /// Whether this node campaigns at an election timeout at `now`: a healthy voter that may
    /// lead does; one that is not healthy does only once it has heard no leader (since it
    /// started) for its longer wait. Nodes sharing a host or a disk cross a health threshold
    /// together: without the wait, a cluster in which every voter is equally unwell would
    /// have no leader at all. The wait lets any healthy voter win first (it campaigns after
    /// one timeout, and a vote granted to it does not count as hearing a leader here, but it
    /// wins long before), and a DEGRADED voter before an UNHEALTHY or UNKNOWN one (twice the
    /// wait). Safety does not depend on it: a vote still needs an up-to-date log.
    pub(crate) fn may_campaign_at(&self, now: Millis) -> bool {
        if self.may_campaign() {
            return true;
        }
        // A diverged replica (consistency monitor) or a witness never campaigns, however
        // long it waits.
        if !self.may_ever_lead() {
            return false;
        }
        let Some(wait_ms) = self.settings.unwell_campaign_after_ms else {
            return false;
        };
        let wait_ms = if self.local_health == HealthStatus::Degraded {
            wait_ms
        } else {
            wait_ms.saturating_mul(2)
        };
        let heard = self
            .leader_heard_at
            .map_or(self.started_at, |at| at.max(self.started_at));
        now.saturating_since(heard) >= wait_ms
    }

    /// Whether this node refuses (pre-)votes now, except a leadership-transfer vote: it heard
    /// a leader within the minimum election timeout, or started less than that ago. Then it
    /// neither grants votes nor adopts a higher term from a candidate (Raft thesis 4.2.3), so
    /// a node that was cut off cannot depose a working leader. The start counts as hearing a
    /// leader because a restart forgets `leader_heard_at`: the node may have acknowledged,
    /// just before, a round that the leader's lease rests on (see `lease_valid`).
    fn refuses_votes(&self, now: Millis) -> bool {
        let within_minimum =
            |at: Millis| now.saturating_since(at) < self.settings.election_timeout_min_ms;
        let heard_leader = self.role != Role::Leader
            && self.leader.is_some()
            && self.leader_heard_at.is_some_and(within_minimum);
        heard_leader || within_minimum(self.started_at)
    }

    pub(crate) fn on_election_timeout(&mut self, now: Millis) {
        if self.role == Role::Leader {
            return;
        }
        self.reset_election_timer();
        if self.settings.failover_mode == FailoverMode::Manual || !self.may_campaign_at(now) {
            return;
        }
        if !self.may_campaign() {
            tracing::warn!(
                health = %self.local_health,
                "campaigning although not healthy: no leader heard for the unwell wait"
            );
        }
        self.campaign_cause = if self.last_leader.is_some() {
            ElectionCause::LeaderLost
        } else {
            ElectionCause::Startup
        };
        self.start_pre_vote(now);
    }

    /// An operator's command to campaign now (also in manual failover mode).
    pub fn campaign(&mut self, now: Millis) -> bool {
        if self.role == Role::Leader || !self.may_ever_lead() {
            return false;
        }
        self.campaign_cause = ElectionCause::ManualElection;
        self.start_election(now, false);
        true
    }

    fn start_pre_vote(&mut self, now: Millis) {
        if !self.may_ever_lead() {
            return;
        }
        if self.leader.is_some() {
            self.leaderless_since = self.leader_heard_at.unwrap_or(now);
        }
        self.role = Role::PreCandidate;
        self.votes = BTreeSet::from([self.settings.node_id.clone()]);
        tracing::debug!(term = %self.term, "pre-vote");
        let request = Message::PreVoteRequest {
            term: self.term.next(),
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
            priority: self.settings.priority,
        };
        for voter in self.other_voters() {
            self.send(voter, request.clone());
        }
        if self.log.membership().is_quorum(&self.votes) {
            self.start_election(now, false);
        }
    }

    pub(crate) fn on_pre_vote_request(
        &mut self,
        now: Millis,
        from: NodeId,
        term: Term,
        last_log_index: LogIndex,
        last_log_term: Term,
        priority: Priority,
    ) {
        let up_to_date = self.log.is_up_to_date(last_log_term, last_log_index);
        // Among equally up-to-date logs, a voter that could lead with a higher priority
        // declines, so that it (or another better candidate) wins instead.
        let prefer_self = self.may_campaign()
            && self.settings.failover_mode == FailoverMode::Automatic
            && (self.log.last_term(), self.log.last_index()) == (last_log_term, last_log_index)
            && self.settings.priority > priority;
        let granted = term > self.term
            && up_to_date
            && !prefer_self
            && !self.refuses_votes(now)
            && self.role != Role::Leader;
        self.send(
            from,
            Message::PreVoteResponse {
                term,
                granted,
                current_term: self.term,
            },
        );
    }

    pub(crate) fn on_pre_vote_response(
        &mut self,
        now: Millis,
        from: NodeId,
        term: Term,
        granted: bool,
        current_term: Term,
    ) {
        if !granted && current_term > self.term {
            self.become_follower(now, current_term, None);
            return;
        }
        if self.role != Role::PreCandidate || term != self.term.next() || !granted {
            return;
        }
        self.votes.insert(from);
        if self.log.membership().is_quorum(&self.votes) {
            self.start_election(now, false);
        }
    }

    /// Raise the term, vote for ourselves and ask for votes.
    pub(crate) fn start_election(&mut self, now: Millis, transfer: bool) {
        if self.settings.witness {
            // Every caller checked `may_ever_lead`; this guard keeps any future path from
            // making a witness (whose log holds no command payloads) a candidate.
            return;
        }
        if self.leader.is_some() && self.role != Role::PreCandidate {
            self.leaderless_since = now;
        }
        self.term = self.term.next();
        self.voted_for = Some(self.settings.node_id.clone());
        self.role = Role::Candidate;
        if self.leader.is_some() {
            self.last_leader = self.leader.take();
        }
        self.votes = BTreeSet::from([self.settings.node_id.clone()]);
        self.elections_started += 1;
        self.persist_hard_state();
        self.reset_election_timer();
        tracing::info!(term = %self.term, cause = self.campaign_cause.as_str(), "campaigning");
        self.notify_role();
        let request = Message::VoteRequest {
            term: self.term,
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
            priority: self.settings.priority,
            transfer,
        };
        for voter in self.other_voters() {
            self.send(voter, request.clone());
        }
        if self.log.membership().is_quorum(&self.votes) {
            self.become_leader(now);
        }
    }

    pub(crate) fn on_vote_request(
        &mut self,
        now: Millis,
        from: NodeId,
        term: Term,
        last_log_index: LogIndex,
        last_log_term: Term,
        transfer: bool,
    ) {
        if term > self.term {
            if self.refuses_votes(now) && !transfer {
                // Ignore it entirely: do not even adopt the term (see above).
                self.send(
                    from,
                    Message::VoteResponse {
                        term: self.term,
                        granted: false,
                    },
                );
                return;
            }
            self.become_follower(now, term, None);
        }
        let granted = term == self.term
            && self.role != Role::Leader
            && self.voted_for.as_ref().is_none_or(|voted| *voted == from)
            && self.log.is_up_to_date(last_log_term, last_log_index);
        if granted {
            self.voted_for = Some(from.clone());
            self.persist_hard_state();
            self.reset_election_timer();
        }
        self.send(
            from,
            Message::VoteResponse {
                term: self.term,
                granted,
            },
        );
    }

    pub(crate) fn on_vote_response(
        &mut self,
        now: Millis,
        from: NodeId,
        term: Term,
        granted: bool,
    ) {
        if self.role != Role::Candidate || term != self.term || !granted {
            return;
        }
        self.votes.insert(from);
        if self.log.membership().is_quorum(&self.votes) {
            self.become_leader(now);
        }
    }

    pub(crate) fn become_leader(&mut self, now: Millis) {
        debug_assert_eq!(self.voted_for.as_ref(), Some(&self.settings.node_id));
        self.role = Role::Leader;
        self.lease_forfeited = false;
        self.apply_lag = None;
        self.leader = Some(self.settings.node_id.clone());
        self.votes.clear();
        self.cancel_timer(TimerKind::Election);
        let last_index = self.log.last_index();
        self.progress.clear();
        for member in self.log.membership().members() {
            if *member != self.settings.node_id {
                let mut progress = Progress::new(last_index);
                // A grace period: check-quorum counts followers from the start of the term.
                progress.last_ack_at = Some(now);
                self.progress.insert(member.clone(), progress);
            }
        }
        self.quorum_checked_at = now;
        let start = LeaderStart {
            leader: self.settings.node_id.clone(),
            previous: self.last_leader.clone(),
            cause: self.campaign_cause,
            leaderless_ms: now.saturating_since(self.leaderless_since),
            at_unix_ms: self
                .settings
                .wall_clock_origin_unix_ms
                .saturating_add(now.0),
        };
        tracing::info!(
            term = %self.term,
            cause = start.cause.as_str(),
            previous = ?start.previous,
            leaderless_ms = start.leaderless_ms,
            "became leader"
        );
        self.notify_role();
        let entry = Entry {
            term: self.term,
            index: last_index.next(),
            payload: Payload::LeaderStart(start),
        };
        self.log.push(entry.clone());
        self.persist(Persist::Append(vec![entry]));
        self.last_leader = Some(self.settings.node_id.clone());
        self.set_timer(TimerKind::Heartbeat, self.settings.heartbeat_interval_ms);
        self.set_timer(
            TimerKind::CheckQuorum,
            self.settings.election_timeout_max_ms,
        );
        self.maybe_advance_commit(now);
        self.broadcast_append();
    }
}
