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
    /// Leader: tell followers the commit index no append has carried to them yet
    /// ([`EngineSettings::commit_notice_delay_ms`](crate::engine::EngineSettings::commit_notice_delay_ms)).
    CommitNotice,
}

impl TimerKind {
    pub(crate) const COUNT: usize = 4;

    pub(crate) fn slot(self) -> usize {
        match self {
            TimerKind::Election => 0,
            TimerKind::Heartbeat => 1,
            TimerKind::CheckQuorum => 2,
            TimerKind::CommitNotice => 3,
        }
    }
}

/// The position of a storage write in the order the engine issued them: the `n`-th
/// [`Effect::Persist`] since the engine started is `PersistId(n)` (the first is 1; 0 means
/// "none"). Writes are carried out in this order, so "durable through `n`" says which writes a
/// sync has covered: the driver reports it with `Engine::on_persisted`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PersistId(pub u64);

impl PersistId {
    /// The id after this one.
    pub fn next(self) -> Self {
        PersistId(self.0 + 1)
    }
}

/// When an outgoing effect may be carried out: the barrier travels with the effect (as
/// openraft's `Respond { when: IOFlushed }`), so the simulator and the driver cannot disagree
/// about what waits for the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum After {
    /// At once: it promises nothing about this node's disk, or everything it promises is
    /// durable already. A leader's appends are sent this way before its own fsync (Raft
    /// thesis 10.2.1): it counts its own log towards a commit only once durable.
    Now,
    /// Once every storage write through this one is durable (written and synced): a vote, an
    /// append acknowledgement or an answer that rests on them.
    Durable(PersistId),
}

impl After {
    /// Whether the condition holds once writes through `durable` are durable.
    pub fn holds(self, durable: PersistId) -> bool {
        match self {
            After::Now => true,
            After::Durable(id) => id <= durable,
        }
    }
}

/// A change to durable state, written in [`PersistId`] order. Nothing that waits for it
/// ([`After::Durable`]) leaves before a sync covers it.
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
/// Storage writes ([`Effect::Persist`]) are carried out in the order given (their ids
/// increase by one). A message carries its own barrier ([`Effect::Send::after`]): it leaves
/// once every write through the id it names is durable, which is what makes a vote or an
/// append acknowledgement a promise that survives a crash. The engine decides the barrier: a
/// leader's appends are [`After::Now`] (both disks write in parallel), everything else waits
/// for every write issued before it. A driver may batch several inputs' writes and sync once
/// (group commit), then report `Engine::on_persisted`
/// with the last id the sync covered; effects waiting for it may then leave, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Write a change (durable once a later sync covers `id`).
    Persist {
        /// Its position among this engine's writes.
        id: PersistId,
        /// The change.
        persist: Persist,
    },
    /// Send a message to another node.
    Send {
        /// The destination.
        to: NodeId,
        /// The message.
        message: Message,
        /// When it may leave.
        after: After,
    },
    /// Send `to` an [`Message::AppendRequest`] whose entries are no longer held in memory
    /// (their payloads were evicted once applied and durable): read `count` entries from
    /// index `from` back from the store (they were synced; at most `bytes_max` bytes, but
    /// always the first) and send them with the fields given, exactly as the engine would
    /// have sent them from memory. Only a leader sends this, and like its other appends it
    /// may leave at once ([`After::Now`]): the entries are durable already. If the store no longer holds them (a snapshot compacted
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
