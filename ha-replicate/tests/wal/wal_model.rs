//! Model test of both stores: random sequences of append, truncate, hard state, snapshot, sync,
//! receiving a snapshot in chunks (begin, resume, append, verify, install, discard) and
//! crash-and-recover, checked against a simple model (the entries after the snapshot, the hard
//! state, the snapshot and its bytes, the snapshot being received and how many bytes it holds)
//! after every recovery.
//!
//! The model keeps every state the store went through since the last sync. A crash may keep
//! any prefix of the unsynced writes and nothing else, so:
//! - `MemoryStore`: the disk keeps exactly the first `choice % (unsynced writes + 1)`, so the
//!   recovered state must be exactly that state of the history;
//! - `WalStore` with `FsyncPolicy::Always`: nothing is unsynced, so exactly the current state;
//! - `WalStore` with `FsyncPolicy::Manual`: the test itself cuts the bytes written since the
//!   last sync at a random point (a torn tail, possibly mid-record or mid-header, later
//!   segments lost), and the recovered state must be one of the states since the last sync.
//!
//! A snapshot being received lives in files of its own, which the test does not cut (a crash
//! may keep any suffix of them, independently of the segments; `wal_streamed_snapshots.rs`
//! cuts them): for `WalStore` it must come back exactly as it was, whatever the segments lost.

use crate::wal_support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use ha_core::{LogIndex, NodeId, Term};
use ha_replicate::entry::{Entry, Payload};
use ha_replicate::hard_state::HardState;
use ha_replicate::membership::VoterSet;
use ha_replicate::snapshot_meta::{SnapshotId, SnapshotMeta};
use ha_replicate::storage::memory::{MemoryDisk, MemoryStore};
use ha_replicate::storage::wal::{FsyncPolicy, WalOptions, WalStore};
use ha_replicate::storage::{LogStore, Recovered, StorageError};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use wal_support::{segment_files, snapshot_bytes, snapshot_id};

/// Small enough that most cases roll over and compact many segments.
const SEGMENT_BYTES_MAX: u64 = 160;

#[derive(Clone, Debug)]
enum Operation {
    Append {
        count: u8,
        payload_bytes: u8,
        membership: bool,
    },
    /// Later appends use the next term (a new leader).
    NewTerm,
    /// `truncate_from(last + 1 - back)`, which may reach below the snapshot.
    Truncate {
        back: u8,
    },
    SaveHardState {
        term: u8,
        vote: Option<u8>,
    },
    /// A snapshot somewhere from the current snapshot to two past the last entry.
    SaveSnapshot {
        position: u8,
        data_bytes: u8,
    },
    Sync,
    Crash {
        choice: u64,
    },
    /// Start receiving a snapshot placed as `SaveSnapshot` places one, or (`resume`) offer
    /// the one being received again. A `corrupt` id names a checksum its bytes do not have.
    BeginIncoming {
        position: u8,
        size: u16,
        resume: bool,
        corrupt: bool,
    },
    /// The next chunk of the snapshot being received (at most what is left).
    AppendIncoming {
        chunk: u16,
    },
    VerifyIncoming,
    InstallIncoming,
    DiscardIncoming,
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        8 => (1u8..=4, 0u8..48, proptest::bool::weighted(0.1)).prop_map(
            |(count, payload_bytes, membership)| Operation::Append {
                count,
                payload_bytes,
                membership
            }
        ),
        1 => Just(Operation::NewTerm),
        2 => (0u8..8).prop_map(|back| Operation::Truncate { back }),
        2 => (0u8..6, proptest::option::of(0u8..3))
            .prop_map(|(term, vote)| Operation::SaveHardState { term, vote }),
        1 => (any::<u8>(), 0u8..64)
            .prop_map(|(position, data_bytes)| Operation::SaveSnapshot { position, data_bytes }),
        2 => Just(Operation::Sync),
        2 => any::<u64>().prop_map(|choice| Operation::Crash { choice }),
        1 => (any::<u8>(), 0u16..3_000, proptest::bool::weighted(0.3), proptest::bool::weighted(0.2))
            .prop_map(|(position, size, resume, corrupt)| Operation::BeginIncoming {
                position,
                size,
                resume,
                corrupt
            }),
        3 => (0u16..1_500).prop_map(|chunk| Operation::AppendIncoming { chunk }),
        1 => Just(Operation::VerifyIncoming),
        1 => Just(Operation::InstallIncoming),
        1 => Just(Operation::DiscardIncoming),
    ]
}

