//! What a running replica reports about itself and its peers.

use std::collections::BTreeMap;

use ha_core::{LogIndex, NodeId, Term};
use serde::{Deserialize, Serialize};

use crate::engine::Role;
use crate::membership::VoterSet;
use crate::replica::FailoverRecord;

/// One peer as the leader sees it (followers report no peers).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// The peer.
    pub id: NodeId,
    /// Whether it votes.
    pub voter: bool,
    /// The highest index known replicated on it.
    pub match_index: LogIndex,
    /// How many entries it is behind the leader's log.
    pub lag_entries: u64,
    /// Its applied index, as last reported.
    pub applied_index: LogIndex,
    /// Entries it holds that its state machine has not applied, as the leader last heard:
    /// `match_index - applied_index`. A slow host on that follower shows here; the leader
    /// sends it nothing past `applied_index +`
    /// [`follower_backlog_entries_max`](crate::engine::EngineSettings::follower_backlog_entries_max).
    #[serde(default)]
    pub apply_backlog: u64,
    /// Whether the leader is holding entries back from it because its backlog reached
    /// `follower_backlog_entries_max` (heartbeats still go): it commits nothing new until its
    /// host catches up, and the cluster's writes commit without it.
    #[serde(default)]
    pub apply_window_full: bool,
    /// Milliseconds since it last answered, if it ever did this term.
    pub last_contact_ms: Option<u64>,
    /// How the leader is bringing it up to date: `None` while it is caught up or being sent
    /// entries normally.
    #[serde(default)]
    pub catch_up: Option<CatchUp>,
}

/// How a leader is bringing a follower that is far behind up to date.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatchUp {
    /// `"snapshot"` while a snapshot is streamed to it, `"stalled"` when nothing it could be
    /// sent brings it forward (see `reason`).
    pub state: String,
    /// Bytes of the snapshot the follower holds, as last acknowledged.
    pub sent_bytes: u64,
    /// The snapshot's size in bytes (0 when no snapshot is being sent).
    pub total_bytes: u64,
    /// Why it is stalled, or `None`.
    pub reason: Option<String>,
    /// Milliseconds since the follower last made progress (acknowledged bytes or entries).
    pub since_progress_ms: u64,
}

/// A replica's view of itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    /// This node.
    pub node_id: NodeId,
    /// Its role.
    pub role: String,
    /// The current term.
    pub term: Term,
    /// The leader, if known.
    pub leader: Option<NodeId>,
    /// Whether this node is part of a working majority (see
    /// `Engine::in_quorum`).
    pub quorum: bool,
    /// The last log index.
    pub last_index: LogIndex,
    /// The commit index.
    pub commit_index: LogIndex,
    /// The applied index.
    pub applied_index: LogIndex,
    /// Entries this node holds that its state machine has not applied yet (`last_index -
    /// applied_index`): what a slow host has queued.
    #[serde(default)]
    pub apply_backlog: u64,
    /// The configuration in force.
    pub membership: VoterSet,
    /// Per-peer replication state (leader only).
    pub peers: Vec<PeerStatus>,
    /// Leadership changes, oldest first.
    pub failover_history: Vec<FailoverRecord>,
    /// Elections this node started.
    pub elections_started: u64,
    /// Received messages refused since start, by cause (every cause, zero included): data no
    /// correct peer sends, dropped without effect (see
    /// [`RefusalCause`](crate::engine::RefusalCause)).
    #[serde(default)]
    pub refused_inputs: BTreeMap<String, u64>,
    /// Snapshot transfers since start, sent and received.
    #[serde(default)]
    pub snapshot_transfer: SnapshotTransferStats,
    /// Messages the transport dropped before a socket write, by cause, since start.
    #[serde(default)]
    pub transport_send_drops: crate::transport::SendDropCounts,
    /// Replication connections (or frames on them) the transport refused, by cause, since
    /// start: wrong key or cluster, plaintext or bad TLS, wrong CA, expired or missing
    /// certificate, a certificate used for another node, and the rest of
    /// [`RejectCause`](crate::transport::RejectCause).
    #[serde(default)]
    pub transport_refusals: crate::transport::RejectCounts,
    /// The replica consistency monitor: checkpoint digests, verdicts (on the leader) and
    /// whether this replica is diverged.
    #[serde(default)]
    pub consistency: crate::replica::ConsistencyStatus,
    /// Whether this node is a witness: a voter with no state machine that never leads (see
    /// [`EngineSettings::witness`](crate::engine::EngineSettings::witness)).
    #[serde(default)]
    pub witness: bool,
}

/// Counts of snapshot transfers since the node started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotTransferStats {
    /// Snapshot bytes sent to followers (chunks, resends included).
    pub bytes_sent: u64,
    /// Snapshot bytes received and kept (duplicates and refused chunks not counted).
    pub bytes_received: u64,
    /// Snapshots received, verified and installed.
    pub installs: u64,
    /// Transfers this node resumed from a partial snapshot it held (after a dropped
    /// connection, a restart or a new leader with the same snapshot).
    pub resumes: u64,
    /// Received snapshots thrown away: a new snapshot replaced a partial one, or the whole
    /// failed its checksum.
    pub discards: u64,
    /// Snapshots this node took of its own state.
    pub taken: u64,
    /// How long the last snapshot of its own state took to write, in milliseconds.
    pub last_take_ms: u64,
    /// The size of the current snapshot in bytes.
    pub current_bytes: u64,
}

/// The role, term and leader, published whenever they change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleView {
    /// The role.
    pub role: Role,
    /// The term.
    pub term: Term,
    /// The leader, if known.
    pub leader: Option<NodeId>,
}
