//! Durable storage of the log, the hard state and snapshots.
//!
//! The engine keeps the log since the last snapshot in memory (the payloads of applied, durable
//! entries only up to a budget) and tells its driver what to persist; a [`LogStore`] makes it
//! durable, gives it back at start, and reads evicted entries back
//! ([`LogStore::read_entries`]) for a follower that needs them. Implementations:
//! [`WalStore`](wal::WalStore) on disk, [`MemoryStore`](memory::MemoryStore) for tests and the
//! simulator (which can lose unsynced writes on a simulated crash).

use std::path::PathBuf;

use ha_core::LogIndex;

use crate::entry::Entry;
use crate::hard_state::HardState;
use crate::snapshot_meta::{SnapshotId, SnapshotMeta};

mod active_segment;
pub mod archive;
mod incoming_file;
pub mod io_failure;
mod log_bounds;
pub mod memory;
mod record;
mod segment;
mod snapshot_file;
pub mod storage_failure;
pub mod wal;
mod wal_recovery;

pub use storage_failure::StorageFailure;

/// Whether a batch for [`LogStore::read_entries`] that holds `count` entries of `bytes` bytes
/// so far takes one more of `size` bytes: the cut the engine makes for an append.
pub(crate) fn batch_takes(
    count: usize,
    bytes: usize,
    size: usize,
    count_max: usize,
    bytes_max: usize,
) -> bool {
    count < count_max && (count == 0 || bytes.saturating_add(size) <= bytes_max)
}

/// Everything a store holds durably, read once at start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// The last synced term and vote.
    pub hard_state: HardState,
    /// The latest complete snapshot, if any (its bytes are read with
    /// [`LogStore::snapshot_reader`]).
    pub snapshot: Option<(SnapshotMeta, SnapshotId)>,
    /// A snapshot being received from a leader when the node stopped, to be resumed.
    pub incoming: Option<IncomingSnapshot>,
    /// The entries after the snapshot, contiguous.
    pub entries: Vec<Entry>,
    /// What recovery had to repair (a torn tail it truncated), for the log.
    pub repairs: Vec<String>,
}

/// A snapshot being received in chunks: what it is and how many of its bytes are held.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IncomingSnapshot {
    /// What the snapshot covers.
    pub meta: SnapshotMeta,
    /// Its bytes' identity.
    pub id: SnapshotId,
    /// How many of its bytes are held (the offset the next chunk must start at).
    pub held: u64,
}

/// The snapshot being received, or [`StorageError::Misuse`] when there is none.
pub(crate) fn receiving<T>(incoming: &mut Option<T>) -> Result<&mut T, StorageError> {
    incoming
        .as_mut()
        .ok_or_else(|| StorageError::Misuse("no snapshot is being received".to_string()))
}

/// Whether `len` bytes at `offset` may be added to a snapshot being received that holds
/// `held` of its `size` bytes: they must start where the held bytes end and not pass the size.
///
/// # Errors
/// [`StorageError::Misuse`] naming which rule the chunk breaks.
pub(crate) fn check_incoming_append(
    held: u64,
    size: u64,
    offset: u64,
    len: usize,
) -> Result<(), StorageError> {
    if offset != held {
        return Err(StorageError::Misuse(format!(
            "snapshot chunk at byte {offset}, but {held} bytes are held"
        )));
    }
    if offset.checked_add(len as u64).is_none_or(|end| end > size) {
        return Err(StorageError::Misuse(format!(
            "snapshot chunk of {len} bytes at byte {offset} passes the snapshot's size {size}"
        )));
    }
    Ok(())
}

/// What a finished [`SnapshotSink`] wrote: enough to name the bytes and to commit them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenSnapshot {
    /// The number of bytes written.
    pub size: u64,
    /// Their CRC-32C.
    pub crc32c: u32,
    /// Which sink wrote them (the store's own numbering; only the latest sink commits).
    pub ticket: u64,
}

