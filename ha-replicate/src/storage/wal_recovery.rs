//! Reading a [`WalStore`](super::wal::WalStore) directory back: the rules are listed in the
//! [`wal`](super::wal) module documentation.
//!
//! Recovery first reads everything without changing anything, and only repairs (truncates a
//! torn tail, deletes snapshot temporaries, moves damaged snapshots aside) once the whole
//! directory has verified: a directory refused as corrupt is left exactly as it was found,
//! for the operator to inspect.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use ha_core::LogIndex;

use super::incoming_file::{
    INCOMING_DATA_NAME, INCOMING_META_NAME, IncomingMeta, read_incoming_meta,
};
use super::log_bounds::LogBounds;
use super::record::Record;
use super::segment::{SEGMENT_HEADER_BYTES, ScanEnd, parse_segment_file_name, scan_segment};
use super::snapshot_file::{
    DAMAGED_SUFFIX, SNAPSHOT_HEADER_BYTES, SnapshotFile, is_temporary_file_name,
    parse_snapshot_file_name, read_snapshot_file, sync_directory,
};
use super::{IncomingSnapshot, Recovered, StorageError};
use crate::entry::Entry;
use crate::hard_state::HardState;

/// The most directory entries recovery looks at. A data directory holds a few dozen files;
/// far more means it is the wrong directory, and listing it would take unbounded time.
const DIRECTORY_ENTRIES_MAX: usize = 1_000_000;

/// What the running store needs to know about one segment.
#[derive(Clone, Debug)]
pub(crate) struct SegmentInfo {
    /// Its number.
    pub(crate) sequence: u64,
    /// Its file.
    pub(crate) path: PathBuf,
    /// Its size including bytes not yet written to the file.
    pub(crate) size_bytes: u64,
    /// The highest index of any entry record in it, 0 if none. Compaction deletes the segment
    /// once a snapshot covers this. Entries a later marker removed count too: replay reads
    /// them before it reaches the marker, so they must still continue the log from the
    /// snapshot, which only holds if every segment before them is kept.
    pub(crate) max_entry_index: LogIndex,
    /// It ends with a seal record, so nothing more is written to it: the writer's next record
    /// goes to a new segment. Only the last segment may be unsealed, and the last may be
    /// sealed only if the node stopped between sealing it and creating the next one.
    pub(crate) sealed: bool,
}

/// The result of recovery: what the caller gets, and what the store needs to continue.
#[derive(Debug)]
pub(crate) struct RecoveredLayout {
    /// What [`LogStore::recover`](super::LogStore::recover) returns.
    pub(crate) recovered: Recovered,
    /// The snapshot's and the log's last indexes.
    pub(crate) bounds: LogBounds,
    /// Every segment left after repairs, oldest first.
    pub(crate) segments: Vec<SegmentInfo>,
    /// The latest hard state and the segment holding it.
    pub(crate) hard_state: Option<(HardState, u64)>,
    /// Every snapshot file left after repairs.
    pub(crate) snapshot_paths: Vec<PathBuf>,
    /// The snapshot recovered, and its file.
    pub(crate) snapshot: Option<(SnapshotFile, PathBuf)>,
    /// The number for a new first segment if `segments` is empty: that of a removed torn
    /// segment, else 1.
    pub(crate) first_sequence: u64,
    /// Where each recovered entry's record is: (segment sequence, byte offset), in the order
    /// of `recovered.entries`.
    pub(crate) positions: Vec<(u64, u64)>,
}

