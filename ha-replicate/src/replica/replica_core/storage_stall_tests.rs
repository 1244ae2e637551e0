//! Issue 14, item 5: a full or failing disk stalls the replica, which refuses writes, keeps
//! every acknowledged entry, and resumes by itself once the disk can be written.

use super::*;
use crate::engine::{EngineSettings, Message};
use crate::entry::{Entry, Payload};
use crate::membership::VoterSet;
use crate::replica::client::{ClientError, ClientReply, ClientRequest, WriteRequest};
use crate::replica::settings::{ReplicaSettings, SyncPolicy};
use crate::replica::{ReplicaTimer, WriteFate};
use crate::storage::io_failure::StorageFailureKind;
use crate::storage::memory::{DiskFault, MemoryDisk, MemoryStore};
use ha_core::{Consistency, NodeId, Term, codec};

pub(in crate::replica::replica_core) fn id(name: &str) -> NodeId {
    NodeId::new(name).expect("valid id")
}

fn settings(node: &str, snapshot_every_entries: u64) -> ReplicaSettings {
    let mut engine = EngineSettings::for_test(id(node));
    engine.election_timeout_max_ms = 300;
    ReplicaSettings {
        engine,
        sync_policy: SyncPolicy::EveryInput,
        snapshot_every_entries,
        ..ReplicaSettings::for_test(id(node))
    }
}

/// `n1`, the only voter, leading.
pub(in crate::replica::replica_core) fn leader(
    disk: &MemoryDisk,
    snapshot_every_entries: u64,
) -> ReplicaCore<(), MemoryStore> {
    leader_with(disk, |settings| {
        settings.snapshot_every_entries = snapshot_every_entries;
    })
}

/// `n1`, the only voter, leading, with these tests' settings changed by `change`.
pub(in crate::replica::replica_core) fn leader_with(
    disk: &MemoryDisk,
    change: impl FnOnce(&mut ReplicaSettings),
) -> ReplicaCore<(), MemoryStore> {
    leader_of(disk, (), change)
}

/// As [`leader_with`], with `machine` as the host's state machine.
pub(in crate::replica::replica_core) fn leader_of<S: StateMachine>(
    disk: &MemoryDisk,
    machine: S,
    change: impl FnOnce(&mut ReplicaSettings),
) -> ReplicaCore<S, MemoryStore> {
    let store = MemoryStore::open(disk.clone());
    let mut settings = settings("n1", 10_000);
    change(&mut settings);
    let mut core = ReplicaCore::new(settings, machine, store, Millis(0), 7).expect("starts");
    assert!(core.on_bootstrap(Millis(0), VoterSet::with_voters([id("n1")])));
    core.on_campaign(Millis(1));
    core.drain_effects();
    assert!(core.engine().is_leader(), "a lone voter leads");
    core
}

pub(in crate::replica::replica_core) fn write(sequence: u64) -> ClientRequest {
    ClientRequest::Write(WriteRequest {
        session: ha_core::SessionId(1),
        sequence,
        lowest_unanswered: sequence,
        command: codec::encode("command", &(), 16).expect("encodes"),
        consistency: Consistency::Quorum,
    })
}

fn replies(effects: &[ReplicaEffect]) -> Vec<(u64, ClientReply)> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            ReplicaEffect::Reply { request_id, reply } => Some((*request_id, reply.clone())),
            _ => None,
        })
        .collect()
}

fn written_index(reply: &ClientReply) -> LogIndex {
    match reply {
        ClientReply::Written { index, .. } => *index,
        other => panic!("expected a written reply, got {other:?}"),
    }
}

fn housekeeping(core: &mut ReplicaCore<(), MemoryStore>, now: Millis) -> Vec<ReplicaEffect> {
    core.on_timer(now, ReplicaTimer::Housekeeping);
    core.drain_effects()
}

