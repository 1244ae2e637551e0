//! The multi-master shared map's settings (issue 15): the `[shared_state]` table of
//! [`Config`](crate::Config).
//!
//! The map itself lives in `ha-gossip` (`shared_state`); this is only what an operator can set.

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// Default and largest [`SharedStateConfig::value_bytes_max`]: one entry (key, value, stamps)
/// must fit one state packet of 8 KiB, so no entry is ever too large to disseminate.
pub const SHARED_STATE_VALUE_BYTES_MAX_DEFAULT: usize = 4096;
/// Default [`SharedStateConfig::keys_max`]: live keys one node holds.
pub const SHARED_STATE_KEYS_MAX_DEFAULT: usize = 100_000;
/// Default [`SharedStateConfig::tombstones_max`]: deleted keys remembered until collected.
pub const SHARED_STATE_TOMBSTONES_MAX_DEFAULT: usize = 100_000;
/// Largest accepted `keys_max` and `tombstones_max`: every key is held in memory and
/// compared by anti-entropy.
pub const SHARED_STATE_KEYS_MAX_LIMIT: usize = 10_000_000;
/// Default [`SharedStateConfig::tombstone_grace_s`]: a day.
pub const SHARED_STATE_TOMBSTONE_GRACE_S_DEFAULT: u64 = 86_400;
/// Shortest accepted tombstone grace period: a member cut off for longer than the grace period
/// can bring a deleted key back, so it must be much longer than an anti-entropy round.
pub const SHARED_STATE_TOMBSTONE_GRACE_S_MIN: u64 = 60;
/// Longest accepted tombstone grace period (a year).
pub const SHARED_STATE_TOMBSTONE_GRACE_S_MAX: u64 = 365 * 86_400;
/// Default [`SharedStateConfig::fanout`]: peers each batch of deltas is pushed to.
pub const SHARED_STATE_FANOUT_DEFAULT: usize = 3;
/// Largest accepted fanout.
pub const SHARED_STATE_FANOUT_MAX: usize = 16;
/// Default [`SharedStateConfig::anti_entropy_interval_ms`].
pub const SHARED_STATE_ANTI_ENTROPY_INTERVAL_MS_DEFAULT: u64 = 1_000;
/// Shortest accepted anti-entropy interval: each round sends a 2 KiB digest.
pub const SHARED_STATE_ANTI_ENTROPY_INTERVAL_MS_MIN: u64 = 50;
/// Longest accepted anti-entropy interval (10 minutes).
pub const SHARED_STATE_ANTI_ENTROPY_INTERVAL_MS_MAX: u64 = 600_000;
/// Default [`SharedStateConfig::fsync_interval_ms`] (used with `fsync = "batched"`).
pub const SHARED_STATE_FSYNC_INTERVAL_MS_DEFAULT: u64 = 100;
/// Longest accepted batched fsync interval.
pub const SHARED_STATE_FSYNC_INTERVAL_MS_MAX: u64 = 10_000;

/// When the shared map's log on disk is synced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SharedStateFsync {
    /// A local write is acknowledged after its record is synced: a restarted node keeps
    /// every write it acknowledged.
    #[default]
    Always,
    /// Records are synced every `fsync_interval_ms` (and before any packet that carries
    /// them leaves): a crash can lose the writes of the last interval, acknowledged or not.
    Batched,
    /// Never synced by ha (the OS writes back when it likes): a crash can lose any recent
    /// write. For caches and tests.
    Never,
}

impl SharedStateFsync {
    /// The config file's spelling: `always`, `batched` or `never`.
    pub fn as_str(self) -> &'static str {
        match self {
            SharedStateFsync::Always => "always",
            SharedStateFsync::Batched => "batched",
            SharedStateFsync::Never => "never",
        }
    }
}

/// The multi-master shared map (`node.shared_state()`, `/v1/state`): limits, durability and
/// dissemination. Writable on every node without a leader or quorum; see docs/ARCHITECTURE.md,
/// "Multi-master state and the witness".
///
/// ```
/// use ha_core::{SharedStateConfig, SharedStateFsync};
/// let config = SharedStateConfig { fsync: SharedStateFsync::Batched, ..Default::default() };
/// config.validate().unwrap();
/// let error = SharedStateConfig { fanout: 0, ..config }.validate().unwrap_err();
/// assert_eq!(error.field, "shared_state.fanout");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SharedStateConfig {
    /// When the map's log is synced (default `always`).
    pub fsync: SharedStateFsync,
    /// With `fsync = "batched"`: milliseconds between syncs.
    pub fsync_interval_ms: u64,
    /// Largest value of one key, in bytes.
    pub value_bytes_max: usize,
    /// Most live keys; a write of a new key beyond it is refused (409 `limit`).
    pub keys_max: usize,
    /// Most tombstones (deleted keys remembered); a delete beyond it is refused.
    pub tombstones_max: usize,
    /// Seconds a tombstone is kept before it is collected. A member that comes back after
    /// being cut off for longer can bring the deleted key back.
    pub tombstone_grace_s: u64,
    /// Peers each batch of local writes is pushed to.
    pub fanout: usize,
    /// Milliseconds between two anti-entropy rounds (digest exchange with one random peer).
    pub anti_entropy_interval_ms: u64,
}

