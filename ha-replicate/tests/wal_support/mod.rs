//! Helpers shared by the `wal_*` tests: entries, opening stores, and an independent reader of
//! the segment format so tests can aim damage at exact records.

#![allow(dead_code)] // Each test file uses a different subset.

use std::fs;
use std::path::{Path, PathBuf};

use ha_core::{LogIndex, NodeId, Term};
use ha_replicate::entry::{Entry, Payload};
use ha_replicate::hard_state::HardState;
use ha_replicate::membership::VoterSet;
use ha_replicate::snapshot_meta::{SnapshotId, SnapshotMeta};
use ha_replicate::storage::wal::{FsyncPolicy, WalOptions, WalStore};
use ha_replicate::storage::{LogStore, Recovered, StorageError};

/// The magic at the start of every segment, as documented in the `wal` module.
pub const SEGMENT_MAGIC: &[u8; 8] = b"ha-wal\x00\x02";

/// An entry whose payload depends on `index` and `term`, `payload_bytes` long.
pub fn entry(term: u64, index: u64, payload_bytes: usize) -> Entry {
    let payload = (0..payload_bytes)
        .map(|position| (index as usize * 31 + term as usize * 7 + position) as u8)
        .collect();
    Entry {
        term: Term(term),
        index: LogIndex(index),
        payload: Payload::Command(payload),
    }
}

/// Entries `first..=last` of `term`, each with a small payload.
pub fn entries(term: u64, first: u64, last: u64) -> Vec<Entry> {
    (first..=last)
        .map(|index| entry(term, index, 10 + (index % 7) as usize))
        .collect()
}

/// A membership entry, to have every payload shape on disk.
pub fn membership_entry(term: u64, index: u64) -> Entry {
    Entry {
        term: Term(term),
        index: LogIndex(index),
        payload: Payload::Membership(VoterSet::with_voters(
            ["n1", "n2", "n3"].map(|name| NodeId::new(name).unwrap()),
        )),
    }
}

pub fn hard_state(term: u64, voted_for: Option<&str>) -> HardState {
    HardState {
        term: Term(term),
        voted_for: voted_for.map(|name| NodeId::new(name).unwrap()),
    }
}

pub fn snapshot_meta(last_index: u64, last_term: u64) -> SnapshotMeta {
    SnapshotMeta {
        last_index: LogIndex(last_index),
        last_term: Term(last_term),
        membership: VoterSet::with_voters([NodeId::new("n1").unwrap()]),
    }
}

/// The id of a snapshot described by `meta` holding `data`.
pub fn snapshot_id(meta: &SnapshotMeta, data: &[u8]) -> SnapshotId {
    SnapshotId {
        last_index: meta.last_index,
        last_term: meta.last_term,
        size: data.len() as u64,
        crc32c: crc32c::crc32c(data),
    }
}

/// What `recover` returns for a snapshot described by `meta` holding `data`.
pub fn recovered_snapshot(meta: SnapshotMeta, data: &[u8]) -> Option<(SnapshotMeta, SnapshotId)> {
    let id = snapshot_id(&meta, data);
    Some((meta, id))
}

/// The current snapshot and all its bytes, read with `snapshot_reader`.
pub fn snapshot_bytes(store: &mut (impl LogStore + ?Sized)) -> Option<(SnapshotMeta, Vec<u8>)> {
    let (meta, id, mut reader) = store.snapshot_reader().unwrap()?;
    let mut data = Vec::new();
    std::io::Read::read_to_end(&mut reader, &mut data).unwrap();
    assert_eq!(
        snapshot_id(&meta, &data),
        id,
        "the reader's bytes match the id"
    );
    Some((meta, data))
}

pub fn options(segment_bytes_max: u64) -> WalOptions {
    WalOptions {
        segment_bytes_max,
        fsync_policy: FsyncPolicy::Always,
    }
}

/// Opens and recovers the store in `directory`.
pub fn open(directory: &Path, segment_bytes_max: u64) -> (WalStore, Recovered) {
    let mut store = WalStore::open(directory, options(segment_bytes_max)).unwrap();
    let recovered = store.recover().unwrap();
    (store, recovered)
}

