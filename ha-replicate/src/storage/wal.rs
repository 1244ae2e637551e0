//! [`WalStore`]: the log, the hard state and snapshots in a directory, as an append-only
//! segmented write-ahead log.
//!
//! # On-disk format (version 2)
//!
//! A data directory holds:
//!
//! ```text
//! wal-00000000000000000001.log        segments, numbered 1, 2, 3, ... without gaps
//! wal-00000000000000000002.log        (after compaction the lowest number is higher)
//! snapshot-00000000000000000120.snap  the snapshot ending at index 120
//! ```
//!
//! **Segments** are named by a sequence number, not by the first index they hold: a truncation
//! marker can move the log back, so first indexes are not monotonic across segments, while
//! sequence numbers are. Each segment is
//!
//! ```text
//! magic "ha-wal\0\x02" (8 bytes, the last one is the format version)
//! record*
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
//! Nothing in a segment is ever overwritten: truncation appends a `Truncate` marker, and the
//! hard state is a record like any other, so one sync makes entries and the vote durable
//! together (the driver's group commit) and a crash keeps a prefix of the writes.
//!
//! **Snapshots** are written to `snapshot-<index>.snap.tmp`, synced, renamed, and the
//! directory synced. The file is
//!
//! ```text
//! magic "ha-snap\x01" | meta length u32 | data length u64 | crc32c(meta) u32 | crc32c(data) u32
//! | crc32c(the 28 bytes before) u32 | meta: postcard(SnapshotMeta) | data
//! ```
//!
//! # Recovery rules
//!
//! 1. Files that are neither segments, snapshots nor snapshot temporaries are ignored (and
//!    logged); a leftover `*.snap.tmp` is deleted. A file with a segment or snapshot name that
//!    is not a regular file is refused.
//! 2. The newest snapshot that verifies is used. Damaged newer snapshots are renamed to
//!    `*.snap.damaged` and reported in [`Recovered::repairs`]. If snapshots exist and none
//!    verifies, recovery fails with [`StorageError::Corrupt`]. (Falling back is only possible
//!    while the segments still hold the entries after the older snapshot; otherwise rule 5
//!    refuses the gap.)
//! 3. Segments must be numbered without gaps. They are read in order and every record's
//!    checksum is verified.
//! 4. A damaged record (short, impossible length, checksum mismatch) **in the last segment,
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
//!
//! # Compaction
//!
//! After a snapshot at index `S` is durable, the older snapshots are deleted, then the oldest
//! segments whose entry records all have indexes at or below `S` (the segment being written
//! is always kept; a segment that straddles `S` is kept and recovery skips its covered
//! entries). Entries that a later marker removed count too: replay reads them before the
//! marker, and they continue the log from `S` only if no segment before them is gone. If the
//! latest hard state record is in a segment about to go, it is written again first. Segments
//! are deleted oldest first with a directory sync after each, so a crash leaves a suffix.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ha_core::LogIndex;

use super::log_bounds::LogBounds;
use super::record::{RecordRef, SEAL_RECORD_BYTES_MAX, encode_record};
use super::segment::{SEGMENT_HEADER_BYTES, SEGMENT_MAGIC, segment_path};
use super::snapshot_file::{sync_directory, write_snapshot_file};
use super::wal_recovery::{RecoveredLayout, SegmentInfo, recover_directory};
use super::{LogStore, Recovered, StorageError};
use crate::entry::Entry;
use crate::hard_state::HardState;
use crate::snapshot_meta::SnapshotMeta;

/// The default [`WalOptions::segment_bytes_max`]: 64 MiB.
pub const SEGMENT_BYTES_MAX_DEFAULT: u64 = 64 * 1024 * 1024;

/// When [`WalStore`] makes writes durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Every mutating call syncs before it returns. Simple and safe; one fsync per call.
    #[default]
    Always,
    /// Only [`LogStore::sync`] (and `save_snapshot`, and `recover`) sync. The driver batches
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
        })
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
        if self.failed {
            return Err(StorageError::Io {
                path: self.directory.clone(),
                source: io::Error::other(
                    "an earlier write or sync failed, so the disk state is unknown; \
                     reopen the store and recover",
                ),
            });
        }
        let Some(running) = self.running.as_mut() else {
            return Err(StorageError::Misuse(
                "recover must be called before any other method".to_string(),
            ));
        };
        let always = self.options.fsync_policy == FsyncPolicy::Always;
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
}

impl LogStore for WalStore {
    fn recover(&mut self) -> Result<Recovered, StorageError> {
        if self.running.is_some() || self.failed {
            return Err(StorageError::Misuse(
                "recover is called once, on a freshly opened store".to_string(),
            ));
        }
        let layout = recover_directory(&self.directory)?;
        let (running, recovered) = Running::start(&self.directory, &self.options, layout)?;
        self.running = Some(running);
        Ok(recovered)
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.mutate(|running| running.append(entries))
    }

