//! [`WalStore`]: the log, the hard state and snapshots in a directory, as an append-only
//! segmented write-ahead log.
//!
//! # On-disk format (segments version 2, snapshots version 2)
//!
//! A data directory holds:
//!
//! ```text
//! wal-00000000000000000001.log        segments, numbered 1, 2, 3, ... without gaps
//! wal-00000000000000000002.log        (after compaction the lowest number is higher)
//! snapshot-00000000000000000120.snap  the snapshot ending at index 120
//! sink-00000000000000000003.snap.tmp  a snapshot of this node's state being written
//! incoming.meta                       which snapshot is being received from a leader
//! incoming.data                       the bytes of it received so far
//! ```
//!
//! **Segments** are named by a sequence number, not by the first index they hold: a truncation
//! marker can move the log back, so first indexes are not monotonic across segments, while
//! sequence numbers are. Each segment is
//!
//! ```text
//! magic "ha-wal\0\x02" (8 bytes, the last one is the format version)
//! record*
//! zero*        zeros the writer wrote ahead of its records (see below)
//! record = body length: u32 LE | crc32c(body): u32 LE | body: postcard(Record)
//! Record = Entry(Entry)                      an entry, index = previous last + 1
//!        | Truncate { from: LogIndex }       entries >= from are gone
//!        | HardState(HardState)             the term and vote; the last one wins
//!        | Seal { sequence, length_bytes }   the segment is complete (see below)
//! ```
//!
//! A body is 1 to `RPC_FRAME_BYTES_MAX` bytes (an entry larger than one RPC frame could not
//! have been replicated), so a damaged length field never makes recovery allocate more than
//! that. A segment rolls over to the next number when the next record would take it past
//! [`WalOptions::segment_bytes_max`]; a segment always holds at least one record, so a record
//! larger than the limit gets a segment of its own.
//!
//! Before the next segment is created, the current one gets a `Seal` naming its own sequence
//! number and the seal's offset (every byte before it), and is synced. So every segment but
//! the last ends with its seal, and an earlier segment that lost records (a cut at a record
//! boundary loses no checksum, and if only hard states were lost no entry would be missing)
//! is refused instead of silently recovering an older term and vote. Version 1 had no seals;
//! its segments are refused (there were no deployed users).
//!
//! No record is ever overwritten: truncation appends a `Truncate` marker, and the hard state
//! is a record like any other, so one sync makes entries and the vote durable together (the
//! driver's group commit) and a crash keeps a prefix of the writes.
//!
//! **Zeros written ahead.** The writer keeps up to a mebibyte of zero bytes after the records
//! of the segment it writes (never past the segment's limit plus a seal) and writes its next
//! records over them, so a sync flushes data into blocks the file already has instead of
//! growing the file, which would also commit the file system's journal
//! (`storage/active_segment.rs` has the measurements). No record starts with
//! zero bytes (a body is at least 1 byte), so recovery reads a tail of zeros as the end of the
//! records. The zeros are cut off before a segment is sealed and when the store is closed;
//! only a crash leaves them behind.
//!
//! **Snapshots** are never held in memory whole: their data are written, checksummed and read
//! through bounded buffers, whatever their size (the data length is a u64; only the meta is
//! bounded, by one RPC frame). A snapshot file is
//!
//! ```text
//! header = magic "ha-snap\x02" | meta length u32 | data length u64 | crc32c(meta) u32
//!          | crc32c(data) u32 | crc32c(the 28 bytes before) u32          (32 bytes)
//! file   = header | data | meta: postcard(SnapshotMeta)
//! ```
//!
//! A [`SnapshotSink`] creates `sink-<ticket>.snap.tmp` (tickets count up per store, and a
//! name already taken is skipped), writes 32 zero bytes where the header goes, then the data,
//! computing their CRC-32C as they pass, and syncs the file when finished. Starting another
//! sink deletes the previous sink's file (a sink still writing to it writes to an unlinked
//! file), and only the latest finished sink commits: its ticket and reported size and checksum
//! must match. `commit_snapshot` syncs the log, appends the meta, writes the header, syncs the
//! file, renames it to `snapshot-<index>.snap` and syncs the directory; then older snapshots
//! and the segments it covers are deleted (see Compaction). Reading a chunk is a positioned
//! read of an open handle; a reader over the whole snapshot opens its own handle, so it keeps
//! reading the same bytes after a newer snapshot replaces (unlinks) the file.
//!
//! Version 1 snapshot files (`"ha-snap\x01"`, laid out header | meta | data, written whole
//! from memory) are still read; they are replaced by the next snapshot. Nothing else was
//! deployed, so there is nothing to migrate.
//!
//! A **snapshot being received** has two files. `incoming.meta` names it:
//!
//! ```text
//! magic "ha-inc\0\x01" | body length u32 | crc32c(body) u32 | body: postcard((SnapshotMeta, SnapshotId))
//! ```
//!
//! written to `incoming.meta.tmp`, synced, renamed, with the directory synced, by
//! `begin_incoming`, after `incoming.data` was emptied to a placeholder header and synced (so
//! a new meta never names old bytes). `incoming.data` is laid out as a snapshot file being
//! written: the placeholder header, then the bytes received, appended at the offset held and
//! synced only by `sync` and `verify_incoming` (so a crash may lose a suffix of them).
//! `verify_incoming` syncs the data and checks their size and CRC-32C, streaming; on a
//! mismatch it cuts them back to the header. `install_incoming` seals the data file like a
//! sink's (meta, header, sync), renames it to `snapshot-<index>.snap`, syncs the directory,
//! removes `incoming.meta`, and compacts as `commit_snapshot` does. Whether the bytes were
//! verified is not remembered across a restart: they are verified again before installing.
//!
//! # Recovery rules
//!
//! 1. Files that are neither segments, snapshots, incoming files nor temporaries are ignored
//!    (and logged); a leftover `snapshot-<index>.snap.tmp`, `sink-<ticket>.snap.tmp` or
//!    `incoming.meta.tmp` is deleted. A file with one of these names that is not a regular
//!    file is refused.
//! 2. The newest snapshot that verifies is used. Damaged newer snapshots are renamed to
//!    `*.snap.damaged` and reported in [`Recovered::repairs`]. If snapshots exist and none
//!    verifies, recovery fails with [`StorageError::Corrupt`]. (Falling back is only possible
//!    while the segments still hold the entries after the older snapshot; otherwise rule 5
//!    refuses the gap.)
//! 3. Segments must be numbered without gaps. They are read in order and every record's
//!    checksum is verified.
//! 4. Zero bytes from the end of the last record to the end of a segment (in any segment) are
//!    space the writer wrote ahead, not damage: nothing is repaired and the next records of
//!    the last segment go over them. Zeros with anything else after them are damage (the
//!    refusal then names a sector of zeros, the likely trace of a power failure).
//!    A damaged record (short, impossible length, checksum mismatch) **in the last segment,
//!    with no valid record after it**, is a torn write: the file is truncated at the record's
//!    start (a last segment whose header is damaged is removed) and the repair is reported.
//!    A flipped bit in the final record is indistinguishable from a torn write and is
//!    treated as one: that record was the last written, and unless a `sync` covered it, the
//!    contract allows losing it. Damage followed by a valid record, damage in an earlier
//!    segment (a segment is synced before the next one is created, so it cannot be torn), or
//!    a record whose checksum is valid but which does not decode, is corruption:
//!    [`StorageError::Corrupt`] with the file, the record's offset and the reason, and
//!    nothing is modified. So is a segment other than the last that does not end with its
//!    seal (offset: its end), a seal that names another segment or another offset, a record
//!    after a seal, and a segment header of another format version. The last segment may end
//!    with its seal (the node stopped before it created the next one, or that one's header
//!    was torn and it was removed): the next write then starts a new segment. (So if a power failure ever let a later page of an unsynced batch
//!    reach the disk without an earlier one, the node refuses to start rather than guess;
//!    the operator moves the directory aside and the node catches up from the leader.)
//! 5. Records are replayed in order: entries at or below the snapshot's last index are skipped,
//!    the others must continue the log exactly, markers remove entries, the last hard state
//!    wins. Only entries after the snapshot are returned.
//! 6. Everything returned is synced before `recover` returns, so the node never acts on
//!    recovered state that a later power failure could take back.
//! 7. A snapshot being received is returned in [`Recovered::incoming`] when `incoming.meta`
//!    verifies, with `held` = the bytes in `incoming.data` after its header, capped at the
//!    snapshot's size (a longer file, left by a crash during an install, is cut there; a
//!    missing or shorter one holds 0). It never stops the node: a damaged `incoming.meta` is
//!    removed with its data (the transfer starts over), as is an `incoming.data` without a
//!    meta, and an `incoming.meta` naming the snapshot just recovered (a crash after the
//!    install's rename). The bytes held are checked only by `verify_incoming`, so bytes a
//!    crash damaged without shortening the file make the verification fail and the transfer
//!    start over; they can never be installed.
//!
//! # Reading entries back
//!
//! The store keeps, in memory, where each entry after the snapshot is: its segment's number
//! and its record's offset (16 bytes per entry), built by recovery from the records replayed
//! and kept up to date by appends, truncations and compaction. `read_entries` reads records
//! at those offsets through a handle of its own (verifying each record's checksum and that it
//! is the entry asked for), and only entries covered by a `sync`.
//!
//! # Compaction
//!
//! After a snapshot at index `S` is durable (committed or installed), the older snapshots are
//! deleted, then the oldest
//! segments whose entry records all have indexes at or below `S` (the segment being written
//! is always kept; a segment that straddles `S` is kept and recovery skips its covered
//! entries). Entries that a later marker removed count too: replay reads them before the
//! marker, and they continue the log from `S` only if no segment before them is gone. If the
//! latest hard state record is in a segment about to go, it is written again first. Segments
//! are deleted oldest first with a directory sync after each, so a crash leaves a suffix.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ha_core::LogIndex;
use parking_lot::Mutex;

