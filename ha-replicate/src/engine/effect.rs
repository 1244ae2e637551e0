//! What an engine asks its driver to do.

use ha_core::{LogIndex, NodeId, Term};

use crate::engine::message::Message;
use crate::engine::role::Role;
use crate::entry::Entry;
use crate::hard_state::HardState;
use crate::snapshot_meta::SnapshotMeta;

/// The timers an engine uses. Each setting carries a generation; a timer delivered with an
/// older generation than the latest setting of its kind is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimerKind {
    /// Follower or candidate: no leader heard for a while; campaign.
    Election,
    /// Leader: send heartbeats, check failback and transfers.
    Heartbeat,
    /// Leader: step down unless a majority answered recently.
    CheckQuorum,
}

impl TimerKind {
    pub(crate) const COUNT: usize = 3;

    pub(crate) fn slot(self) -> usize {
        match self {
            TimerKind::Election => 0,
            TimerKind::Heartbeat => 1,
            TimerKind::CheckQuorum => 2,
        }
    }
}

/// A change to durable state. Must be durable before any effect after it is carried out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Persist {
    /// Save the term and vote.
    HardState(HardState),
    /// Drop entries from this index on.
    TruncateFrom(LogIndex),
    /// Append entries.
    Append(Vec<Entry>),
    /// Make the snapshot received from the leader (held, verified, by the store) the
    /// current one, and compact the log it covers.
    InstallSnapshot(SnapshotMeta),
}

/// Something the driver must do, in order.
///
/// # The ordering contract
/// Effects are carried out in the order given. A [`Effect::Persist`] must be durable before
/// any later effect leaves the node (a message, a client answer) — this is what makes a vote
/// or an append acknowledgement a promise that survives a crash. A driver may batch several
/// inputs' effects and sync once (group commit) as long as it holds every later message until
/// that sync.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Make a change durable.
    Persist(Persist),
    /// Send a message to another node.
    Send {
        /// The destination.
        to: NodeId,
        /// The message.
        message: Message,
    },
    /// Send `to` an [`Message::AppendRequest`] whose entries are no longer held in memory
    /// (their payloads were evicted once applied and durable): read `count` entries from
    /// index `from` back from the store (they were synced; at most `bytes_max` bytes, but
    /// always the first) and send them with the fields given, exactly as the engine would
    /// have sent them from memory. If the store no longer holds them (a snapshot compacted
    /// them meanwhile) nothing is sent: the follower's silence sends the leader back to
    /// probing, as after a lost message.
    SendStored {
        /// The destination.
        to: NodeId,
        /// The leader's term.
        term: Term,
        /// The index before the first entry.
        prev_log_index: LogIndex,
        /// Its term.
        prev_log_term: Term,
        /// The first entry's index.
        from: LogIndex,
        /// How many entries to send (the engine cut the batch as an in-memory send would).
        count: usize,
        /// About how many bytes of entries at most (the first is sent whatever its size).
        bytes_max: usize,
        /// The leader's commit index.
        leader_commit: LogIndex,
        /// The leader's read round.
        read_round: u64,
    },
    /// Deliver `on_timer(kind, generation)` after `after_ms`.
    SetTimer {
        /// Which timer.
        kind: TimerKind,
        /// Its generation.
        generation: u64,
        /// Delay in milliseconds.
        after_ms: u64,
    },
    /// Apply these committed entries to the state machine, in order, then report
    /// `on_applied` with the last index.
    Apply(Vec<Entry>),
    /// Replace the state machine's state with the store's current snapshot (just installed:
    /// a follower that fell too far behind), then report `on_applied` with its last index.
    RestoreSnapshot(SnapshotMeta),
    /// The role, term or known leader changed.
    RoleChanged {
        /// The new role.
        role: Role,
        /// The current term.
        term: Term,
        /// The leader, if known.
        leader: Option<NodeId>,
    },
    /// A linearizable read may be served once the local applied index reaches `index`.
    ReadReady {
        /// The caller's read id.
        read_id: u64,
        /// The index the read must wait for.
        index: LogIndex,
    },
    /// A read could not be confirmed (leadership lost); retry on the leader.
    ReadFailed {
        /// The caller's read id.
        read_id: u64,
        /// The leader to retry on, if known.
        leader: Option<NodeId>,
    },
}
