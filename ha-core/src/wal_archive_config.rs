//! `[wal_archive]`: keep closed WAL segments for point-in-time restores (issue 14, item 2).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// The smallest `wal_archive.segment_bytes` accepted: a segment must hold at least a few
/// entries for the archive to be of use.
pub const WAL_ARCHIVE_SEGMENT_BYTES_MIN: u64 = 4 * 1024;

/// Where closed WAL segments are archived, and how large a segment grows before it closes.
///
/// Off by default. With `dir`, every segment compaction deletes is first hard-linked into
/// `dir` (copied off the write path when `dir` is on another filesystem), so that
/// `bot snapshot restore FILE --to-index N --wal-archive DIR` can restore to any index between
/// a backup and the newest archived segment. Only closed segments are archived: the finest
/// point reachable is bounded by `segment_bytes` (smaller segments, finer points, more files).
/// Give every node (and every restored data dir) an archive directory of its own.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalArchiveConfig {
    /// The archive directory; `None` (the default) archives nothing.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// A WAL segment closes when it would pass this many bytes; `None` keeps the store's
    /// default (64 MiB). At least [`WAL_ARCHIVE_SEGMENT_BYTES_MIN`].
    #[serde(default)]
    pub segment_bytes: Option<u64>,
}

impl WalArchiveConfig {
    /// Check the section.
    ///
    /// # Errors
    /// [`ConfigError`] naming `wal_archive.segment_bytes` when it is below the minimum.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(bytes) = self.segment_bytes
            && bytes < WAL_ARCHIVE_SEGMENT_BYTES_MIN
        {
            return Err(ConfigError::new(
                "wal_archive.segment_bytes",
                format!("is {bytes}"),
                format!("give at least {WAL_ARCHIVE_SEGMENT_BYTES_MIN} bytes"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_tiny_segments_are_refused() {
        let config = WalArchiveConfig::default();
        assert!(config.dir.is_none());
        config.validate().expect("the default is valid");
        let tiny = WalArchiveConfig {
            dir: Some("/archive".into()),
            segment_bytes: Some(100),
        };
        assert_eq!(
            tiny.validate().expect_err("too small").field,
            "wal_archive.segment_bytes"
        );
    }
}
