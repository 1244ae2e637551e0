//! Snapshot files: `snapshot-<last index, 20 digits>.snap`, written through a data file that
//! is sealed (meta and header added), synced and renamed into place, and read back in pieces.
//!
//! See the format description at the top of [`wal`](super::wal). Nothing here holds a
//! snapshot's data in memory: data are written, checksummed and read through buffers of at
//! most [`IO_BUFFER_BYTES`].

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use ha_core::LogIndex;
use ha_core::codec::{self, RPC_FRAME_BYTES_MAX};

use super::StorageError;
use super::segment::parse_numbered_name;
use crate::snapshot_meta::{SnapshotId, SnapshotMeta};

/// The first bytes of a version 1 snapshot file (header, meta, data). Still read.
const SNAPSHOT_MAGIC_V1: [u8; 8] = *b"ha-snap\x01";

/// The first bytes of a version 2 snapshot file (header, data, meta): the version written.
const SNAPSHOT_MAGIC_V2: [u8; 8] = *b"ha-snap\x02";

/// magic (8) | meta length u32 (4) | data length u64 (8) | meta crc32c (4) | data crc32c (4) |
/// header crc32c over the previous 28 bytes (4). The same fields in both versions.
pub(crate) const SNAPSHOT_HEADER_BYTES: u64 = 32;

/// The largest encoded [`SnapshotMeta`]: it travels in one RPC frame with the first chunk.
pub(crate) const SNAPSHOT_META_BYTES_MAX: usize = RPC_FRAME_BYTES_MAX;

/// The buffer through which snapshot data are checksummed and copied.
pub(crate) const IO_BUFFER_BYTES: usize = 64 * 1024;

const SNAPSHOT_PREFIX: &str = "snapshot-";
const SNAPSHOT_SUFFIX: &str = ".snap";
const SINK_PREFIX: &str = "sink-";
/// Appended to a file's name while it is written; such a file is never read back.
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

/// The file a snapshot sink with `ticket` writes: `sink-<ticket, 20 digits>.snap.tmp`.
pub(crate) fn sink_file_name(ticket: u64) -> String {
    format!("{SINK_PREFIX}{ticket:020}{SNAPSHOT_SUFFIX}{TEMPORARY_SUFFIX}")
}

/// Whether `name` is a temporary file a stopped node left behind: a snapshot being written
/// (`snapshot-<index>.snap.tmp`, from version 1), a sink's file (`sink-<ticket>.snap.tmp`), or
/// the meta of a snapshot being received, before its rename (`incoming.meta.tmp`).
pub(crate) fn is_temporary_file_name(name: &str) -> bool {
    name.strip_suffix(TEMPORARY_SUFFIX).is_some_and(|base| {
        parse_snapshot_file_name(base).is_some()
            || parse_numbered_name(base, SINK_PREFIX, SNAPSHOT_SUFFIX).is_some()
            || base == super::incoming_file::INCOMING_META_NAME
    })
}

/// Maps an IO error on `path` to [`StorageError::Io`].
pub(crate) fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StorageError + use<> {
    let path = path.to_path_buf();
    move |source| StorageError::Io { path, source }
}

/// Creates a data file at `path`: a header of zeros, to be filled in by
/// [`seal_data_file`], followed by nothing yet. With `create_new`, an existing file is an
/// error; otherwise it is emptied.
///
/// # Errors
/// [`StorageError::Io`].
pub(crate) fn create_data_file(path: &Path, create_new: bool) -> Result<File, StorageError> {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    if create_new {
        options.create_new(true);
    } else {
        options.create(true).truncate(true);
    }
    let mut file = options.open(path).map_err(io_error(path))?;
    file.write_all(&[0; SNAPSHOT_HEADER_BYTES as usize])
        .map_err(io_error(path))?;
    Ok(file)
}

