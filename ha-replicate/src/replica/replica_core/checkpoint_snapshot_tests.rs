//! Issue 17: a checkpoint's copy of the state also writes this node's own snapshot when one is
//! half due, hashing the digest in the same pass over the state; a housekeeping snapshot
//! waits half as long again for such a checkpoint while the monitor places them.

use super::storage_stall::tests::{leader_of, write};
use super::*;
use crate::entry::Payload;
use crate::replica::consistency_monitor::ConsistencySettings;
use crate::replica::settings::ReplicaSettings;
use crate::storage::memory::{MemoryDisk, MemoryStore};
use ha_core::StateMachineError;

/// What the jobs a core handed out did.
#[derive(Debug, Default)]
struct Passes {
    /// Checkpoints hashed in a pass of their own.
    digests_alone: Vec<LogIndex>,
    /// Snapshots written: the index each ends at, and the checkpoint it hashed as well.
    snapshots: Vec<(LogIndex, Option<LogIndex>)>,
    /// The checkpoint entries the leader placed (seen in its log before snapshots compact it).
    placed: std::collections::BTreeSet<LogIndex>,
}

/// Run every digest and snapshot job the core hands out, feeding the results back.
fn run_jobs<S: StateMachine>(
    core: &mut ReplicaCore<S, MemoryStore>,
    now: Millis,
    passes: &mut Passes,
) {
    for _ in 0..8 {
        let mut ran = false;
        for effect in core.drain_effects() {
            match effect {
                ReplicaEffect::ComputeDigest(job) => {
                    let computed = job.run().expect("runs once");
                    passes.digests_alone.push(computed.index);
                    core.on_digest_computed(now, computed);
                    ran = true;
                }
                ReplicaEffect::WriteSnapshot(job) => {
                    let written = job.run().expect("runs once");
                    let hashed = written.digest.as_ref().map(|digest| digest.index);
                    passes.snapshots.push((written.meta.last_index, hashed));
                    core.on_snapshot_written(now, written);
                    ran = true;
                }
                _ => {}
            }
        }
        if !ran {
            return;
        }
    }
    panic!("jobs kept coming");
}

/// Submit writes `sequences` one at a time, each followed by a housekeeping tick.
fn write_and_tick<S: StateMachine>(
    disk: &MemoryDisk,
    core: &mut ReplicaCore<S, MemoryStore>,
    sequences: std::ops::RangeInclusive<u64>,
) -> Passes {
    let mut passes = Passes::default();
    for sequence in sequences {
        let now = Millis(10 + sequence * 10);
        core.submit(now, sequence, write(sequence), Millis(600_000));
        passes.placed.extend(
            disk.entries_written()
                .iter()
                .filter(|entry| matches!(entry.payload, Payload::Checkpoint))
                .map(|entry| entry.index),
        );
        run_jobs(core, now, &mut passes);
        core.on_timer(now, ReplicaTimer::Housekeeping);
        run_jobs(core, now, &mut passes);
    }
    passes
}

/// The monitor on, a checkpoint every `check_every` entries (while the state is small), and
/// a snapshot every `snapshot_every` entries.
fn settings_with(check_every: u64, snapshot_every: u64) -> impl FnOnce(&mut ReplicaSettings) {
    move |settings| {
        settings.consistency = ConsistencySettings {
            check_every_entries: check_every,
            repair: true,
        };
        settings.snapshot_every_entries = snapshot_every;
    }
}

