//! What a leader knows about each follower's copy of the log.

use ha_core::{LogIndex, Millis};

/// How the leader is sending to one follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicationState {
    /// Looking for the point where the logs match: one append at a time.
    Probe,
    /// Logs match: appends are pipelined up to the in-flight window.
    Replicate,
    /// The follower needs a snapshot; waiting for its answer.
    Snapshot {
        /// When the snapshot was last sent (it is resent if unanswered).
        sent_at: Millis,
    },
}

/// The leader's view of one follower (or learner).
#[derive(Clone, Debug)]
pub struct Progress {
    /// The highest index known to be replicated on the follower.
    pub match_index: LogIndex,
    /// The next index to send.
    pub next_index: LogIndex,
    /// How appends are being sent.
    pub state: ReplicationState,
    /// Appends sent and not yet answered.
    pub in_flight: usize,
    /// When the follower last answered in this term.
    pub last_ack_at: Option<Millis>,
    /// The follower's applied index, as last reported.
    pub applied_index: LogIndex,
    /// The highest read round it has answered.
    pub acked_round: u64,
    /// Since when it has been caught up, healthy and answering (for failback).
    pub eligible_since: Option<Millis>,
    /// The leader's commit index when `eligible_since` was set: failback waits until the
    /// follower reports that far applied, so leadership never goes back to a node still
    /// re-applying its log (see `engine/apply_lag.rs`).
    pub eligible_commit: LogIndex,
    /// The leader's commit index in the last append sent to it.
    pub commit_sent: LogIndex,
}

impl Progress {
    /// A follower the leader knows nothing about yet.
    pub fn new(last_index: LogIndex) -> Self {
        Self {
            match_index: LogIndex(0),
            next_index: last_index.next(),
            state: ReplicationState::Probe,
            in_flight: 0,
            last_ack_at: None,
            applied_index: LogIndex(0),
            acked_round: 0,
            eligible_since: None,
            eligible_commit: LogIndex(0),
            commit_sent: LogIndex(0),
        }
    }

    /// Go back to probing from the entry after the last known match.
    pub fn become_probe(&mut self) {
        self.state = ReplicationState::Probe;
        self.next_index = self.match_index.next();
        self.in_flight = 0;
    }

    /// Whether another append may be sent now.
    pub fn can_send(&self, in_flight_max: usize) -> bool {
        match self.state {
            ReplicationState::Probe => self.in_flight == 0,
            ReplicationState::Replicate => self.in_flight < in_flight_max,
            ReplicationState::Snapshot { .. } => false,
        }
    }
}
