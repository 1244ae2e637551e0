//! Replica tuning.

use ha_core::Config;

use crate::engine::EngineSettings;

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
    /// How often deadlines are checked and snapshots considered.
    pub housekeeping_interval_ms: u64,
}

impl ReplicaSettings {
    /// Settings from a validated node config.
    pub fn from_config(config: &Config) -> Self {
        Self {
            engine: EngineSettings::from_config(config),
            sync_policy: SyncPolicy::Batch,
            snapshot_every_entries: 10_000,
            housekeeping_interval_ms: 10,
        }
    }
}
