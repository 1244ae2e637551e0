//! Durable storage of the log, the hard state and snapshots.
//!
//! The engine keeps the log since the last snapshot in memory and tells its driver what to
//! persist; a [`LogStore`] makes it durable and gives it back at start. Implementations:
//! [`WalStore`](wal::WalStore) on disk, [`MemoryStore`](memory::MemoryStore) for tests and the
//! simulator (which can lose unsynced writes on a simulated crash).

use std::path::PathBuf;

use ha_core::LogIndex;

use crate::entry::Entry;
use crate::hard_state::HardState;
use crate::snapshot_meta::SnapshotMeta;

mod log_bounds;
pub mod memory;
mod record;
mod segment;
mod snapshot_file;
pub mod wal;
mod wal_recovery;

/// Everything a store holds durably, read once at start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// The last synced term and vote.
    pub hard_state: HardState,
    /// The latest complete snapshot, if any.
    pub snapshot: Option<(SnapshotMeta, Vec<u8>)>,
    /// The entries after the snapshot, contiguous.
    pub entries: Vec<Entry>,
    /// What recovery had to repair (a torn tail it truncated), for the log.
    pub repairs: Vec<String>,
}

/// Why storage failed.
///
/// # Contract on failure
/// A write that returns an error may or may not have reached the disk. The node must stop
/// (the error is fatal to the engine) rather than continue with a log it cannot trust; on
/// restart, [`LogStore::recover`] returns only what verifies.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The operating system refused a read or write. Check the disk and permissions, then
    /// restart the node.
    #[error("storage IO error on {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A record fails its checksum or does not decode, somewhere other than a torn tail.
    /// The node refuses to start on it: move the data directory aside and let the node
    /// catch up from the leader.
    #[error("corrupt record in {path} at byte {offset}: {reason}")]
    Corrupt {
        /// The file involved.
        path: PathBuf,
        /// Where the bad record starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The caller broke the store's contract (a gap or overlap in appended indexes). A bug.
    #[error("storage misuse: {0}")]
    Misuse(String),
}

/// Durable storage for one node's log.
///
/// # Correctness requirements
/// 1. After `sync` returns `Ok`, everything written before it survives a crash.
/// 2. Writes not yet synced may be lost on a crash, but only as a suffix: a crash never
///    leaves a later entry without an earlier one, nor a half-written record that
///    `recover` would return.
/// 3. `recover` returns exactly the synced state plus possibly some unsynced suffix, never
///    a record that fails its checksum.
/// 4. `save_snapshot` is atomic and durable on return: after a crash either the old or the
///    new snapshot is found, complete.
pub trait LogStore: Send {
    /// Read everything durable. Called once, before any other method.
    ///
    /// # Errors
    /// [`StorageError::Corrupt`] for corruption that is not a torn tail (a torn tail is
    /// truncated and reported in [`Recovered::repairs`]); [`StorageError::Io`].
    fn recover(&mut self) -> Result<Recovered, StorageError>;

    /// Append entries after the current last entry (their indexes continue it exactly).
    ///
    /// # Errors
    /// [`StorageError::Misuse`] on a gap or overlap; [`StorageError::Io`].
    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError>;

    /// Remove every entry with index `from` or higher (a follower's conflicting suffix).
    ///
    /// # Errors
    /// [`StorageError::Io`].
    fn truncate_from(&mut self, from: LogIndex) -> Result<(), StorageError>;

    /// Record the term and vote.
    ///
    /// # Errors
    /// [`StorageError::Io`].
    fn save_hard_state(&mut self, hard_state: &HardState) -> Result<(), StorageError>;

    /// Store a snapshot durably and drop the entries it covers (index `<= meta.last_index`).
    /// Later entries are kept.
    ///
    /// # Errors
    /// [`StorageError::Io`].
    fn save_snapshot(&mut self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageError>;

    /// Make every earlier write durable.
    ///
    /// # Errors
    /// [`StorageError::Io`]; the node must stop (see the type's contract).
    fn sync(&mut self) -> Result<(), StorageError>;
}
