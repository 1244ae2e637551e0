//! `WalStore` behaviour on an intact directory: round trips across segment rollovers,
//! truncation, hard state, snapshots with compaction, misuse, unknown files, IO failure.

use crate::wal_support;

use std::fs;

use ha_core::LogIndex;
use ha_replicate::storage::memory::{MemoryDisk, MemoryStore};
use ha_replicate::storage::wal::{FsyncPolicy, WalOptions, WalStore};
use ha_replicate::storage::{LogStore, Recovered, StorageError};
use wal_support::*;

#[test]
fn round_trip_across_segment_rollovers() {
    let directory = tempfile::tempdir().unwrap();
    let (mut store, recovered) = open(directory.path(), 256);
    assert_eq!(recovered, Recovered::default());

    let mut written = Vec::new();
    let mut next = 1;
    for batch in 1..=12u64 {
        let mut batch_entries = entries(1, next, next + batch % 5);
        if batch % 4 == 0 {
            let index = next + batch % 5 + 1;
            batch_entries.push(membership_entry(1, index));
        }
        next = batch_entries.last().unwrap().index.0 + 1;
        store.append(&batch_entries).unwrap();
        written.extend(batch_entries);
    }
    drop(store);
    let segments = segment_files(directory.path());
    assert!(
        segments.len() >= 5,
        "tiny segments must roll over: {segments:?}"
    );
    for segment in &segments[..segments.len() - 1] {
        let size = fs::metadata(segment).unwrap().len();
        assert!(size <= 256, "{} is {size} bytes", segment.display());
    }

    let (mut store, recovered) = open(directory.path(), 256);
    assert_eq!(recovered.entries, written);
    assert!(recovered.repairs.is_empty(), "{:?}", recovered.repairs);

    // Appends continue after a reopen, in the same or the next segment.
    let more = entries(2, next, next + 9);
    store.append(&more).unwrap();
    drop(store);
    written.extend(more);
    let (_, recovered) = open(directory.path(), 256);
    assert_eq!(recovered.entries, written);
}

#[test]
fn a_record_larger_than_the_segment_limit_gets_a_segment_of_its_own() {
    let directory = tempfile::tempdir().unwrap();
    let (mut store, _) = open(directory.path(), 64);
    let written = vec![entry(1, 1, 500), entry(1, 2, 3), entry(1, 3, 700)];
    store.append(&written).unwrap();
    drop(store);
    assert_eq!(segment_files(directory.path()).len(), 3);
    assert_eq!(open(directory.path(), 64).1.entries, written);
}

#[test]
fn truncate_then_append_replaces_the_suffix_even_across_segments() {
    let directory = tempfile::tempdir().unwrap();
    let (mut store, _) = open(directory.path(), 200);
    store.append(&entries(1, 1, 30)).unwrap();
    let segments_before = segment_files(directory.path()).len();
    assert!(segments_before > 3);

    // Back into an early segment, then a new suffix in a later term.
    store.truncate_from(LogIndex(6)).unwrap();
    store.append(&entries(2, 6, 12)).unwrap();
    // Removing nothing is fine and writes nothing.
    store.truncate_from(LogIndex(50)).unwrap();
    drop(store);

    let mut expected = entries(1, 1, 5);
    expected.extend(entries(2, 6, 12));
    let (mut store, recovered) = open(directory.path(), 200);
    assert_eq!(recovered.entries, expected);

    // Truncating everything leaves an empty log that starts again at 1.
    store.truncate_from(LogIndex(1)).unwrap();
    store.append(&entries(3, 1, 2)).unwrap();
    drop(store);
    assert_eq!(open(directory.path(), 200).1.entries, entries(3, 1, 2));
}

#[test]
fn hard_state_survives_and_the_last_one_wins() {
    let directory = tempfile::tempdir().unwrap();
    let (mut store, _) = open(directory.path(), 1 << 20);
    store.save_hard_state(&hard_state(1, Some("n1"))).unwrap();
    store.append(&entries(1, 1, 3)).unwrap();
    store.save_hard_state(&hard_state(2, None)).unwrap();
    store.save_hard_state(&hard_state(2, Some("n3"))).unwrap();
    drop(store);
    let (_, recovered) = open(directory.path(), 1 << 20);
    assert_eq!(recovered.hard_state, hard_state(2, Some("n3")));
    assert_eq!(recovered.entries, entries(1, 1, 3));
}

