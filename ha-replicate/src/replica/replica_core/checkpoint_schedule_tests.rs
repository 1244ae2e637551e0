//! The leader places consistency checkpoints as log entries on a size-aware schedule: at least
//! `check_every_entries` entries apart, and at least as many log bytes apart as the state's
//! stream held at the previous one; every checkpoint entry is digested where it was applied.

use super::snapshot_size_rule_tests::snapshot_due;
use super::storage_stall::tests::{id, leader_with, write};
use super::*;
use crate::entry::{Entry, Payload};
use crate::replica::consistency_monitor::ConsistencySettings;
use crate::replica::rpc::Rpc;
use crate::replica::settings::ReplicaSettings;
use crate::storage::memory::{MemoryDisk, MemoryStore};

const EVERY: u64 = 10;

/// A lone leader with the monitor on, every [`EVERY`] entries.
fn leader(disk: &MemoryDisk) -> ReplicaCore<(), MemoryStore> {
    leader_with_monitor(disk, |_| {})
}

/// As [`leader`], with the settings further changed by `change`.
fn leader_with_monitor(
    disk: &MemoryDisk,
    change: impl FnOnce(&mut ReplicaSettings),
) -> ReplicaCore<(), MemoryStore> {
    leader_with(disk, |settings| {
        settings.consistency = ConsistencySettings {
            check_every_entries: EVERY,
            repair: true,
        };
        change(settings);
    })
}

/// Submit writes `sequences`, hashing each digest job handed out; `state_bytes` replaces the
/// measured stream length when given (a large state, without building one).
fn write_and_digest(
    core: &mut ReplicaCore<(), MemoryStore>,
    sequences: std::ops::RangeInclusive<u64>,
    state_bytes: Option<u64>,
) -> Vec<LogIndex> {
    let mut digested = Vec::new();
    for sequence in sequences {
        core.submit(Millis(10), sequence, write(sequence), Millis(60_000));
        for effect in core.drain_effects() {
            // A checkpoint may write the snapshot too, hashing in the same pass.
            let (mut computed, written) = match effect {
                ReplicaEffect::ComputeDigest(job) => (job.run().expect("runs once"), None),
                ReplicaEffect::WriteSnapshot(job) => {
                    let mut written = job.run().expect("runs once");
                    let Some(computed) = written.digest.take() else {
                        continue;
                    };
                    (computed, Some(written))
                }
                _ => continue,
            };
            assert!(computed.state_bytes > 0, "the stream was measured");
            if let Some(bytes) = state_bytes {
                computed.state_bytes = bytes;
            }
            digested.push(computed.index);
            core.on_digest_computed(Millis(10), computed);
            if let Some(written) = written {
                core.on_snapshot_written(Millis(10), written);
            }
        }
    }
    digested
}

fn checkpoints(entries: &[Entry]) -> Vec<LogIndex> {
    entries
        .iter()
        .filter(|entry| matches!(entry.payload, Payload::Checkpoint))
        .map(|entry| entry.index)
        .collect()
}

#[test]
fn a_small_state_is_checked_every_interval_and_every_checkpoint_is_digested_and_judged() {
    let disk = MemoryDisk::new();
    let mut core = leader(&disk);
    let digested = write_and_digest(&mut core, 1..=60, None);
    let placed = checkpoints(&disk.entries_written());
    assert!(placed.len() >= 4, "{placed:?}");
    // The interval alone decides: the state (one session, no host bytes) is smaller than
    // the entries between two checkpoints.
    for pair in placed.windows(2) {
        assert_eq!(pair[1].0 - pair[0].0, EVERY + 1, "{placed:?}");
    }
    assert_eq!(
        digested, placed,
        "each checkpoint entry is digested where it is applied"
    );
    let status = core.consistency_status();
    assert_eq!(status.last_checkpoint, placed.last().copied());
    assert!(status.last_checkpoint_state_bytes > 0);
    assert_eq!(
        status.checks,
        placed.len() as u64,
        "the lone voter judges itself"
    );
    assert_eq!(status.mismatches, 0);
}