#[test]
fn every_snapshot_is_written_by_a_checkpoints_pass_and_hashes_the_same_digest() {
    let disk = MemoryDisk::new();
    let mut core = leader_of(&disk, (), settings_with(10, 10));
    let passes = write_and_tick(&disk, &mut core, 1..=80);
    let placed: Vec<LogIndex> = passes.placed.iter().copied().collect();
    assert!(placed.len() >= 6, "{placed:?}");
    assert!(
        passes.digests_alone.is_empty(),
        "every checkpoint rode a snapshot: {passes:?}"
    );
    let ridden: Vec<(LogIndex, Option<LogIndex>)> =
        placed.iter().map(|&index| (index, Some(index))).collect();
    assert_eq!(
        passes.snapshots, ridden,
        "one pass per checkpoint, nothing else"
    );
    assert_eq!(core.snapshot_stats().taken, placed.len() as u64);
    let status = core.consistency_status();
    assert_eq!(status.checks, placed.len() as u64, "each digest judged");
    assert_eq!(status.mismatches, 0);

    // A node whose snapshots never ride (none due) hashes each checkpoint alone: the same
    // digests at the same checkpoints.
    let alone_disk = MemoryDisk::new();
    let mut alone = leader_of(&alone_disk, (), settings_with(10, u64::MAX));
    let alone_passes = write_and_tick(&alone_disk, &mut alone, 1..=80);
    assert!(alone_passes.placed.iter().eq(&placed));
    assert_eq!(alone_passes.digests_alone, placed);
    assert!(alone_passes.snapshots.is_empty());
    let mut compared = 0;
    for index in &placed {
        if let Some(digest) = alone.monitor.own_digest(*index) {
            assert_eq!(core.monitor.own_digest(*index), Some(digest), "at {index}");
            compared += 1;
        }
    }
    assert!(compared >= 3, "{compared} digests compared");
}

#[test]
fn a_housekeeping_snapshot_waits_half_as_long_again_while_checkpoints_are_placed() {
    // No checkpoint within these writes (1,000 entries apart): the housekeeping rule alone.
    let first_snapshot = |check_every: u64| {
        let disk = MemoryDisk::new();
        let mut core = leader_of(&disk, (), settings_with(check_every, 10));
        let passes = write_and_tick(&disk, &mut core, 1..=30);
        assert!(passes.placed.is_empty());
        let (index, hashed) = passes.snapshots.first().copied().expect("a snapshot");
        assert_eq!(hashed, None);
        index
    };
    assert_eq!(
        first_snapshot(0),
        LogIndex(10),
        "monitor off: at 10 entries"
    );
    assert_eq!(
        first_snapshot(1_000),
        LogIndex(15),
        "monitor on: 150% of 10 entries"
    );
}

#[test]
fn the_byte_bound_is_not_stretched_while_checkpoints_are_placed() {
    // A log of a few large entries: the byte bound (not the entry count, not a checkpoint,
    // 1,000 entries apart) decides, as early with the monitor on as with it off.
    let first_snapshot = |check_every: u64| {
        let disk = MemoryDisk::new();
        let mut core = leader_of(&disk, (), |settings| {
            settings_with(check_every, 1_000_000)(settings);
            settings.snapshot_log_bytes = 2_000;
        });
        let passes = write_and_tick(&disk, &mut core, 1..=60);
        let (index, hashed) = passes.snapshots.first().copied().expect("a snapshot");
        assert_eq!(hashed, None);
        index
    };
    let off = first_snapshot(0);
    assert_eq!(
        first_snapshot(1_000),
        off,
        "the same write reaches the bound"
    );
}

/// A host keeping its own digest: the monitor hashes 32 bytes of it, not its state.
#[derive(Debug)]
struct KeepsDigest;

impl StateMachine for KeepsDigest {
    type Command = ();
    type Response = ();
    type Query = ();
    type QueryResponse = ();

    fn apply(&mut self, _index: LogIndex, _command: ()) {}

    fn query(&self, _query: &()) {}

    fn snapshot(&self) -> Result<Vec<u8>, StateMachineError> {
        Ok(vec![1, 2, 3])
    }

    fn restore(&mut self, _snapshot: &[u8]) -> Result<(), StateMachineError> {
        Ok(())
    }

    fn digest(&self) -> Option<[u8; 32]> {
        Some([7; 32])
    }
}

#[test]
fn a_host_that_keeps_its_own_digest_is_snapshotted_from_a_copy_of_its_state() {
    let disk = MemoryDisk::new();
    let mut core = leader_of(&disk, KeepsDigest, settings_with(10, 10));
    let passes = write_and_tick(&disk, &mut core, 1..=80);
    let placed: Vec<LogIndex> = passes.placed.iter().copied().collect();
    assert!(placed.len() >= 6, "{placed:?}");
    // The checkpoint's copy holds the host's digest in place of its state: it must not
    // become a snapshot.
    assert_eq!(passes.digests_alone, placed);
    assert!(passes.snapshots.len() >= 4, "{passes:?}");
    assert!(
        passes.snapshots.iter().all(|(_, hashed)| hashed.is_none()),
        "{passes:?}"
    );
    assert_eq!(core.consistency_status().checks, placed.len() as u64);
}