use super::active_segment::ActiveSegment;
use super::incoming_file::{INCOMING_DATA_NAME, INCOMING_META_NAME, write_incoming_meta};
use super::log_bounds::LogBounds;
use super::record::{
    BodyProblem, RECORD_HEADER_BYTES, Record, RecordHeader, RecordRef, SEAL_RECORD_BYTES_MAX,
    encode_record, verify_body,
};
use super::segment::{SEGMENT_HEADER_BYTES, SEGMENT_MAGIC, segment_path};
use super::snapshot_file::{
    IO_BUFFER_BYTES, SNAPSHOT_HEADER_BYTES, checksum_range, create_data_file, io_error, read_range,
    seal_data_file, sink_file_name, snapshot_file_name, sync_directory,
};
use super::wal_recovery::{RecoveredLayout, SegmentInfo, recover_directory};
use super::{
    IncomingSnapshot, LogStore, Recovered, SnapshotSink, StorageError, WrittenSnapshot, receiving,
};
use crate::entry::Entry;
use crate::hard_state::HardState;
use crate::snapshot_meta::{SnapshotId, SnapshotMeta};

/// How many taken sink file names `snapshot_sink` skips before it gives up.
const SINK_NAME_ATTEMPTS_MAX: u32 = 1000;

/// The default [`WalOptions::segment_bytes_max`]: 64 MiB.
pub const SEGMENT_BYTES_MAX_DEFAULT: u64 = 64 * 1024 * 1024;

/// When [`WalStore`] makes writes durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Every mutating call syncs before it returns. Simple and safe; one fsync per call.
    #[default]
    Always,
    /// Only [`LogStore::sync`] (and the snapshot calls, and `recover`) sync. The driver batches
    /// writes and syncs once per batch (group commit) before sending anything that depends on
    /// them.
    Manual,
}