#[test]
fn compaction_keeps_the_hard_state_whose_segment_it_deletes() {
    let directory = tempfile::tempdir().unwrap();
    let (mut store, _) = open(directory.path(), 128);
    // The vote is the first record of segment 1; compaction will delete that segment.
    store.save_hard_state(&hard_state(7, Some("n2"))).unwrap();
    store.append(&entries(7, 1, 40)).unwrap();
    let first_segment = segment_files(directory.path())[0].clone();
    store
        .save_snapshot(&snapshot_meta(35, 7), b"state at 35")
        .unwrap();
    assert!(!first_segment.exists(), "segment 1 should be compacted");
    drop(store);

    let (_, recovered) = open(directory.path(), 128);
    assert_eq!(recovered.hard_state, hard_state(7, Some("n2")));
    assert_eq!(recovered.entries, entries(7, 36, 40));
}

#[test]
fn snapshot_compacts_and_recovery_returns_only_later_entries() {
    let directory = tempfile::tempdir().unwrap();
    let (mut store, _) = open(directory.path(), 200);
    store.append(&entries(1, 1, 60)).unwrap();
    let segments_before = segment_files(directory.path());
    let maxima: std::collections::HashMap<_, _> = segments_before
        .iter()
        .map(|segment| {
            (
                segment.clone(),
                *entry_indexes(segment).iter().max().unwrap(),
            )
        })
        .collect();

    store
        .save_snapshot(&snapshot_meta(20, 1), b"state at 20")
        .unwrap();
    store
        .save_snapshot(&snapshot_meta(40, 1), b"state at 40")
        .unwrap();
    let snapshots = snapshot_files(directory.path());
    assert_eq!(
        snapshots.len(),
        1,
        "older snapshots are deleted: {snapshots:?}"
    );
    assert!(snapshots[0].ends_with("snapshot-00000000000000000040.snap"));

    // Exactly the longest run of oldest segments whose entries are all <= 40 is gone (never
    // the last one); a kept segment may straddle 40, and recovery skips its covered entries.
    let deleted = segments_before[..segments_before.len() - 1]
        .iter()
        .take_while(|segment| maxima[*segment] <= 40)
        .count();
    assert!(deleted > 0);
    assert_eq!(segment_files(directory.path()), segments_before[deleted..]);

    store.append(&entries(1, 61, 62)).unwrap();
    drop(store);

    let (_, recovered) = open(directory.path(), 200);
    assert_eq!(
        recovered.snapshot,
        recovered_snapshot(snapshot_meta(40, 1), b"state at 40")
    );
    assert_eq!(recovered.entries, entries(1, 41, 62));
    assert!(recovered.repairs.is_empty());
}

#[test]
fn snapshot_beyond_the_log_leaves_an_empty_log_that_continues_after_it() {
    let directory = tempfile::tempdir().unwrap();
    let (mut store, _) = open(directory.path(), 1 << 20);
    store.append(&entries(1, 1, 5)).unwrap();
    store
        .save_snapshot(&snapshot_meta(10, 3), b"installed")
        .unwrap();
    assert!(matches!(
        store.append(&entries(3, 6, 6)),
        Err(StorageError::Misuse(_))
    ));
    store.append(&entries(3, 11, 12)).unwrap();
    drop(store);
    let (_, recovered) = open(directory.path(), 1 << 20);
    assert_eq!(recovered.snapshot.unwrap().0, snapshot_meta(10, 3));
    assert_eq!(recovered.entries, entries(3, 11, 12));
}

#[test]
fn truncation_below_the_snapshot_removes_only_entries_after_it() {
    let directory = tempfile::tempdir().unwrap();
    let (mut store, _) = open(directory.path(), 1 << 20);
    store.append(&entries(1, 1, 10)).unwrap();
    store.save_snapshot(&snapshot_meta(5, 1), b"five").unwrap();
    store.truncate_from(LogIndex(2)).unwrap();
    store.append(&entries(2, 6, 7)).unwrap();
    drop(store);
    let (_, recovered) = open(directory.path(), 1 << 20);
    assert_eq!(recovered.snapshot.unwrap().0.last_index, LogIndex(5));
    assert_eq!(recovered.entries, entries(2, 6, 7));
}

