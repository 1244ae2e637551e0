//! Linearizable reads: read-index rounds and the leader lease.

use ha_core::Millis;

use crate::engine::effect::Effect;
use crate::engine::engine::{Engine, PendingRead};
use crate::engine::error::ReadError;
use crate::engine::quorum_value::quorum_value;
use crate::engine::role::Role;

/// Rounds remembered for lease computation; older ones no longer matter.
const ROUNDS_REMEMBERED_MAX: usize = 256;
/// Reads waiting at once; beyond this the leader refuses new ones (they would time out).
const PENDING_READS_MAX: usize = 65_536;

impl Engine {
    /// Start a linearizable read (leader only). The engine answers with
    /// [`Effect::ReadReady`] once a majority has confirmed this node still leads (or at once
    /// under a valid lease); serve the read when the applied index reaches its index.
    ///
    /// # Errors
    /// [`ReadError::NotLeader`]; forward the read to the leader.
    pub fn read_index(&mut self, now: Millis, read_id: u64) -> Result<(), ReadError> {
        self.observe(now);
        if self.role != Role::Leader || self.pending_reads.len() >= PENDING_READS_MAX {
            return Err(ReadError::NotLeader {
                leader: self.leader.clone(),
            });
        }
        // Until an entry of this term commits, the commit index may be behind what an
        // earlier leader acknowledged (Raft thesis 6.4).
        if !self.committed_in_own_term() {
            self.reads_awaiting_term_commit.push(read_id);
            return Ok(());
        }
        self.start_read(now, read_id);
        Ok(())
    }

    fn start_read(&mut self, now: Millis, read_id: u64) {
        let index = self.commit_index;
        if self.lease_valid(now) || self.log.membership().quorum() <= 1 {
            self.effects.push(Effect::ReadReady { read_id, index });
            return;
        }
        // Every read gets a round that starts after it arrived; the heartbeats that carry it
        // go out when the effects are drained, so reads arriving together share one message.
        self.start_round(now);
        self.heartbeat_pending = true;
        self.pending_reads.push_back(PendingRead {
            read_id,
            index,
            round: self.round,
        });
    }

    /// Begin a new confirmation round: answers to messages sent from now on prove
    /// leadership as of now.
    pub(crate) fn start_round(&mut self, now: Millis) {
        self.round += 1;
        self.round_sent_at.push_back((self.round, now));
        while self.round_sent_at.len() > ROUNDS_REMEMBERED_MAX {
            self.round_sent_at.pop_front();
        }
    }

    /// The highest round a majority of voters (this node included) has answered.
    fn quorum_round(&self) -> u64 {
        let membership = self.log.membership();
        let rounds = membership.voters.iter().map(|voter| {
            if *voter == self.settings.node_id {
                self.round
            } else {
                self.progress
                    .get(voter)
                    .map(|progress| progress.acked_round)
                    .unwrap_or(0)
            }
        });
        quorum_value(rounds, membership.quorum()).unwrap_or(0)
    }

    /// The lease holds while a majority confirmed leadership less than the minimum election
    /// timeout (minus a drift margin) ago: no other node can have won an election since,
    /// because every voter refuses pre-votes and votes for `election_timeout_min` after it
    /// last heard a leader, and for as long after it (re)started (it may have answered the
    /// round just before). The one vote voters grant regardless is a leadership-transfer
    /// vote, which only a `TimeoutNow` from this leader triggers: once one has been sent in
    /// this term, the lease is gone for the rest of the term (the target may act on it late,
    /// after the transfer was abandoned here), and reads take a round each.
    ///
    /// Assumes no node's clock runs faster than another's by more than
    /// `election_timeout_min / (election_timeout_min - clock_drift_margin)` (1.25 with the
    /// default margin of a fifth), and that clocks do not jump (a monotonic clock).
    pub(crate) fn lease_valid(&self, now: Millis) -> bool {
        if !self.settings.lease_reads
            || self.transfer.is_some()
            || self.lease_forfeited
            || self.role != Role::Leader
        {
            return false;
        }
        let round = self.quorum_round();
        let Some(sent_at) = self
            .round_sent_at
            .iter()
            .find(|(known, _)| *known == round)
            .map(|(_, at)| *at)
        else {
            return false;
        };
        let lease_ms = self
            .settings
            .election_timeout_min_ms
            .saturating_sub(self.settings.clock_drift_margin_ms);
        now.saturating_since(sent_at) < lease_ms
    }

    /// Whether a read started now would be served from the lease, without a round (for the
    /// simulator's check that a valid lease excludes any leader of a later term).
    #[cfg(any(test, feature = "test-support"))]
    pub fn lease_holds(&self, now: Millis) -> bool {
        self.lease_valid(now)
    }

    /// Answer the reads whose round a majority has now confirmed.
    pub(crate) fn advance_reads(&mut self, _now: Millis) {
        let confirmed = self.quorum_round();
        while let Some(read) = self.pending_reads.front() {
            if read.round > confirmed {
                break;
            }
            let read = self.pending_reads.pop_front();
            if let Some(read) = read {
                self.effects.push(Effect::ReadReady {
                    read_id: read.read_id,
                    index: read.index,
                });
            }
        }
    }

    /// An entry of this term committed: reads held back until then can start.
    pub(crate) fn on_commit_advanced(&mut self) {
        if self.committed_in_own_term() {
            let now = self.now;
            for read_id in std::mem::take(&mut self.reads_awaiting_term_commit) {
                self.start_read(now, read_id);
            }
        }
    }

    /// The index a linearizable read started now would wait for, without a round (for
    /// diagnostics and tests).
    #[cfg(any(test, feature = "test-support"))]
    pub fn read_index_now(&self) -> ha_core::LogIndex {
        self.commit_index
    }
}