/// Turns a data file (a placeholder header followed by `id.size` data bytes whose CRC-32C is
/// `id.crc32c`) into a complete version 2 snapshot file: the meta is written after the data,
/// anything after it is cut, the header is written, and the file is synced. The caller then
/// renames it into place and syncs the directory.
///
/// # Errors
/// [`StorageError::Io`]; [`StorageError::Misuse`] when the meta does not encode within its
/// limit or the file does not hold `id.size` data bytes.
pub(crate) fn seal_data_file(
    file: &mut File,
    path: &Path,
    meta: &SnapshotMeta,
    id: &SnapshotId,
) -> Result<(), StorageError> {
    let meta_bytes = codec::encode("snapshot meta", meta, SNAPSHOT_META_BYTES_MAX)
        .map_err(|error| StorageError::Misuse(format!("cannot write a snapshot: {error}")))?;
    let meta_length = u32::try_from(meta_bytes.len())
        .map_err(|_| StorageError::Misuse("snapshot meta length overflows u32".to_string()))?;
    let data_end = SNAPSHOT_HEADER_BYTES
        .checked_add(id.size)
        .ok_or_else(|| StorageError::Misuse("snapshot size overflows u64".to_string()))?;
    let file_bytes = file.metadata().map_err(io_error(path))?.len();
    if file_bytes < data_end {
        return Err(StorageError::Misuse(format!(
            "{} holds {} data bytes, not the {} the snapshot has",
            path.display(),
            file_bytes.saturating_sub(SNAPSHOT_HEADER_BYTES),
            id.size
        )));
    }
    let header = encode_header(
        SNAPSHOT_MAGIC_V2,
        meta_length,
        id.size,
        crc32c::crc32c(&meta_bytes),
        id.crc32c,
    );
    file.set_len(data_end)
        .and_then(|()| file.seek(SeekFrom::Start(data_end)))
        .and_then(|_| file.write_all(&meta_bytes))
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(&header))
        .and_then(|()| file.sync_all())
        .map_err(io_error(path))
}

fn encode_header(
    magic: [u8; 8],
    meta_length: u32,
    data_length: u64,
    meta_checksum: u32,
    data_checksum: u32,
) -> Vec<u8> {
    let mut header = Vec::with_capacity(SNAPSHOT_HEADER_BYTES as usize);
    header.extend_from_slice(&magic);
    header.extend_from_slice(&meta_length.to_le_bytes());
    header.extend_from_slice(&data_length.to_le_bytes());
    header.extend_from_slice(&meta_checksum.to_le_bytes());
    header.extend_from_slice(&data_checksum.to_le_bytes());
    let header_checksum = crc32c::crc32c(&header);
    header.extend_from_slice(&header_checksum.to_le_bytes());
    debug_assert_eq!(header.len() as u64, SNAPSHOT_HEADER_BYTES);
    header
}

/// A snapshot file that verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SnapshotFile {
    /// What it covers.
    pub(crate) meta: SnapshotMeta,
    /// Its data's identity.
    pub(crate) id: SnapshotId,
    /// Where its data start in the file.
    pub(crate) data_offset: u64,
}

