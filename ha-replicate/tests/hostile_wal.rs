//! Hostile bytes in a data directory (issue 7, "Hostile input"): random damage to real WAL
//! segments and snapshot files, then recovery.
//!
//! Why: `wal_damage.rs` aims one kind of damage at one chosen record at a time. Disks, bad
//! copies and operators damage files in ways nobody chose, so here a real log (entries over
//! several segments, hard states, a truncation marker, and separately snapshots) gets random
//! mutations anywhere in any file: bit flips, overwrites, cuts, garbage appended, zeroed
//! stretches, several at once. Recovery must never panic, and must either
//! - succeed with a state the store really went through: the entries and the hard state after
//!   some prefix of the records written (a damaged tail of the last segment is a torn write
//!   and may be cut; anything else is not repaired), never an entry or a vote that was not
//!   written; the store then takes appends again; or
//! - refuse with `StorageError::Corrupt` naming a file of the directory and an offset inside it.
//!
//! The allocation peak of recovery is measured against a file whose length fields claim up to
//! 4 GiB: it stays within a few times the directory's real size.
//!
//! Files of a snapshot being received get the same random damage: recovery never fails on
//! them, and the transfer resumes or starts over and completes.
//!
//! Cases: 160 (segments) + 96 (snapshots) + 96 (incoming), plus exhaustive cuts and splices of the sealed
//! segments; the file runs in about 2 s in the debug profile.

mod wal_support;

use std::alloc::System;
use std::fs;
use std::path::Path;
use std::sync::Mutex;

use ha_core::LogIndex;
use ha_replicate::entry::Entry;
use ha_replicate::hard_state::HardState;
use ha_replicate::snapshot_meta::SnapshotMeta;
use ha_replicate::storage::wal::{FsyncPolicy, WalOptions, WalStore};
use ha_replicate::storage::{LogStore, Recovered, StorageError};
use peakmem_alloc::{INSTRUMENTED_SYSTEM, PeakMemAlloc, PeakMemAllocTrait};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use wal_support::{
    copy_directory, entries, entry, hard_state, segment_files, snapshot_bytes, snapshot_files,
    snapshot_id, snapshot_meta,
};

#[global_allocator]
static ALLOCATOR: &PeakMemAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The allocation peak is global to the process: tests in this file run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Small, so the log spans many segments.
const SEGMENT_BYTES: u64 = 200;

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn options() -> WalOptions {
    WalOptions {
        segment_bytes_max: SEGMENT_BYTES,
        fsync_policy: FsyncPolicy::Always,
    }
}

/// The log and the hard state after some prefix of the records written.
#[derive(Clone, Debug, PartialEq)]
struct State {
    entries: Vec<Entry>,
    hard_state: HardState,
}

/// A real log written once: entries of term 1 (one record each), hard states, a truncation
/// of the tail, entries of term 2 after it. Returns the directory and the state after each
/// record, the first being the empty log.
fn written_log() -> (tempfile::TempDir, Vec<State>) {
    let directory = tempfile::tempdir().expect("temp dir");
    let mut store = WalStore::open(directory.path(), options()).expect("opens");
    store.recover().expect("empty");
    let mut state = State {
        entries: Vec::new(),
        hard_state: HardState::default(),
    };
    let mut states = vec![state.clone()];
    let write_hard_state = |store: &mut WalStore, state: &mut State, term: u64, vote| {
        let written = hard_state(term, vote);
        store.save_hard_state(&written).expect("writes");
        state.hard_state = written;
    };
    write_hard_state(&mut store, &mut state, 1, Some("n1"));
    states.push(state.clone());
    for index in 1..=24 {
        let written = entry(1, index, 8 + (index as usize * 5) % 23);
        store
            .append(std::slice::from_ref(&written))
            .expect("writes");
        state.entries.push(written);
        states.push(state.clone());
        if index % 9 == 0 {
            write_hard_state(&mut store, &mut state, 1 + index / 9, Some("n2"));
            states.push(state.clone());
        }
    }
    store.truncate_from(LogIndex(20)).expect("writes");
    state.entries.truncate(19);
    states.push(state.clone());
    write_hard_state(&mut store, &mut state, 5, None);
    states.push(state.clone());
    for index in 20..=30 {
        let written = entry(2, index, 12);
        store
            .append(std::slice::from_ref(&written))
            .expect("writes");
        state.entries.push(written);
        states.push(state.clone());
    }
    drop(store);
    assert!(segment_files(directory.path()).len() >= 4);
    (directory, states)
}

