//! Issue 15: a witness over a real write-ahead log. The same 1,000 commands of 1 KiB are
//! appended by a leader to a data replica and to a witness: the witness's directory holds the
//! terms and indexes only, it restarts from it with the same log, and a data node refuses to
//! start from it.

use ha_core::{LogIndex, Millis, NodeId, Term};
use ha_replicate::engine::Message;
use ha_replicate::entry::{Entry, Payload};
use ha_replicate::membership::VoterSet;
use ha_replicate::replica::{ReplicaCore, ReplicaSettings, Rpc, SyncPolicy};
use ha_replicate::storage::wal::{WalOptions, WalStore};

const COMMANDS: u64 = 1_000;
const COMMAND_BYTES: usize = 1024;
const BATCH: u64 = 100;

fn id(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

fn settings(name: &str, witness: bool) -> ReplicaSettings {
    ReplicaSettings {
        sync_policy: SyncPolicy::EveryInput,
        // No snapshot: the whole log stays in the WAL, to compare.
        snapshot_every_entries: COMMANDS * 10,
        witness,
        ..ReplicaSettings::for_test(id(name))
    }
}

fn open(
    directory: &std::path::Path,
    name: &str,
    witness: bool,
) -> Result<ReplicaCore<(), WalStore>, ha_replicate::storage::StorageError> {
    let store = WalStore::open(directory, WalOptions::default())?;
    ReplicaCore::new(settings(name, witness), (), store, Millis(0), 3)
}

/// Bootstrap {a, b, w} on `core`, then append the commands as leader a of term 1 would.
fn replicate(core: &mut ReplicaCore<(), WalStore>) {
    let voters = VoterSet::with_voters([id("a"), id("b"), id("w")]);
    assert!(core.on_bootstrap(Millis(0), voters));
    core.drain_effects();
    let mut last = 1;
    while last < COMMANDS + 1 {
        let entries: Vec<Entry> = (last + 1..=(last + BATCH).min(COMMANDS + 1))
            .map(|index| Entry {
                term: Term(1),
                index: LogIndex(index),
                payload: Payload::Command(vec![(index % 251) as u8; COMMAND_BYTES]),
            })
            .collect();
        let new_last = last + entries.len() as u64;
        let message = Message::AppendRequest {
            term: Term(1),
            prev_log_index: LogIndex(last),
            prev_log_term: Term(if last == 1 { 0 } else { 1 }),
            entries,
            leader_commit: LogIndex(new_last),
            read_round: 0,
        };
        core.on_rpc(Millis(last), id("a"), Rpc::Raft(message));
        core.drain_effects();
        last = new_last;
    }
    assert_eq!(core.engine().last_index(), LogIndex(COMMANDS + 1));
    assert_eq!(core.applier().applied_index(), LogIndex(COMMANDS + 1));
}

fn directory_bytes(directory: &std::path::Path) -> u64 {
    std::fs::read_dir(directory)
        .expect("lists")
        .filter_map(Result::ok)
        .filter_map(|item| item.metadata().ok())
        .filter(|metadata| metadata.is_file())
        .map(|metadata| metadata.len())
        .sum()
}

#[test]
fn a_witness_wal_holds_metadata_only_and_restarts_from_it() {
    let data_directory = tempfile::tempdir().expect("temporary directory");
    let witness_directory = tempfile::tempdir().expect("temporary directory");
    {
        let mut data = open(data_directory.path(), "b", false).expect("starts");
        replicate(&mut data);
        let mut witness = open(witness_directory.path(), "w", true).expect("starts");
        replicate(&mut witness);
    }
    let data_bytes = directory_bytes(data_directory.path());
    let witness_bytes = directory_bytes(witness_directory.path());
    println!(
        "WAL after {COMMANDS} commands of {COMMAND_BYTES} bytes: data node {data_bytes} bytes, \
         witness {witness_bytes} bytes"
    );
    assert!(data_bytes > COMMANDS * COMMAND_BYTES as u64, "{data_bytes}");
    assert!(
        witness_bytes * 20 < data_bytes,
        "witness {witness_bytes} bytes, data node {data_bytes}"
    );

    // The witness restarts from its WAL with the whole log (terms and indexes).
    let restarted = open(witness_directory.path(), "w", true).expect("restarts");
    assert_eq!(restarted.engine().last_index(), LogIndex(COMMANDS + 1));
    assert_eq!(
        restarted.engine().term_at(LogIndex(COMMANDS + 1)),
        Some(Term(1))
    );
    drop(restarted);

    // A data node refuses it, saying why.
    let error = open(witness_directory.path(), "w", false)
        .err()
        .expect("refused");
    assert!(error.to_string().contains("witness"), "{error}");
}
