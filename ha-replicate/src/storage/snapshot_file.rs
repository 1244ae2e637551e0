//! Snapshot files: `snapshot-<last index, 20 digits>.snap`, written atomically.
//!
//! See the format description at the top of [`wal`](super::wal).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use ha_core::LogIndex;
use ha_core::codec::{self, RPC_FRAME_BYTES_MAX};

use super::StorageError;
use super::segment::parse_numbered_name;
use crate::snapshot_meta::SnapshotMeta;

/// The first bytes of every snapshot file: the name of the format and its version (1).
const SNAPSHOT_MAGIC: [u8; 8] = *b"ha-snap\x01";

/// magic (8) | meta length u32 (4) | data length u64 (8) | meta crc32c (4) | data crc32c (4) |
/// header crc32c over the previous 28 bytes (4).
const SNAPSHOT_HEADER_BYTES: usize = 32;

/// The largest encoded [`SnapshotMeta`]: it travels in one RPC frame with the first chunk.
const SNAPSHOT_META_BYTES_MAX: usize = RPC_FRAME_BYTES_MAX;

const SNAPSHOT_PREFIX: &str = "snapshot-";
const SNAPSHOT_SUFFIX: &str = ".snap";
/// Appended to a snapshot's name while it is written; such a file is never read back.
pub(crate) const TEMPORARY_SUFFIX: &str = ".tmp";
/// Appended to a snapshot's name when recovery found it damaged and used an older one.
pub(crate) const DAMAGED_SUFFIX: &str = ".damaged";

/// The file name of the snapshot ending at `last_index`.
pub(crate) fn snapshot_file_name(last_index: LogIndex) -> String {
    format!("{SNAPSHOT_PREFIX}{:020}{SNAPSHOT_SUFFIX}", last_index.0)
}

/// The last index in a snapshot file name, or `None` when `name` is not one.
pub(crate) fn parse_snapshot_file_name(name: &str) -> Option<LogIndex> {
    parse_numbered_name(name, SNAPSHOT_PREFIX, SNAPSHOT_SUFFIX).map(LogIndex)
}

/// Whether `name` is a snapshot being written when the node stopped.
pub(crate) fn is_temporary_snapshot_file_name(name: &str) -> bool {
    name.strip_suffix(TEMPORARY_SUFFIX)
        .is_some_and(|base| parse_snapshot_file_name(base).is_some())
}

/// Writes the snapshot atomically and durably into `directory`: a temporary file is written
/// and synced, renamed over the final name, and the directory is synced, so after a crash the
/// final name holds either nothing (or an older file of that name) or the complete snapshot.
///
/// # Errors
/// [`StorageError::Io`]; [`StorageError::Misuse`] when the meta does not encode within its
/// limit.
pub(crate) fn write_snapshot_file(
    directory: &Path,
    meta: &SnapshotMeta,
    data: &[u8],
) -> Result<PathBuf, StorageError> {
    let meta_bytes = codec::encode("snapshot meta", meta, SNAPSHOT_META_BYTES_MAX)
        .map_err(|error| StorageError::Misuse(format!("cannot write a snapshot: {error}")))?;
    let meta_length = u32::try_from(meta_bytes.len())
        .map_err(|_| StorageError::Misuse("snapshot meta length overflows u32".to_string()))?;
    let data_length = data.len() as u64;

    let mut header = Vec::with_capacity(SNAPSHOT_HEADER_BYTES);
    header.extend_from_slice(&SNAPSHOT_MAGIC);
    header.extend_from_slice(&meta_length.to_le_bytes());
    header.extend_from_slice(&data_length.to_le_bytes());
    header.extend_from_slice(&crc32c::crc32c(&meta_bytes).to_le_bytes());
    header.extend_from_slice(&crc32c::crc32c(data).to_le_bytes());
    let header_checksum = crc32c::crc32c(&header);
    header.extend_from_slice(&header_checksum.to_le_bytes());
    debug_assert_eq!(header.len(), SNAPSHOT_HEADER_BYTES);

    let final_path = directory.join(snapshot_file_name(meta.last_index));
    let temporary_path = directory.join(format!(
        "{}{TEMPORARY_SUFFIX}",
        snapshot_file_name(meta.last_index)
    ));
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StorageError::Io { path, source }
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temporary_path)
        .map_err(io_error(&temporary_path))?;
    file.write_all(&header)
        .and_then(|()| file.write_all(&meta_bytes))
        .and_then(|()| file.write_all(data))
        .and_then(|()| file.sync_all())
        .map_err(io_error(&temporary_path))?;
    drop(file);
    fs::rename(&temporary_path, &final_path).map_err(io_error(&final_path))?;
    sync_directory(directory)?;
    Ok(final_path)
}