/// One change to one file (indexes and positions modulo the sizes).
#[derive(Clone, Debug)]
enum Damage {
    FlipBit {
        file: usize,
        position: usize,
        bit: u8,
    },
    Overwrite {
        file: usize,
        position: usize,
        bytes: Vec<u8>,
    },
    Zero {
        file: usize,
        position: usize,
        length: usize,
    },
    Cut {
        file: usize,
        keep: usize,
    },
    AppendGarbage {
        file: usize,
        bytes: Vec<u8>,
    },
}

fn damage() -> impl Strategy<Value = Damage> {
    let file = any::<usize>();
    prop_oneof![
        (file, any::<usize>(), 0u8..8).prop_map(|(file, position, bit)| Damage::FlipBit {
            file,
            position,
            bit
        }),
        (
            file,
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..32)
        )
            .prop_map(|(file, position, bytes)| Damage::Overwrite {
                file,
                position,
                bytes
            }),
        (file, any::<usize>(), 1usize..64).prop_map(|(file, position, length)| Damage::Zero {
            file,
            position,
            length
        }),
        (file, any::<usize>()).prop_map(|(file, keep)| Damage::Cut { file, keep }),
        (file, proptest::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(file, bytes)| Damage::AppendGarbage { file, bytes }),
    ]
}

/// A change to the bytes of one file.
type Change<'a> = &'a dyn Fn(&mut Vec<u8>);

/// Apply `damage` to one of `files`.
fn inflict(files: &[std::path::PathBuf], damage: &Damage) {
    let (file, change): (usize, Change<'_>) = match damage {
        Damage::FlipBit {
            file,
            position,
            bit,
        } => (*file, &move |bytes: &mut Vec<u8>| {
            if !bytes.is_empty() {
                let length = bytes.len();
                bytes[position % length] ^= 1 << bit;
            }
        }),
        Damage::Overwrite {
            file,
            position,
            bytes: noise,
        } => (*file, &move |bytes: &mut Vec<u8>| {
            let start = position % (bytes.len() + 1);
            for (offset, byte) in noise.iter().enumerate() {
                if let Some(slot) = bytes.get_mut(start + offset) {
                    *slot = *byte;
                }
            }
        }),
        Damage::Zero {
            file,
            position,
            length,
        } => (*file, &move |bytes: &mut Vec<u8>| {
            let start = position % (bytes.len() + 1);
            let end = (start + length).min(bytes.len());
            bytes[start..end].fill(0);
        }),
        Damage::Cut { file, keep } => (*file, &move |bytes: &mut Vec<u8>| {
            let keep = keep % (bytes.len() + 1);
            bytes.truncate(keep);
        }),
        Damage::AppendGarbage { file, bytes: noise } => (*file, &move |bytes: &mut Vec<u8>| {
            bytes.extend_from_slice(noise)
        }),
    };
    let path = &files[file % files.len()];
    let mut bytes = fs::read(path).expect("read");
    change(&mut bytes);
    fs::write(path, bytes).expect("write");
}

/// `result` is a corruption error naming a file of `directory` and an offset within the file
/// as it was damaged (`sizes` by file name).
fn check_corrupt(
    result: &StorageError,
    directory: &Path,
    sizes: &[(std::ffi::OsString, u64)],
) -> Result<(), TestCaseError> {
    match result {
        StorageError::Corrupt {
            path,
            offset,
            reason,
        } => {
            prop_assert_eq!(path.parent(), Some(directory), "{}", reason);
            let name = path.file_name().expect("a file name");
            let size = sizes
                .iter()
                .find(|(file, _)| file == name)
                .map(|(_, size)| *size);
            prop_assert!(size.is_some(), "names a file that is not there: {}", reason);
            prop_assert!(
                *offset <= size.unwrap_or(0),
                "offset {} past the end of a {}-byte file: {}",
                offset,
                size.unwrap_or(0),
                reason
            );
            prop_assert!(!reason.is_empty());
            Ok(())
        }
        other => Err(TestCaseError::fail(format!(
            "expected a corruption error, got {other:?}"
        ))),
    }
}