/// Reads and verifies the snapshot at `path`, named for `named_index`: the header, the meta,
/// and the CRC-32C of the data, streamed (memory does not grow with the data).
///
/// # Errors
/// [`StorageError::Corrupt`] when anything fails to verify (the file was written atomically,
/// so a damaged one is never a torn write); [`StorageError::Io`].
pub(crate) fn read_snapshot_file(
    path: &Path,
    named_index: LogIndex,
) -> Result<SnapshotFile, StorageError> {
    let corrupt = |offset: u64, reason: String| StorageError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    let mut file = File::open(path).map_err(io_error(path))?;
    let file_bytes = file.metadata().map_err(io_error(path))?.len();
    if file_bytes < SNAPSHOT_HEADER_BYTES {
        return Err(corrupt(
            0,
            format!("snapshot is {file_bytes} bytes, shorter than its header"),
        ));
    }
    let mut header = [0u8; SNAPSHOT_HEADER_BYTES as usize];
    file.read_exact(&mut header).map_err(io_error(path))?;
    let (fields, checksum_bytes) = header.split_at(SNAPSHOT_HEADER_BYTES as usize - 4);
    let u32_at = |start: usize| {
        let mut bytes = [0u8; 4];
        bytes.copy_from_slice(&fields[start..start + 4]);
        u32::from_le_bytes(bytes)
    };
    let mut header_checksum = [0u8; 4];
    header_checksum.copy_from_slice(checksum_bytes);
    if crc32c::crc32c(fields) != u32::from_le_bytes(header_checksum) {
        return Err(corrupt(0, "snapshot header checksum mismatch".to_string()));
    }
    let version_one = match <[u8; 8]>::try_from(&fields[0..8]) {
        Ok(SNAPSHOT_MAGIC_V1) => true,
        Ok(SNAPSHOT_MAGIC_V2) => false,
        _ => return Err(corrupt(0, "not a snapshot file (bad magic)".to_string())),
    };
    let meta_length = u32_at(8) as usize;
    let mut data_length_bytes = [0u8; 8];
    data_length_bytes.copy_from_slice(&fields[12..20]);
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
    let expected_bytes = SNAPSHOT_HEADER_BYTES
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
    let (meta_offset, data_offset) = if version_one {
        (
            SNAPSHOT_HEADER_BYTES,
            SNAPSHOT_HEADER_BYTES + meta_length as u64,
        )
    } else {
        (SNAPSHOT_HEADER_BYTES + data_length, SNAPSHOT_HEADER_BYTES)
    };

    let mut meta_bytes = vec![0u8; meta_length];
    file.seek(SeekFrom::Start(meta_offset))
        .and_then(|_| file.read_exact(&mut meta_bytes))
        .map_err(io_error(path))?;
    if crc32c::crc32c(&meta_bytes) != meta_checksum {
        return Err(corrupt(
            meta_offset,
            "snapshot meta checksum mismatch".to_string(),
        ));
    }
    if checksum_range(&mut file, path, data_offset, data_length)? != data_checksum {
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
    let id = SnapshotId {
        last_index: meta.last_index,
        last_term: meta.last_term,
        size: data_length,
        crc32c: data_checksum,
    };
    Ok(SnapshotFile {
        meta,
        id,
        data_offset,
    })
}

/// The CRC-32C of `length` bytes of `file` from `offset`, read through a bounded buffer.
///
/// # Errors
/// [`StorageError::Io`], also when the file ends before `offset + length`.
pub(crate) fn checksum_range(
    file: &mut File,
    path: &Path,
    offset: u64,
    length: u64,
) -> Result<u32, StorageError> {
    file.seek(SeekFrom::Start(offset)).map_err(io_error(path))?;
    let mut buffer = vec![0u8; IO_BUFFER_BYTES.min(usize::try_from(length).unwrap_or(usize::MAX))];
    let mut checksum = 0;
    let mut left = length;
    while left > 0 {
        let want = buffer
            .len()
            .min(usize::try_from(left).unwrap_or(usize::MAX));
        file.read_exact(&mut buffer[..want])
            .map_err(io_error(path))?;
        checksum = crc32c::crc32c_append(checksum, &buffer[..want]);
        left -= want as u64;
    }
    Ok(checksum)
}

/// Up to `max` bytes of `file` from `offset`, not past `end` (fewer only there).
///
/// # Errors
/// [`StorageError::Io`], also when the file ends before `end`.
pub(crate) fn read_range(
    file: &mut File,
    path: &Path,
    offset: u64,
    end: u64,
    max: usize,
) -> Result<Vec<u8>, StorageError> {
    let available = end.saturating_sub(offset);
    let length = usize::try_from(available).unwrap_or(usize::MAX).min(max);
    let mut bytes = vec![0u8; length];
    if length > 0 {
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.read_exact(&mut bytes))
            .map_err(io_error(path))?;
    }
    Ok(bytes)
}