/// Where a node writes a snapshot of its own state: a new file (or buffer) that is not yet the
/// store's snapshot. It is `Send` so the bytes can be written on another thread while the node
/// goes on applying; [`LogStore::commit_snapshot`] then makes them the current snapshot.
pub trait SnapshotSink: std::io::Write + Send {
    /// Flush and sync what was written and report its size and checksum.
    ///
    /// # Errors
    /// [`StorageError::Io`].
    fn finish(self: Box<Self>) -> Result<WrittenSnapshot, StorageError>;
}

/// Why storage failed.
///
/// # Contract on failure
/// A write that returns an error may or may not have reached the disk, and the store refuses
/// every later call. An IO error ([`io_failure::classify`]: a full disk or `EIO`) stalls the
/// replica, which later calls [`LogStore::reopen`] and writes back what the disk lost;
/// corruption and misuse stop it. Either way [`LogStore::recover`] returns only what
/// verifies.
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
/// 4. `commit_snapshot` and `install_incoming` are atomic and durable on return: after a
///    crash either the old or the new snapshot is found, complete.
/// 5. A snapshot being received survives a restart (as [`Recovered::incoming`]) with a prefix
///    of the bytes added, or is gone; it never becomes the current snapshot unless verified.
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

    /// [`append`](Self::append), taking the entries: a store that hands them to another
    /// thread avoids a copy.
    ///
    /// # Errors
    /// As [`append`](Self::append).
    fn append_owned(&mut self, entries: Vec<Entry>) -> Result<(), StorageError> {
        self.append(&entries)
    }

    /// Synced entries from index `from` on, in order: at most `count_max` of them and about
    /// `bytes_max` bytes ([`Entry::size_bytes`], cut as the engine cuts an append), but always
    /// the first when it is held. Entries written since the last [`sync`](Self::sync) are not
    /// returned (the engine only asks for entries it knows durable), so the list may be short
    /// or empty.
    ///
    /// # Errors
    /// [`StorageError::Misuse`] when `from` is at or below the snapshot's last index
    /// (compacted) or past the last entry; [`StorageError::Io`]; [`StorageError::Corrupt`]
    /// when the bytes read back do not verify.
    fn read_entries(
        &mut self,
        from: LogIndex,
        count_max: usize,
        bytes_max: usize,
    ) -> Result<Vec<Entry>, StorageError>;

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

    /// A sink for a snapshot of this node's own state. Starting a new sink abandons any
    /// earlier one not yet committed.
    ///
    /// # Errors
    /// [`StorageError::Io`].
    fn snapshot_sink(&mut self) -> Result<Box<dyn SnapshotSink>, StorageError>;

    /// Make what the latest sink wrote (and reported in `written`) the current snapshot,
    /// described by `meta`, and drop the entries it covers (index `<= meta.last_index`);
    /// later entries are kept. Atomic and durable on return: after a crash either the old or
    /// the new snapshot is found, complete.
    ///
    /// # Errors
    /// [`StorageError::Misuse`] when `written` is not what the latest finished sink wrote, or
    /// `meta` is older than the current snapshot (the sink is then abandoned);
    /// [`StorageError::Io`].
    fn commit_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        written: &WrittenSnapshot,
    ) -> Result<SnapshotId, StorageError>;

    /// Store a snapshot held in memory: a sink written at once and committed.
    ///
    /// # Errors
    /// As [`snapshot_sink`](Self::snapshot_sink) and
    /// [`commit_snapshot`](Self::commit_snapshot).
    fn save_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        data: &[u8],
    ) -> Result<SnapshotId, StorageError> {
        let mut sink = self.snapshot_sink()?;
        sink.write_all(data).map_err(|source| StorageError::Io {
            path: "snapshot sink".into(),
            source,
        })?;
        let written = sink.finish()?;
        self.commit_snapshot(meta, &written)
    }

    /// Up to `max` bytes of the current snapshot from `offset` (fewer only at its end, none
    /// past it).
    ///
    /// # Errors
    /// [`StorageError::Misuse`] when there is no snapshot; [`StorageError::Io`].
    fn read_snapshot(&mut self, offset: u64, max: usize) -> Result<Vec<u8>, StorageError>;

    /// A reader over the whole current snapshot, or `None` when there is none. The reader
    /// stays valid (it reads the same bytes) even if a newer snapshot is committed meanwhile.
    ///
    /// # Errors
    /// [`StorageError::Io`].
    #[allow(clippy::type_complexity)]
    fn snapshot_reader(
        &mut self,
    ) -> Result<Option<(SnapshotMeta, SnapshotId, Box<dyn std::io::Read + Send>)>, StorageError>;

    /// The snapshot being received, if any.
    fn incoming(&self) -> Option<IncomingSnapshot>;

    /// Start receiving the snapshot `id` described by `meta`, discarding any other one being
    /// received (and its bytes). Durable on return (with every earlier write), so a restarted
    /// node resumes it. When that same snapshot (same `meta` and `id`) is already being
    /// received, it is kept with the bytes held: the transfer resumes at
    /// [`incoming`](Self::incoming)`().held`.
    ///
    /// # Errors
    /// [`StorageError::Misuse`] when `id` names another index or term than `meta`;
    /// [`StorageError::Io`].
    fn begin_incoming(&mut self, meta: &SnapshotMeta, id: SnapshotId) -> Result<(), StorageError>;

    /// Add `bytes` to the snapshot being received at `offset`, which must equal the bytes held.
    /// Need not be durable until [`verify_incoming`](Self::verify_incoming): a crash may lose
    /// a suffix of what was added (the node then resumes from what it still holds).
    ///
    /// # Errors
    /// [`StorageError::Misuse`] when nothing is being received, `offset` is not the bytes held,
    /// or the bytes would pass the snapshot's size; [`StorageError::Io`].
    fn append_incoming(&mut self, offset: u64, bytes: &[u8]) -> Result<(), StorageError>;

    /// Check the snapshot being received, once all its bytes are held, against its id (size
    /// and CRC-32C) and make it durable. On a mismatch the bytes are discarded (the next
    /// chunk must start at 0 again) and `false` is returned.
    ///
    /// # Errors
    /// [`StorageError::Misuse`] when nothing is being received or not all bytes are held;
    /// [`StorageError::Io`].
    fn verify_incoming(&mut self) -> Result<bool, StorageError>;

    /// Make the verified snapshot being received the current one and drop the entries it
    /// covers, as [`commit_snapshot`](Self::commit_snapshot) does. Verified means by
    /// [`verify_incoming`](Self::verify_incoming) since this store was opened: a restarted
    /// node verifies the bytes it recovered again.
    ///
    /// # Errors
    /// [`StorageError::Misuse`] when no verified snapshot is being received, or it is older
    /// than the current snapshot; [`StorageError::Io`].
    fn install_incoming(&mut self) -> Result<SnapshotId, StorageError>;

    /// Forget the snapshot being received, if any. Not durable until the next sync: a crash
    /// before it may bring the snapshot back in [`Recovered::incoming`].
    ///
    /// # Errors
    /// [`StorageError::Io`].
    fn discard_incoming(&mut self) -> Result<(), StorageError>;

    /// Make every earlier write durable.
    ///
    /// # Errors
    /// [`StorageError::Io`]; the node must not trust the store until it is reopened (see the
    /// type's contract).
    fn sync(&mut self) -> Result<(), StorageError>;

    /// After a write, a sync or a snapshot sink failed: forget everything held in memory and
    /// [`recover`](Self::recover) again from what is on the disk, as a restarted process
    /// would (a partly written record at the tail is cut back to the last whole record;
    /// leftover sink files are removed). What it returns is durable, and a prefix of the
    /// writes made (contract item 3). The replica calls it to resume after a full disk.
    ///
    /// # Errors
    /// As [`recover`](Self::recover); [`StorageError::Misuse`] for a store that cannot be
    /// reopened (the default).
    fn reopen(&mut self) -> Result<Recovered, StorageError> {
        Err(StorageError::Misuse(
            "this store cannot be reopened in place; restart the node".to_string(),
        ))
    }
}