/// What a store holds, as the model sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct State {
    hard_state: HardState,
    snapshot: Option<(SnapshotMeta, Vec<u8>)>,
    entries: Vec<Entry>,
    /// The snapshot being received and the bytes it holds.
    incoming: Option<(SnapshotMeta, SnapshotId, u64)>,
}

impl State {
    /// The state `recovered` describes, with the snapshot's bytes read from `store`.
    fn of(recovered: Recovered, store: &mut dyn LogStore) -> Self {
        let snapshot = snapshot_bytes(store);
        assert_eq!(
            snapshot
                .as_ref()
                .map(|(meta, data)| (meta.clone(), snapshot_id(meta, data))),
            recovered.snapshot,
            "recover names the snapshot the reader reads"
        );
        let incoming = recovered
            .incoming
            .map(|incoming| (incoming.meta, incoming.id, incoming.held));
        assert_eq!(
            incoming,
            store
                .incoming()
                .map(|incoming| (incoming.meta, incoming.id, incoming.held)),
            "recover and incoming() agree"
        );
        Self {
            hard_state: recovered.hard_state,
            snapshot,
            entries: recovered.entries,
            incoming,
        }
    }

    /// Everything but the snapshot being received.
    fn log_part(&self) -> Self {
        Self {
            incoming: None,
            ..self.clone()
        }
    }

    fn snapshot_last(&self) -> u64 {
        self.snapshot
            .as_ref()
            .map_or(0, |(meta, _)| meta.last_index.0)
    }

    fn last(&self) -> u64 {
        self.entries
            .last()
            .map_or(self.snapshot_last(), |entry| entry.index.0)
    }
}

/// The model: `history[0]` is the synced state, the last element the current one, and the
/// ones between are the states after each unsynced write.
struct Model {
    history: Vec<State>,
    term: u64,
    /// The bytes of every snapshot offered for receiving, by id.
    offered: BTreeMap<(u64, u64, u64, u32), Vec<u8>>,
    /// `verify_incoming` succeeded since the store was opened (not durable).
    verified: bool,
}

fn key(id: &SnapshotId) -> (u64, u64, u64, u32) {
    (id.last_index.0, id.last_term.0, id.size, id.crc32c)
}

impl Model {
    fn current(&self) -> &State {
        self.history.last().unwrap()
    }

    /// Records one unsynced write.
    fn write(&mut self, change: impl FnOnce(&mut State)) {
        let mut next = self.current().clone();
        change(&mut next);
        self.history.push(next);
    }

    fn synced(&mut self) {
        let current = self.current().clone();
        self.history = vec![current];
    }
}

#[derive(Clone, Copy, Debug)]
enum Target {
    Memory,
    WalAlways,
    WalManualLosingUnsyncedBytes,
}

/// The store under test and what it needs to crash.
struct Harness {
    target: Target,
    store: Box<dyn LogStore>,
    disk: MemoryDisk,
    directory: tempfile::TempDir,
    /// Segment sizes at the last sync, for cutting unsynced bytes.
    synced_sizes: BTreeMap<PathBuf, u64>,
}

impl Harness {
    fn new(target: Target) -> (Self, State) {
        let disk = MemoryDisk::new();
        let directory = tempfile::tempdir().unwrap();
        let mut harness = Self {
            target,
            store: Box::new(MemoryStore::open(disk.clone())),
            disk,
            directory,
            synced_sizes: BTreeMap::new(),
        };
        let (state, _) = harness.reopen();
        (harness, state)
    }