#[test]
fn a_full_disk_refuses_writes_keeps_acknowledged_entries_and_resumes_once_space_is_freed() {
    let disk = MemoryDisk::new();
    let mut core = leader(&disk, 10_000);
    let mut acknowledged = Vec::new();
    for sequence in 1..=3 {
        core.submit(Millis(2), sequence, write(sequence), Millis(60_000));
        let answers = replies(&core.drain_effects());
        assert_eq!(answers.len(), 1, "{answers:?}");
        acknowledged.push(written_index(&answers[0].1));
    }
    let before: Vec<Entry> = disk.entries_written();

    disk.set_fault(Some(DiskFault::Full));
    // This write is appended in memory, but its append fails: the replica stalls. It is not
    // answered yet (it commits once the disk takes it).
    core.submit(Millis(3), 4, write(4), Millis(60_000));
    assert!(replies(&core.drain_effects()).is_empty());
    let stall = core.storage_stall().expect("stalled").clone();
    assert_eq!(stall.kind, StorageFailureKind::Full);
    assert!(stall.detail.contains("28") || stall.detail.to_lowercase().contains("space"));
    assert_eq!(core.fatal(), None, "a full disk is not fatal");

    // Later writes are refused at once, known not applied.
    core.submit(Millis(4), 5, write(5), Millis(60_000));
    let answers = replies(&core.drain_effects());
    assert_eq!(answers.len(), 1);
    let ClientReply::Failed(error @ ClientError::StorageFull(_)) = &answers[0].1 else {
        panic!("expected storage_full, got {answers:?}");
    };
    assert_eq!(error.fate(), WriteFate::NotApplied);

    // Resuming while the disk is still full fails and backs off.
    housekeeping(&mut core, Millis(3 + RESUME_RETRY_MS_MIN));
    assert_eq!(core.storage_stall().expect("still stalled").attempts, 1);
    // Nothing acknowledged was touched on the disk.
    assert_eq!(&disk.entries_written()[..before.len()], &before[..]);

    // Space freed: the next try (after the doubled backoff) resumes, the pending write commits.
    disk.set_fault(None);
    let effects = housekeeping(&mut core, Millis(3 + RESUME_RETRY_MS_MIN * 3));
    assert!(core.storage_stall().is_none(), "resumed");
    let answers = replies(&effects);
    assert_eq!(answers.len(), 1, "{effects:?}");
    assert_eq!(answers[0].0, 4);
    let resumed_index = written_index(&answers[0].1);
    assert_eq!(resumed_index, acknowledged[2].next());

    // The disk holds every entry the engine has, the acknowledged ones unchanged.
    let after = disk.entries_written();
    assert_eq!(&after[..before.len()], &before[..]);
    assert_eq!(after.last().map(|entry| entry.index), Some(resumed_index));
    for entry in &after {
        assert_eq!(core.engine().term_at(entry.index), Some(entry.term));
    }
    // Writes work again.
    core.submit(Millis(500), 6, write(6), Millis(60_000));
    let answers = replies(&core.drain_effects());
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(written_index(&answers[0].1), resumed_index.next());

    // A restart recovers the same log.
    let written = disk.entries_written();
    let mut restarted = MemoryStore::open(disk.clone());
    assert_eq!(restarted.recover().expect("recovers").entries, written);
}

/// `n1` of {n1, n2, n3}, following `n2`.
fn follower(disk: &MemoryDisk) -> ReplicaCore<(), MemoryStore> {
    let store = MemoryStore::open(disk.clone());
    let mut core =
        ReplicaCore::new(settings("n1", 10_000), (), store, Millis(0), 7).expect("starts");
    let voters = VoterSet::with_voters([id("n1"), id("n2"), id("n3")]);
    assert!(core.on_bootstrap(Millis(0), voters));
    core.drain_effects();
    core
}

fn command_entry(index: u64) -> Entry {
    Entry {
        term: Term(1),
        index: LogIndex(index),
        payload: Payload::Command(vec![index as u8]),
    }
}

fn append(prev: u64, entries: Vec<Entry>, commit: u64) -> Rpc {
    Rpc::Raft(Message::AppendRequest {
        term: Term(1),
        prev_log_index: LogIndex(prev),
        prev_log_term: if prev <= 1 { Term(0) } else { Term(1) },
        entries,
        leader_commit: LogIndex(commit),
        read_round: 0,
    })
}

