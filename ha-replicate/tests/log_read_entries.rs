//! `LogStore::read_entries` for both stores: limits, segments, reopen, compaction and what is
//! not synced yet.

use ha_core::{LogIndex, Term};
use ha_replicate::entry::{Entry, Payload};
use ha_replicate::membership::VoterSet;
use ha_replicate::snapshot_meta::SnapshotMeta;
use ha_replicate::storage::memory::{MemoryDisk, MemoryStore};
use ha_replicate::storage::wal::{FsyncPolicy, WalOptions, WalStore};
use ha_replicate::storage::{LogStore, StorageError};

fn entry(index: u64, size: usize) -> Entry {
    Entry {
        term: Term(1 + index / 10),
        index: LogIndex(index),
        payload: Payload::Command(vec![index as u8; size]),
    }
}

fn entries(range: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    range.map(|index| entry(index, 100)).collect()
}

fn indexes(read: &[Entry]) -> Vec<u64> {
    read.iter().map(|entry| entry.index.0).collect()
}

/// The contract both stores share, on a store holding synced entries 1..=30 and `last`.
fn check_limits(store: &mut dyn LogStore, last: u64) {
    assert_eq!(
        store.read_entries(LogIndex(1), 30, usize::MAX).unwrap(),
        entries(1..=30)
    );
    assert_eq!(
        indexes(&store.read_entries(LogIndex(5), 3, usize::MAX).unwrap()),
        vec![5, 6, 7]
    );
    // 124 bytes each: two fit in 250, and the first is returned whatever its size.
    assert_eq!(
        indexes(&store.read_entries(LogIndex(5), 100, 250).unwrap()),
        vec![5, 6]
    );
    assert_eq!(
        indexes(&store.read_entries(LogIndex(30), 100, 1).unwrap()),
        vec![30]
    );
    assert!(matches!(
        store.read_entries(LogIndex(last + 1), 100, usize::MAX),
        Err(StorageError::Misuse(_))
    ));
}

fn snapshot_at(store: &mut dyn LogStore, index: u64) {
    let meta = SnapshotMeta {
        last_index: LogIndex(index),
        last_term: Term(1 + index / 10),
        membership: VoterSet::default(),
    };
    store.save_snapshot(&meta, b"state").unwrap();
}

#[test]
fn memory_store_reads_synced_entries_only_and_refuses_compacted_ones() {
    let mut store = MemoryStore::open(MemoryDisk::new());
    store.recover().unwrap();
    store.append(&entries(1..=30)).unwrap();
    store.sync().unwrap();
    check_limits(&mut store, 30);
    store.append(&entries(31..=32)).unwrap();
    assert_eq!(
        indexes(&store.read_entries(LogIndex(29), 100, usize::MAX).unwrap()),
        vec![29, 30]
    );
    assert!(
        store
            .read_entries(LogIndex(31), 100, usize::MAX)
            .unwrap()
            .is_empty()
    );
    store.truncate_from(LogIndex(28)).unwrap();
    assert_eq!(
        indexes(&store.read_entries(LogIndex(26), 100, usize::MAX).unwrap()),
        vec![26, 27]
    );
    store.sync().unwrap();
    snapshot_at(&mut store, 10);
    assert!(matches!(
        store.read_entries(LogIndex(10), 100, usize::MAX),
        Err(StorageError::Misuse(_))
    ));
    assert_eq!(
        store.read_entries(LogIndex(11), 1, usize::MAX).unwrap(),
        entries(11..=11)
    );
}

#[test]
fn wal_store_reads_across_segments_after_reopen_truncation_and_compaction() {
    let directory = tempfile::tempdir().unwrap();
    let options = WalOptions {
        // About four entries per segment.
        segment_bytes_max: 600,
        fsync_policy: FsyncPolicy::Manual,
    };
    {
        let mut store = WalStore::open(directory.path(), options.clone()).unwrap();
        store.recover().unwrap();
        store.append(&entries(1..=20)).unwrap();
        store.append(&entries(21..=30)).unwrap();
        store.sync().unwrap();
        check_limits(&mut store, 30);
        // Not synced yet: not returned.
        store.append(&entries(31..=33)).unwrap();
        assert!(
            store
                .read_entries(LogIndex(31), 100, usize::MAX)
                .unwrap()
                .is_empty()
        );
        store.sync().unwrap();
        assert_eq!(
            indexes(&store.read_entries(LogIndex(31), 100, usize::MAX).unwrap()),
            vec![31, 32, 33]
        );
        // A truncated suffix is gone; what replaces it is read at its new place.
        store.truncate_from(LogIndex(32)).unwrap();
        store
            .append(&[Entry {
                term: Term(9),
                ..entry(32, 5)
            }])
            .unwrap();
        store.sync().unwrap();
        let read = store.read_entries(LogIndex(31), 100, usize::MAX).unwrap();
        assert_eq!(indexes(&read), vec![31, 32]);
        assert_eq!(read[1].term, Term(9));
    }
    let segments = std::fs::read_dir(directory.path())
        .unwrap()
        .filter(|file| {
            file.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("wal-")
        })
        .count();
    assert!(segments > 5, "{segments} segments");
    let mut store = WalStore::open(directory.path(), options).unwrap();
    store.recover().unwrap();
    let read = store.read_entries(LogIndex(1), 100, usize::MAX).unwrap();
    assert_eq!(indexes(&read), (1..=32).collect::<Vec<_>>());
    assert_eq!(read[..30], entries(1..=30)[..]);
    assert_eq!(read[31].term, Term(9));
    check_limits(&mut store, 32);
    snapshot_at(&mut store, 15);
    assert!(matches!(
        store.read_entries(LogIndex(15), 100, usize::MAX),
        Err(StorageError::Misuse(_))
    ));
    assert_eq!(
        indexes(&store.read_entries(LogIndex(16), 3, usize::MAX).unwrap()),
        vec![16, 17, 18]
    );
    store.append(&entries(33..=34)).unwrap();
    store.sync().unwrap();
    assert_eq!(
        indexes(&store.read_entries(LogIndex(32), 100, usize::MAX).unwrap()),
        vec![32, 33, 34]
    );
}