/// How a [`WalStore`] behaves.
///
/// ```
/// use ha_replicate::storage::wal::{FsyncPolicy, WalOptions};
/// let options = WalOptions {
///     fsync_policy: FsyncPolicy::Manual,
///     ..WalOptions::default()
/// };
/// assert_eq!(options.segment_bytes_max, 64 * 1024 * 1024);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalOptions {
    /// A segment rolls over when the next record would make it larger than this; the seal
    /// that then closes it may take it past this by at most 29 bytes. A segment always holds
    /// at least one record, whatever this says.
    pub segment_bytes_max: u64,
    /// When writes are synced.
    pub fsync_policy: FsyncPolicy,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            segment_bytes_max: SEGMENT_BYTES_MAX_DEFAULT,
            fsync_policy: FsyncPolicy::Always,
        }
    }
}

/// A [`LogStore`] on disk: an append-only segmented write-ahead log with snapshots. The format
/// and the recovery rules are described in the [module documentation](self).
///
/// After any IO error the store refuses every further call (the disk state is unknown, and a
/// failed fsync must never be retried as if it had worked); reopen it and recover.
///
/// ```
/// use ha_core::{LogIndex, Term};
/// use ha_replicate::entry::{Entry, Payload};
/// use ha_replicate::storage::LogStore;
/// use ha_replicate::storage::wal::{WalOptions, WalStore};
///
/// let directory = tempfile::tempdir()?;
/// let mut store = WalStore::open(directory.path(), WalOptions::default())?;
/// assert!(store.recover()?.entries.is_empty());
/// let entry = Entry {
///     term: Term(1),
///     index: LogIndex(1),
///     payload: Payload::Command(b"x".to_vec()),
/// };
/// store.append(std::slice::from_ref(&entry))?;
/// drop(store);
///
/// let mut reopened = WalStore::open(directory.path(), WalOptions::default())?;
/// assert_eq!(reopened.recover()?.entries, vec![entry]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct WalStore {
    directory: PathBuf,
    options: WalOptions,
    /// `None` until `recover` has run.
    running: Option<Running>,
    /// Set by the first IO error of a mutating call; every later call fails.
    failed: bool,
    /// Where compacted segments are archived ([`archive`](super::archive)), if anywhere.
    archive: Option<PathBuf>,
}

impl WalStore {
    /// Opens (creating it if needed) the data directory. Reads nothing yet:
    /// [`LogStore::recover`] does.
    ///
    /// # Errors
    /// [`StorageError::Io`] when the directory cannot be created.
    pub fn open(directory: impl Into<PathBuf>, options: WalOptions) -> Result<Self, StorageError> {
        let directory = directory.into();
        if !directory.is_dir() {
            fs::create_dir_all(&directory).map_err(|source| StorageError::Io {
                path: directory.clone(),
                source,
            })?;
            // The new directory's own entry must survive a crash too.
            let parent = match directory.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent,
                _ => Path::new("."),
            };
            sync_directory(parent)?;
        }
        Ok(Self {
            directory,
            options,
            running: None,
            failed: false,
            archive: None,
        })
    }

    /// Archive every segment compaction deletes into `directory` first (see
    /// [`archive`](super::archive)): for point-in-time restores.
    #[must_use]
    pub fn with_archive(mut self, directory: PathBuf) -> Self {
        self.archive = Some(directory);
        self
    }

    /// The data directory.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// The options it was opened with.
    pub fn options(&self) -> &WalOptions {
        &self.options
    }

    /// Runs a mutating call: refuses it before `recover` or after a failure, syncs afterwards
    /// under [`FsyncPolicy::Always`], and marks the store failed on an IO error.
    fn mutate<T>(
        &mut self,
        operation: impl FnOnce(&mut Running) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let always = self.options.fsync_policy == FsyncPolicy::Always;
        let running = self.running()?;
        let result = operation(running).and_then(|value| {
            if always {
                running.sync()?;
            }
            Ok(value)
        });
        if let Err(StorageError::Io { .. }) = &result {
            self.failed = true;
        }
        result
    }

    /// Runs a reading call: refused before `recover` or after a failure. A read error does not
    /// mark the store failed (nothing was written).
    fn read<T>(
        &mut self,
        operation: impl FnOnce(&mut Running) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        operation(self.running()?)
    }

    /// The running store, unless `recover` was not called yet or an earlier write failed.
    fn running(&mut self) -> Result<&mut Running, StorageError> {
        if self.failed {
            return Err(StorageError::Io {
                path: self.directory.clone(),
                source: io::Error::other(
                    "an earlier write or sync failed, so the disk state is unknown; \
                     reopen the store and recover",
                ),
            });
        }
        self.running.as_mut().ok_or_else(|| {
            StorageError::Misuse("recover must be called before any other method".to_string())
        })
    }
}

impl LogStore for WalStore {
    fn recover(&mut self) -> Result<Recovered, StorageError> {
        if self.running.is_some() || self.failed {
            return Err(StorageError::Misuse(
                "recover is called once, on a freshly opened store".to_string(),
            ));
        }
        let layout = recover_directory(&self.directory)?;
        let (mut running, recovered) = Running::start(&self.directory, &self.options, layout)?;
        running.archive = self.archive.clone();
        self.running = Some(running);
        Ok(recovered)
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.mutate(|running| running.append(entries))
    }

    fn read_entries(
        &mut self,
        from: LogIndex,
        count_max: usize,
        bytes_max: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        self.read(|running| running.read_entries(from, count_max, bytes_max))
    }

    fn truncate_from(&mut self, from: LogIndex) -> Result<(), StorageError> {
        self.mutate(|running| running.truncate_from(from))
    }

    fn save_hard_state(&mut self, hard_state: &HardState) -> Result<(), StorageError> {
        self.mutate(|running| running.save_hard_state(hard_state))
    }

    fn snapshot_sink(&mut self) -> Result<Box<dyn SnapshotSink>, StorageError> {
        self.mutate(Running::snapshot_sink)
    }