    /// Opens a new store on the disk or directory and recovers: the state and the repairs.
    fn reopen(&mut self) -> (State, Vec<String>) {
        self.store = match self.target {
            Target::Memory => Box::new(MemoryStore::open(self.disk.clone())),
            Target::WalAlways | Target::WalManualLosingUnsyncedBytes => {
                let fsync_policy = match self.target {
                    Target::WalAlways => FsyncPolicy::Always,
                    _ => FsyncPolicy::Manual,
                };
                let options = WalOptions {
                    segment_bytes_max: SEGMENT_BYTES_MAX,
                    fsync_policy,
                };
                Box::new(WalStore::open(self.directory.path(), options).unwrap())
            }
        };
        let recovered = self.store.recover().unwrap();
        // Recovery syncs what it returns.
        self.note_synced();
        let repairs = recovered.repairs.clone();
        (State::of(recovered, &mut *self.store), repairs)
    }

    fn note_synced(&mut self) {
        self.synced_sizes = segment_sizes(self.directory.path());
    }

    /// Crashes, recovers, and checks the recovered state against the model's history.
    fn crash(&mut self, model: &mut Model, choice: u64) -> Result<(), TestCaseError> {
        let recovered = match self.target {
            Target::Memory => {
                let kept = self.disk.crash(choice);
                prop_assert_eq!(kept as u64, choice % model.history.len() as u64);
                let (state, repairs) = self.reopen();
                prop_assert!(repairs.is_empty());
                prop_assert_eq!(&state, &model.history[kept], "kept {} writes", kept);
                state
            }
            Target::WalAlways => {
                prop_assert_eq!(model.history.len(), 1, "every call syncs");
                let (state, repairs) = self.reopen();
                prop_assert!(repairs.is_empty(), "{:?}", repairs);
                prop_assert_eq!(&state, model.current());
                state
            }
            Target::WalManualLosingUnsyncedBytes => {
                // The old store writes nothing more: its process is gone.
                cut_unsynced_bytes(self.directory.path(), &self.synced_sizes, choice);
                let (state, _) = self.reopen();
                prop_assert!(
                    model
                        .history
                        .iter()
                        .any(|earlier| earlier.log_part() == state.log_part()),
                    "recovered {:?}, which is no prefix of the unsynced writes after {:?}",
                    state,
                    model.history[0]
                );
                prop_assert_eq!(&state.incoming, &model.current().incoming);
                state
            }
        };
        model.history = vec![recovered];
        model.verified = false;
        Ok(())
    }
}

fn segment_sizes(directory: &Path) -> BTreeMap<PathBuf, u64> {
    segment_files(directory)
        .into_iter()
        .map(|path| {
            let size = wal_support::records_end(&path);
            (path, size)
        })
        .collect()
}

/// Keeps a prefix of the bytes written since the last sync: the stream of unsynced bytes is
/// each segment's bytes past its synced size, in segment order; everything after the cut point
/// is lost (the file it falls in is cut there, later files are left empty or removed).
fn cut_unsynced_bytes(directory: &Path, synced_sizes: &BTreeMap<PathBuf, u64>, choice: u64) {
    let current = segment_sizes(directory);
    let unsynced_total: u64 = current
        .iter()
        .map(|(path, size)| size - synced_sizes.get(path).copied().unwrap_or(0))
        .sum();
    let mut keep = choice % (unsynced_total + 1);
    let mut cut_done = false;
    for (path, size) in current {
        let synced = synced_sizes.get(&path).copied().unwrap_or(0);
        if cut_done {
            assert_eq!(synced, 0, "only the suffix after the last sync is unsynced");
            fs::remove_file(&path).unwrap();
            continue;
        }
        let unsynced = size - synced;
        if unsynced == 0 {
            continue;
        }
        if keep >= unsynced {
            keep -= unsynced;
            continue;
        }
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(synced + keep)
            .unwrap();
        cut_done = true;
    }
}