/// Every contract violation is refused, with nothing written, by both stores alike.
#[test]
fn misuse_is_refused_without_writing_by_both_stores() {
    let directory = tempfile::tempdir().unwrap();
    let mut wal = WalStore::open(directory.path(), options(1 << 20)).unwrap();
    let disk = MemoryDisk::new();
    let mut memory = MemoryStore::open(disk.clone());
    for store in [&mut wal as &mut dyn LogStore, &mut memory] {
        assert!(matches!(
            store.append(&entries(1, 1, 1)),
            Err(StorageError::Misuse(_))
        ));
        assert!(matches!(store.sync(), Err(StorageError::Misuse(_))));
        // The snapshot calls too, before recovery.
        assert!(store.snapshot_sink().is_err());
        assert!(matches!(
            store.read_snapshot(0, 1),
            Err(StorageError::Misuse(_))
        ));
        assert!(matches!(
            store.snapshot_reader().map(|reader| reader.is_some()),
            Err(StorageError::Misuse(_))
        ));
        let meta = snapshot_meta(1, 1);
        assert!(matches!(
            store.begin_incoming(&meta, snapshot_id(&meta, b"")),
            Err(StorageError::Misuse(_))
        ));
        assert!(matches!(
            store.append_incoming(0, b""),
            Err(StorageError::Misuse(_))
        ));
        assert!(matches!(
            store.verify_incoming(),
            Err(StorageError::Misuse(_))
        ));
        assert!(matches!(
            store.install_incoming(),
            Err(StorageError::Misuse(_))
        ));
        assert!(matches!(
            store.discard_incoming(),
            Err(StorageError::Misuse(_))
        ));
        assert_eq!(store.incoming(), None);
        store.recover().unwrap();
        assert!(matches!(store.recover(), Err(StorageError::Misuse(_))));
        assert!(matches!(
            store.append(&entries(1, 2, 3)),
            Err(StorageError::Misuse(_))
        ));
        store.append(&entries(1, 1, 4)).unwrap();
        for bad in [entries(1, 4, 5), entries(1, 6, 6), {
            let mut gap = entries(1, 5, 6);
            gap[1].index = LogIndex(7);
            gap
        }] {
            assert!(matches!(store.append(&bad), Err(StorageError::Misuse(_))));
        }
        store.save_snapshot(&snapshot_meta(3, 1), b"three").unwrap();
        assert!(matches!(
            store.save_snapshot(&snapshot_meta(2, 1), b"two"),
            Err(StorageError::Misuse(_))
        ));
        store.append(&entries(1, 5, 5)).unwrap();
        store.sync().unwrap();
    }
    drop(wal);
    let (_, from_wal) = open(directory.path(), 1 << 20);
    let from_memory = MemoryStore::open(disk).recover().unwrap();
    assert_eq!(from_wal.entries, entries(1, 4, 5));
    assert_eq!(from_wal, from_memory);
}

#[test]
fn unknown_files_are_ignored_and_leftover_snapshot_temporaries_removed() {
    let directory = tempfile::tempdir().unwrap();
    let (mut store, _) = open(directory.path(), 1 << 20);
    store.append(&entries(1, 1, 3)).unwrap();
    drop(store);
    for name in [
        "notes.txt",
        "wal-1.log",
        "wal-00000000000000000001.log.bak",
        "snapshot-5.snap",
        "snapshot-00000000000000000004.snap.damaged",
    ] {
        fs::write(directory.path().join(name), b"not ours").unwrap();
    }
    fs::create_dir(directory.path().join("subdirectory")).unwrap();
    let leftover = directory
        .path()
        .join("snapshot-00000000000000000002.snap.tmp");
    fs::write(&leftover, b"half a snapshot").unwrap();

    let (_, recovered) = open(directory.path(), 1 << 20);
    assert_eq!(recovered.entries, entries(1, 1, 3));
    assert_eq!(recovered.snapshot, None);
    assert_eq!(recovered.repairs.len(), 1, "{:?}", recovered.repairs);
    assert!(recovered.repairs[0].contains("snapshot-00000000000000000002.snap.tmp"));
    assert!(!leftover.exists());
    assert!(directory.path().join("notes.txt").exists());
}

#[test]
fn files_with_our_names_that_are_not_ours_are_refused_clearly() {
    let directory = tempfile::tempdir().unwrap();
    let (mut store, _) = open(directory.path(), 1 << 20);
    store.append(&entries(1, 1, 3)).unwrap();
    drop(store);

    // A directory where a segment should be.
    let impostor = directory.path().join("wal-00000000000000000002.log");
    fs::create_dir(&impostor).unwrap();
    let reason = assert_corrupt_at(try_recover(directory.path()), &impostor, 0);
    assert!(reason.contains("not a regular file"), "{reason}");
    fs::remove_dir(&impostor).unwrap();

    // A stray segment number leaves a gap.
    let stray = directory.path().join("wal-00000000000000000009.log");
    fs::write(&stray, b"garbage").unwrap();
    let reason = assert_corrupt_at(try_recover(directory.path()), &stray, 0);
    assert!(reason.contains("missing"), "{reason}");
    // Refused recovery changed nothing.
    assert_eq!(fs::read(&stray).unwrap(), b"garbage");
}