    fn commit_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        written: &WrittenSnapshot,
    ) -> Result<SnapshotId, StorageError> {
        self.mutate(|running| running.commit_snapshot(meta, written))
    }

    fn read_snapshot(&mut self, offset: u64, max: usize) -> Result<Vec<u8>, StorageError> {
        self.read(|running| running.read_snapshot(offset, max))
    }

    fn snapshot_reader(
        &mut self,
    ) -> Result<Option<(SnapshotMeta, SnapshotId, Box<dyn Read + Send>)>, StorageError> {
        self.read(|running| running.snapshot_reader())
    }

    fn incoming(&self) -> Option<IncomingSnapshot> {
        let incoming = self.running.as_ref()?.incoming.as_ref()?;
        Some(IncomingSnapshot {
            meta: incoming.meta.clone(),
            id: incoming.id,
            held: incoming.held,
        })
    }

    fn begin_incoming(&mut self, meta: &SnapshotMeta, id: SnapshotId) -> Result<(), StorageError> {
        self.mutate(|running| running.begin_incoming(meta, id))
    }

    fn append_incoming(&mut self, offset: u64, bytes: &[u8]) -> Result<(), StorageError> {
        self.mutate(|running| running.append_incoming(offset, bytes))
    }

    fn verify_incoming(&mut self) -> Result<bool, StorageError> {
        self.mutate(Running::verify_incoming)
    }

    fn install_incoming(&mut self) -> Result<SnapshotId, StorageError> {
        self.mutate(Running::install_incoming)
    }

    fn discard_incoming(&mut self) -> Result<(), StorageError> {
        self.mutate(Running::discard_incoming)
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.mutate(Running::sync)
    }

    fn reopen(&mut self) -> Result<Recovered, StorageError> {
        // Close every handle first: recovery truncates the torn tail of the last segment and
        // removes leftover sink files (which frees what a failed snapshot took on a full disk).
        self.running = None;
        self.failed = false;
        let result = self.recover();
        if result.is_err() {
            self.running = None;
            self.failed = true;
        }
        result
    }
}

/// The store after recovery.
#[derive(Debug)]
struct Running {
    directory: PathBuf,
    segment_bytes_max: u64,
    bounds: LogBounds,
    /// Every segment on disk, oldest first; the last one is being written.
    segments: Vec<SegmentInfo>,
    /// The last segment, open for writing; `None` exactly when there is no segment.
    active: Option<ActiveSegment>,
    /// Encoded records not yet handed to the operating system, for the last segment.
    pending: Vec<u8>,
    /// The last segment has writes that were not synced.
    active_unsynced: bool,
    /// Files were created or removed since the directory was last synced.
    directory_unsynced: bool,
    /// The latest hard state saved, and the segment that holds its record.
    hard_state: Option<(HardState, u64)>,
    /// Snapshot files on disk; after a successful commit or install, just the new one.
    snapshot_paths: Vec<PathBuf>,
    /// The number of the first segment when there is none, so numbers never go back after
    /// recovery removed a torn one.
    first_sequence: u64,
    /// The current snapshot, open for chunk reads.
    current: Option<CurrentSnapshot>,
    /// The snapshot being received.
    incoming: Option<Incoming>,
    /// Shared with the sinks handed out: which is the latest, and what it wrote.
    sinks: Arc<Mutex<SinkSlot>>,
    /// The ticket of the last sink handed out.
    last_ticket: u64,
    /// Where the record of each entry after the snapshot is: (segment sequence, byte offset),
    /// for entry `bounds.snapshot_last + 1` first. 16 bytes per entry, rebuilt by recovery.
    positions: VecDeque<(u64, u64)>,
    /// The last entry known synced: [`LogStore::read_entries`] returns none after it.
    synced_last: LogIndex,
    /// Where compacted segments are archived before they are deleted.
    archive: Option<PathBuf>,
}

/// The current snapshot and an open handle on its file.
#[derive(Debug)]
struct CurrentSnapshot {
    meta: SnapshotMeta,
    id: SnapshotId,
    path: PathBuf,
    /// Where the data start in the file.
    data_offset: u64,
    file: File,
}

/// The snapshot being received, with `incoming.data` open.
#[derive(Debug)]
struct Incoming {
    meta: SnapshotMeta,
    id: SnapshotId,
    /// The data bytes held (the file holds the header before them).
    held: u64,
    path: PathBuf,
    file: File,
    /// Bytes were appended since the file was last synced.
    unsynced: bool,
    /// `verify_incoming` found the bytes complete and matching, since this store was opened.
    verified: bool,
}

/// Reads the entry record at `offset` of the segment open as `file` and checks that it is
/// entry `index`.
fn read_entry_record(
    file: &mut File,
    path: &Path,
    offset: u64,
    index: LogIndex,
) -> Result<Entry, StorageError> {
    let corrupt = |reason: String| StorageError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    file.seek(SeekFrom::Start(offset)).map_err(io_error(path))?;
    let mut header_bytes = [0u8; RECORD_HEADER_BYTES];
    file.read_exact(&mut header_bytes).map_err(io_error(path))?;
    let header = RecordHeader::parse(header_bytes);
    if let Some(problem) = header.length_problem() {
        return Err(corrupt(problem));
    }
    // Bounded by RECORD_BODY_BYTES_MAX, checked above.
    let mut body = vec![0u8; header.body_bytes as usize];
    file.read_exact(&mut body).map_err(io_error(path))?;
    match verify_body(header, &body) {
        Ok(Record::Entry(entry)) if entry.index == index => Ok(entry),
        Ok(_) => Err(corrupt(format!(
            "the record recorded for entry {index} is not that entry"
        ))),
        Err(BodyProblem::Checksum(reason) | BodyProblem::Undecodable(reason)) => {
            Err(corrupt(reason))
        }
    }
}

/// Where sinks report what they wrote, shared by the store and its sinks.
#[derive(Debug, Default)]
struct SinkSlot {
    /// The ticket of the latest sink handed out and not yet committed.
    latest: Option<u64>,
    /// What the latest sink wrote, once it finished.
    finished: Option<WrittenSnapshot>,
}