fn run(target: Target, operations: &[Operation]) -> Result<(), TestCaseError> {
    let (mut harness, initial) = Harness::new(target);
    prop_assert_eq!(&initial, &State::default());
    let mut model = Model {
        history: vec![initial],
        term: 1,
        offered: BTreeMap::new(),
        verified: false,
    };
    for operation in operations {
        apply(&mut harness, &mut model, operation)?;
    }
    // Finally everything is synced and must come back exactly.
    harness.store.sync().unwrap();
    model.synced();
    harness.note_synced();
    harness.crash(&mut model, 0)
}

fn apply(
    harness: &mut Harness,
    model: &mut Model,
    operation: &Operation,
) -> Result<(), TestCaseError> {
    let always = matches!(harness.target, Target::WalAlways);
    match *operation {
        Operation::Append {
            count,
            payload_bytes,
            membership,
        } => {
            let first = model.current().last() + 1;
            let batch: Vec<Entry> = (first..first + u64::from(count))
                .map(|index| Entry {
                    term: Term(model.term),
                    index: LogIndex(index),
                    payload: if membership {
                        Payload::Membership(VoterSet::with_voters([NodeId::new(format!(
                            "n{index}"
                        ))
                        .unwrap()]))
                    } else {
                        Payload::Command(vec![index as u8; usize::from(payload_bytes)])
                    },
                })
                .collect();
            harness.store.append(&batch).unwrap();
            for entry in batch {
                model.write(|state| state.entries.push(entry));
            }
        }
        Operation::NewTerm => model.term += 1,
        Operation::Truncate { back } => {
            let from = (model.current().last() + 1).saturating_sub(u64::from(back));
            harness.store.truncate_from(LogIndex(from)).unwrap();
            // Entries the snapshot covers are never removed; removing nothing writes nothing.
            let point = from.max(model.current().snapshot_last() + 1);
            if point <= model.current().last() {
                model.write(|state| state.entries.retain(|entry| entry.index.0 < point));
            }
        }
        Operation::SaveHardState { term, vote } => {
            let hard_state = HardState {
                term: Term(u64::from(term)),
                voted_for: vote.map(|node| NodeId::new(format!("n{node}")).unwrap()),
            };
            harness.store.save_hard_state(&hard_state).unwrap();
            model.write(|state| state.hard_state = hard_state);
        }
        Operation::SaveSnapshot {
            position,
            data_bytes,
        } => {
            let current = model.current();
            let low = current.snapshot_last();
            let high = current.last() + 2;
            let last_index = low + u64::from(position) % (high - low + 1);
            let last_term = current
                .entries
                .iter()
                .find(|entry| entry.index.0 == last_index)
                .map_or(Term(model.term), |entry| entry.term);
            let meta = SnapshotMeta {
                last_index: LogIndex(last_index),
                last_term,
                membership: VoterSet::with_voters([NodeId::new("n1").unwrap()]),
            };
            let data = vec![data_bytes; usize::from(data_bytes)];
            harness.store.save_snapshot(&meta, &data).unwrap();
            // A snapshot is durable on return, together with every earlier write.
            model.write(|state| {
                state.entries.retain(|entry| entry.index.0 > last_index);
                state.snapshot = Some((meta, data));
            });
            model.synced();
            harness.note_synced();
        }
        Operation::Sync => {
            harness.store.sync().unwrap();
            model.synced();
            harness.note_synced();
        }
        Operation::Crash { choice } => harness.crash(model, choice)?,
        Operation::BeginIncoming {
            position,
            size,
            resume,
            corrupt,
        } => {
            let (meta, id) = match (&model.current().incoming, resume) {
                (Some((meta, id, _)), true) => (meta.clone(), *id),
                _ => {
                    let current = model.current();
                    let low = current.snapshot_last();
                    let high = current.last() + 2;
                    let last_index = low + u64::from(position) % (high - low + 1);
                    let meta = SnapshotMeta {
                        last_index: LogIndex(last_index),
                        last_term: Term(model.term),
                        membership: VoterSet::with_voters([NodeId::new("n2").unwrap()]),
                    };
                    let data: Vec<u8> = (0..usize::from(size))
                        .map(|at| (at as u64 * 131 + last_index * 7 + u64::from(position)) as u8)
                        .collect();
                    let mut id = snapshot_id(&meta, &data);
                    if corrupt {
                        id.crc32c ^= 0x0100;
                    }
                    model.offered.insert(key(&id), data);
                    (meta, id)
                }
            };
            harness.store.begin_incoming(&meta, id).unwrap();
            // Durable on return, with every earlier write; the same snapshot keeps its bytes.
            model.synced();
            let same = model
                .current()
                .incoming
                .as_ref()
                .is_some_and(|(held_meta, held_id, _)| *held_meta == meta && *held_id == id);
            if !same {
                model.write(|state| state.incoming = Some((meta, id, 0)));
                model.synced();
                model.verified = false;
            }
            harness.note_synced();
        }
        Operation::AppendIncoming { chunk } => match model.current().incoming.clone() {
            None => prop_assert!(matches!(
                harness.store.append_incoming(0, &[1]),
                Err(StorageError::Misuse(_))
            )),
            Some((meta, id, held)) => {
                let data = &model.offered[&key(&id)];
                let start = held as usize;
                let end = (start + usize::from(chunk)).min(data.len());
                harness
                    .store
                    .append_incoming(held, &data[start..end])
                    .unwrap();
                prop_assert!(matches!(
                    harness.store.append_incoming(end as u64 + 1, &[1]),
                    Err(StorageError::Misuse(_))
                ));
                if end > start {
                    model.write(|state| state.incoming = Some((meta, id, end as u64)));
                }
            }
        },
        Operation::VerifyIncoming => match model.current().incoming.clone() {
            Some((meta, id, held)) if held == id.size => {
                let matches = harness.store.verify_incoming().unwrap();
                let data = &model.offered[&key(&id)];
                prop_assert_eq!(matches, crc32c::crc32c(data) == id.crc32c);
                model.synced();
                if matches {
                    model.verified = true;
                } else {
                    model.write(|state| state.incoming = Some((meta, id, 0)));
                    model.synced();
                }
                harness.note_synced();
            }
            _ => prop_assert!(matches!(
                harness.store.verify_incoming(),
                Err(StorageError::Misuse(_))
            )),
        },
        Operation::InstallIncoming => match model.current().incoming.clone() {
            Some((meta, id, _))
                if model.verified && meta.last_index.0 >= model.current().snapshot_last() =>
            {
                prop_assert_eq!(harness.store.install_incoming().unwrap(), id);
                let data = model.offered[&key(&id)].clone();
                model.write(|state| {
                    state.entries.retain(|entry| entry.index > meta.last_index);
                    state.snapshot = Some((meta, data));
                    state.incoming = None;
                });
                model.synced();
                model.verified = false;
                harness.note_synced();
            }
            _ => prop_assert!(matches!(
                harness.store.install_incoming(),
                Err(StorageError::Misuse(_))
            )),
        },
        Operation::DiscardIncoming => {
            harness.store.discard_incoming().unwrap();
            if model.current().incoming.is_some() {
                model.write(|state| state.incoming = None);
                model.verified = false;
            }
        }
    }
    if always {
        model.synced();
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 40,
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    })]

    /// The same scenario through all three targets.
    #[test]
    fn both_stores_match_the_model(
        operations in proptest::collection::vec(operation(), 1..48)
    ) {
        run(Target::Memory, &operations)?;
        run(Target::WalManualLosingUnsyncedBytes, &operations)?;
        run(Target::WalAlways, &operations)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 400,
        ..ProptestConfig::default()
    })]

    /// The memory store is cheap: many more and longer scenarios.
    #[test]
    fn memory_store_matches_the_model(
        operations in proptest::collection::vec(operation(), 1..120)
    ) {
        run(Target::Memory, &operations)?;
    }
}