/// Syncs `directory` so that files created, renamed or removed in it survive a crash.
///
/// # Errors
/// [`StorageError::Io`].
pub(crate) fn sync_directory(directory: &Path) -> Result<(), StorageError> {
    File::open(directory)
        .and_then(|handle| handle.sync_all())
        .map_err(io_error(directory))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::VoterSet;
    use ha_core::{NodeId, Term};
    use std::fs;

    fn meta() -> SnapshotMeta {
        SnapshotMeta {
            last_index: LogIndex(12),
            last_term: Term(3),
            membership: VoterSet::with_voters([NodeId::new("n1").unwrap()]),
        }
    }

    fn write_v2(directory: &Path, data: &[u8]) -> std::path::PathBuf {
        let path = directory.join(snapshot_file_name(LogIndex(12)));
        let mut file = create_data_file(&path, true).unwrap();
        file.write_all(data).unwrap();
        let id = SnapshotId {
            last_index: LogIndex(12),
            last_term: Term(3),
            size: data.len() as u64,
            crc32c: crc32c::crc32c(data),
        };
        seal_data_file(&mut file, &path, &meta(), &id).unwrap();
        path
    }

    /// Version 1 (header, meta, data), as the previous release wrote it.
    fn write_v1(directory: &Path, data: &[u8]) -> std::path::PathBuf {
        let meta_bytes = codec::encode("meta", &meta(), SNAPSHOT_META_BYTES_MAX).unwrap();
        let mut bytes = encode_header(
            SNAPSHOT_MAGIC_V1,
            meta_bytes.len() as u32,
            data.len() as u64,
            crc32c::crc32c(&meta_bytes),
            crc32c::crc32c(data),
        );
        bytes.extend_from_slice(&meta_bytes);
        bytes.extend_from_slice(data);
        let path = directory.join(snapshot_file_name(LogIndex(12)));
        fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn both_versions_round_trip_and_every_damaged_byte_is_refused() {
        let directory = tempfile::tempdir().unwrap();
        let data = b"state bytes";
        for version_one in [false, true] {
            let path = if version_one {
                write_v1(directory.path(), data)
            } else {
                write_v2(directory.path(), data)
            };
            assert_eq!(
                path.file_name().unwrap(),
                "snapshot-00000000000000000012.snap"
            );
            let read = read_snapshot_file(&path, LogIndex(12)).unwrap();
            assert_eq!(read.meta, meta());
            assert_eq!(read.id.size, data.len() as u64);
            assert_eq!(read.id.crc32c, crc32c::crc32c(data));
            let mut file = File::open(&path).unwrap();
            let end = read.data_offset + read.id.size;
            assert_eq!(
                read_range(&mut file, &path, read.data_offset, end, 100).unwrap(),
                data
            );
            assert_eq!(
                read_range(&mut file, &path, read.data_offset + 6, end, 3).unwrap(),
                b"byt"
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
                    "flip at byte {position} (version one: {version_one}) was accepted"
                );
            }
            fs::write(&path, &original[..original.len() - 1]).unwrap();
            assert!(read_snapshot_file(&path, LogIndex(12)).is_err());
            fs::remove_file(&path).unwrap();
        }
    }

    #[test]
    fn sealing_refuses_a_file_shorter_than_the_size() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join(sink_file_name(1));
        let mut file = create_data_file(&path, true).unwrap();
        file.write_all(b"abc").unwrap();
        let id = SnapshotId {
            size: 4,
            ..SnapshotId::default()
        };
        assert!(matches!(
            seal_data_file(&mut file, &path, &meta(), &id),
            Err(StorageError::Misuse(_))
        ));
        assert!(create_data_file(&path, true).is_err(), "create_new");
    }

    #[test]
    fn names() {
        assert_eq!(
            parse_snapshot_file_name(&snapshot_file_name(LogIndex(5))),
            Some(LogIndex(5))
        );
        for temporary in [
            "snapshot-00000000000000000005.snap.tmp",
            "sink-00000000000000000007.snap.tmp",
            "incoming.meta.tmp",
        ] {
            assert!(is_temporary_file_name(temporary), "{temporary}");
        }
        assert_eq!(sink_file_name(7), "sink-00000000000000000007.snap.tmp");
        assert!(!is_temporary_file_name("other.tmp"));
        assert!(!is_temporary_file_name("incoming.data"));
        assert_eq!(parse_snapshot_file_name("snapshot-5.snap"), None);
    }
}