/// Reads, verifies and repairs the directory.
///
/// # Errors
/// [`StorageError::Corrupt`] per the rules in the [`wal`](super::wal) module documentation;
/// [`StorageError::Io`].
pub(crate) fn recover_directory(directory: &Path) -> Result<RecoveredLayout, StorageError> {
    let listing = list_directory(directory)?;
    let mut repairs = Vec::new();
    let mut plan = Vec::new();

    for path in &listing.temporary {
        repairs.push(format!(
            "removed {}, a snapshot file that was being written when the node stopped",
            path.display()
        ));
        plan.push(Repair::Remove(path.clone()));
    }

    let snapshot = choose_snapshot(&listing, &mut repairs, &mut plan)?;
    let snapshot_last = snapshot
        .as_ref()
        .map_or(LogIndex(0), |(file, _)| file.meta.last_index);
    let incoming = recover_incoming(
        &listing,
        snapshot.as_ref().map(|(file, _)| &file.id),
        &mut repairs,
        &mut plan,
    )?;

    let mut replay = Replay::new(snapshot_last);
    let segment_count = listing.segments.len();
    let mut previous_sequence: Option<u64> = None;
    let mut first_sequence = 1;
    for (position, (&sequence, path)) in listing.segments.iter().enumerate() {
        if let Some(previous) = previous_sequence
            && previous.checked_add(1) != Some(sequence)
        {
            return Err(StorageError::Corrupt {
                path: path.clone(),
                offset: 0,
                reason: format!("a segment is missing between segments {previous} and {sequence}"),
            });
        }
        previous_sequence = Some(sequence);
        let is_last = position + 1 == segment_count;
        replay.segments.push(SegmentInfo {
            sequence,
            path: path.clone(),
            size_bytes: 0,
            max_entry_index: LogIndex(0),
            sealed: false,
        });
        let scanned = scan_segment(path, is_last, &mut |offset, record| {
            replay.apply(sequence, path, offset, record)
        })?;
        let size_bytes = match scanned.end {
            ScanEnd::Clean => scanned.records_bytes,
            ScanEnd::Torn { offset, reason } => {
                repairs.push(format!(
                    "torn write at the end of {}: dropped {} bytes from byte {offset} ({reason})",
                    path.display(),
                    scanned.file_bytes - offset
                ));
                if offset < SEGMENT_HEADER_BYTES {
                    plan.push(Repair::Remove(path.clone()));
                    replay.segments.pop();
                    first_sequence = sequence;
                    continue;
                }
                plan.push(Repair::Truncate {
                    path: path.clone(),
                    length_bytes: offset,
                });
                offset
            }
        };
        if let Some(segment) = replay.segments.last_mut() {
            segment.size_bytes = size_bytes;
        }
        // Also checked at this segment's first record, so the error names the segment that
        // lost records rather than a symptom in this one.
        replay.check_previous_sealed()?;
    }

    for repair in &plan {
        repair.apply()?;
    }
    if !plan.is_empty() {
        sync_directory(directory)?;
    }
    for repair in &repairs {
        tracing::warn!(directory = %directory.display(), "wal recovery: {repair}");
    }

    let snapshot_paths = listing
        .snapshots
        .values()
        .filter(|path| !plan.iter().any(|repair| repair.moves_away(path)))
        .cloned()
        .collect();
    let bounds = LogBounds::new(snapshot_last, replay.last);
    Ok(RecoveredLayout {
        recovered: Recovered {
            hard_state: replay
                .hard_state
                .as_ref()
                .map(|(hard_state, _)| hard_state.clone())
                .unwrap_or_default(),
            snapshot: snapshot
                .as_ref()
                .map(|(file, _)| (file.meta.clone(), file.id)),
            incoming,
            entries: replay.entries,
            repairs,
        },
        bounds,
        segments: replay.segments,
        hard_state: replay.hard_state,
        snapshot_paths,
        snapshot,
        first_sequence,
        positions: replay.positions,
    })
}

/// The files recovery cares about, by kind.
#[derive(Debug, Default)]
struct Listing {
    segments: BTreeMap<u64, PathBuf>,
    snapshots: BTreeMap<LogIndex, PathBuf>,
    temporary: Vec<PathBuf>,
    incoming_meta: Option<PathBuf>,
    incoming_data: Option<PathBuf>,
}

fn list_directory(directory: &Path) -> Result<Listing, StorageError> {
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StorageError::Io { path, source }
    };
    let mut listing = Listing::default();
    let entries = fs::read_dir(directory).map_err(io_error(directory))?;
    for (count, entry) in entries.enumerate() {
        if count >= DIRECTORY_ENTRIES_MAX {
            return Err(StorageError::Corrupt {
                path: directory.to_path_buf(),
                offset: 0,
                reason: format!(
                    "more than {DIRECTORY_ENTRIES_MAX} files: this is not a wal directory"
                ),
            });
        }
        let entry = entry.map_err(io_error(directory))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            tracing::warn!(
                path = %path.display(),
                "wal recovery ignores a file whose name is not UTF-8"
            );
            continue;
        };
        let kind = if let Some(sequence) = parse_segment_file_name(&name) {
            Some(Kind::Segment(sequence))
        } else if let Some(index) = parse_snapshot_file_name(&name) {
            Some(Kind::Snapshot(index))
        } else if is_temporary_file_name(&name) {
            Some(Kind::Temporary)
        } else if name == INCOMING_META_NAME {
            Some(Kind::IncomingMeta)
        } else if name == INCOMING_DATA_NAME {
            Some(Kind::IncomingData)
        } else {
            None
        };
        let Some(kind) = kind else {
            tracing::warn!(path = %path.display(), "wal recovery ignores a file it does not know");
            continue;
        };
        // Follows symbolic links: a link to a regular file is accepted.
        let metadata = fs::metadata(&path).map_err(io_error(&path))?;
        if !metadata.is_file() {
            return Err(StorageError::Corrupt {
                path,
                offset: 0,
                reason: "has the name of a wal file but is not a regular file".to_string(),
            });
        }
        match kind {
            Kind::Segment(sequence) => {
                listing.segments.insert(sequence, path);
            }
            Kind::Snapshot(index) => {
                listing.snapshots.insert(index, path);
            }
            Kind::Temporary => listing.temporary.push(path),
            Kind::IncomingMeta => listing.incoming_meta = Some(path),
            Kind::IncomingData => listing.incoming_data = Some(path),
        }
    }
    Ok(listing)
}

