//! What engines say to each other.

use std::sync::Arc;

use ha_core::{LogIndex, Priority, Term};
use serde::{Deserialize, Serialize};

use crate::entry::{ElectionCause, Entry};
use crate::snapshot_meta::SnapshotMeta;

/// A message between two engines. Every message carries the sender's term.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// "Would you vote for me in `term`?" Sent before a real election, without changing any
    /// state, so a node that cannot win (or a rejoining node) does not disrupt the cluster.
    PreVoteRequest {
        /// The term the candidate would campaign in (its current term + 1).
        term: Term,
        /// The candidate's last log index.
        last_log_index: LogIndex,
        /// The candidate's last log term.
        last_log_term: Term,
        /// The candidate's priority.
        priority: Priority,
    },
    /// The answer to a pre-vote.
    PreVoteResponse {
        /// The term asked about.
        term: Term,
        /// Whether the vote would be granted.
        granted: bool,
        /// The responder's current term (a candidate behind it catches up).
        current_term: Term,
    },
    /// "Vote for me in `term`."
    VoteRequest {
        /// The election's term.
        term: Term,
        /// The candidate's last log index.
        last_log_index: LogIndex,
        /// The candidate's last log term.
        last_log_term: Term,
        /// The candidate's priority.
        priority: Priority,
        /// Set when the old leader asked for this election (leadership transfer): voters
        /// then ignore that they heard from a leader recently.
        transfer: bool,
    },
    /// The answer to a vote request.
    VoteResponse {
        /// The responder's term.
        term: Term,
        /// Whether the vote was granted.
        granted: bool,
    },
    /// Log entries (none for a heartbeat) after `prev_log_index`.
    AppendRequest {
        /// The leader's term.
        term: Term,
        /// The index just before the first entry.
        prev_log_index: LogIndex,
        /// That entry's term.
        prev_log_term: Term,
        /// The entries, contiguous.
        entries: Vec<Entry>,
        /// The leader's commit index.
        leader_commit: LogIndex,
        /// Echoed back, to match answers to read-index rounds.
        read_round: u64,
    },
    /// The answer to an append.
    AppendResponse {
        /// The responder's term.
        term: Term,
        /// Whether the entries were accepted (the logs match at `prev_log_index`).
        success: bool,
        /// On success, the last index known to match the leader; on failure, where the
        /// leader should retry from (the follower's conflict hint).
        index: LogIndex,
        /// The responder's applied index, for STRONG writes and lag reporting.
        applied_index: LogIndex,
        /// The request's read round.
        read_round: u64,
    },
    /// A snapshot replacing the log prefix the leader no longer has.
    InstallSnapshot {
        /// The leader's term.
        term: Term,
        /// What the snapshot covers.
        meta: SnapshotMeta,
        /// The state machine's snapshot bytes.
        data: Arc<Vec<u8>>,
    },
    /// The answer to a snapshot.
    InstallSnapshotResponse {
        /// The responder's term.
        term: Term,
        /// The snapshot's last index, now installed (or already covered).
        last_index: LogIndex,
    },
    /// Sent by a leader handing over: "start an election now".
    TimeoutNow {
        /// The leader's term.
        term: Term,
        /// Why the leader hands over.
        cause: ElectionCause,
    },
}

impl Message {
    /// The sender's term.
    pub fn term(&self) -> Term {
        match self {
            Message::PreVoteRequest { term, .. }
            | Message::PreVoteResponse { term, .. }
            | Message::VoteRequest { term, .. }
            | Message::VoteResponse { term, .. }
            | Message::AppendRequest { term, .. }
            | Message::AppendResponse { term, .. }
            | Message::InstallSnapshot { term, .. }
            | Message::InstallSnapshotResponse { term, .. }
            | Message::TimeoutNow { term, .. } => *term,
        }
    }

    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::PreVoteRequest { .. } => "pre_vote_request",
            Message::PreVoteResponse { .. } => "pre_vote_response",
            Message::VoteRequest { .. } => "vote_request",
            Message::VoteResponse { .. } => "vote_response",
            Message::AppendRequest { .. } => "append_request",
            Message::AppendResponse { .. } => "append_response",
            Message::InstallSnapshot { .. } => "install_snapshot",
            Message::InstallSnapshotResponse { .. } => "install_snapshot_response",
            Message::TimeoutNow { .. } => "timeout_now",
        }
    }
}
