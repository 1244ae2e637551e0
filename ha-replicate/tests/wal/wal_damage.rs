//! `WalStore` recovery from damage: torn tails are repaired, everything else is refused as
//! corruption naming the file and the offset, and nothing damaged is ever returned.

use crate::wal_support;

use std::fs;
use std::path::{Path, PathBuf};

use ha_core::LogIndex;
use ha_replicate::storage::{LogStore, StorageError};
use wal_support::*;

const SEGMENT_BYTES: u64 = 300;
const LAST_INDEX: u64 = 30;

/// A directory with entries 1..=30 over several segments, the last entry with a larger payload
/// so its record has many bytes to tear. Returns the directory and its last segment.
fn written_log() -> (tempfile::TempDir, PathBuf) {
    let directory = tempfile::tempdir().unwrap();
    let (mut store, _) = open(directory.path(), SEGMENT_BYTES);
    store.save_hard_state(&hard_state(1, Some("n1"))).unwrap();
    store.append(&entries(1, 1, LAST_INDEX - 1)).unwrap();
    store.append(&[entry(1, LAST_INDEX, 60)]).unwrap();
    drop(store);
    let segments = segment_files(directory.path());
    assert!(segments.len() >= 3, "{segments:?}");
    let last = segments.last().unwrap().clone();
    assert!(
        record_spans(&last).len() >= 2,
        "the last segment needs a middle record"
    );
    (directory, last)
}

fn expected_without_last() -> Vec<ha_replicate::entry::Entry> {
    entries(1, 1, LAST_INDEX - 1)
}

/// A fresh copy of `original` to damage.
fn copy_of(original: &Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    copy_directory(original, copy.path());
    copy
}

/// A fresh copy of a written log whose last segment ends with `tail(original directory)`, bytes
/// no writer put there: the copy, that segment, and the offset the tail starts at.
fn copy_with_tail(tail: impl FnOnce(&Path) -> Vec<u8>) -> (tempfile::TempDir, PathBuf, u64) {
    let (original, last_segment) = written_log();
    let copy = copy_of(original.path());
    let segment = in_copy(&copy, &last_segment);
    let mut bytes = fs::read(&segment).unwrap();
    let offset = bytes.len() as u64;
    bytes.extend_from_slice(&tail(original.path()));
    fs::write(&segment, bytes).unwrap();
    (copy, segment, offset)
}

fn in_copy(copy: &tempfile::TempDir, path: &Path) -> PathBuf {
    copy.path().join(path.file_name().unwrap())
}

#[test]
fn a_torn_tail_at_every_byte_of_the_last_record_is_repaired_and_appends_continue() {
    let (original, last_segment) = written_log();
    let (start, end) = *record_spans(&last_segment).last().unwrap();
    assert!(end - start > 60);
    for length in start..end {
        let copy = copy_of(original.path());
        let segment = in_copy(&copy, &last_segment);
        cut(&segment, length);

        let (mut store, recovered) = open(copy.path(), SEGMENT_BYTES);
        assert_eq!(
            recovered.entries,
            expected_without_last(),
            "cut at {length}"
        );
        assert_eq!(recovered.hard_state, hard_state(1, Some("n1")));
        if length == start {
            // Cut exactly between records: nothing is torn.
            assert!(recovered.repairs.is_empty(), "{:?}", recovered.repairs);
        } else {
            assert_eq!(recovered.repairs.len(), 1, "cut at {length}");
            assert!(
                recovered.repairs[0].contains("torn write")
                    && recovered.repairs[0].contains(&format!("byte {start}")),
                "{}",
                recovered.repairs[0]
            );
        }
        assert_eq!(fs::metadata(&segment).unwrap().len(), start);

        // The log continues exactly where the valid records end.
        let replacement = entry(2, LAST_INDEX, 5);
        store.append(std::slice::from_ref(&replacement)).unwrap();
        drop(store);
        let (_, recovered) = open(copy.path(), SEGMENT_BYTES);
        let mut expected = expected_without_last();
        expected.push(replacement);
        assert_eq!(recovered.entries, expected, "cut at {length}");
        assert!(recovered.repairs.is_empty());
    }
}