/// Reads and verifies the snapshot at `path`, named for `named_index`.
///
/// # Errors
/// [`StorageError::Corrupt`] when anything fails to verify (the file was written atomically,
/// so a damaged one is never a torn write); [`StorageError::Io`].
pub(crate) fn read_snapshot_file(
    path: &Path,
    named_index: LogIndex,
) -> Result<(SnapshotMeta, Vec<u8>), StorageError> {
    let io_error = |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    };
    let corrupt = |offset: u64, reason: String| StorageError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    let mut file = File::open(path).map_err(io_error)?;
    let file_bytes = file.metadata().map_err(io_error)?.len();
    if file_bytes < SNAPSHOT_HEADER_BYTES as u64 {
        return Err(corrupt(
            0,
            format!("snapshot is {file_bytes} bytes, shorter than its header"),
        ));
    }
    let mut header = [0u8; SNAPSHOT_HEADER_BYTES];
    file.read_exact(&mut header).map_err(io_error)?;
    let (fields, checksum_bytes) = header.split_at(SNAPSHOT_HEADER_BYTES - 4);
    let field = |range: std::ops::Range<usize>| -> &[u8] { &fields[range] };
    let u32_at = |start: usize| {
        let mut bytes = [0u8; 4];
        bytes.copy_from_slice(field(start..start + 4));
        u32::from_le_bytes(bytes)
    };
    let mut header_checksum = [0u8; 4];
    header_checksum.copy_from_slice(checksum_bytes);
    if crc32c::crc32c(fields) != u32::from_le_bytes(header_checksum) {
        return Err(corrupt(0, "snapshot header checksum mismatch".to_string()));
    }
    if field(0..8) != SNAPSHOT_MAGIC {
        return Err(corrupt(0, "not a snapshot file (bad magic)".to_string()));
    }
    let meta_length = u32_at(8) as usize;
    let mut data_length_bytes = [0u8; 8];
    data_length_bytes.copy_from_slice(field(12..20));
    let data_length = u64::from_le_bytes(data_length_bytes);
    let meta_checksum = u32_at(20);
    let data_checksum = u32_at(24);

    if meta_length > SNAPSHOT_META_BYTES_MAX {
        return Err(corrupt(
            8,
            format!("snapshot meta length {meta_length} is over its limit"),
        ));
    }
    // The lengths must account for the file exactly; this also bounds what is allocated below
    // by the file's real size.
    let expected_bytes = (SNAPSHOT_HEADER_BYTES as u64)
        .checked_add(meta_length as u64)
        .and_then(|bytes| bytes.checked_add(data_length));
    if expected_bytes != Some(file_bytes) {
        return Err(corrupt(
            0,
            format!(
                "snapshot header describes {meta_length} meta and {data_length} data bytes, \
                 but the file is {file_bytes} bytes"
            ),
        ));
    }
    let data_length = usize::try_from(data_length)
        .map_err(|_| corrupt(12, "snapshot data does not fit in memory".to_string()))?;

    let mut meta_bytes = vec![0u8; meta_length];
    file.read_exact(&mut meta_bytes).map_err(io_error)?;
    let meta_offset = SNAPSHOT_HEADER_BYTES as u64;
    if crc32c::crc32c(&meta_bytes) != meta_checksum {
        return Err(corrupt(
            meta_offset,
            "snapshot meta checksum mismatch".to_string(),
        ));
    }
    let mut data = vec![0u8; data_length];
    file.read_exact(&mut data).map_err(io_error)?;
    let data_offset = meta_offset + meta_length as u64;
    if crc32c::crc32c(&data) != data_checksum {
        return Err(corrupt(
            data_offset,
            "snapshot data checksum mismatch".to_string(),
        ));
    }
    let meta: SnapshotMeta = codec::decode("snapshot meta", &meta_bytes, SNAPSHOT_META_BYTES_MAX)
        .map_err(|error| {
        corrupt(
            meta_offset,
            format!("snapshot meta does not decode: {error}"),
        )
    })?;
    if meta.last_index != named_index {
        return Err(corrupt(
            meta_offset,
            format!(
                "snapshot meta says last index {}, but the file is named for {named_index}",
                meta.last_index
            ),
        ));
    }
    Ok((meta, data))
}

/// Syncs `directory` so that files created, renamed or removed in it survive a crash.
///
/// # Errors
/// [`StorageError::Io`].
pub(crate) fn sync_directory(directory: &Path) -> Result<(), StorageError> {
    File::open(directory)
        .and_then(|handle| handle.sync_all())
        .map_err(|source| StorageError::Io {
            path: directory.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::Membership;
    use ha_core::{NodeId, Term};

    #[test]
    fn round_trip_and_every_damaged_byte_is_refused() {
        let directory = tempfile::tempdir().unwrap();
        let meta = SnapshotMeta {
            last_index: LogIndex(12),
            last_term: Term(3),
            membership: Membership::with_voters([NodeId::new("n1").unwrap()]),
        };
        let path = write_snapshot_file(directory.path(), &meta, b"state bytes").unwrap();
        assert_eq!(
            path.file_name().unwrap(),
            "snapshot-00000000000000000012.snap"
        );
        assert_eq!(
            read_snapshot_file(&path, LogIndex(12)).unwrap(),
            (meta, b"state bytes".to_vec())
        );
        assert!(read_snapshot_file(&path, LogIndex(13)).is_err());

        let original = fs::read(&path).unwrap();
        for position in 0..original.len() {
            let mut damaged = original.clone();
            damaged[position] ^= 0x01;
            fs::write(&path, &damaged).unwrap();
            assert!(
                matches!(
                    read_snapshot_file(&path, LogIndex(12)),
                    Err(StorageError::Corrupt { .. })
                ),
                "flip at byte {position} was accepted"
            );
        }
        fs::write(&path, &original[..original.len() - 1]).unwrap();
        assert!(read_snapshot_file(&path, LogIndex(12)).is_err());
    }

    #[test]
    fn names() {
        assert_eq!(
            parse_snapshot_file_name(&snapshot_file_name(LogIndex(5))),
            Some(LogIndex(5))
        );
        assert!(is_temporary_snapshot_file_name(
            "snapshot-00000000000000000005.snap.tmp"
        ));
        assert!(!is_temporary_snapshot_file_name("other.tmp"));
        assert_eq!(parse_snapshot_file_name("snapshot-5.snap"), None);
    }
}