fn append_responses(effects: &[ReplicaEffect]) -> Vec<Message> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            ReplicaEffect::Send {
                rpc: Rpc::Raft(message @ Message::AppendResponse { .. }),
                ..
            } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_follower_whose_disk_fails_acknowledges_nothing_it_could_not_write_then_catches_up() {
    let disk = MemoryDisk::new();
    let mut core = follower(&disk);
    core.on_rpc(Millis(10), id("n2"), append(1, vec![command_entry(2)], 1));
    assert_eq!(append_responses(&core.drain_effects()).len(), 1);
    let before = disk.entries_written();

    disk.set_fault(Some(DiskFault::Io));
    core.on_rpc(
        Millis(20),
        id("n2"),
        append(2, vec![command_entry(3), command_entry(4)], 2),
    );
    let effects = core.drain_effects();
    assert!(
        append_responses(&effects).is_empty(),
        "persist before send: nothing the disk refused is acknowledged: {effects:?}"
    );
    assert_eq!(
        core.storage_stall().map(|stall| stall.kind),
        Some(StorageFailureKind::Failed)
    );
    // While stalled, appends are not taken (they would have to be written).
    core.on_rpc(Millis(30), id("n2"), append(4, vec![command_entry(5)], 2));
    assert!(append_responses(&core.drain_effects()).is_empty());
    assert_eq!(core.engine().last_index(), LogIndex(4));
    assert_eq!(&disk.entries_written()[..before.len()], &before[..]);

    // The disk works again: the replica writes back entries 3 and 4 (the torn batch kept 3),
    // then takes the leader's next append.
    disk.set_fault(None);
    housekeeping(&mut core, Millis(20 + RESUME_RETRY_MS_MIN));
    assert!(core.storage_stall().is_none());
    let on_disk: Vec<u64> = disk.entries_written().iter().map(|e| e.index.0).collect();
    assert_eq!(on_disk, vec![1, 2, 3, 4]);
    core.on_rpc(Millis(200), id("n2"), append(4, vec![command_entry(5)], 4));
    let responses = append_responses(&core.drain_effects());
    assert!(
        matches!(
            responses.as_slice(),
            [Message::AppendResponse { success: true, .. }]
        ),
        "{responses:?}"
    );
    assert_eq!(disk.entries_written().len(), 5);
}

#[test]
fn a_snapshot_the_disk_refuses_stalls_the_replica_until_it_can_write_again() {
    let disk = MemoryDisk::new();
    let mut core = leader(&disk, 2);
    for sequence in 1..=3 {
        core.submit(Millis(2), sequence, write(sequence), Millis(60_000));
    }
    core.drain_effects();
    let effects = housekeeping(&mut core, Millis(20));
    let job = effects
        .iter()
        .find_map(|effect| match effect {
            ReplicaEffect::WriteSnapshot(job) => Some(job.clone()),
            _ => None,
        })
        .expect("a snapshot is due");
    disk.set_fault(Some(DiskFault::Full));
    let written = job.run().expect("runs once");
    assert_eq!(written.failure, Some(StorageFailureKind::Full));
    core.on_snapshot_written(Millis(21), written);
    assert_eq!(
        core.storage_stall().map(|stall| stall.kind),
        Some(StorageFailureKind::Full)
    );
    assert_eq!(core.fatal(), None);
    core.submit(Millis(22), 9, write(9), Millis(60_000));
    assert!(matches!(
        replies(&core.drain_effects()).as_slice(),
        [(9, ClientReply::Failed(ClientError::StorageFull(_)))]
    ));

    disk.set_fault(None);
    housekeeping(&mut core, Millis(21 + RESUME_RETRY_MS_MIN));
    assert!(core.storage_stall().is_none());
    // The next housekeeping takes the snapshot again, and it commits.
    let effects = housekeeping(&mut core, Millis(200));
    let job = effects
        .iter()
        .find_map(|effect| match effect {
            ReplicaEffect::WriteSnapshot(job) => Some(job.clone()),
            _ => None,
        })
        .expect("the snapshot is retried");
    core.on_snapshot_written(Millis(201), job.run().expect("runs"));
    assert_eq!(core.fatal(), None);
    assert!(core.storage_stall().is_none());
    assert!(core.engine().snapshot_meta().last_index >= LogIndex(3));
}
