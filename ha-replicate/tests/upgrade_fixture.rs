//! Issue 17, item 3: a node written by the version before pipelined sessions restarts on this
//! one. `tests/fixtures/wal_before_pipelined_sessions/` is a write-ahead log written by commit
//! 241d818 (the tree before pipelined sessions were merged): a follower `b` of leader `a`,
//! term 1, fed 15 session commands of format 1 (untagged; one retry that is a duplicate, one
//! stale write), with a snapshot of data format 2 taken after 8 applied entries and four
//! commands after it in the log. How it was made: `git archive 241d818`, add the generator
//! kept in `tests/fixtures/write_upgrade_fixture.rs.txt` as `ha-replicate/tests/`, run it
//! with `HA_FIXTURE_OUT=<dir>`, copy `<dir>` here.
//!
//! The node restarts on it: the old snapshot restores (sessions included), the old commands
//! after it replay, retries of old writes stay duplicates, and new-format commands apply on
//! top.

use std::path::{Path, PathBuf};

use ha_core::{LogIndex, Millis, NodeId, Term, codec};
use ha_replicate::engine::Message;
use ha_replicate::entry::{Entry, Payload};
use ha_replicate::replica::{
    COMMAND_BYTES_MAX, ReplicaCore, ReplicaEffect, ReplicaSettings, Rpc, SessionCommand, SyncPolicy,
};
use ha_replicate::storage::wal::{WalOptions, WalStore};
use ha_replicate::test_support::Counter;

/// The last index in the fixture's log, and the total its commands add up to (the duplicate
/// and the stale write not counted).
const FIXTURE_LAST: u64 = 16;
const FIXTURE_TOTAL: u64 = 1 + 2 + 10 + 20 + 100 + 400 + 4_000;

fn id(name: &str) -> NodeId {
    NodeId::new(name).expect("valid id")
}

fn settings() -> ReplicaSettings {
    ReplicaSettings {
        sync_policy: SyncPolicy::EveryInput,
        snapshot_every_entries: 8,
        ..ReplicaSettings::for_test(id("b"))
    }
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wal_before_pipelined_sessions")
}

/// A copy of the fixture to open (the store writes to its directory).
fn fixture_copy() -> tempfile::TempDir {
    let directory = tempfile::tempdir().expect("temporary directory");
    let mut copied = 0;
    for item in std::fs::read_dir(fixture()).expect("the fixture is committed") {
        let item = item.expect("lists");
        if item.file_type().expect("file type").is_file() {
            std::fs::copy(item.path(), directory.path().join(item.file_name())).expect("copies");
            copied += 1;
        }
    }
    assert!(copied > 0, "the fixture directory is empty");
    directory
}

fn carry_out(core: &mut ReplicaCore<Counter, WalStore>, now: Millis) {
    for _ in 0..10 {
        let effects = core.drain_effects();
        if effects.is_empty() {
            return;
        }
        for effect in effects {
            if let ReplicaEffect::WriteSnapshot(job) = effect
                && let Some(written) = job.run()
            {
                core.on_snapshot_written(now, written);
            }
        }
    }
}

/// Leader `a` (term 1) appends `entries` after `last` and commits through `commit`.
fn append(core: &mut ReplicaCore<Counter, WalStore>, last: u64, entries: Vec<Entry>, commit: u64) {
    let message = Message::AppendRequest {
        term: Term(1),
        prev_log_index: LogIndex(last),
        prev_log_term: Term(1),
        entries,
        leader_commit: LogIndex(commit),
        read_round: 0,
    };
    let now = Millis(1_000 + last);
    core.on_rpc(now, id("a"), Rpc::Raft(message));
    carry_out(core, now);
}

/// A command as the old version wrote it (format 1: session, sequence, command; no tag).
fn format_1(session: u64, sequence: u64, amount: u64) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Format1 {
        session: u64,
        sequence: u64,
        #[serde(with = "serde_bytes")]
        command: Vec<u8>,
    }
    let command = Format1 {
        session,
        sequence,
        command: codec::encode("command", &amount, 64).expect("encodes"),
    };
    codec::encode("session command", &command, COMMAND_BYTES_MAX).expect("encodes")
}

