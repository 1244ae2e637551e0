//! What a node's shared map needs to start: limits, dissemination, where and how it is stored.

use std::path::PathBuf;

use ha_core::{Config, SharedStateFsync};

use super::limits::StateLimits;
use super::replicator_settings::ReplicatorSettings;

/// The subdirectory of a node's data dir that holds the shared map's log.
pub const SHARED_STATE_DIR_NAME: &str = "shared_state";

/// Settings of one node's shared map (part of [`GossipSettings`](crate::GossipSettings)).
///
/// ```
/// use ha_core::{Config, NodeId, SharedStateFsync};
/// use ha_gossip::shared_state::SharedStateSettings;
///
/// let mut config = Config::single(NodeId::new("n1")?, "127.0.0.1:7101".parse()?);
/// config.data_dir = Some("/var/lib/ha/n1".into());
/// config.shared_state.fanout = 4;
/// let settings = SharedStateSettings::from_config(&config);
/// assert_eq!(settings.dir, Some("/var/lib/ha/n1/shared_state".into()));
/// assert_eq!(settings.replicator.fanout, 4);
/// assert_eq!(settings.fsync, SharedStateFsync::Always);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct SharedStateSettings {
    /// Sizes and counts the map refuses to exceed.
    pub limits: StateLimits,
    /// How deltas and digests are disseminated.
    pub replicator: ReplicatorSettings,
    /// Where the log lives; `None` keeps the map in memory only (lost on restart).
    pub dir: Option<PathBuf>,
    /// When the log is synced.
    pub fsync: SharedStateFsync,
    /// With [`SharedStateFsync::Batched`]: milliseconds between syncs.
    pub fsync_interval_ms: u64,
}

impl Default for SharedStateSettings {
    /// In memory, default limits and dissemination.
    fn default() -> Self {
        Self {
            limits: StateLimits::default(),
            replicator: ReplicatorSettings::default(),
            dir: None,
            fsync: SharedStateFsync::Always,
            fsync_interval_ms: ha_core::SHARED_STATE_FSYNC_INTERVAL_MS_DEFAULT,
        }
    }
}

impl SharedStateSettings {
    /// Settings from a node's `[shared_state]` table; the log goes to
    /// `<data_dir>/shared_state` when the node has a data dir.
    pub fn from_config(config: &Config) -> Self {
        let table = &config.shared_state;
        let limits = StateLimits {
            value_bytes_max: table.value_bytes_max,
            keys_max: table.keys_max,
            tombstones_max: table.tombstones_max,
            tombstone_grace_ms: table.tombstone_grace_s.saturating_mul(1000),
            ..StateLimits::default()
        };
        let replicator = ReplicatorSettings {
            fanout: table.fanout,
            anti_entropy_interval_ms: table.anti_entropy_interval_ms,
            ..ReplicatorSettings::default()
        };
        Self {
            limits,
            replicator,
            dir: config
                .data_dir
                .as_ref()
                .map(|dir| dir.join(SHARED_STATE_DIR_NAME)),
            fsync: table.fsync,
            fsync_interval_ms: table.fsync_interval_ms,
        }
    }
}