/// A [`SnapshotSink`] into `sink-<ticket>.snap.tmp`, through a bounded buffer.
struct WalSink {
    ticket: u64,
    path: PathBuf,
    file: BufWriter<File>,
    size: u64,
    crc32c: u32,
    slot: Arc<Mutex<SinkSlot>>,
}

impl Write for WalSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.file.write(buf)?;
        self.crc32c = crc32c::crc32c_append(self.crc32c, &buf[..written]);
        self.size += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl SnapshotSink for WalSink {
    fn finish(self: Box<Self>) -> Result<WrittenSnapshot, StorageError> {
        let Self {
            ticket,
            path,
            file,
            size,
            crc32c,
            slot,
        } = *self;
        let file = file.into_inner().map_err(|error| StorageError::Io {
            path: path.clone(),
            source: error.into_error(),
        })?;
        file.sync_all().map_err(io_error(&path))?;
        let written = WrittenSnapshot {
            size,
            crc32c,
            ticket,
        };
        let mut slot = slot.lock();
        // An abandoned sink's file is gone; committing it is refused by its ticket.
        if slot.latest == Some(ticket) {
            slot.finished = Some(written.clone());
        }
        Ok(written)
    }
}

impl Running {
    /// Opens the last segment for appending and makes everything recovered durable.
    fn start(
        directory: &Path,
        options: &WalOptions,
        layout: RecoveredLayout,
    ) -> Result<(Self, Recovered), StorageError> {
        let RecoveredLayout {
            recovered,
            bounds,
            segments,
            hard_state,
            snapshot_paths,
            snapshot,
            first_sequence,
            positions,
        } = layout;
        let current = match snapshot {
            Some((file, path)) => Some(CurrentSnapshot {
                file: File::open(&path).map_err(io_error(&path))?,
                meta: file.meta,
                id: file.id,
                path,
                data_offset: file.data_offset,
            }),
            None => None,
        };
        let incoming = match &recovered.incoming {
            Some(incoming) => Some(open_incoming(directory, incoming)?),
            None => None,
        };
        let active = match segments.last() {
            Some(last) => Some(ActiveSegment::open(
                &last.path,
                last.size_bytes,
                prepare_limit(options.segment_bytes_max),
            )?),
            None => None,
        };
        let mut running = Self {
            directory: directory.to_path_buf(),
            segment_bytes_max: options.segment_bytes_max,
            bounds,
            segments,
            active,
            pending: Vec::new(),
            // What a previous run wrote may still be only in the page cache.
            active_unsynced: true,
            directory_unsynced: true,
            hard_state,
            snapshot_paths,
            first_sequence,
            current,
            incoming,
            sinks: Arc::default(),
            last_ticket: 0,
            positions: positions.into(),
            synced_last: LogIndex(0),
            archive: None,
        };
        running.sync()?;
        Ok((running, recovered))
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.bounds.check_append(entries)?;
        let Some(last) = entries.last() else {
            return Ok(());
        };
        // Encode everything first, so an oversized entry refuses the whole call before any
        // byte is written.
        let mut encoded = Vec::new();
        let mut ends = Vec::with_capacity(entries.len());
        for entry in entries {
            encode_record(&RecordRef::Entry(entry), &mut encoded)?;
            ends.push(encoded.len());
        }
        let mut start = 0;
        for (entry, end) in entries.iter().zip(ends) {
            let position = self.push_record(&encoded[start..end], Some(entry.index))?;
            self.positions.push_back(position);
            start = end;
        }
        self.flush()?;
        self.bounds.appended(last.index);
        Ok(())
    }

    fn truncate_from(&mut self, from: LogIndex) -> Result<(), StorageError> {
        let Some(from) = self.bounds.truncation_point(from) else {
            return Ok(());
        };
        let mut encoded = Vec::new();
        encode_record(&RecordRef::Truncate { from }, &mut encoded)?;
        self.push_record(&encoded, None)?;
        self.flush()?;
        self.bounds.truncated(from);
        let kept = usize::try_from(from.0 - self.bounds.snapshot_last.0 - 1).unwrap_or(usize::MAX);
        self.positions.truncate(kept);
        self.synced_last = self.synced_last.min(self.bounds.last);
        // The removed entries still count for compaction (see `SegmentInfo::max_entry_index`).
        Ok(())
    }

    fn save_hard_state(&mut self, hard_state: &HardState) -> Result<(), StorageError> {
        let mut encoded = Vec::new();
        encode_record(&RecordRef::HardState(hard_state), &mut encoded)?;
        let (sequence, _) = self.push_record(&encoded, None)?;
        self.flush()?;
        self.hard_state = Some((hard_state.clone(), sequence));
        Ok(())
    }

    /// Forgets the latest sink and removes its file (a sink still writing writes to an
    /// unlinked file).
    fn abandon_sink(&mut self) -> Result<(), StorageError> {
        let abandoned = {
            let mut slot = self.sinks.lock();
            slot.finished = None;
            slot.latest.take()
        };
        if let Some(ticket) = abandoned {
            remove_file_if_present(&self.directory.join(sink_file_name(ticket)))?;
            self.directory_unsynced = true;
        }
        Ok(())
    }

    fn snapshot_sink(&mut self) -> Result<Box<dyn SnapshotSink>, StorageError> {
        self.abandon_sink()?;
        for _ in 0..SINK_NAME_ATTEMPTS_MAX {
            self.last_ticket = self.last_ticket.checked_add(1).ok_or_else(|| {
                StorageError::Misuse("snapshot sink tickets are exhausted".to_string())
            })?;
            let ticket = self.last_ticket;
            let path = self.directory.join(sink_file_name(ticket));
            let file = match create_data_file(&path, true) {
                Ok(file) => file,
                // A sink of an earlier store on this directory, still being written.
                Err(StorageError::Io { source, .. })
                    if source.kind() == io::ErrorKind::AlreadyExists =>
                {
                    continue;
                }
                Err(error) => return Err(error),
            };
            self.directory_unsynced = true;
            {
                let mut slot = self.sinks.lock();
                slot.latest = Some(ticket);
                slot.finished = None;
            }
            return Ok(Box::new(WalSink {
                ticket,
                path,
                file: BufWriter::with_capacity(IO_BUFFER_BYTES, file),
                size: 0,
                crc32c: 0,
                slot: Arc::clone(&self.sinks),
            }));
        }
        Err(StorageError::Misuse(format!(
            "{SINK_NAME_ATTEMPTS_MAX} snapshot sink file names in a row are taken in {}",
            self.directory.display()
        )))
    }