#[test]
fn a_torn_hard_state_record_falls_back_to_the_previous_vote() {
    let directory = tempfile::tempdir().unwrap();
    let (mut store, _) = open(directory.path(), 1 << 20);
    store.save_hard_state(&hard_state(4, Some("n1"))).unwrap();
    store.append(&entries(4, 1, 2)).unwrap();
    store.save_hard_state(&hard_state(5, Some("n2"))).unwrap();
    drop(store);
    let segment = segment_files(directory.path())[0].clone();
    let (start, end) = *record_spans(&segment).last().unwrap();
    for length in start + 1..end {
        let copy = copy_of(directory.path());
        cut(&in_copy(&copy, &segment), length);
        let (_, recovered) = open(copy.path(), 1 << 20);
        assert_eq!(recovered.hard_state, hard_state(4, Some("n1")));
        assert_eq!(recovered.entries, entries(4, 1, 2));
        assert_eq!(recovered.repairs.len(), 1);
    }
}

#[test]
fn a_torn_segment_header_removes_the_new_segment() {
    let (original, last_segment) = written_log();
    for length in 0..SEGMENT_MAGIC.len() as u64 {
        let copy = copy_of(original.path());
        // A rollover whose new segment got only part of its header to disk.
        let next_name = {
            let name = last_segment.file_name().unwrap().to_str().unwrap();
            let number: u64 = name[4..24].parse().unwrap();
            format!("wal-{:020}.log", number + 1)
        };
        let torn = copy.path().join(&next_name);
        fs::write(&torn, &SEGMENT_MAGIC[..length as usize]).unwrap();

        let (mut store, recovered) = open(copy.path(), SEGMENT_BYTES);
        assert_eq!(recovered.entries.len() as u64, LAST_INDEX);
        assert_eq!(recovered.repairs.len(), 1, "{:?}", recovered.repairs);
        assert!(!torn.exists());
        store
            .append(&entries(1, LAST_INDEX + 1, LAST_INDEX + 1))
            .unwrap();
        drop(store);
        let (_, recovered) = open(copy.path(), SEGMENT_BYTES);
        assert_eq!(recovered.entries.len() as u64, LAST_INDEX + 1);
    }
}

/// Zeros after the last record are what a crash leaves of the space the writer writes ahead:
/// not damage. Recovery keeps every record, repairs nothing, and the next records go over the
/// zeros and survive the next recovery.
#[test]
fn a_zero_filled_tail_is_space_written_ahead() {
    let (original, last_segment) = written_log();
    for zeros in [1usize, 7, 8, 4096, 70_000] {
        let copy = copy_of(original.path());
        let segment = in_copy(&copy, &last_segment);
        let length = fs::metadata(&segment).unwrap().len();
        let mut bytes = fs::read(&segment).unwrap();
        bytes.extend(std::iter::repeat_n(0u8, zeros));
        fs::write(&segment, bytes).unwrap();

        let (mut store, recovered) = open(copy.path(), SEGMENT_BYTES);
        assert_eq!(recovered.entries.len() as u64, LAST_INDEX, "{zeros} zeros");
        assert!(recovered.repairs.is_empty(), "{:?}", recovered.repairs);
        store.append(&[entry(1, LAST_INDEX + 1, 3)]).unwrap();
        store.sync().unwrap();
        assert!(
            fs::metadata(&segment).unwrap().len() > length,
            "the new record was written after the old ones"
        );
        drop(store);

        let (_, recovered) = open(copy.path(), SEGMENT_BYTES);
        assert_eq!(
            recovered.entries.len() as u64,
            LAST_INDEX + 1,
            "{zeros} zeros"
        );
        assert!(recovered.repairs.is_empty(), "{:?}", recovered.repairs);
        assert_eq!(recovered.entries.last(), Some(&entry(1, LAST_INDEX + 1, 3)));
    }
}

/// A crash between sealing a segment and cutting its zeros off leaves them after the seal;
/// they are not records after it, and not damage.
#[test]
fn zeros_after_a_seal_are_not_records() {
    let (original, _) = written_log();
    let copy = copy_of(original.path());
    let segments = segment_files(copy.path());
    for sealed in &segments[..segments.len() - 1] {
        let mut bytes = fs::read(sealed).unwrap();
        bytes.extend(std::iter::repeat_n(0u8, 100));
        fs::write(sealed, bytes).unwrap();
    }
    let (_, recovered) = open(copy.path(), SEGMENT_BYTES);
    assert_eq!(recovered.entries.len() as u64, LAST_INDEX);
    assert!(recovered.repairs.is_empty(), "{:?}", recovered.repairs);
}