/// Opens the store in `directory` and returns what recovery says, error included.
pub fn try_recover(directory: &Path) -> Result<Recovered, StorageError> {
    WalStore::open(directory, options(1024)).unwrap().recover()
}

/// The segment files, oldest first.
pub fn segment_files(directory: &Path) -> Vec<PathBuf> {
    files_matching(directory, "wal-", ".log")
}

/// The snapshot files, oldest first.
pub fn snapshot_files(directory: &Path) -> Vec<PathBuf> {
    files_matching(directory, "snapshot-", ".snap")
}

fn files_matching(directory: &Path, prefix: &str, suffix: &str) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(directory)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_str().unwrap();
            name.starts_with(prefix) && name.ends_with(suffix)
        })
        .collect();
    paths.sort();
    paths
}

/// Where each record of a segment starts and ends, read with the documented format
/// (`length u32 LE | crc32c u32 LE | body`, then possibly zeros written ahead) independently
/// of the store's own reader.
pub fn record_spans(path: &Path) -> Vec<(u64, u64)> {
    let bytes = fs::read(path).unwrap();
    assert_eq!(&bytes[..8], SEGMENT_MAGIC, "{}", path.display());
    let mut spans = Vec::new();
    let mut offset = 8usize;
    while offset < bytes.len() {
        if bytes[offset..].iter().all(|&byte| byte == 0) {
            break;
        }
        let length = u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
        let checksum = u32::from_le_bytes(bytes[offset + 4..offset + 8].try_into().unwrap());
        let body = &bytes[offset + 8..offset + 8 + length];
        assert_eq!(crc32c::crc32c(body), checksum, "record at {offset}");
        spans.push((offset as u64, (offset + 8 + length) as u64));
        offset += 8 + length;
    }
    spans
}

/// Copies every file of `from` into `to` (flat: data directories have no subdirectories).
pub fn copy_directory(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Flips the bits of `mask` in the byte at `offset` of `path`.
pub fn flip(path: &Path, offset: u64, mask: u8) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset as usize] ^= mask;
    fs::write(path, bytes).unwrap();
}

/// Cuts `path` to `length_bytes`.
pub fn cut(path: &Path, length_bytes: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(length_bytes)
        .unwrap();
}

/// Asserts that `result` is a corruption error about `path` at `offset`, and returns its
/// reason.
#[track_caller]
pub fn assert_corrupt_at(
    result: Result<Recovered, StorageError>,
    path: &Path,
    offset: u64,
) -> String {
    match result {
        Err(StorageError::Corrupt {
            path: error_path,
            offset: error_offset,
            reason,
        }) => {
            assert_eq!(error_path, path, "wrong file in corruption error: {reason}");
            assert_eq!(
                error_offset, offset,
                "wrong offset in corruption error: {reason}"
            );
            reason
        }
        other => panic!(
            "expected corruption in {} at {offset}, got {other:?}",
            path.display()
        ),
    }
}

/// Where a segment's records end: its size less the zeros written ahead of them.
/// (A file shorter than its magic, a torn header, counts whole.)
pub fn records_end(path: &Path) -> u64 {
    let length = fs::metadata(path).unwrap().len();
    if length < SEGMENT_MAGIC.len() as u64 {
        return length;
    }
    record_spans(path).last().map_or(8, |&(_, end)| end)
}

/// The indexes of the entry records in a segment, in order (markers and hard states skipped).
/// Decodes with the documented body format: a postcard enum whose variant 0 is an `Entry`.
pub fn entry_indexes(path: &Path) -> Vec<u64> {
    let bytes = fs::read(path).unwrap();
    record_spans(path)
        .into_iter()
        .filter_map(|(start, end)| {
            let body = &bytes[start as usize + 8..end as usize];
            (body[0] == 0).then(|| {
                let entry: Entry = postcard::from_bytes(&body[1..]).unwrap();
                entry.index.0
            })
        })
        .collect()
}