enum Kind {
    Segment(u64),
    Snapshot(LogIndex),
    Temporary,
    IncomingMeta,
    IncomingData,
}

/// The newest snapshot that verifies. Damaged newer ones are planned to be moved aside.
fn choose_snapshot(
    listing: &Listing,
    repairs: &mut Vec<String>,
    plan: &mut Vec<Repair>,
) -> Result<Option<(SnapshotFile, PathBuf)>, StorageError> {
    let mut damaged: Vec<(PathBuf, StorageError)> = Vec::new();
    for (&index, path) in listing.snapshots.iter().rev() {
        match read_snapshot_file(path, index) {
            Ok(snapshot) => {
                for (damaged_path, error) in damaged {
                    repairs.push(format!(
                        "snapshot {} is damaged ({error}); recovered from the older snapshot {} \
                         and moved the damaged one to *{DAMAGED_SUFFIX}",
                        damaged_path.display(),
                        path.display()
                    ));
                    plan.push(Repair::MoveAside(damaged_path));
                }
                return Ok(Some((snapshot, path.clone())));
            }
            Err(error @ StorageError::Corrupt { .. }) => damaged.push((path.clone(), error)),
            Err(error) => return Err(error),
        }
    }
    // Snapshots exist and none verifies: report the newest one's problem.
    match damaged.into_iter().next() {
        Some((_, error)) => Err(error),
        None => Ok(None),
    }
}

/// The snapshot being received, if its meta verifies; otherwise its files are planned to be
/// removed. A damaged `incoming.meta` never stops the node: the transfer starts over.
fn recover_incoming(
    listing: &Listing,
    snapshot: Option<&crate::snapshot_meta::SnapshotId>,
    repairs: &mut Vec<String>,
    plan: &mut Vec<Repair>,
) -> Result<Option<IncomingSnapshot>, StorageError> {
    let mut remove_all = |repairs: &mut Vec<String>, reason: String| {
        repairs.push(reason);
        plan.extend(listing.incoming_meta.iter().cloned().map(Repair::Remove));
        plan.extend(listing.incoming_data.iter().cloned().map(Repair::Remove));
    };
    let Some(meta_path) = &listing.incoming_meta else {
        if let Some(data_path) = &listing.incoming_data {
            remove_all(
                repairs,
                format!(
                    "removed {}, the bytes of a snapshot being received, without its \
                     {INCOMING_META_NAME}",
                    data_path.display()
                ),
            );
        }
        return Ok(None);
    };
    let (meta, id) = match read_incoming_meta(meta_path)? {
        IncomingMeta::Valid(meta, id) => (meta, id),
        IncomingMeta::Damaged(reason) => {
            remove_all(
                repairs,
                format!(
                    "removed the snapshot being received: {} is damaged ({reason}); the \
                     transfer starts over",
                    meta_path.display()
                ),
            );
            return Ok(None);
        }
    };
    if snapshot == Some(&id) {
        remove_all(
            repairs,
            format!(
                "removed {}: the snapshot it names was installed when the node stopped",
                meta_path.display()
            ),
        );
        return Ok(None);
    }
    let held = match &listing.incoming_data {
        None => 0,
        Some(data_path) => {
            let file_bytes = fs::metadata(data_path)
                .map_err(|source| StorageError::Io {
                    path: data_path.clone(),
                    source,
                })?
                .len();
            let held = file_bytes
                .saturating_sub(SNAPSHOT_HEADER_BYTES)
                .min(id.size);
            // Only a crash during an install leaves more (the meta being sealed on): cut it.
            if file_bytes > SNAPSHOT_HEADER_BYTES + held {
                plan.push(Repair::Truncate {
                    path: data_path.clone(),
                    length_bytes: SNAPSHOT_HEADER_BYTES + held,
                });
            }
            held
        }
    };
    Ok(Some(IncomingSnapshot { meta, id, held }))
}

/// A change recovery makes once the directory has verified.
#[derive(Debug)]
enum Repair {
    /// Delete a file.
    Remove(PathBuf),
    /// Cut a segment's torn tail.
    Truncate { path: PathBuf, length_bytes: u64 },
    /// Rename a damaged snapshot so it is neither read nor lost.
    MoveAside(PathBuf),
}