    fn truncate_from(&mut self, from: LogIndex) -> Result<(), StorageError> {
        self.mutate(|running| running.truncate_from(from))
    }

    fn save_hard_state(&mut self, hard_state: &HardState) -> Result<(), StorageError> {
        self.mutate(|running| running.save_hard_state(hard_state))
    }

    fn save_snapshot(&mut self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageError> {
        self.mutate(|running| running.save_snapshot(meta, data))
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.mutate(Running::sync)
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
    /// The open handle of the last segment; `None` exactly when there is no segment.
    active: Option<File>,
    /// Encoded records not yet handed to the operating system, for the last segment.
    pending: Vec<u8>,
    /// The last segment has writes that were not synced.
    active_unsynced: bool,
    /// Files were created or removed since the directory was last synced.
    directory_unsynced: bool,
    /// The latest hard state saved, and the segment that holds its record.
    hard_state: Option<(HardState, u64)>,
    /// Snapshot files on disk; after a successful `save_snapshot`, just the new one.
    snapshot_paths: Vec<PathBuf>,
    /// The number of the first segment when there is none, so numbers never go back after
    /// recovery removed a torn one.
    first_sequence: u64,
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
            first_sequence,
        } = layout;
        let active = match segments.last() {
            Some(last) => {
                let file = OpenOptions::new()
                    .append(true)
                    .open(&last.path)
                    .map_err(|source| StorageError::Io {
                        path: last.path.clone(),
                        source,
                    })?;
                Some(file)
            }
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
            self.push_record(&encoded[start..end], Some(entry.index))?;
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
        // The removed entries still count for compaction (see `SegmentInfo::max_entry_index`).
        Ok(())
    }

    fn save_hard_state(&mut self, hard_state: &HardState) -> Result<(), StorageError> {
        let mut encoded = Vec::new();
        encode_record(&RecordRef::HardState(hard_state), &mut encoded)?;
        let sequence = self.push_record(&encoded, None)?;
        self.flush()?;
        self.hard_state = Some((hard_state.clone(), sequence));
        Ok(())
    }

    fn save_snapshot(&mut self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageError> {
        self.bounds.check_snapshot(meta)?;
        // Everything written before the snapshot becomes durable first, so a crash never
        // pairs the new snapshot with a log missing an earlier write (a lost truncation
        // would otherwise bring back entries that conflict with the snapshot).
        self.sync()?;
        let new_path = write_snapshot_file(&self.directory, meta, data)?;
        for old_path in std::mem::take(&mut self.snapshot_paths) {
            if old_path != new_path {
                remove_file_if_present(&old_path)?;
                self.directory_unsynced = true;
            }
        }
        self.snapshot_paths.push(new_path);
        self.bounds.snapshotted(meta.last_index);
        self.compact(meta.last_index)?;
        self.sync()
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
    /// returns that segment's sequence number. The bytes reach the file at the next `flush`.
    fn push_record(
        &mut self,
        framed: &[u8],
        entry_index: Option<LogIndex>,
    ) -> Result<u64, StorageError> {
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
        last.size_bytes += record_bytes;
        if let Some(index) = entry_index {
            last.max_entry_index = last.max_entry_index.max(index);
        }
        Ok(last.sequence)
    }

    /// Finishes the current segment (sealed and synced, so only the last segment can ever be
    /// torn, and an earlier one that lost records is refused) and creates segment `sequence`.
    fn start_segment(&mut self, sequence: u64) -> Result<(), StorageError> {
        if self.active.is_some() {
            self.seal_last()?;
            self.flush()?;
            self.sync_active()?;
        }
        let path = segment_path(&self.directory, sequence);
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| StorageError::Io {
                path: path.clone(),
                source,
            })?;
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
        let (Some(file), Some(last)) = (self.active.as_mut(), self.segments.last()) else {
            unreachable!("pending bytes exist only after a segment was started");
        };
        file.write_all(&self.pending)
            .map_err(|source| StorageError::Io {
                path: last.path.clone(),
                source,
            })?;
        self.pending.clear();
        self.active_unsynced = true;
        Ok(())
    }

    fn sync_active(&mut self) -> Result<(), StorageError> {
        if !self.active_unsynced {
            return Ok(());
        }
        if let (Some(file), Some(last)) = (self.active.as_mut(), self.segments.last()) {
            file.sync_data().map_err(|source| StorageError::Io {
                path: last.path.clone(),
                source,
            })?;
        }
        self.active_unsynced = false;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.flush()?;
        self.sync_active()?;
        if self.directory_unsynced {
            sync_directory(&self.directory)?;
            self.directory_unsynced = false;
        }
        Ok(())
    }
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