/// A power failure can let a later page of an unsynced batch reach the disk without an
/// earlier one, which then reads as the zeros written ahead. Recovery cannot tell that from
/// damage to synced records whose bodies hold zeros, so it still refuses, untouched, and its
/// message says what the zeros most likely mean; the same damage without a whole zero sector
/// does not get that hint.
#[test]
fn a_sector_of_zeros_before_valid_records_is_refused_with_a_hint() {
    let original = tempfile::tempdir().unwrap();
    let (mut store, _) = open(original.path(), 64 * 1024);
    let written: Vec<_> = (1..=60).map(|index| entry(1, index, 100)).collect();
    store.append(&written).unwrap();
    drop(store);
    let segment = segment_files(original.path()).pop().unwrap();
    let spans = record_spans(&segment);
    let (damaged, _) = *spans
        .iter()
        .find(|&&(start, end)| start <= 2048 && end > 2048)
        .unwrap();

    for (zeros, hinted) in [(512, true), (511, false)] {
        let copy = copy_of(original.path());
        let file = in_copy(&copy, &segment);
        let mut bytes = fs::read(&file).unwrap();
        bytes[2048..2048 + zeros].fill(0);
        fs::write(&file, &bytes).unwrap();
        match try_recover(copy.path()) {
            Err(StorageError::Corrupt { offset, reason, .. }) => {
                assert_eq!(offset, damaged, "{zeros} zeros");
                assert_eq!(
                    reason.contains("bytes 2048..2560 are zeros"),
                    hinted,
                    "{reason}"
                );
            }
            other => panic!("expected corruption at {damaged}, got {other:?}"),
        }
        assert_eq!(fs::read(&file).unwrap(), bytes, "nothing is modified");
    }
}

/// Zeros after a torn record are still a torn write: the record is cut off, zeros and all.
#[test]
fn a_torn_record_before_zeros_is_cut_with_them() {
    let (original, last_segment) = written_log();
    let copy = copy_of(original.path());
    let segment = in_copy(&copy, &last_segment);
    let spans = record_spans(&segment);
    let (start, end) = spans[spans.len() - 1];
    let mut bytes = fs::read(&segment).unwrap();
    bytes.truncate(usize::try_from(end).unwrap() - 1);
    bytes.extend(std::iter::repeat_n(0u8, 4096));
    fs::write(&segment, bytes).unwrap();
    let (_, recovered) = open(copy.path(), SEGMENT_BYTES);
    assert_eq!(recovered.entries.len() as u64, LAST_INDEX - 1);
    assert_eq!(recovered.repairs.len(), 1, "{:?}", recovered.repairs);
    assert_eq!(fs::metadata(&segment).unwrap().len(), start);
}

/// Every bit of a record that has a valid record after it: always corruption at that record's
/// offset, in that file, and the directory is left untouched.
#[test]
fn a_flipped_bit_in_a_middle_record_is_corruption_naming_the_file_and_offset() {
    let (original, last_segment) = written_log();
    let spans = record_spans(&last_segment);
    let (start, end) = spans[spans.len() - 2];
    let pristine = fs::read(&last_segment).unwrap();
    let copy = copy_of(original.path());
    let segment = in_copy(&copy, &last_segment);
    for offset in start..end {
        for bit in 0..8 {
            let mut damaged = pristine.clone();
            damaged[offset as usize] ^= 1 << bit;
            fs::write(&segment, &damaged).unwrap();
            let reason = assert_corrupt_at(try_recover(copy.path()), &segment, start);
            assert!(
                reason.contains("valid record follows"),
                "byte {offset} bit {bit}: {reason}"
            );
            assert_eq!(
                fs::read(&segment).unwrap(),
                damaged,
                "refused recovery must not modify"
            );
        }
    }
}

/// A flipped bit in the final record cannot be told from a write torn by a crash: nothing valid
/// follows it, and a record that is last in the log may be lost if it was not synced. Recovery
/// treats it as torn: the record is dropped and the repair reported, never returned damaged.
#[test]
fn a_flipped_bit_in_the_last_record_is_treated_as_a_torn_write() {
    let (original, last_segment) = written_log();
    let (start, end) = *record_spans(&last_segment).last().unwrap();
    let pristine = fs::read(&last_segment).unwrap();
    for offset in start..end {
        let copy = copy_of(original.path());
        let segment = in_copy(&copy, &last_segment);
        let mut damaged = pristine.clone();
        damaged[offset as usize] ^= 1 << (offset % 8);
        fs::write(&segment, &damaged).unwrap();
        let (_, recovered) = open(copy.path(), SEGMENT_BYTES);
        assert_eq!(recovered.entries, expected_without_last(), "byte {offset}");
        assert_eq!(recovered.repairs.len(), 1);
        assert_eq!(fs::metadata(&segment).unwrap().len(), start);
    }
}