fn sizes_of(directory: &Path) -> Vec<(std::ffi::OsString, u64)> {
    fs::read_dir(directory)
        .expect("list")
        .map(|entry| {
            let entry = entry.expect("entry");
            (entry.file_name(), entry.metadata().expect("metadata").len())
        })
        .collect()
}

/// Recover `directory`, measuring the allocation peak.
fn recover(directory: &Path) -> (Result<Recovered, StorageError>, usize) {
    ALLOCATOR.reset_peak_memory();
    let result = WalStore::open(directory, options()).and_then(|mut store| store.recover());
    (result, ALLOCATOR.get_peak_memory())
}

/// What recovery may allocate: a few times what the directory holds (the bytes read, the
/// entries decoded), plus read buffers.
fn recovery_peak_bytes_max(sizes: &[(std::ffi::OsString, u64)]) -> usize {
    let total: u64 = sizes.iter().map(|(_, size)| size).sum();
    1024 * 1024 + 8 * total as usize
}

/// Random damage to the segments of a real log: recovery gives a state the store went through,
/// and the repaired store works, or refuses naming the file and offset.
#[test]
fn damaged_segments_recover_a_written_prefix_or_are_refused_by_file_and_offset() {
    let _serial = serial();
    let (original, states) = written_log();
    let mut runner = TestRunner::new(RunnerConfig {
        cases: 160,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let strategy = proptest::collection::vec(damage(), 1..4);
    let outcome = runner.run(&strategy, |damages| {
        let copy = tempfile::tempdir().expect("temp dir");
        copy_directory(original.path(), copy.path());
        let segments = segment_files(copy.path());
        for damage in &damages {
            inflict(&segments, damage);
        }
        let sizes = sizes_of(copy.path());
        let (result, peak_bytes) = recover(copy.path());
        prop_assert!(
            peak_bytes <= recovery_peak_bytes_max(&sizes),
            "recovery allocated {} bytes",
            peak_bytes
        );
        match result {
            Ok(recovered) => {
                prop_assert!(recovered.snapshot.is_none());
                let state = State {
                    entries: recovered.entries.clone(),
                    hard_state: recovered.hard_state.clone(),
                };
                prop_assert!(
                    states.contains(&state),
                    "recovered a state the store never was in: {} entries (last {:?}), {:?}; \
                     repairs {:?}",
                    state.entries.len(),
                    state.entries.last().map(|entry| (entry.term, entry.index)),
                    state.hard_state,
                    recovered.repairs
                );
                // The repaired store takes appends and gives them back.
                let mut store = WalStore::open(copy.path(), options()).expect("opens");
                let again = store.recover().expect("a repaired directory recovers");
                prop_assert_eq!(&again.entries, &recovered.entries);
                let next = entry(
                    3,
                    recovered
                        .entries
                        .last()
                        .map_or(1, |entry| entry.index.0 + 1),
                    5,
                );
                store.append(std::slice::from_ref(&next)).expect("appends");
                drop(store);
                let (after, _) = recover(copy.path());
                let after = after.expect("recovers after the append");
                prop_assert_eq!(after.entries.last(), Some(&next));
            }
            Err(error) => check_corrupt(&error, copy.path(), &sizes)?,
        }
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}

/// A log with two snapshots (10 and 20, the older put back as a crash between the rename and
/// the deletion leaves it) over entries 1..=30 in one segment.
fn snapshotted_log() -> tempfile::TempDir {
    let directory = tempfile::tempdir().expect("temp dir");
    let options = WalOptions {
        segment_bytes_max: 1 << 20,
        fsync_policy: FsyncPolicy::Always,
    };
    let mut store = WalStore::open(directory.path(), options).expect("opens");
    store.recover().expect("empty");
    store
        .save_hard_state(&hard_state(1, Some("n1")))
        .expect("writes");
    let written: Vec<Entry> = (1..=30).map(|index| entry(1, index, 10)).collect();
    store.append(&written).expect("writes");
    store
        .save_snapshot(&snapshot_meta(10, 1), b"state at ten")
        .expect("writes");
    let older = snapshot_files(directory.path())[0].clone();
    let older_bytes = fs::read(&older).expect("read");
    store
        .save_snapshot(&snapshot_meta(20, 1), b"state at twenty")
        .expect("writes");
    fs::write(&older, older_bytes).expect("write");
    directory
}

/// Random damage to the two snapshot files: recovery uses the newest intact one, or refuses
/// naming the file and offset when neither is intact.
#[test]
fn damaged_snapshots_fall_back_or_are_refused() {
    let _serial = serial();
    let original = snapshotted_log();
    let mut runner = TestRunner::new(RunnerConfig {
        cases: 96,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let strategy = proptest::collection::vec(damage(), 1..3);
    let outcome = runner.run(&strategy, |damages| {
        let copy = tempfile::tempdir().expect("temp dir");
        copy_directory(original.path(), copy.path());
        let snapshots = snapshot_files(copy.path());
        prop_assert_eq!(snapshots.len(), 2);
        let before: Vec<Vec<u8>> = snapshots
            .iter()
            .map(|path| fs::read(path).expect("read"))
            .collect();
        for damage in &damages {
            inflict(&snapshots, damage);
        }
        let intact: Vec<bool> = snapshots
            .iter()
            .zip(&before)
            .map(|(path, bytes)| fs::read(path).expect("read") == *bytes)
            .collect();
        let sizes = sizes_of(copy.path());
        let (result, peak_bytes) = recover(copy.path());
        prop_assert!(
            peak_bytes <= recovery_peak_bytes_max(&sizes),
            "recovery allocated {}",
            peak_bytes
        );
        let expected_last = if intact[1] {
            Some(20)
        } else if intact[0] {
            Some(10)
        } else {
            None
        };
        match (result, expected_last) {
            (Ok(recovered), Some(last)) => {
                let (meta, id) = recovered.snapshot.clone().expect("a snapshot");
                prop_assert_eq!(meta.last_index, LogIndex(last));
                let expected_data: &[u8] = if last == 20 {
                    b"state at twenty"
                } else {
                    b"state at ten"
                };
                prop_assert_eq!(id, snapshot_id(&meta, expected_data));
                let mut store = WalStore::open(copy.path(), options()).expect("open");
                store.recover().expect("recovers again");
                prop_assert_eq!(
                    snapshot_bytes(&mut store).map(|(_, data)| data),
                    Some(expected_data.to_vec())
                );
                let indexes: Vec<u64> = recovered
                    .entries
                    .iter()
                    .map(|entry| entry.index.0)
                    .collect();
                prop_assert_eq!(indexes, ((last + 1)..=30).collect::<Vec<u64>>());
            }
            (Err(error), None) => check_corrupt(&error, copy.path(), &sizes)?,
            (Ok(recovered), None) => {
                return Err(TestCaseError::fail(format!(
                    "both snapshots damaged, yet recovered {:?}",
                    recovered.snapshot.map(|(meta, _)| meta)
                )));
            }
            (Err(error), Some(last)) => {
                return Err(TestCaseError::fail(format!(
                    "snapshot {last} is intact, yet recovery failed: {error}"
                )));
            }
        }
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}

/// Length fields claiming up to 4 GiB, with valid checksums where there is one to forge, in a
/// small directory: refused, having allocated a few times the directory's size at most.
#[test]
fn length_fields_claiming_gigabytes_allocate_no_more_than_the_files_hold() {
    let _serial = serial();
    // A segment whose last record claims a 16 MiB body (the limit) and one claiming 4 GiB.
    for claimed in [16 * 1024 * 1024u32, u32::MAX] {
        let (original, _) = written_log();
        let copy = tempfile::tempdir().expect("temp dir");
        copy_directory(original.path(), copy.path());
        let last = segment_files(copy.path()).pop().expect("a segment");
        let mut bytes = fs::read(&last).expect("read");
        bytes.extend_from_slice(&claimed.to_le_bytes());
        bytes.extend_from_slice(&[0; 4]);
        bytes.extend_from_slice(&[1; 100]);
        fs::write(&last, &bytes).expect("write");
        let sizes = sizes_of(copy.path());
        let (result, peak_bytes) = recover(copy.path());
        println!("a record claiming {claimed} bytes: allocation peak {peak_bytes} bytes");
        assert!(
            peak_bytes <= recovery_peak_bytes_max(&sizes),
            "{peak_bytes}"
        );
        let recovered = result.expect("a torn tail is cut");
        assert_eq!(recovered.repairs.len(), 1, "{:?}", recovered.repairs);
    }
    // A snapshot whose header (checksum and all) claims 1 TiB of data or 16 MiB of meta.
    for (meta_length, data_length) in [(10u32, 1u64 << 40), (16 * 1024 * 1024, 10)] {
        let original = snapshotted_log();
        let copy = tempfile::tempdir().expect("temp dir");
        copy_directory(original.path(), copy.path());
        let newest = snapshot_files(copy.path()).pop().expect("a snapshot");
        let mut bytes = fs::read(&newest).expect("read");
        bytes[8..12].copy_from_slice(&meta_length.to_le_bytes());
        bytes[12..20].copy_from_slice(&data_length.to_le_bytes());
        let checksum = crc32c::crc32c(&bytes[..28]);
        bytes[28..32].copy_from_slice(&checksum.to_le_bytes());
        fs::write(&newest, &bytes).expect("write");
        let sizes = sizes_of(copy.path());
        let (result, peak_bytes) = recover(copy.path());
        println!(
            "a snapshot header claiming {meta_length} meta and {data_length} data bytes: \
             allocation peak {peak_bytes} bytes"
        );
        assert!(
            peak_bytes <= recovery_peak_bytes_max(&sizes),
            "{peak_bytes}"
        );
        let recovered = result.expect("falls back to the older snapshot");
        assert_eq!(
            recovered.snapshot.map(|(meta, _)| meta.last_index),
            Some(LogIndex(10))
        );
    }
}

/// Found by this file: a segment other than the last one, cut exactly at a record boundary so
/// that only hard-state records were lost, used to recover without complaint with an older term
/// and vote than were written (term 3 voted n2 instead of term 5 with no vote; no entry went
/// missing, so the continuity check between segments saw nothing), and a node could then vote
/// twice in a term. Every segment but the last now ends with a seal, so every such cut is
/// refused as corruption at the cut, in that file.
#[test]
fn a_middle_segment_cut_at_a_record_boundary_never_loses_a_vote_silently() {
    let _serial = serial();
    let (original, _) = written_log();
    let segments = segment_files(original.path());
    for segment in &segments[..segments.len() - 1] {
        for (start, _) in wal_support::record_spans(segment) {
            let copy = tempfile::tempdir().expect("temp dir");
            copy_directory(original.path(), copy.path());
            let target = copy.path().join(segment.file_name().expect("a name"));
            wal_support::cut(&target, start);
            let (result, _) = recover(copy.path());
            let reason = wal_support::assert_corrupt_at(result, &target, start);
            assert!(reason.contains("seal"), "{reason}");
        }
    }
}

/// Any one record spliced out of a segment other than the last (the rest of the file intact,
/// so every checksum still matches): refused in that file. A removed hard state is
/// caught by the seal, whose recorded offset no longer matches (or, when the seal itself was
/// removed, at the end); a removed entry or marker often sooner, by the next entry's index.
#[test]
fn a_record_removed_from_inside_a_middle_segment_is_refused() {
    let _serial = serial();
    let (original, _) = written_log();
    let segments = segment_files(original.path());
    let mut hard_states_removed = 0;
    for segment in &segments[..segments.len() - 1] {
        let bytes = fs::read(segment).expect("read");
        let spans = wal_support::record_spans(segment);
        let (seal_start, _) = *spans.last().expect("a seal");
        for &(start, end) in &spans {
            let copy = tempfile::tempdir().expect("temp dir");
            copy_directory(original.path(), copy.path());
            let target = copy.path().join(segment.file_name().expect("a name"));
            let mut spliced = bytes[..start as usize].to_vec();
            spliced.extend_from_slice(&bytes[end as usize..]);
            fs::write(&target, &spliced).expect("write");
            let (result, _) = recover(copy.path());
            // Postcard variant tags: 0 entry, 1 truncation marker, 2 hard state, 3 seal.
            let changes_entries = bytes[start as usize + 8] <= 1;
            if changes_entries {
                // The next entry may no longer continue the log: refused there or at the seal.
                match result {
                    Err(StorageError::Corrupt { path, offset, .. }) => {
                        assert_eq!(path, target);
                        assert!(offset >= start && offset <= spliced.len() as u64);
                    }
                    other => panic!("record at {start} removed: {other:?}"),
                }
            } else {
                // A hard state: only the seal tells, at its new position (or at the end, when
                // the seal itself was removed).
                let offset = if start == seal_start {
                    start
                } else {
                    seal_start - (end - start)
                };
                let reason = wal_support::assert_corrupt_at(result, &target, offset);
                assert!(reason.contains("seal"), "record at {start}: {reason}");
                hard_states_removed += usize::from(start != seal_start);
            }
        }
    }
    assert!(hard_states_removed >= 3, "{hard_states_removed}");
}

/// A valid record written after the seal of a segment that is not the last (here a copy of
/// that segment's first record): refused at that record, since nothing is written after a seal.
#[test]
fn a_record_after_a_seal_is_refused() {
    let _serial = serial();
    let (original, _) = written_log();
    let segments = segment_files(original.path());
    for segment in [&segments[0], &segments[segments.len() - 2]] {
        let copy = tempfile::tempdir().expect("temp dir");
        copy_directory(original.path(), copy.path());
        let target = copy.path().join(segment.file_name().expect("a name"));
        let mut bytes = fs::read(&target).expect("read");
        let (start, end) = wal_support::record_spans(&target)[0];
        let offset = bytes.len() as u64;
        bytes.extend_from_within(start as usize..end as usize);
        fs::write(&target, &bytes).expect("write");
        let (result, _) = recover(copy.path());
        let reason = wal_support::assert_corrupt_at(result, &target, offset);
        assert!(reason.contains("follows the seal"), "{reason}");
    }
}

/// The node stopped after sealing its last segment and before creating the next one (here:
/// the next one is removed): recovery accepts the sealed last segment, and the next write goes
/// to a new segment, never after the seal.
#[test]
fn a_sealed_last_segment_recovers_and_writes_continue_in_a_new_segment() {
    let _serial = serial();
    let (original, states) = written_log();
    let copy = tempfile::tempdir().expect("temp dir");
    copy_directory(original.path(), copy.path());
    let segments = segment_files(copy.path());
    fs::remove_file(segments.last().expect("a segment")).expect("remove");
    let (result, _) = recover(copy.path());
    let recovered = result.expect("a sealed last segment recovers");
    assert!(recovered.repairs.is_empty(), "{:?}", recovered.repairs);
    let state = State {
        entries: recovered.entries.clone(),
        hard_state: recovered.hard_state.clone(),
    };
    assert!(states.contains(&state));
    let mut store = WalStore::open(copy.path(), options()).expect("opens");
    store.recover().expect("recovers");
    let next = entry(
        3,
        recovered
            .entries
            .last()
            .map_or(1, |entry| entry.index.0 + 1),
        5,
    );
    store.append(std::slice::from_ref(&next)).expect("appends");
    drop(store);
    assert_eq!(segment_files(copy.path()).len(), segments.len());
    let (after, _) = recover(copy.path());
    let after = after.expect("recovers after the append");
    assert_eq!(after.entries.last(), Some(&next));
    assert_eq!(after.hard_state, recovered.hard_state);
}

/// A segment of another format version (version 1 had no seals) is refused at its version
/// byte, even as the last segment, where a damaged header would otherwise be a torn write.
/// Byte 0 of the first segment flipped (a case proptest once kept) is damage before valid
/// records in an earlier segment: corruption at 0.
#[test]
fn segments_of_another_format_version_are_refused() {
    let _serial = serial();
    let (original, _) = written_log();
    for (position, byte, offset) in [(0, 7, 7), (usize::MAX, 7, 7), (0, 0, 0)] {
        let copy = tempfile::tempdir().expect("temp dir");
        copy_directory(original.path(), copy.path());
        let segments = segment_files(copy.path());
        let target = &segments[position.min(segments.len() - 1)];
        let mut bytes = fs::read(target).expect("read");
        bytes[byte] ^= if byte == 7 { 0x03 } else { 0x01 };
        fs::write(target, &bytes).expect("write");
        let (result, _) = recover(copy.path());
        let reason = wal_support::assert_corrupt_at(result, target, offset);
        if byte == 7 {
            assert!(reason.contains("format version 1"), "{reason}");
        }
    }
}

/// A log with a snapshot at 5 and entries up to 10, receiving a 5,000-byte snapshot at 20 of
/// which 3,000 bytes are held. Returns the directory, the incoming snapshot's meta and bytes.
fn receiving_log() -> (tempfile::TempDir, SnapshotMeta, Vec<u8>) {
    let directory = tempfile::tempdir().expect("temp dir");
    let mut store = WalStore::open(directory.path(), options()).expect("opens");
    store.recover().expect("empty");
    store.append(&entries(1, 1, 10)).expect("writes");
    store
        .save_snapshot(&snapshot_meta(5, 1), b"state at five")
        .expect("writes");
    let meta = snapshot_meta(20, 2);
    let data: Vec<u8> = (0..5_000u32).map(|at| (at * 7 % 251) as u8).collect();
    store
        .begin_incoming(&meta, snapshot_id(&meta, &data))
        .expect("begins");
    store.append_incoming(0, &data[..3_000]).expect("writes");
    drop(store);
    (directory, meta, data)
}

/// Random damage to the files of a snapshot being received (`incoming.meta`, `incoming.data`):
/// recovery never fails or panics on them and never touches the log or the current snapshot.
/// An intact meta resumes at the bytes the data file holds (capped at the size); a damaged one
/// is removed and reported. Either way the transfer then completes: damaged bytes fail the
/// verification, are discarded, and are received again.
#[test]
fn damaged_incoming_files_never_stop_the_node_and_the_transfer_completes() {
    let _serial = serial();
    let (original, meta, data) = receiving_log();
    let id = snapshot_id(&meta, &data);
    let mut runner = TestRunner::new(RunnerConfig {
        cases: 96,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let strategy = proptest::collection::vec(damage(), 1..4);
    let outcome = runner.run(&strategy, |damages| {
        let copy = tempfile::tempdir().expect("temp dir");
        copy_directory(original.path(), copy.path());
        let files = [
            copy.path().join("incoming.meta"),
            copy.path().join("incoming.data"),
        ];
        let before: Vec<Vec<u8>> = files
            .iter()
            .map(|path| fs::read(path).expect("read"))
            .collect();
        for damage in &damages {
            inflict(&files, damage);
        }
        let after: Vec<Vec<u8>> = files
            .iter()
            .map(|path| fs::read(path).expect("read"))
            .collect();
        let sizes = sizes_of(copy.path());
        let (result, peak_bytes) = recover(copy.path());
        prop_assert!(
            peak_bytes <= recovery_peak_bytes_max(&sizes),
            "recovery allocated {}",
            peak_bytes
        );
        let recovered = match result {
            Ok(recovered) => recovered,
            Err(error) => return Err(TestCaseError::fail(format!("recovery failed: {error}"))),
        };
        prop_assert_eq!(
            recovered.snapshot.clone(),
            Some((
                snapshot_meta(5, 1),
                snapshot_id(&snapshot_meta(5, 1), b"state at five")
            ))
        );
        prop_assert_eq!(&recovered.entries, &entries(1, 6, 10));
        let mut store = WalStore::open(copy.path(), options()).expect("opens");
        let again = store.recover().expect("recovers again");
        prop_assert_eq!(&again.incoming, &recovered.incoming);
        let held = if after[0] == before[0] {
            let incoming = recovered.incoming.clone().expect("an intact meta resumes");
            prop_assert_eq!(incoming.id, id);
            let expected = (after[1].len() as u64).saturating_sub(32).min(id.size);
            prop_assert_eq!(incoming.held, expected);
            incoming.held
        } else {
            prop_assert_eq!(&recovered.incoming, &None, "a damaged meta is dropped");
            prop_assert!(
                recovered
                    .repairs
                    .iter()
                    .any(|repair| repair.contains("incoming.meta")),
                "{:?}",
                recovered.repairs
            );
            store.begin_incoming(&meta, id).expect("begins again");
            0
        };
        store
            .append_incoming(held, &data[held as usize..])
            .expect("the rest");
        if !store.verify_incoming().expect("verifies") {
            // Only damaged bytes within what was held fail.
            prop_assert!(after[1][32..32 + held as usize] != data[..held as usize]);
            store.append_incoming(0, &data).expect("all again");
            prop_assert!(store.verify_incoming().expect("verifies"));
        }
        prop_assert_eq!(store.install_incoming().expect("installs"), id);
        prop_assert_eq!(
            snapshot_bytes(&mut store),
            Some((meta.clone(), data.clone()))
        );
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}