#[test]
fn manual_policy_writes_are_visible_after_sync_and_reopen() {
    let directory = tempfile::tempdir().unwrap();
    let manual = WalOptions {
        segment_bytes_max: 300,
        fsync_policy: FsyncPolicy::Manual,
    };
    let mut store = WalStore::open(directory.path(), manual.clone()).unwrap();
    store.recover().unwrap();
    store.append(&entries(1, 1, 20)).unwrap();
    store.save_hard_state(&hard_state(1, Some("n1"))).unwrap();
    store.sync().unwrap();
    store.truncate_from(LogIndex(15)).unwrap();
    store.sync().unwrap();
    drop(store);
    let mut store = WalStore::open(directory.path(), manual).unwrap();
    let recovered = store.recover().unwrap();
    assert_eq!(recovered.entries, entries(1, 1, 14));
    assert_eq!(recovered.hard_state, hard_state(1, Some("n1")));
}

#[test]
fn after_an_io_error_every_call_is_refused() {
    let parent = tempfile::tempdir().unwrap();
    let directory = parent.path().join("data");
    let (mut store, _) = open(&directory, 64);
    store.append(&entries(1, 1, 1)).unwrap();
    // With the directory gone, the next segment cannot be created.
    fs::remove_dir_all(&directory).unwrap();
    assert!(matches!(
        store.append(&entries(1, 2, 3)),
        Err(StorageError::Io { .. })
    ));
    fs::create_dir(&directory).unwrap();
    // The disk state is unknown now: no retry may pretend the failed write happened.
    assert!(matches!(
        store.append(&entries(1, 2, 2)),
        Err(StorageError::Io { .. })
    ));
    assert!(matches!(store.sync(), Err(StorageError::Io { .. })));
    let meta = snapshot_meta(1, 1);
    assert!(store.snapshot_sink().is_err());
    assert!(matches!(
        store.begin_incoming(&meta, snapshot_id(&meta, b"")),
        Err(StorageError::Io { .. })
    ));
    assert!(matches!(
        store.read_snapshot(0, 1),
        Err(StorageError::Io { .. })
    ));
}

/// A snapshot call that fails on IO fails the store like any other write.
#[test]
fn an_io_error_in_a_snapshot_call_fails_the_store() {
    let parent = tempfile::tempdir().unwrap();
    let directory = parent.path().join("data");
    let (mut store, _) = open(&directory, 1 << 20);
    store.append(&entries(1, 1, 3)).unwrap();
    let written = {
        let mut sink = store.snapshot_sink().unwrap();
        std::io::Write::write_all(&mut sink, b"state").unwrap();
        sink.finish().unwrap()
    };
    // The sink's file is gone with the directory: the commit cannot seal it.
    fs::remove_dir_all(&directory).unwrap();
    assert!(matches!(
        store.commit_snapshot(&snapshot_meta(2, 1), &written),
        Err(StorageError::Io { .. })
    ));
    fs::create_dir(&directory).unwrap();
    assert!(matches!(store.sync(), Err(StorageError::Io { .. })));
    // Nothing was committed: a new store on the empty directory finds nothing.
    let (_, recovered) = open(&directory, 1 << 20);
    assert_eq!(recovered.snapshot, None);
}

/// The same scenario through both stores, reopening after each phase: they recover the same.
#[test]
fn both_stores_recover_the_same_from_one_scenario() {
    let directory = tempfile::tempdir().unwrap();
    let disk = MemoryDisk::new();
    let phases: [fn(&mut dyn LogStore); 5] = [
        |store| {
            store.save_hard_state(&hard_state(1, Some("n1"))).unwrap();
            store.append(&entries(1, 1, 8)).unwrap();
        },
        |store| {
            store.truncate_from(LogIndex(5)).unwrap();
            store.append(&entries(2, 5, 9)).unwrap();
            store.append(&[membership_entry(2, 10)]).unwrap();
        },
        |store| {
            store.save_snapshot(&snapshot_meta(7, 2), b"seven").unwrap();
            store.save_hard_state(&hard_state(3, None)).unwrap();
        },
        |store| {
            store.truncate_from(LogIndex(9)).unwrap();
            store.append(&entries(3, 9, 12)).unwrap();
        },
        |store| {
            store
                .save_snapshot(&snapshot_meta(20, 3), b"twenty")
                .unwrap();
            store.append(&entries(3, 21, 21)).unwrap();
        },
    ];
    for phase in phases {
        let mut wal = WalStore::open(directory.path(), options(150)).unwrap();
        let from_wal = wal.recover().unwrap();
        let mut memory = MemoryStore::open(disk.clone());
        let from_memory = memory.recover().unwrap();
        assert_eq!(from_wal, from_memory);
        phase(&mut wal);
        phase(&mut memory);
        memory.sync().unwrap();
    }
    let (_, from_wal) = open(directory.path(), 150);
    assert_eq!(from_wal.entries, entries(3, 21, 21));
    assert_eq!(from_wal.hard_state, hard_state(3, None));
    assert_eq!(from_wal, MemoryStore::open(disk).recover().unwrap());
}