#[test]
fn damage_in_an_earlier_segment_is_corruption_even_at_its_end() {
    let (original, _) = written_log();
    let first = segment_files(original.path())[0].clone();
    let (start, end) = *record_spans(&first).last().unwrap();
    for (offset, mask) in [(start, 0x01), (end - 1, 0x80)] {
        let copy = copy_of(original.path());
        let segment = in_copy(&copy, &first);
        flip(&segment, offset, mask);
        let reason = assert_corrupt_at(try_recover(copy.path()), &segment, start);
        assert!(reason.contains("not in the last segment"), "{reason}");
    }
    // A cut earlier segment is just as wrong: it was synced before the next one was created.
    let copy = copy_of(original.path());
    let segment = in_copy(&copy, &first);
    cut(&segment, end - 1);
    assert_corrupt_at(try_recover(copy.path()), &segment, start);
}

#[test]
fn a_damaged_segment_header_before_valid_records_is_corruption() {
    let (original, last_segment) = written_log();
    let copy = copy_of(original.path());
    let segment = in_copy(&copy, &last_segment);
    flip(&segment, 3, 0x04);
    let reason = assert_corrupt_at(try_recover(copy.path()), &segment, 0);
    assert!(
        reason.contains("valid record follows at byte 8"),
        "{reason}"
    );
}

/// A record whose checksum matches but whose body does not decode cannot come from a torn
/// write (the checksum would not match), so even at the tail it is corruption.
#[test]
fn a_valid_checksum_over_an_undecodable_body_is_corruption() {
    let body = [9u8, 1, 2, 3];
    let (copy, segment, offset) = copy_with_tail(|_| {
        let mut record = (body.len() as u32).to_le_bytes().to_vec();
        record.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        record.extend_from_slice(&body);
        record
    });
    let reason = assert_corrupt_at(try_recover(copy.path()), &segment, offset);
    assert!(reason.contains("does not decode"), "{reason}");
}

/// A valid record that does not continue the log (here: entry 5 copied to the end) is refused.
#[test]
fn a_valid_record_out_of_order_is_corruption() {
    let (copy, segment, offset) = copy_with_tail(|original| {
        let first_segment = segment_files(original)[0].clone();
        let (start, end) = record_spans(&first_segment)[2];
        fs::read(&first_segment).unwrap()[start as usize..end as usize].to_vec()
    });
    let reason = assert_corrupt_at(try_recover(copy.path()), &segment, offset);
    assert!(reason.contains("does not continue"), "{reason}");
}

#[test]
fn a_missing_middle_segment_is_corruption() {
    let (original, _) = written_log();
    let copy = copy_of(original.path());
    let segments = segment_files(copy.path());
    fs::remove_file(&segments[1]).unwrap();
    let reason = assert_corrupt_at(try_recover(copy.path()), &segments[2], 0);
    assert!(reason.contains("missing"), "{reason}");
}

/// Snapshot 10 and entries up to 30 in one big segment (nothing compacted), then snapshot 20,
/// with a copy of snapshot 10 put back as a crash between the rename and the deletion of the
/// older snapshot would leave it.
fn two_snapshots(segment_bytes_max: u64) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let directory = tempfile::tempdir().unwrap();
    let (mut store, _) = open(directory.path(), segment_bytes_max);
    store.append(&entries(1, 1, 30)).unwrap();
    store.save_snapshot(&snapshot_meta(10, 1), b"ten").unwrap();
    let older = snapshot_files(directory.path())[0].clone();
    let older_bytes = fs::read(&older).unwrap();
    store
        .save_snapshot(&snapshot_meta(20, 1), b"twenty")
        .unwrap();
    assert!(!older.exists());
    fs::write(&older, older_bytes).unwrap();
    let newer = snapshot_files(directory.path())[1].clone();
    (directory, older, newer)
}