#[test]
fn a_large_state_waits_for_as_many_log_bytes_as_it_held() {
    const STATE_BYTES: u64 = 4_000;
    let disk = MemoryDisk::new();
    let mut core = leader(&disk);
    // The first checkpoint: the interval alone (no state measured yet).
    let first = write_and_digest(&mut core, 1..=EVERY, Some(STATE_BYTES));
    assert_eq!(first.len(), 1, "{first:?}");
    let digested = write_and_digest(&mut core, EVERY + 1..=400, Some(STATE_BYTES));
    let entries = disk.entries_written();
    let placed = checkpoints(&entries);
    assert!(placed.len() >= 3, "{placed:?}");
    assert_eq!(digested, placed[1..], "{placed:?}");
    for pair in placed.windows(2) {
        let between: Vec<&Entry> = entries
            .iter()
            .filter(|entry| entry.index > pair[0] && entry.index < pair[1])
            .collect();
        let bytes: u64 = between.iter().map(|entry| entry.size_bytes() as u64).sum();
        let last_bytes = between.last().map_or(0, |entry| entry.size_bytes() as u64);
        // Due as soon as both hold, not before: without the last entry it was not.
        assert!(between.len() as u64 >= EVERY, "{pair:?}");
        assert!(bytes >= STATE_BYTES, "{pair:?}: {bytes} log bytes");
        assert!(
            bytes - last_bytes < STATE_BYTES,
            "{pair:?}: {bytes} log bytes, late"
        );
        assert!(
            between.len() as u64 > 2 * EVERY,
            "the size rule, not the interval, placed {pair:?}"
        );
    }
}

#[test]
fn with_the_monitor_off_no_checkpoint_is_placed() {
    let disk = MemoryDisk::new();
    let mut core = leader_with(&disk, |settings| {
        settings.consistency = ConsistencySettings::off();
    });
    assert!(write_and_digest(&mut core, 1..=50, None).is_empty());
    assert!(checkpoints(&disk.entries_written()).is_empty());
}

#[test]
fn the_leader_judges_reports_only_at_its_checkpoints_even_once_compacted() {
    let disk = MemoryDisk::new();
    let mut core = leader_with_monitor(&disk, |settings| settings.snapshot_every_entries = 2);
    // Each checkpoint also writes the snapshot (one is due every 2 entries), so the log
    // holds none of them afterwards: the digested ones are the placed ones.
    let placed = write_and_digest(&mut core, 1..=25, None);
    assert!(placed.len() >= 2, "{placed:?}");
    let first = placed[0];
    let digest = core.monitor.own_digest(first).expect("its own digest");
    let term = core.engine().term();
    let report = |index: LogIndex| Rpc::Digest {
        term,
        index,
        digest,
    };
    let checks = |core: &ReplicaCore<(), MemoryStore>| core.consistency_status().checks;

    // Not a checkpoint, or past the commit index: dropped, nobody judged.
    let before = checks(&core);
    core.on_consistency_rpc(Millis(20), id("n2"), report(first.next()));
    core.on_consistency_rpc(Millis(20), id("n2"), report(LogIndex(1_000)));
    assert_eq!(checks(&core), before);

    // The log compacted the checkpoint entry away; this node took a copy there, so a late
    // report is still judged.
    if let Some(job) = snapshot_due(&mut core, Millis(30)) {
        core.on_snapshot_written(Millis(31), job.run().expect("runs"));
    }
    assert!(core.engine().snapshot_meta().last_index > first);
    assert!(!core.engine().is_checkpoint(first), "compacted");
    core.on_consistency_rpc(Millis(40), id("n2"), report(first));
    assert_eq!(checks(&core), before + 1, "judged");
    assert_eq!(core.consistency_status().mismatches, 0);
}
