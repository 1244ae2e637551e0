//! The WAL archive (issue 14, point-in-time restore): closed segments kept beside the backups
//! after compaction would have deleted them, and read back to replay the log from a backup's
//! index to any later index they cover.
//!
//! # Writing
//!
//! A [`WalStore`](super::wal::WalStore) given an archive directory
//! ([`WalStore::with_archive`](super::wal::WalStore::with_archive)) hands every segment it is
//! about to delete in compaction to [`archive_segment`] first. Only sealed segments are ever
//! compacted (the segment being written is always kept), so an archived file is complete and
//! never changes again. The segment is hard-linked into the archive under a temporary name and
//! renamed to its own name (`wal-<sequence>.log`), then the archive directory is synced: a
//! metadata operation, so compaction (on the driver's thread) is never held up by copying. When
//! the archive is on another filesystem (the link fails with `EXDEV`), the segment is opened
//! first (the handle keeps its bytes after the store unlinks it) and copied, synced and renamed
//! on a thread of its own. Archiving is best effort: a failure is logged and the segment is
//! deleted anyway (the node's log must not grow without bound because the archive is full);
//! the gap it leaves is found by [`read_archive`], which refuses a restore across it.
//!
//! A name already taken in the archive is never overwritten: that segment is not archived (and
//! the error says so). One archive directory belongs to one node's data dir: a restored data
//! dir numbers its segments from 1 again, so give it a new archive directory.
//!
//! # Reading
//!
//! [`read_archive`] reads every `wal-<sequence>.log` in the directory in sequence order,
//! verifying each record as recovery does (every archived segment is sealed, so any damage is
//! corruption, never a torn tail), replays entries and truncation markers as recovery does, and
//! returns the entries `after + 1 ..= to`, contiguous, or says which index is missing.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use ha_core::{LogIndex, Term};

use super::StorageError;
use super::record::Record;
use super::segment::{parse_segment_file_name, scan_segment};
use crate::entry::Entry;

/// The suffix of a segment being copied or linked into the archive; removed when complete.
const ARCHIVE_TEMPORARY_SUFFIX: &str = ".archiving";

/// Hand the closed segment at `segment` to the archive directory `archive` (created if
/// needed) before the store deletes it. Returns once the file is linked (the usual case) or the
/// copy has started on its own thread.
///
/// # Errors
/// When the archive directory cannot be created, the name is taken, or the link fails for
/// another reason than a cross-device link; the caller logs it and goes on.
pub fn archive_segment(archive: &Path, segment: &Path) -> io::Result<()> {
    let Some(name) = segment.file_name() else {
        return Err(io::Error::other("a segment path without a file name"));
    };
    fs::create_dir_all(archive)?;
    let target = archive.join(name);
    if target.exists() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} is already in the archive: one archive directory per data dir (a restored \
                 data dir numbers its segments from 1 again, give it a new archive)",
                target.display()
            ),
        ));
    }
    let mut temporary_name = name.to_os_string();
    temporary_name.push(ARCHIVE_TEMPORARY_SUFFIX);
    let temporary = archive.join(temporary_name);
    let _ = fs::remove_file(&temporary);
    match fs::hard_link(segment, &temporary) {
        Ok(()) => finish(&temporary, &target, archive),
        Err(error) if error.kind() == io::ErrorKind::CrossesDevices => {
            // Another filesystem: copy from a handle opened now, which keeps the bytes after
            // the store unlinks the segment, without holding up compaction.
            let source = File::open(segment)?;
            let archive = archive.to_path_buf();
            std::thread::Builder::new()
                .name("ha-wal-archive".to_string())
                .spawn(move || {
                    if let Err(error) = copy_into(source, &temporary, &target, &archive) {
                        let _ = fs::remove_file(&temporary);
                        tracing::error!(
                            target = %target.display(),
                            %error,
                            "copying a wal segment into the archive failed; a point-in-time \
                             restore across it will be refused"
                        );
                    }
                })?;
            Ok(())
        }
        Err(error) => Err(error),
    }
}

fn copy_into(mut source: File, temporary: &Path, target: &Path, archive: &Path) -> io::Result<()> {
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(temporary)?;
    io::copy(&mut source, &mut out)?;
    out.sync_all()?;
    drop(out);
    finish(temporary, target, archive)
}

/// Give the complete file in the archive its own name and make that durable.
fn finish(temporary: &Path, target: &Path, archive: &Path) -> io::Result<()> {
    // A link never replaces: a name taken meanwhile is refused, not overwritten.
    let linked = fs::hard_link(temporary, target);
    let _ = fs::remove_file(temporary);
    linked?;
    File::open(archive)?.sync_all()
}

