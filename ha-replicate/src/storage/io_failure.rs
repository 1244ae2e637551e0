//! Which storage failures a node survives: a full disk (`ENOSPC`, `EDQUOT`) or an IO error
//! (`EIO` and every other refusal by the operating system) stalls the replica until the store
//! can be reopened; corruption and misuse stay fatal.
//!
//! See docs/ARCHITECTURE.md, "A full disk (issue 14)".

use std::io;

use serde::{Deserialize, Serialize};

use super::StorageError;

/// Why the store refused a write the node survives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StorageFailureKind {
    /// The file system is full (`ENOSPC`) or the quota is used up (`EDQUOT`): free space and
    /// the node resumes by itself.
    Full,
    /// Any other IO error (`EIO`, a read-only remount, a permission changed): retried the same
    /// way; if it persists, the disk needs a person (see [`StorageStall`]).
    Failed,
}

impl StorageFailureKind {
    /// The error code clients see: `storage_full` or `storage_failed`.
    pub fn code(self) -> &'static str {
        match self {
            StorageFailureKind::Full => "storage_full",
            StorageFailureKind::Failed => "storage_failed",
        }
    }
}

/// `ENOSPC` on Linux and the BSDs.
const ENOSPC: i32 = 28;
/// `EDQUOT` on Linux.
const EDQUOT: i32 = 122;

/// Whether `error` says the disk is full.
pub fn io_error_is_full(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::StorageFull
        || error.kind() == io::ErrorKind::QuotaExceeded
        || matches!(error.raw_os_error(), Some(ENOSPC | EDQUOT))
}

/// The kind of failure the node survives, or `None` for one it must stop on (corruption, a
/// contract broken).
pub fn classify(error: &StorageError) -> Option<StorageFailureKind> {
    match error {
        StorageError::Io { source, .. } if io_error_is_full(source) => {
            Some(StorageFailureKind::Full)
        }
        StorageError::Io { .. } => Some(StorageFailureKind::Failed),
        StorageError::Corrupt { .. } | StorageError::Misuse(_) => None,
    }
}

/// A replica whose store failed and that refuses writes until it resumes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageStall {
    /// Full disk or another IO error.
    pub kind: StorageFailureKind,
    /// The latest error, as the operating system reported it.
    pub detail: String,
    /// When the store first failed (the replica's clock, milliseconds).
    pub since_ms: u64,
    /// How many times resuming was tried and failed.
    pub attempts: u32,
}

impl StorageStall {
    /// What a person must do, for logs and `/v1/health`.
    pub fn advice(&self) -> &'static str {
        match self.kind {
            StorageFailureKind::Full => {
                "free space on the data directory's file system; the node resumes by itself"
            }
            StorageFailureKind::Failed => {
                "the node retries by itself; if the error persists, check the disk (dmesg, \
                 SMART), then stop the node, move its data directory aside and restart it \
                 empty so it catches up from the leader"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(source: io::Error) -> StorageError {
        StorageError::Io {
            path: "x".into(),
            source,
        }
    }

    #[test]
    fn full_disks_other_io_errors_and_fatal_errors_are_told_apart() {
        assert_eq!(
            classify(&io(io::Error::from_raw_os_error(ENOSPC))),
            Some(StorageFailureKind::Full)
        );
        assert_eq!(
            classify(&io(io::Error::from_raw_os_error(EDQUOT))),
            Some(StorageFailureKind::Full)
        );
        assert_eq!(
            classify(&io(io::Error::from(io::ErrorKind::StorageFull))),
            Some(StorageFailureKind::Full)
        );
        assert_eq!(
            classify(&io(io::Error::from_raw_os_error(5))),
            Some(StorageFailureKind::Failed)
        );
        assert_eq!(classify(&StorageError::Misuse("gap".into())), None);
        let corrupt = StorageError::Corrupt {
            path: "x".into(),
            offset: 8,
            reason: "checksum".into(),
        };
        assert_eq!(classify(&corrupt), None);
        assert_eq!(StorageFailureKind::Full.code(), "storage_full");
        assert_eq!(StorageFailureKind::Failed.code(), "storage_failed");
    }
}