#[test]
fn an_intact_newest_snapshot_wins_over_an_older_one() {
    let (directory, older, _) = two_snapshots(1 << 20);
    let (mut store, recovered) = open(directory.path(), 1 << 20);
    assert_eq!(recovered.snapshot.unwrap().0.last_index, LogIndex(20));
    assert_eq!(recovered.entries, entries(1, 21, 30));
    assert!(recovered.repairs.is_empty());
    // The stale older snapshot goes with the next snapshot.
    store.save_snapshot(&snapshot_meta(25, 1), b"25").unwrap();
    assert!(!older.exists());
    assert_eq!(snapshot_files(directory.path()).len(), 1);
}

#[test]
fn a_damaged_newest_snapshot_falls_back_to_an_intact_older_one() {
    let (directory, _, newer) = two_snapshots(1 << 20);
    let length = fs::metadata(&newer).unwrap().len();
    flip(&newer, length - 2, 0x20);
    let (_, recovered) = open(directory.path(), 1 << 20);
    assert_eq!(
        recovered.snapshot,
        recovered_snapshot(snapshot_meta(10, 1), b"ten")
    );
    assert_eq!(recovered.entries, entries(1, 11, 30));
    assert_eq!(recovered.repairs.len(), 1);
    assert!(
        recovered.repairs[0].contains("snapshot-00000000000000000020.snap is damaged"),
        "{}",
        recovered.repairs[0]
    );
    assert!(!newer.exists());
    let mut aside = newer.into_os_string();
    aside.push(".damaged");
    assert!(PathBuf::from(aside).exists());
}

#[test]
fn falling_back_is_refused_when_compaction_removed_the_entries_it_needs() {
    let (directory, _, newer) = two_snapshots(150);
    let length = fs::metadata(&newer).unwrap().len();
    flip(&newer, length - 2, 0x20);
    let reason = match try_recover(directory.path()) {
        Err(ha_replicate::storage::StorageError::Corrupt { reason, .. }) => reason,
        other => panic!("expected corruption, got {other:?}"),
    };
    assert!(reason.contains("does not continue"), "{reason}");
    // Refused: the damaged snapshot stays where it was for the operator.
    assert!(newer.exists());
}

/// A closed store with entries 1..=5 and one snapshot (at index 4): its directory and the
/// snapshot's file.
fn closed_store_with_one_snapshot() -> (tempfile::TempDir, PathBuf) {
    let directory = tempfile::tempdir().unwrap();
    let (mut store, _) = open(directory.path(), 1 << 20);
    store.append(&entries(1, 1, 5)).unwrap();
    store.save_snapshot(&snapshot_meta(4, 1), b"four").unwrap();
    drop(store);
    let snapshot = snapshot_files(directory.path())[0].clone();
    (directory, snapshot)
}

#[test]
fn a_damaged_only_snapshot_is_corruption() {
    let (directory, snapshot) = closed_store_with_one_snapshot();
    flip(&snapshot, 0, 0x01);
    let reason = assert_corrupt_at(try_recover(directory.path()), &snapshot, 0);
    assert!(reason.contains("checksum"), "{reason}");
}

#[test]
fn a_snapshot_file_renamed_to_another_index_is_corruption() {
    let (directory, snapshot) = closed_store_with_one_snapshot();
    let renamed = directory.path().join("snapshot-00000000000000000005.snap");
    fs::rename(&snapshot, &renamed).unwrap();
    let reason = match try_recover(directory.path()) {
        Err(ha_replicate::storage::StorageError::Corrupt { path, reason, .. }) => {
            assert_eq!(path, renamed);
            reason
        }
        other => panic!("expected corruption, got {other:?}"),
    };
    assert!(reason.contains("named for 5"), "{reason}");
}

/// After compaction the lowest segment number can be anything; removing a torn only segment
/// must not make numbering start over.
#[test]
fn segment_numbers_continue_after_a_torn_only_segment_is_removed() {
    let directory = tempfile::tempdir().unwrap();
    let torn = directory.path().join("wal-00000000000000000005.log");
    fs::write(&torn, &SEGMENT_MAGIC[..3]).unwrap();
    let (mut store, recovered) = open(directory.path(), 1 << 20);
    assert!(recovered.entries.is_empty());
    assert_eq!(recovered.repairs.len(), 1);
    assert!(!torn.exists());
    store.append(&entries(1, 1, 2)).unwrap();
    assert_eq!(segment_files(directory.path()), [torn]);
}