/// Why the archive cannot give the entries asked for.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// A segment could not be read or does not verify.
    #[error("wal archive: {0}")]
    Storage(#[from] StorageError),
    /// The directory could not be listed.
    #[error("wal archive {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// An index in the range asked for is in no archived segment.
    #[error(
        "the wal archive does not hold entry {missing} (it holds {held}); archived segments must \
         cover every entry from the backup's index + 1 to the index asked for"
    )]
    Gap {
        /// The first missing index.
        missing: LogIndex,
        /// What the archive holds, for the message.
        held: String,
    },
    /// The archive's entry at the backup's index has another term: another history.
    #[error(
        "the wal archive's entry {index} has term {archived}, the backup's has term {backup}: \
         the archive is of another node's or cluster's history"
    )]
    OtherHistory {
        /// The backup's index.
        index: LogIndex,
        /// The term in the backup's header.
        backup: Term,
        /// The term in the archive.
        archived: Term,
    },
    /// The entries asked for take more memory than allowed.
    #[error(
        "the entries {from}..={to} take more than {bytes_max} bytes; restore to an earlier index"
    )]
    TooLarge {
        /// The first index asked for.
        from: LogIndex,
        /// The last index asked for.
        to: LogIndex,
        /// The limit.
        bytes_max: usize,
    },
}

/// The entries `after + 1 ..= to` from the archive at `directory`, in order, checked to
/// continue a backup whose last entry is `after` with term `after_term` (when the archive
/// still holds that entry). At most `bytes_max` bytes of entries ([`Entry::size_bytes`]) are
/// held.
///
/// # Errors
/// [`ArchiveError::Gap`] when an index of the range is missing, [`ArchiveError::OtherHistory`]
/// when the entry at `after` has another term, [`ArchiveError::TooLarge`],
/// [`ArchiveError::Storage`] for a damaged or unreadable segment, [`ArchiveError::Io`].
pub fn read_archive(
    directory: &Path,
    after: LogIndex,
    after_term: Term,
    to: LogIndex,
    bytes_max: usize,
) -> Result<Vec<Entry>, ArchiveError> {
    let listing = fs::read_dir(directory).map_err(|source| ArchiveError::Io {
        path: directory.to_path_buf(),
        source,
    })?;
    let mut segments = BTreeMap::new();
    for item in listing {
        let item = item.map_err(|source| ArchiveError::Io {
            path: directory.to_path_buf(),
            source,
        })?;
        if let Some(sequence) = item.file_name().to_str().and_then(parse_segment_file_name) {
            segments.insert(sequence, item.path());
        }
    }
    let mut held: BTreeMap<u64, Entry> = BTreeMap::new();
    let mut held_bytes = 0usize;
    let mut term_at_after: Option<Term> = None;
    let mut too_large = false;
    let (mut lowest, mut highest) = (u64::MAX, 0u64);
    for path in segments.values() {
        let scanned = scan_segment(path, false, &mut |_, record| {
            match record {
                Record::Entry(entry) => {
                    let index = entry.index.0;
                    // An entry at or below ones held replaces them (a follower's log after a
                    // truncation marker the archive may not hold).
                    forget_from(&mut held, &mut held_bytes, index);
                    lowest = lowest.min(index);
                    highest = highest.max(index);
                    if index == after.0 {
                        term_at_after = Some(entry.term);
                    }
                    if index > after.0 && index <= to.0 {
                        held_bytes = held_bytes.saturating_add(entry.size_bytes());
                        if held_bytes > bytes_max {
                            too_large = true;
                            return Err(StorageError::Misuse("over the byte limit".to_string()));
                        }
                        held.insert(index, entry);
                    }
                }
                Record::Truncate { from } => {
                    forget_from(&mut held, &mut held_bytes, from.0);
                    if from.0 <= after.0 {
                        term_at_after = None;
                    }
                }
                Record::HardState(_) | Record::Seal { .. } => {}
            }
            Ok(())
        });
        if too_large {
            return Err(ArchiveError::TooLarge {
                from: after.next(),
                to,
                bytes_max,
            });
        }
        scanned?;
    }
    if let Some(archived) = term_at_after
        && archived != after_term
    {
        return Err(ArchiveError::OtherHistory {
            index: after,
            backup: after_term,
            archived,
        });
    }
    let describe = || {
        if lowest <= highest {
            format!(
                "entries {lowest}..={highest} in {} segments",
                segments.len()
            )
        } else {
            format!("no entries ({} segments)", segments.len())
        }
    };
    let mut out = Vec::with_capacity(held.len());
    let mut expected = after.0 + 1;
    for (index, entry) in held {
        if index != expected {
            return Err(ArchiveError::Gap {
                missing: LogIndex(expected),
                held: describe(),
            });
        }
        out.push(entry);
        expected += 1;
    }
    if expected <= to.0 {
        return Err(ArchiveError::Gap {
            missing: LogIndex(expected),
            held: describe(),
        });
    }
    Ok(out)
}