impl Default for SharedStateConfig {
    fn default() -> Self {
        Self {
            fsync: SharedStateFsync::Always,
            fsync_interval_ms: SHARED_STATE_FSYNC_INTERVAL_MS_DEFAULT,
            value_bytes_max: SHARED_STATE_VALUE_BYTES_MAX_DEFAULT,
            keys_max: SHARED_STATE_KEYS_MAX_DEFAULT,
            tombstones_max: SHARED_STATE_TOMBSTONES_MAX_DEFAULT,
            tombstone_grace_s: SHARED_STATE_TOMBSTONE_GRACE_S_DEFAULT,
            fanout: SHARED_STATE_FANOUT_DEFAULT,
            anti_entropy_interval_ms: SHARED_STATE_ANTI_ENTROPY_INTERVAL_MS_DEFAULT,
        }
    }
}

impl SharedStateConfig {
    /// Check every field.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first bad `shared_state.*` field and its accepted range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_range(
            "shared_state.fsync_interval_ms",
            self.fsync_interval_ms,
            1,
            SHARED_STATE_FSYNC_INTERVAL_MS_MAX,
            SHARED_STATE_FSYNC_INTERVAL_MS_DEFAULT,
            "milliseconds",
        )?;
        check_range(
            "shared_state.value_bytes_max",
            self.value_bytes_max as u64,
            1,
            SHARED_STATE_VALUE_BYTES_MAX_DEFAULT as u64,
            SHARED_STATE_VALUE_BYTES_MAX_DEFAULT as u64,
            "bytes (one entry must fit one 8 KiB state packet)",
        )?;
        check_range(
            "shared_state.keys_max",
            self.keys_max as u64,
            1,
            SHARED_STATE_KEYS_MAX_LIMIT as u64,
            SHARED_STATE_KEYS_MAX_DEFAULT as u64,
            "keys",
        )?;
        check_range(
            "shared_state.tombstones_max",
            self.tombstones_max as u64,
            1,
            SHARED_STATE_KEYS_MAX_LIMIT as u64,
            SHARED_STATE_TOMBSTONES_MAX_DEFAULT as u64,
            "tombstones",
        )?;
        check_range(
            "shared_state.tombstone_grace_s",
            self.tombstone_grace_s,
            SHARED_STATE_TOMBSTONE_GRACE_S_MIN,
            SHARED_STATE_TOMBSTONE_GRACE_S_MAX,
            SHARED_STATE_TOMBSTONE_GRACE_S_DEFAULT,
            "seconds (a member cut off for longer can bring deleted keys back)",
        )?;
        check_range(
            "shared_state.fanout",
            self.fanout as u64,
            1,
            SHARED_STATE_FANOUT_MAX as u64,
            SHARED_STATE_FANOUT_DEFAULT as u64,
            "peers",
        )?;
        check_range(
            "shared_state.anti_entropy_interval_ms",
            self.anti_entropy_interval_ms,
            SHARED_STATE_ANTI_ENTROPY_INTERVAL_MS_MIN,
            SHARED_STATE_ANTI_ENTROPY_INTERVAL_MS_MAX,
            SHARED_STATE_ANTI_ENTROPY_INTERVAL_MS_DEFAULT,
            "milliseconds",
        )
    }
}

fn check_range(
    field: &'static str,
    value: u64,
    min: u64,
    max: u64,
    default: u64,
    unit: &str,
) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(ConfigError::new(
        field,
        format!("is {value}"),
        format!("give {min} to {max} {unit}; the default is {default}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_valid_and_syncs_every_write() {
        let config = SharedStateConfig::default();
        config.validate().unwrap();
        assert_eq!(config.fsync, SharedStateFsync::Always);
    }

    /// Each field out of range: the error names exactly that field.
    #[test]
    fn each_field_out_of_range_is_named() {
        let base = SharedStateConfig::default();
        let cases: [(SharedStateConfig, &str); 10] = [
            (
                SharedStateConfig {
                    fsync_interval_ms: 0,
                    ..base.clone()
                },
                "shared_state.fsync_interval_ms",
            ),
            (
                SharedStateConfig {
                    value_bytes_max: 0,
                    ..base.clone()
                },
                "shared_state.value_bytes_max",
            ),
            (
                SharedStateConfig {
                    value_bytes_max: 4097,
                    ..base.clone()
                },
                "shared_state.value_bytes_max",
            ),
            (
                SharedStateConfig {
                    keys_max: 0,
                    ..base.clone()
                },
                "shared_state.keys_max",
            ),
            (
                SharedStateConfig {
                    tombstones_max: SHARED_STATE_KEYS_MAX_LIMIT + 1,
                    ..base.clone()
                },
                "shared_state.tombstones_max",
            ),
            (
                SharedStateConfig {
                    tombstone_grace_s: 59,
                    ..base.clone()
                },
                "shared_state.tombstone_grace_s",
            ),
            (
                SharedStateConfig {
                    fanout: 0,
                    ..base.clone()
                },
                "shared_state.fanout",
            ),
            (
                SharedStateConfig {
                    fanout: 17,
                    ..base.clone()
                },
                "shared_state.fanout",
            ),
            (
                SharedStateConfig {
                    anti_entropy_interval_ms: 49,
                    ..base.clone()
                },
                "shared_state.anti_entropy_interval_ms",
            ),
            (
                SharedStateConfig {
                    anti_entropy_interval_ms: 600_001,
                    ..base.clone()
                },
                "shared_state.anti_entropy_interval_ms",
            ),
        ];
        for (config, field) in cases {
            let error = config.validate().unwrap_err();
            assert_eq!(error.field, field, "{config:?}");
            assert!(error.fix.contains("the default is"), "{error:?}");
        }
    }
}