/// A command as this version writes it.
fn current(session: u64, sequence: u64, amount: u64) -> Vec<u8> {
    SessionCommand {
        session: ha_core::SessionId(session),
        sequence,
        lowest_unanswered: sequence,
        command: codec::encode("command", &amount, 64).expect("encodes"),
    }
    .encode(COMMAND_BYTES_MAX)
    .expect("encodes")
}

fn entry(index: u64, payload: Vec<u8>) -> Entry {
    Entry {
        term: Term(1),
        index: LogIndex(index),
        payload: Payload::Command(payload),
    }
}

#[test]
fn a_log_and_snapshot_written_before_pipelined_sessions_recover() {
    let directory = fixture_copy();
    let store = WalStore::open(directory.path(), WalOptions::default()).expect("opens");
    let mut core = ReplicaCore::new(settings(), Counter::default(), store, Millis(1_000), 3)
        .expect("recovers");
    // The old snapshot (data format 2) restored: it was taken after 8 applied entries.
    let snapshot = core.engine().snapshot_meta().last_index;
    assert!(snapshot.0 >= 8, "no snapshot in the fixture: {snapshot}");
    assert_eq!(core.applier().applied_index(), snapshot);
    assert_eq!(core.engine().last_index(), LogIndex(FIXTURE_LAST));

    // The leader says everything is committed: the old commands after the snapshot replay.
    append(&mut core, FIXTURE_LAST, Vec::new(), FIXTURE_LAST);
    assert_eq!(core.applier().applied_index(), LogIndex(FIXTURE_LAST));
    assert_eq!(core.applier().machine().0, FIXTURE_TOTAL);

    // Retries of old writes, as an old client would send them again: session 1's latest (in
    // the old snapshot) and session 4's latest (in the replayed log) are duplicates, session
    // 2's first write is below its latest: none applies. A new-format write of session 4
    // applies, and so does a new session's.
    let more = vec![
        entry(17, format_1(1, 2, 2)),
        entry(18, format_1(4, 4, 1_000)),
        entry(19, format_1(2, 1, 10)),
        entry(20, current(4, 5, 10_000)),
        entry(21, current(9, 1, 100_000)),
        entry(22, current(4, 5, 10_000)),
    ];
    append(&mut core, FIXTURE_LAST, more, 22);
    assert_eq!(core.applier().applied_index(), LogIndex(22));
    assert_eq!(core.applier().machine().0, FIXTURE_TOTAL + 10_000 + 100_000);

    // And it restarts again from what it has now written (a new snapshot of format 3 once 8
    // more entries were applied, or the old one and a longer log).
    drop(core);
    let store = WalStore::open(directory.path(), WalOptions::default()).expect("reopens");
    let mut core = ReplicaCore::new(settings(), Counter::default(), store, Millis(2_000), 4)
        .expect("recovers");
    append(&mut core, 22, Vec::new(), 22);
    assert_eq!(core.applier().applied_index(), LogIndex(22));
    assert_eq!(core.applier().machine().0, FIXTURE_TOTAL + 110_000);
}

/// The other direction is refused, not misread: a command or a snapshot of a later format than
/// this version knows is never applied, and says to upgrade (or names the formats it reads).
#[test]
fn later_formats_are_refused_with_a_clear_error() {
    let mut later = current(5, 1, 7);
    later[2] += 1;
    let mut applier = ha_replicate::replica::Applier::new(Counter::default());
    let outcome = applier.apply(&entry(1, later));
    match outcome {
        Some(ha_replicate::replica::ApplyOutcome::Invalid(reason)) => {
            assert!(reason.contains("upgrade this node"), "{reason}");
        }
        other => panic!("a later command format was not refused: {other:?}"),
    }
    assert_eq!(applier.machine().0, 0, "nothing applied");

    let mut snapshot = applier.snapshot().expect("a snapshot");
    snapshot[..4].copy_from_slice(&4u32.to_le_bytes());
    let error = ha_replicate::replica::Applier::new(Counter::default())
        .restore(&snapshot)
        .expect_err("a later snapshot format is refused");
    assert!(error.to_string().contains("snapshot format 4"), "{error}");
}