/// Drop the held entries with index `from` or higher.
fn forget_from(held: &mut BTreeMap<u64, Entry>, held_bytes: &mut usize, from: u64) {
    for (_, entry) in held.split_off(&from) {
        *held_bytes = held_bytes.saturating_sub(entry.size_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Payload;
    use crate::snapshot_meta::SnapshotMeta;
    use crate::storage::LogStore;
    use crate::storage::wal::{FsyncPolicy, WalOptions, WalStore};

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            term: Term(term),
            index: LogIndex(index),
            payload: Payload::Command(vec![b'x'; 100]),
        }
    }

    /// A store with small segments archiving to `archive`, holding entries 1..=`last`, with a
    /// snapshot at `snapshot` that compacts the segments below it.
    fn archived_store(data: &Path, archive: &Path, last: u64, snapshot: u64) {
        let options = WalOptions {
            segment_bytes_max: 600,
            fsync_policy: FsyncPolicy::Manual,
        };
        let mut store = WalStore::open(data, options)
            .expect("open")
            .with_archive(archive.to_path_buf());
        store.recover().expect("recover");
        for index in 1..=last {
            store.append(&[entry(index, 1)]).expect("append");
        }
        store.sync().expect("sync");
        let meta = SnapshotMeta {
            last_index: LogIndex(snapshot),
            last_term: Term(1),
            membership: Default::default(),
        };
        store.save_snapshot(&meta, b"state").expect("snapshot");
    }

    #[test]
    fn compacted_segments_are_archived_and_read_back_contiguously() {
        let dir = tempfile::tempdir().expect("dir");
        let (data, archive) = (dir.path().join("log"), dir.path().join("archive"));
        archived_store(&data, &archive, 40, 35);
        let names: Vec<_> = fs::read_dir(&archive)
            .expect("archive exists")
            .map(|item| item.expect("item").file_name())
            .collect();
        assert!(names.len() >= 3, "{names:?}");
        let entries =
            read_archive(&archive, LogIndex(5), Term(1), LogIndex(20), 1 << 20).expect("covered");
        let indexes: Vec<u64> = entries.iter().map(|entry| entry.index.0).collect();
        assert_eq!(indexes, (6..=20).collect::<Vec<_>>());
    }

    #[test]
    fn a_range_past_the_archive_another_history_and_damage_are_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let (data, archive) = (dir.path().join("log"), dir.path().join("archive"));
        archived_store(&data, &archive, 40, 35);
        let error = read_archive(&archive, LogIndex(5), Term(1), LogIndex(39), 1 << 20)
            .expect_err("the active segment is not archived");
        assert!(matches!(error, ArchiveError::Gap { .. }), "{error}");
        let error = read_archive(&archive, LogIndex(5), Term(2), LogIndex(10), 1 << 20)
            .expect_err("another term at the backup's index");
        assert!(
            matches!(error, ArchiveError::OtherHistory { .. }),
            "{error}"
        );
        let error = read_archive(&archive, LogIndex(5), Term(1), LogIndex(20), 300)
            .expect_err("over the byte limit");
        assert!(matches!(error, ArchiveError::TooLarge { .. }), "{error}");
        let mut names: Vec<PathBuf> = fs::read_dir(&archive)
            .expect("archive")
            .map(|item| item.expect("item").path())
            .collect();
        names.sort();
        let mut bytes = fs::read(&names[0]).expect("read");
        bytes[20] ^= 0x40;
        fs::write(&names[0], bytes).expect("write");
        let error = read_archive(&archive, LogIndex(0), Term(0), LogIndex(10), 1 << 20)
            .expect_err("a damaged archived segment");
        assert!(matches!(error, ArchiveError::Storage(_)), "{error}");
    }

    #[test]
    fn a_taken_name_is_never_overwritten() {
        let dir = tempfile::tempdir().expect("dir");
        let archive = dir.path().join("archive");
        let segment = dir.path().join("wal-00000000000000000001.log");
        fs::write(&segment, b"first").expect("write");
        archive_segment(&archive, &segment).expect("archived");
        // The store deletes the segment; a later data dir reuses the name.
        fs::remove_file(&segment).expect("remove");
        fs::write(&segment, b"second").expect("write");
        let error = archive_segment(&archive, &segment).expect_err("name taken");
        assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(
            fs::read(archive.join("wal-00000000000000000001.log")).expect("read"),
            b"first"
        );
        let leftovers = fs::read_dir(&archive).expect("archive").count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
    }
}