/// Found by the model test: a truncation marker in segment 3 removed entries 6 and 7 of
/// segment 2, and segment 3 still held entry 8 from before the marker. Deleting segment 2 for a
/// snapshot at 5 (its live entries are all <= 5) left replay reading entry 8 right after the
/// snapshot. Compaction must count removed entries too.
#[test]
fn compaction_keeps_segments_that_replay_needs_before_a_truncation_marker() {
    let directory = tempfile::tempdir().unwrap();
    let (mut store, _) = open(directory.path(), 160);
    store.append(&[entry(1, 1, 0)]).unwrap();
    store.truncate_from(LogIndex(1)).unwrap();
    store.append(&[entry(1, 1, 8), entry(1, 2, 0)]).unwrap();
    store.append(&[entry(1, 3, 20), entry(1, 4, 20)]).unwrap();
    store.append(&[entry(1, 5, 17), entry(1, 6, 17)]).unwrap();
    store.append(&[entry(1, 7, 34), entry(1, 8, 34)]).unwrap();
    store.truncate_from(LogIndex(6)).unwrap();
    store.append(&entries(2, 6, 7)).unwrap();
    let segments = segment_files(directory.path());
    assert_eq!(
        segments.len(),
        3,
        "the scenario needs entry 8 to open segment 3"
    );
    assert_eq!(entry_indexes(&segments[1]), [5, 6, 7]);
    assert_eq!(entry_indexes(&segments[2]), [8, 6, 7]);

    store.save_snapshot(&snapshot_meta(5, 1), b"five").unwrap();
    drop(store);
    assert_eq!(segment_files(directory.path()), segments[1..]);
    let (_, recovered) = open(directory.path(), 160);
    assert_eq!(recovered.entries, entries(2, 6, 7));
}

/// The writer keeps zeros ahead of its records in the segment it writes (so syncs overwrite
/// rather than grow the file), never past the segment's limit; a sealed segment and the last
/// segment of a closed store hold records only.
#[test]
fn zeros_are_written_ahead_of_the_records_and_cut_when_sealed_or_closed() {
    const MIB: u64 = 1024 * 1024;
    let directory = tempfile::tempdir().unwrap();
    let (mut store, _) = open(directory.path(), 8 * MIB);
    store.append(&entries(1, 1, 10)).unwrap();
    store.sync().unwrap();
    let segment = segment_files(directory.path()).pop().unwrap();
    let records = records_end(&segment);
    assert_eq!(
        fs::metadata(&segment).unwrap().len(),
        records + MIB,
        "a mebibyte of zeros ahead of the records"
    );

    // Records past the zeros written ahead get the next mebibyte after them.
    let big: Vec<_> = (11..=30).map(|index| entry(1, index, 64 * 1024)).collect();
    store.append(&big).unwrap();
    store.sync().unwrap();
    let records = records_end(&segment);
    assert!(records > MIB, "{records}");
    assert_eq!(fs::metadata(&segment).unwrap().len(), records + MIB);
    drop(store);
    assert_eq!(
        fs::metadata(&segment).unwrap().len(),
        records,
        "closed: records only"
    );

    // Small segments: the zeros stop at the limit (plus a seal), and sealed segments are cut.
    let directory = tempfile::tempdir().unwrap();
    let (mut store, _) = open(directory.path(), 300);
    for index in 1..=40 {
        store.append(&entries(1, index, index)).unwrap();
    }
    store.sync().unwrap();
    let segments = segment_files(directory.path());
    assert!(segments.len() >= 3, "{segments:?}");
    for sealed in &segments[..segments.len() - 1] {
        assert_eq!(fs::metadata(sealed).unwrap().len(), records_end(sealed));
    }
    let last = segments.last().unwrap();
    let last_bytes = fs::metadata(last).unwrap().len();
    assert!(
        last_bytes > records_end(last) && last_bytes <= 300 + 30,
        "{last_bytes} bytes, records end at {}",
        records_end(last)
    );
    let written = entries(1, 1, 40);
    drop(store);
    let (_, recovered) = open(directory.path(), 300);
    assert_eq!(recovered.entries, written);
    assert!(recovered.repairs.is_empty(), "{:?}", recovered.repairs);
}