    fn commit_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        written: &WrittenSnapshot,
    ) -> Result<SnapshotId, StorageError> {
        {
            let slot = self.sinks.lock();
            if slot.latest != Some(written.ticket) || slot.finished.as_ref() != Some(written) {
                return Err(StorageError::Misuse(format!(
                    "snapshot sink {} is not the latest finished sink, or reported other \
                     figures than it wrote (latest: {:?}, finished: {:?})",
                    written.ticket, slot.latest, slot.finished
                )));
            }
        }
        if let Err(error) = self.bounds.check_snapshot(meta) {
            // Its bytes can never be committed: drop them now rather than at recovery.
            self.abandon_sink()?;
            return Err(error);
        }
        // Everything written before the snapshot becomes durable first, so a crash never
        // pairs the new snapshot with a log missing an earlier write (a lost truncation
        // would otherwise bring back entries that conflict with the snapshot).
        self.sync()?;
        let id = SnapshotId {
            last_index: meta.last_index,
            last_term: meta.last_term,
            size: written.size,
            crc32c: written.crc32c,
        };
        let sink_path = self.directory.join(sink_file_name(written.ticket));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&sink_path)
            .map_err(io_error(&sink_path))?;
        seal_data_file(&mut file, &sink_path, meta, &id)?;
        {
            let mut slot = self.sinks.lock();
            slot.latest = None;
            slot.finished = None;
        }
        let final_path = self.directory.join(snapshot_file_name(meta.last_index));
        fs::rename(&sink_path, &final_path).map_err(io_error(&final_path))?;
        sync_directory(&self.directory)?;
        self.replace_snapshot(CurrentSnapshot {
            meta: meta.clone(),
            id,
            path: final_path,
            data_offset: SNAPSHOT_HEADER_BYTES,
            file,
        })?;
        Ok(id)
    }

    /// After `snapshot` is durable under its final name: deletes the older snapshot files and
    /// the segments it covers, and makes it the one read.
    fn replace_snapshot(&mut self, snapshot: CurrentSnapshot) -> Result<(), StorageError> {
        let last_index = snapshot.meta.last_index;
        for old_path in std::mem::take(&mut self.snapshot_paths) {
            if old_path != snapshot.path {
                remove_file_if_present(&old_path)?;
                self.directory_unsynced = true;
            }
        }
        self.snapshot_paths.push(snapshot.path.clone());
        self.current = Some(snapshot);
        let covered = usize::try_from(last_index.0.saturating_sub(self.bounds.snapshot_last.0))
            .unwrap_or(usize::MAX)
            .min(self.positions.len());
        self.positions.drain(..covered);
        self.bounds.snapshotted(last_index);
        self.compact(last_index)?;
        self.sync()
    }

    fn read_snapshot(&mut self, offset: u64, max: usize) -> Result<Vec<u8>, StorageError> {
        let Some(current) = self.current.as_mut() else {
            return Err(StorageError::Misuse(
                "there is no snapshot to read".to_string(),
            ));
        };
        let end = current.data_offset.saturating_add(current.id.size);
        let start = current.data_offset.saturating_add(offset).min(end);
        read_range(&mut current.file, &current.path, start, end, max)
    }

    #[allow(clippy::type_complexity)]
    fn snapshot_reader(
        &mut self,
    ) -> Result<Option<(SnapshotMeta, SnapshotId, Box<dyn Read + Send>)>, StorageError> {
        let Some(current) = self.current.as_ref() else {
            return Ok(None);
        };
        // A handle of its own: it keeps the file's bytes after a newer snapshot unlinks it.
        let mut file = File::open(&current.path).map_err(io_error(&current.path))?;
        file.seek(SeekFrom::Start(current.data_offset))
            .map_err(io_error(&current.path))?;
        let reader: Box<dyn Read + Send> = Box::new(file.take(current.id.size));
        Ok(Some((current.meta.clone(), current.id, reader)))
    }

    fn begin_incoming(&mut self, meta: &SnapshotMeta, id: SnapshotId) -> Result<(), StorageError> {
        if meta.last_index != id.last_index || meta.last_term != id.last_term {
            return Err(StorageError::Misuse(format!(
                "snapshot meta ends at {} in term {} but its id at {} in term {}",
                meta.last_index, meta.last_term, id.last_index, id.last_term
            )));
        }
        // Earlier writes first, as with a snapshot of our own.
        self.sync()?;
        if self
            .incoming
            .as_ref()
            .is_some_and(|incoming| incoming.id == id && incoming.meta == *meta)
        {
            return Ok(());
        }
        self.incoming = None;
        // The bytes go first, so the new meta never names the old ones.
        let path = self.directory.join(INCOMING_DATA_NAME);
        let file = create_data_file(&path, false)?;
        file.sync_all().map_err(io_error(&path))?;
        write_incoming_meta(&self.directory, meta, &id)?;
        sync_directory(&self.directory)?;
        self.incoming = Some(Incoming {
            meta: meta.clone(),
            id,
            held: 0,
            path,
            file,
            unsynced: false,
            verified: false,
        });
        Ok(())
    }

    fn append_incoming(&mut self, offset: u64, bytes: &[u8]) -> Result<(), StorageError> {
        let incoming = receiving(&mut self.incoming)?;
        super::check_incoming_append(incoming.held, incoming.id.size, offset, bytes.len())?;
        if bytes.is_empty() {
            return Ok(());
        }
        incoming.unsynced = true;
        incoming
            .file
            .seek(SeekFrom::Start(SNAPSHOT_HEADER_BYTES + offset))
            .and_then(|_| incoming.file.write_all(bytes))
            .map_err(io_error(&incoming.path))?;
        incoming.held += bytes.len() as u64;
        Ok(())
    }

    fn verify_incoming(&mut self) -> Result<bool, StorageError> {
        let incoming = receiving(&mut self.incoming)?;
        if incoming.held != incoming.id.size {
            return Err(StorageError::Misuse(format!(
                "snapshot being received holds {} of its {} bytes",
                incoming.held, incoming.id.size
            )));
        }
        incoming.sync()?;
        let checksum = checksum_range(
            &mut incoming.file,
            &incoming.path,
            SNAPSHOT_HEADER_BYTES,
            incoming.id.size,
        )?;
        if checksum == incoming.id.crc32c {
            incoming.verified = true;
            return Ok(true);
        }
        tracing::warn!(
            path = %incoming.path.display(),
            expected = incoming.id.crc32c,
            found = checksum,
            "the snapshot received does not match its checksum; its bytes are discarded"
        );
        incoming
            .file
            .set_len(SNAPSHOT_HEADER_BYTES)
            .and_then(|()| incoming.file.sync_all())
            .map_err(io_error(&incoming.path))?;
        incoming.held = 0;
        incoming.verified = false;
        Ok(false)
    }

    fn install_incoming(&mut self) -> Result<SnapshotId, StorageError> {
        let Some(incoming) = self.incoming.as_ref().filter(|incoming| incoming.verified) else {
            return Err(StorageError::Misuse(
                "no verified snapshot is being received".to_string(),
            ));
        };
        self.bounds.check_snapshot(&incoming.meta)?;
        self.sync()?;
        let Some(mut incoming) = self.incoming.take() else {
            unreachable!("checked above");
        };
        seal_data_file(
            &mut incoming.file,
            &incoming.path,
            &incoming.meta,
            &incoming.id,
        )?;
        let final_path = self
            .directory
            .join(snapshot_file_name(incoming.meta.last_index));
        fs::rename(&incoming.path, &final_path).map_err(io_error(&final_path))?;
        sync_directory(&self.directory)?;
        // Recovery also removes a meta naming the snapshot it recovered.
        remove_file_if_present(&self.directory.join(INCOMING_META_NAME))?;
        self.directory_unsynced = true;
        let id = incoming.id;
        self.replace_snapshot(CurrentSnapshot {
            meta: incoming.meta,
            id,
            path: final_path,
            data_offset: SNAPSHOT_HEADER_BYTES,
            file: incoming.file,
        })?;
        Ok(id)
    }

    fn discard_incoming(&mut self) -> Result<(), StorageError> {
        if let Some(incoming) = self.incoming.take() {
            drop(incoming.file);
            // The meta first: data without a meta are removed by recovery.
            remove_file_if_present(&self.directory.join(INCOMING_META_NAME))?;
            remove_file_if_present(&incoming.path)?;
            self.directory_unsynced = true;
        }
        Ok(())
    }

    /// Deletes the oldest segments whose entries the snapshot at `snapshot_last` covers.
    fn compact(&mut self, snapshot_last: LogIndex) -> Result<(), StorageError> {
        let written = self.segments.len().saturating_sub(1);
        let deletable = self.segments[..written]
            .iter()
            .take_while(|segment| segment.max_entry_index <= snapshot_last)
            .count();
        if deletable == 0 {
            return Ok(());
        }
        // The latest hard state must outlive the segment that holds it.
        if let Some((hard_state, sequence)) = self.hard_state.clone()
            && self.segments[..deletable]
                .iter()
                .any(|segment| segment.sequence == sequence)
        {
            self.save_hard_state(&hard_state)?;
            self.sync()?;
        }
        for segment in self.segments.drain(..deletable) {
            if let Some(archive) = &self.archive
                && let Err(error) = super::archive::archive_segment(archive, &segment.path)
            {
                tracing::error!(
                    path = %segment.path.display(),
                    archive = %archive.display(),
                    %error,
                    "archiving a compacted wal segment failed; a point-in-time restore across \
                     it will be refused"
                );
            }
            remove_file_if_present(&segment.path)?;
            // One directory sync per segment keeps the survivors a suffix after a crash.
            sync_directory(&self.directory)?;
            tracing::debug!(
                path = %segment.path.display(),
                %snapshot_last,
                "deleted a compacted wal segment"
            );
        }
        Ok(())
    }

    /// Adds one framed record to the last segment (rolling over first when it is full) and
    /// returns that segment's sequence number and the record's offset in it. The bytes reach
    /// the file at the next `flush`.
    fn push_record(
        &mut self,
        framed: &[u8],
        entry_index: Option<LogIndex>,
    ) -> Result<(u64, u64), StorageError> {
        let record_bytes = framed.len() as u64;
        let next_sequence = match self.segments.last() {
            None => Some(self.first_sequence),
            Some(last)
                if last.sealed
                    || (last.size_bytes > SEGMENT_HEADER_BYTES
                        && last.size_bytes.saturating_add(record_bytes)
                            > self.segment_bytes_max) =>
            {
                Some(last.sequence.checked_add(1).ok_or_else(|| {
                    StorageError::Misuse("wal segment numbers are exhausted".to_string())
                })?)
            }
            Some(_) => None,
        };
        if let Some(sequence) = next_sequence {
            self.start_segment(sequence)?;
        }
        self.pending.extend_from_slice(framed);
        let Some(last) = self.segments.last_mut() else {
            unreachable!("a segment was started above when there was none");
        };
        let offset = last.size_bytes;
        last.size_bytes += record_bytes;
        if let Some(index) = entry_index {
            last.max_entry_index = last.max_entry_index.max(index);
        }
        Ok((last.sequence, offset))
    }

    /// Finishes the current segment (sealed and synced, so only the last segment can ever be
    /// torn, and an earlier one that lost records is refused) and creates segment `sequence`.
    fn start_segment(&mut self, sequence: u64) -> Result<(), StorageError> {
        if self.active.is_some() {
            self.seal_last()?;
            self.flush()?;
            if let Some(active) = self.active.as_mut() {
                active.trim()?;
                self.active_unsynced = true;
            }
            self.sync_active()?;
        }
        let path = segment_path(&self.directory, sequence);
        let file = ActiveSegment::create(&path, prepare_limit(self.segment_bytes_max))?;
        tracing::debug!(path = %path.display(), "started a wal segment");
        self.active = Some(file);
        self.segments.push(SegmentInfo {
            sequence,
            path,
            size_bytes: SEGMENT_HEADER_BYTES,
            max_entry_index: LogIndex(0),
            sealed: false,
        });
        self.pending.extend_from_slice(&SEGMENT_MAGIC);
        self.directory_unsynced = true;
        Ok(())
    }

    /// Adds the seal record to the last segment, unless it has one already (recovery found it
    /// sealed: the node stopped before the next segment was created).
    fn seal_last(&mut self) -> Result<(), StorageError> {
        let Some(last) = self.segments.last_mut() else {
            return Ok(());
        };
        if last.sealed {
            return Ok(());
        }
        let seal = RecordRef::Seal {
            sequence: last.sequence,
            length_bytes: last.size_bytes,
        };
        let seal_bytes = encode_record(&seal, &mut self.pending)?;
        debug_assert!(seal_bytes <= SEAL_RECORD_BYTES_MAX);
        last.size_bytes += seal_bytes;
        last.sealed = true;
        Ok(())
    }

    /// Hands pending bytes to the operating system.
    fn flush(&mut self) -> Result<(), StorageError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let Some(active) = self.active.as_mut() else {
            unreachable!("pending bytes exist only after a segment was started");
        };
        active.write(&self.pending)?;
        debug_assert_eq!(
            Some(active.written()),
            self.segments.last().map(|last| last.size_bytes),
            "a segment's size counts exactly the bytes written to it"
        );
        self.pending.clear();
        self.active_unsynced = true;
        Ok(())
    }

    fn sync_active(&mut self) -> Result<(), StorageError> {
        if !self.active_unsynced {
            return Ok(());
        }
        if let Some(active) = self.active.as_mut() {
            active.sync_data()?;
        }
        self.active_unsynced = false;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.flush()?;
        self.sync_active()?;
        if let Some(incoming) = self.incoming.as_mut() {
            incoming.sync()?;
        }
        if self.directory_unsynced {
            sync_directory(&self.directory)?;
            self.directory_unsynced = false;
        }
        self.synced_last = self.bounds.last;
        Ok(())
    }

    /// Synced entries from `from` on, read back by their recorded positions.
    fn read_entries(
        &mut self,
        from: LogIndex,
        count_max: usize,
        bytes_max: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        self.bounds.check_read(from)?;
        let first = usize::try_from(from.0 - self.bounds.snapshot_last.0 - 1).unwrap_or(usize::MAX);
        let mut chosen: Vec<Entry> = Vec::new();
        let mut bytes = 0usize;
        let mut open: Option<(u64, PathBuf, File)> = None;
        for (offset_in_log, &(sequence, offset)) in self.positions.iter().enumerate().skip(first) {
            let index = LogIndex(self.bounds.snapshot_last.0 + 1 + offset_in_log as u64);
            if index > self.synced_last || chosen.len() >= count_max {
                break;
            }
            if open
                .as_ref()
                .is_none_or(|(open_sequence, _, _)| *open_sequence != sequence)
            {
                let Some(segment) = self
                    .segments
                    .iter()
                    .find(|segment| segment.sequence == sequence)
                else {
                    return Err(StorageError::Misuse(format!(
                        "entry {index} is recorded in segment {sequence}, which is gone"
                    )));
                };
                let file = File::open(&segment.path).map_err(io_error(&segment.path))?;
                open = Some((sequence, segment.path.clone(), file));
            }
            let Some((_, path, file)) = open.as_mut() else {
                break;
            };
            let entry = read_entry_record(file, path, offset, index)?;
            let size = entry.size_bytes();
            if !super::batch_takes(chosen.len(), bytes, size, count_max, bytes_max) {
                break;
            }
            bytes = bytes.saturating_add(size);
            chosen.push(entry);
        }
        Ok(chosen)
    }
}