impl Repair {
    fn apply(&self) -> Result<(), StorageError> {
        let io_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StorageError::Io { path, source }
        };
        match self {
            Repair::Remove(path) => fs::remove_file(path).map_err(io_error(path)),
            Repair::Truncate { path, length_bytes } => OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|file| {
                    file.set_len(*length_bytes)?;
                    file.sync_all()
                })
                .map_err(io_error(path)),
            Repair::MoveAside(path) => {
                let mut aside = path.clone().into_os_string();
                aside.push(DAMAGED_SUFFIX);
                fs::rename(path, &aside).map_err(io_error(path))
            }
        }
    }

    fn moves_away(&self, path: &Path) -> bool {
        matches!(self, Repair::MoveAside(moved) | Repair::Remove(moved) if moved == path)
    }
}

/// Replays records in order into the log they describe.
struct Replay {
    snapshot_last: LogIndex,
    /// Entries after the snapshot.
    entries: Vec<Entry>,
    /// Where each of `entries` is: (segment sequence, byte offset of its record).
    positions: Vec<(u64, u64)>,
    /// The last entry's index, or `snapshot_last`.
    last: LogIndex,
    hard_state: Option<(HardState, u64)>,
    segments: Vec<SegmentInfo>,
}

impl Replay {
    fn new(snapshot_last: LogIndex) -> Self {
        Self {
            snapshot_last,
            entries: Vec::new(),
            positions: Vec::new(),
            last: snapshot_last,
            hard_state: None,
            segments: Vec::new(),
        }
    }

    /// A segment is sealed and synced before the next one is created, so a segment followed by
    /// another that does not end with its seal has lost records at its end (anywhere else, the
    /// seal's recorded offset would not match). The exception is a last segment with nothing
    /// in it, whose header was torn: recovery removes it, and the one before is then the last.
    /// (That state is no weaker than a lost last segment, which no format can detect.)
    fn check_previous_sealed(&self) -> Result<(), StorageError> {
        if let [.., previous, current] = self.segments.as_slice()
            && !previous.sealed
        {
            return Err(StorageError::Corrupt {
                path: previous.path.clone(),
                offset: previous.size_bytes,
                reason: format!(
                    "segment {} is followed by segment {} but does not end with a seal record, \
                     so records at its end were lost",
                    previous.sequence, current.sequence
                ),
            });
        }
        Ok(())
    }

    fn apply(
        &mut self,
        sequence: u64,
        path: &Path,
        offset: u64,
        record: Record,
    ) -> Result<(), StorageError> {
        let corrupt = |reason: String| StorageError::Corrupt {
            path: path.to_path_buf(),
            offset,
            reason,
        };
        self.check_previous_sealed()?;
        if self.segments.last().is_some_and(|segment| segment.sealed) {
            return Err(corrupt(format!(
                "a record follows the seal of segment {sequence}, which is never written to \
                 after it is sealed"
            )));
        }
        match record {
            Record::Entry(entry) => {
                if let Some(segment) = self.segments.last_mut() {
                    segment.max_entry_index = segment.max_entry_index.max(entry.index);
                }
                if entry.index <= self.snapshot_last {
                    // Covered by the snapshot: a segment straddling it, or one a crash kept
                    // during compaction. Such entries can only come before any later entry.
                    if !self.entries.is_empty() {
                        return Err(corrupt(format!(
                            "entry {} is covered by the snapshot at {} but follows entry {}",
                            entry.index, self.snapshot_last, self.last
                        )));
                    }
                } else if Some(entry.index.0) == self.last.0.checked_add(1) {
                    self.last = entry.index;
                    self.entries.push(entry);
                    self.positions.push((sequence, offset));
                } else {
                    return Err(corrupt(format!(
                        "entry {} does not continue the log, whose last index is {}",
                        entry.index, self.last
                    )));
                }
            }
            Record::Truncate { from } => {
                let kept_last = LogIndex(from.0.saturating_sub(1));
                self.entries.retain(|entry| entry.index < from);
                self.positions.truncate(self.entries.len());
                self.last = self.last.min(kept_last).max(self.snapshot_last);
            }
            Record::HardState(hard_state) => self.hard_state = Some((hard_state, sequence)),
            Record::Seal {
                sequence: sealed_sequence,
                length_bytes,
            } => {
                if sealed_sequence != sequence || length_bytes != offset {
                    return Err(corrupt(format!(
                        "the seal names segment {sealed_sequence} with {length_bytes} bytes \
                         before it, but it is in segment {sequence} at byte {offset}: bytes \
                         before it were removed or added, or the file was renamed"
                    )));
                }
                if let Some(segment) = self.segments.last_mut() {
                    segment.sealed = true;
                }
            }
        }
        Ok(())
    }
}
