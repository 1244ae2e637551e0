//! Constructors for the engine's messages with literal fields, in the order the fields are
//! declared: the `engine_*` tests send and expect the same few message shapes hundreds of times,
//! and a one-line constructor keeps each test's whole effect list readable at a glance.

use ha_core::{LogIndex, Priority, Term};
use ha_replicate::engine::Message;
use ha_replicate::entry::{ElectionCause, Entry};

/// A pre-vote request for `term` from a candidate whose log ends at
/// (`last_log_index`, `last_log_term`), with `priority`.
pub fn pre_vote_request(
    term: u64,
    last_log_index: u64,
    last_log_term: u64,
    priority: u32,
) -> Message {
    Message::PreVoteRequest {
        term: Term(term),
        last_log_index: LogIndex(last_log_index),
        last_log_term: Term(last_log_term),
        priority: Priority(priority),
    }
}

/// The answer to a pre-vote for `term` by a node in `current_term`.
pub fn pre_vote_response(term: u64, granted: bool, current_term: u64) -> Message {
    Message::PreVoteResponse {
        term: Term(term),
        granted,
        current_term: Term(current_term),
    }
}

/// A vote request for `term` from a candidate whose log ends at
/// (`last_log_index`, `last_log_term`), with `priority`; `transfer` for a leadership transfer.
pub fn vote_request(
    term: u64,
    last_log_index: u64,
    last_log_term: u64,
    priority: u32,
    transfer: bool,
) -> Message {
    Message::VoteRequest {
        term: Term(term),
        last_log_index: LogIndex(last_log_index),
        last_log_term: Term(last_log_term),
        priority: Priority(priority),
        transfer,
    }
}

/// The answer to a vote request, in `term`.
pub fn vote_response(term: u64, granted: bool) -> Message {
    Message::VoteResponse {
        term: Term(term),
        granted,
    }
}

/// A leader's append of `entries` after (`prev_log_index`, `prev_log_term`) in `term`.
pub fn append_request(
    term: u64,
    prev_log_index: u64,
    prev_log_term: u64,
    entries: Vec<Entry>,
    leader_commit: u64,
    read_round: u64,
) -> Message {
    Message::AppendRequest {
        term: Term(term),
        prev_log_index: LogIndex(prev_log_index),
        prev_log_term: Term(prev_log_term),
        entries,
        leader_commit: LogIndex(leader_commit),
        read_round,
    }
}

/// A follower's answer to an append in `term`: its log matches through `index` (or not,
/// `success` false), it applied through `applied_index`, for read round `read_round`.
pub fn append_response(
    term: u64,
    success: bool,
    index: u64,
    applied_index: u64,
    read_round: u64,
) -> Message {
    Message::AppendResponse {
        term: Term(term),
        success,
        index: LogIndex(index),
        applied_index: LogIndex(applied_index),
        read_round,
    }
}

/// A leader's order to campaign at once in `term` (a leadership transfer), for `cause`.
pub fn timeout_now(term: u64, cause: ElectionCause) -> Message {
    Message::TimeoutNow {
        term: Term(term),
        cause,
    }
}
