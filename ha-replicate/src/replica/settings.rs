//! Replica tuning.

use ha_core::Config;

use crate::engine::EngineSettings;
use crate::replica::consistency_monitor::ConsistencySettings;
use crate::replica::snapshot_sender::TransferSettings;

/// Default [`ReplicaSettings::snapshot_log_bytes`]: the log since the last snapshot (on disk,
/// replayed at a restart) stays under about this many bytes. What stays in memory of it is
/// bounded separately by [`EngineSettings::log_cache_bytes`].
pub const SNAPSHOT_LOG_BYTES_DEFAULT: u64 = 64 << 20;

/// When the replica makes its writes durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Sync at the end of every input: lowest latency for a lone request.
    EveryInput,
    /// Sync when the driver calls `flush` (group commit): the driver feeds a batch of inputs,
    /// then flushes once. Messages and answers wait for that sync.
    Batch,
}

/// Settings of one replica.
#[derive(Clone, Debug)]
pub struct ReplicaSettings {
    /// The consensus engine's settings.
    pub engine: EngineSettings,
    /// When writes are synced.
    pub sync_policy: SyncPolicy,
    /// Take a snapshot once this many entries were applied since the last one.
    pub snapshot_every_entries: u64,
    /// Or once the entries since the last one take this many bytes, whether their payloads
    /// are still in memory or were evicted (so a log of large values does not grow on disk,
    /// and in replay time, until the entry count is reached).
    pub snapshot_log_bytes: u64,
    /// How snapshots are streamed to followers.
    pub transfer: TransferSettings,
    /// How often deadlines are checked and snapshots considered.
    pub housekeeping_interval_ms: u64,
    /// The replica consistency monitor (checkpoint digests and repair).
    pub consistency: ConsistencySettings,
    /// This replica is a witness: a voter with no state machine that never leads (see
    /// [`EngineSettings::witness`]). The host's `apply` and `snapshot` are never called, reads
    /// are refused with [`ClientError::Witness`](crate::replica::ClientError::Witness),
    /// writes are forwarded to the leader. Either this or `engine.witness` makes the replica a
    /// witness; [`ReplicaCore::new`](crate::replica::ReplicaCore::new) sets both.
    pub witness: bool,
}

impl ReplicaSettings {
    /// Settings from a validated node config.
    pub fn from_config(config: &Config) -> Self {
        Self {
            engine: EngineSettings::from_config(config),
            sync_policy: SyncPolicy::Batch,
            snapshot_every_entries: 10_000,
            snapshot_log_bytes: SNAPSHOT_LOG_BYTES_DEFAULT,
            transfer: TransferSettings {
                resend_after_ms: config.timing.election_timeout_max_ms,
                stalled_after_ms: 10 * config.timing.election_timeout_max_ms,
                ..TransferSettings::default()
            },
            housekeeping_interval_ms: 10,
            consistency: ConsistencySettings::from_config(&config.consistency_check),
            witness: false,
        }
    }
}