impl Incoming {
    fn sync(&mut self) -> Result<(), StorageError> {
        if self.unsynced {
            self.file.sync_data().map_err(io_error(&self.path))?;
            self.unsynced = false;
        }
        Ok(())
    }
}

/// Opens `incoming.data` for the snapshot recovery found being received, holding
/// `incoming.held` bytes after its header (recovery cut anything longer); a missing file or
/// one shorter than its header is made an empty one.
fn open_incoming(directory: &Path, incoming: &IncomingSnapshot) -> Result<Incoming, StorageError> {
    let path = directory.join(INCOMING_DATA_NAME);
    let file = if incoming.held == 0 {
        create_data_file(&path, false)?
    } else {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_error(&path))?
    };
    Ok(Incoming {
        meta: incoming.meta.clone(),
        id: incoming.id,
        held: incoming.held,
        path,
        file,
        // Recovery makes what it returns durable.
        unsynced: true,
        verified: false,
    })
}

/// How far zeros may be written ahead in a segment whose limit is `segment_bytes_max`: past
/// that, the next record goes to a new segment (a record alone in its segment may still be
/// larger; nothing is written ahead of it).
fn prepare_limit(segment_bytes_max: u64) -> u64 {
    segment_bytes_max.saturating_add(SEAL_RECORD_BYTES_MAX)
}

/// Removes `path`; a file that is already gone is what was wanted.
fn remove_file_if_present(path: &Path) -> Result<(), StorageError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StorageError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}
