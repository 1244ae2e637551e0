//! What engines say to each other.

use ha_core::codec::RPC_FRAME_BYTES_MAX;
use ha_core::{LogIndex, Priority, Term};
use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::entry::{ElectionCause, Entry, Payload};
use crate::snapshot_meta::SnapshotMeta;

/// Most entries one [`Message::AppendRequest`] may carry. A longer list is refused while it is
/// decoded, before any entry is read; the engine never sends more, whatever
/// `append_entries_max` says.
pub const APPEND_ENTRIES_WIRE_MAX: usize = 65_536;

/// Most memory, as estimated by the decoder, the entries of one decoded
/// [`Message::AppendRequest`] may take. An entry can take 20 to 30 times the bytes it needs on
/// the wire (an empty command is 4 bytes encoded and 88 in memory), so without this a frame
/// within the 16 MiB limit could make a node allocate over 500 MB while decoding it. Twice the
/// frame limit leaves room for every append the engine sends: at most
/// [`APPEND_ENTRIES_WIRE_MAX`] entries and one frame of payload bytes.
pub const APPEND_DECODED_BYTES_MAX: usize = 2 * RPC_FRAME_BYTES_MAX;

/// Most entries room is made for before they arrive.
const PREALLOCATED_ENTRIES_MAX: usize = 1024;

/// The memory one decoded entry takes, estimated: the entry itself and what its payload holds.
fn decoded_entry_bytes(entry: &Entry) -> usize {
    std::mem::size_of::<Entry>()
        + match &entry.payload {
            Payload::Command(bytes) => bytes.len(),
            Payload::Membership(membership) => {
                membership.len() * crate::membership::DECODED_MEMBER_BYTES
            }
            Payload::LeaderStart(start) => {
                start.leader.as_str().len()
                    + start
                        .previous
                        .as_ref()
                        .map_or(0, |previous| previous.as_str().len())
            }
            Payload::Checkpoint => 0,
        }
}

/// Decode the entries of an append within [`APPEND_ENTRIES_WIRE_MAX`] and
/// [`APPEND_DECODED_BYTES_MAX`].
fn decode_append_entries<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<Entry>, D::Error> {
    struct Entries;

    impl<'de> Visitor<'de> for Entries {
        type Value = Vec<Entry>;

        fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(
                formatter,
                "at most {APPEND_ENTRIES_WIRE_MAX} entries taking at most \
                 {APPEND_DECODED_BYTES_MAX} bytes decoded"
            )
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut sequence: A) -> Result<Vec<Entry>, A::Error> {
            let claimed = sequence.size_hint().unwrap_or(0);
            if claimed > APPEND_ENTRIES_WIRE_MAX {
                return Err(serde::de::Error::invalid_length(claimed, &self));
            }
            // The claim is only a claim: room for more is made as entries really arrive.
            let mut entries = Vec::with_capacity(claimed.min(PREALLOCATED_ENTRIES_MAX));
            let mut decoded_bytes = 0usize;
            while let Some(entry) = sequence.next_element::<Entry>()? {
                decoded_bytes = decoded_bytes.saturating_add(decoded_entry_bytes(&entry));
                if entries.len() >= APPEND_ENTRIES_WIRE_MAX
                    || decoded_bytes > APPEND_DECODED_BYTES_MAX
                {
                    return Err(serde::de::Error::invalid_length(entries.len() + 1, &self));
                }
                entries.push(entry);
            }
            Ok(entries)
        }
    }

    deserializer.deserialize_seq(Entries)
}

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
        /// The entries, contiguous; at most [`APPEND_ENTRIES_WIRE_MAX`].
        #[serde(deserialize_with = "decode_append_entries")]
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
    /// A snapshot replacing the log prefix the leader no longer has. The leader's engine
    /// sends it without bytes: its replica streams the snapshot's bytes in chunks, and the
    /// follower's replica hands this message to its engine once it holds them all, verified.
    InstallSnapshot {
        /// The leader's term.
        term: Term,
        /// What the snapshot covers.
        meta: SnapshotMeta,
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
