//! The replica consistency monitor's settings (`[consistency_check]` in a config file).

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// Default [`ConsistencyCheckConfig::every_entries`]: as often as the default snapshot
/// interval while the state is small (one point-in-time copy of the state, hashed off the
/// apply loop, per 10,000 log entries); a large state is checked less often, so that hashing
/// costs at most one state byte per log byte written.
pub const CONSISTENCY_CHECK_EVERY_ENTRIES_DEFAULT: u64 = 10_000;

/// Smallest non-zero [`ConsistencyCheckConfig::every_entries`]: each checkpoint copies and
/// hashes the whole state, so a shorter interval would make the node spend its time hashing.
pub const CONSISTENCY_CHECK_EVERY_ENTRIES_MIN: u64 = 10;

/// How replicas check that they hold the same applied state.
///
/// The leader appends a checkpoint entry to the log once at least `every_entries` entries
/// *and* at least as many log bytes as its state held at the previous checkpoint have been
/// appended since it (so a 1 GB state is hashed after 1 GB of writes, not every
/// `every_entries`). Each replica that applies the entry computes a digest of its whole
/// applied state at exactly that index and reports it to the leader, which compares the
/// digests for the same index. A replica whose digest differs from the majority's is
/// diverged: it is marked DEGRADED, never campaigns, and (with `repair`) reinstalls the
/// leader's snapshot. The leader's setting decides where checkpoints fall; a node with
/// `every_entries = 0` skips them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsistencyCheckConfig {
    /// Fewest log entries between checkpoints (more while the state is large, see above); 0
    /// turns the monitor off. Default
    /// [`CONSISTENCY_CHECK_EVERY_ENTRIES_DEFAULT`], minimum
    /// [`CONSISTENCY_CHECK_EVERY_ENTRIES_MIN`].
    pub every_entries: u64,
    /// Whether a diverged node reinstalls the leader's snapshot by itself (default `true`).
    /// With `false` it stays DEGRADED, keeps applying and never campaigns until a person acts
    /// (docs/ARCHITECTURE.md, "Replica consistency monitor").
    pub repair: bool,
}

impl Default for ConsistencyCheckConfig {
    fn default() -> Self {
        Self {
            every_entries: CONSISTENCY_CHECK_EVERY_ENTRIES_DEFAULT,
            repair: true,
        }
    }
}

impl ConsistencyCheckConfig {
    /// Check the fields.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.every_entries != 0 && self.every_entries < CONSISTENCY_CHECK_EVERY_ENTRIES_MIN {
            return Err(ConfigError::new(
                "consistency_check.every_entries",
                format!(
                    "is {}: every checkpoint copies and hashes the whole state",
                    self.every_entries
                ),
                format!(
                    "use 0 (off) or at least {CONSISTENCY_CHECK_EVERY_ENTRIES_MIN} (default \
                     {CONSISTENCY_CHECK_EVERY_ENTRIES_DEFAULT})"
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_valid_and_a_tiny_interval_is_refused_by_name() {
        assert!(ConsistencyCheckConfig::default().validate().is_ok());
        let off = ConsistencyCheckConfig {
            every_entries: 0,
            repair: true,
        };
        assert!(off.validate().is_ok());
        let tiny = ConsistencyCheckConfig {
            every_entries: 3,
            repair: true,
        };
        let error = tiny.validate().expect_err("refused");
        assert_eq!(error.field, "consistency_check.every_entries");
    }
}
