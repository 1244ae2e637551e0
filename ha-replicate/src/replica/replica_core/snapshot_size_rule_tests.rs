//! Issue 17: the entry count takes a snapshot only once the log since the last one is as large
//! as that snapshot (`ReplicaSettings::snapshot_log_percent_of_last`), so a large state is not
//! rewritten after every few small writes.

use super::storage_stall::tests::{leader_with, write};
use super::*;
use crate::replica::settings::{ReplicaSettings, SNAPSHOT_HOLD_BACK_FACTOR_MAX};
use crate::storage::memory::{MemoryDisk, MemoryStore};

/// The share of the last snapshot's size the log must reach in these tests. A snapshot of
/// `()` with one session is about as large as two small entries, so the rule is tried at 10x
/// its size, where it must hold back many entries.
const PERCENT: u64 = 1_000;
/// Entries the rule may hold a snapshot back for, at most, with a snapshot every 2 entries.
const HELD_BACK_MAX: u64 = 2 * SNAPSHOT_HOLD_BACK_FACTOR_MAX;

/// Run a housekeeping tick; the snapshot job it hands out, if any.
pub(super) fn snapshot_due(
    core: &mut ReplicaCore<(), MemoryStore>,
    now: Millis,
) -> Option<SnapshotJob> {
    core.on_timer(now, ReplicaTimer::Housekeeping);
    core.drain_effects()
        .into_iter()
        .find_map(|effect| match effect {
            ReplicaEffect::WriteSnapshot(job) => Some(job),
            _ => None,
        })
}

/// A leader taking a snapshot every 2 entries with the size rule at `percent`, after 3 writes
/// and its first snapshot (which the entry count alone decides); the index that snapshot ends at.
fn leader_after_first_snapshot(
    disk: &MemoryDisk,
    percent: u64,
) -> (ReplicaCore<(), MemoryStore>, LogIndex) {
    let mut core = leader_with(disk, |settings: &mut ReplicaSettings| {
        settings.snapshot_every_entries = 2;
        settings.snapshot_log_percent_of_last = percent;
    });
    for sequence in 1..=3 {
        core.submit(Millis(2), sequence, write(sequence), Millis(60_000));
    }
    core.drain_effects();
    let job = snapshot_due(&mut core, Millis(10)).expect("the first snapshot is due");
    core.on_snapshot_written(Millis(11), job.run().expect("runs"));
    let first = core.engine().snapshot_meta().last_index;
    (core, first)
}

#[test]
fn the_entry_count_waits_for_the_log_to_reach_the_last_snapshots_size() {
    let disk = MemoryDisk::new();
    // No snapshot before it: the entry count alone decides the first one.
    let (mut core, first) = leader_after_first_snapshot(&disk, PERCENT);
    let last_bytes = core.snapshot_stats().current_bytes;
    assert!(last_bytes > 0);
    let floor = last_bytes * PERCENT / 100;

    let mut held_back = 0;
    let mut now = 20;
    for sequence in 4..=400 {
        core.submit(Millis(now), sequence, write(sequence), Millis(60_000));
        core.drain_effects();
        now += 10;
        let since = core.applied_index().0 - first.0;
        let log_bytes = core.engine().log_bytes() as u64;
        match snapshot_due(&mut core, Millis(now)) {
            None => {
                assert!(
                    since < 2 || (log_bytes < floor && since < HELD_BACK_MAX),
                    "{since} entries and {log_bytes} log bytes since a snapshot of \
                     {last_bytes} bytes, and none due"
                );
                if since >= 2 {
                    held_back += 1;
                }
            }
            Some(_) => {
                assert!(since >= 2, "{since} entries");
                assert!(
                    log_bytes >= floor || since >= HELD_BACK_MAX,
                    "due at {since} entries and {log_bytes} log bytes, the last snapshot has \
                     {last_bytes}"
                );
                // Without the rule it would have been due 2 entries after the first one.
                assert!(held_back > 0, "the size rule held nothing back");
                return;
            }
        }
    }
    panic!("no snapshot after 400 writes (last snapshot {last_bytes} bytes)");
}

#[test]
fn with_the_rule_off_the_entry_count_alone_decides() {
    let disk = MemoryDisk::new();
    let (mut core, first) = leader_after_first_snapshot(&disk, 0);
    for sequence in 4..=5 {
        core.submit(Millis(20), sequence, write(sequence), Millis(60_000));
    }
    core.drain_effects();
    assert_eq!(core.applied_index().0 - first.0, 2);
    // Where the first test's rule holds the snapshot back.
    assert!(
        (core.engine().log_bytes() as u64) < core.snapshot_stats().current_bytes * PERCENT / 100
    );
    assert!(snapshot_due(&mut core, Millis(30)).is_some());
}
