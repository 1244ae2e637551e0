//! The files of a snapshot being received: `incoming.meta` says which snapshot it is, and
//! `incoming.data` holds the bytes received so far, laid out as a snapshot file being written
//! (a placeholder header, then the data), so installing it is a seal and a rename.
//!
//! See the format description at the top of [`wal`](super::wal).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;

use ha_core::codec;

use super::StorageError;
use super::snapshot_file::{SNAPSHOT_META_BYTES_MAX, TEMPORARY_SUFFIX, io_error};
use crate::snapshot_meta::{SnapshotId, SnapshotMeta};

/// The file naming the snapshot being received.
pub(crate) const INCOMING_META_NAME: &str = "incoming.meta";
/// The file holding the bytes of the snapshot being received.
pub(crate) const INCOMING_DATA_NAME: &str = "incoming.data";

/// The first bytes of `incoming.meta`: the name of the format and its version (1).
const INCOMING_MAGIC: [u8; 8] = *b"ha-inc\x00\x01";

/// magic (8) | body length u32 (4) | crc32c(body) u32 (4).
const INCOMING_HEADER_BYTES: usize = 16;

/// The largest body: the snapshot meta plus the id's few bytes.
const INCOMING_BODY_BYTES_MAX: usize = SNAPSHOT_META_BYTES_MAX + 64;

/// Writes `incoming.meta` for the snapshot `id` described by `meta`: a temporary file is
/// written, synced and renamed over it. The caller syncs the directory.
///
/// # Errors
/// [`StorageError::Io`]; [`StorageError::Misuse`] when the meta does not encode within its
/// limit.
pub(crate) fn write_incoming_meta(
    directory: &Path,
    meta: &SnapshotMeta,
    id: &SnapshotId,
) -> Result<(), StorageError> {
    let body = codec::encode(
        "incoming snapshot meta",
        &(meta, id),
        INCOMING_BODY_BYTES_MAX,
    )
    .map_err(|error| StorageError::Misuse(format!("cannot receive a snapshot: {error}")))?;
    let mut bytes = Vec::with_capacity(INCOMING_HEADER_BYTES + body.len());
    bytes.extend_from_slice(&INCOMING_MAGIC);
    // The body is at most INCOMING_BODY_BYTES_MAX, far below u32::MAX.
    bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    bytes.extend_from_slice(&body);
    let final_path = directory.join(INCOMING_META_NAME);
    let temporary_path = directory.join(format!("{INCOMING_META_NAME}{TEMPORARY_SUFFIX}"));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temporary_path)
        .map_err(io_error(&temporary_path))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(io_error(&temporary_path))?;
    drop(file);
    fs::rename(&temporary_path, &final_path).map_err(io_error(&final_path))
}

/// What reading `incoming.meta` found.
#[derive(Debug)]
pub(crate) enum IncomingMeta {
    /// It verified.
    Valid(SnapshotMeta, SnapshotId),
    /// It is damaged: why.
    Damaged(String),
}

/// Reads and verifies `incoming.meta` at `path`.
///
/// # Errors
/// [`StorageError::Io`] when it cannot be read (damage is [`IncomingMeta::Damaged`]).
pub(crate) fn read_incoming_meta(path: &Path) -> Result<IncomingMeta, StorageError> {
    let mut file = File::open(path).map_err(io_error(path))?;
    let file_bytes = file.metadata().map_err(io_error(path))?.len();
    let limit = (INCOMING_HEADER_BYTES + INCOMING_BODY_BYTES_MAX) as u64;
    if file_bytes > limit || file_bytes < INCOMING_HEADER_BYTES as u64 {
        return Ok(IncomingMeta::Damaged(format!(
            "it is {file_bytes} bytes, outside {INCOMING_HEADER_BYTES}..={limit}"
        )));
    }
    // Bounded by the limit just checked.
    let mut bytes = Vec::with_capacity(file_bytes as usize);
    file.read_to_end(&mut bytes).map_err(io_error(path))?;
    let Some((header, body)) = bytes.split_at_checked(INCOMING_HEADER_BYTES) else {
        return Ok(IncomingMeta::Damaged(
            "it is shorter than its header".to_string(),
        ));
    };
    if header[0..8] != INCOMING_MAGIC {
        return Ok(IncomingMeta::Damaged("bad magic or version".to_string()));
    }
    let mut length = [0u8; 4];
    length.copy_from_slice(&header[8..12]);
    let mut checksum = [0u8; 4];
    checksum.copy_from_slice(&header[12..16]);
    if u32::from_le_bytes(length) as usize != body.len() {
        return Ok(IncomingMeta::Damaged(format!(
            "its header says {} body bytes, but it holds {}",
            u32::from_le_bytes(length),
            body.len()
        )));
    }
    if crc32c::crc32c(body) != u32::from_le_bytes(checksum) {
        return Ok(IncomingMeta::Damaged("checksum mismatch".to_string()));
    }
    match codec::decode::<(SnapshotMeta, SnapshotId)>(
        "incoming snapshot meta",
        body,
        INCOMING_BODY_BYTES_MAX,
    ) {
        Ok((meta, id)) if meta.last_index == id.last_index && meta.last_term == id.last_term => {
            Ok(IncomingMeta::Valid(meta, id))
        }
        Ok((meta, id)) => Ok(IncomingMeta::Damaged(format!(
            "its meta ends at {} in term {} but its id at {} in term {}",
            meta.last_index, meta.last_term, id.last_index, id.last_term
        ))),
        Err(error) => Ok(IncomingMeta::Damaged(format!("does not decode: {error}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ha_core::{LogIndex, Term};

    #[test]
    fn round_trip_and_every_damaged_byte_is_refused() {
        let directory = tempfile::tempdir().unwrap();
        let meta = SnapshotMeta {
            last_index: LogIndex(9),
            last_term: Term(2),
            ..SnapshotMeta::default()
        };
        let id = SnapshotId {
            last_index: LogIndex(9),
            last_term: Term(2),
            size: 1 << 40,
            crc32c: 0xdead_beef,
        };
        write_incoming_meta(directory.path(), &meta, &id).unwrap();
        let path = directory.path().join(INCOMING_META_NAME);
        assert!(matches!(
            read_incoming_meta(&path).unwrap(),
            IncomingMeta::Valid(read_meta, read_id) if read_meta == meta && read_id == id
        ));
        let original = fs::read(&path).unwrap();
        for position in 0..original.len() {
            let mut damaged = original.clone();
            damaged[position] ^= 0x04;
            fs::write(&path, &damaged).unwrap();
            assert!(
                matches!(read_incoming_meta(&path).unwrap(), IncomingMeta::Damaged(_)),
                "flip at byte {position} was accepted"
            );
        }
        for length in 0..original.len() {
            fs::write(&path, &original[..length]).unwrap();
            assert!(matches!(
                read_incoming_meta(&path).unwrap(),
                IncomingMeta::Damaged(_)
            ));
        }
    }
}
