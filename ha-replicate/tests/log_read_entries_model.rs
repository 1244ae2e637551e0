//! Model test of `LogStore::read_entries` for both stores: random appends (across many small
//! segments), truncations, syncs, snapshots (some past the last entry) and clean reopens,
//! with every possible read checked against a model after each step: the synced entries from
//! the index asked, cut at the count and byte limits, and `Misuse` outside the log.

use ha_core::{LogIndex, Term};
use ha_replicate::entry::{Entry, Payload};
use ha_replicate::membership::VoterSet;
use ha_replicate::snapshot_meta::SnapshotMeta;
use ha_replicate::storage::memory::{MemoryDisk, MemoryStore};
use ha_replicate::storage::wal::{FsyncPolicy, WalOptions, WalStore};
use ha_replicate::storage::{LogStore, StorageError};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

#[derive(Clone, Debug)]
enum Operation {
    Append { count: u8, payload_bytes: u8 },
    Truncate { back: u8 },
    Sync,
    Snapshot { position: u8 },
    Reopen,
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        4 => (1u8..6, 0u8..120).prop_map(|(count, payload_bytes)| Operation::Append { count, payload_bytes }),
        1 => (0u8..4).prop_map(|back| Operation::Truncate { back }),
        2 => Just(Operation::Sync),
        1 => (0u8..40).prop_map(|position| Operation::Snapshot { position }),
        1 => Just(Operation::Reopen),
    ]
}

/// What the store must hold: the snapshot's last index, the entries after it, and the last
/// entry covered by a sync.
#[derive(Default)]
struct Model {
    snapshot_last: u64,
    entries: Vec<Entry>,
    synced_last: u64,
    term: u64,
}

impl Model {
    fn last(&self) -> u64 {
        self.entries
            .last()
            .map_or(self.snapshot_last, |entry| entry.index.0)
    }

    fn expected(&self, from: u64, count_max: usize, bytes_max: usize) -> Vec<Entry> {
        let mut chosen = Vec::new();
        let mut bytes = 0usize;
        for entry in self.entries.iter().filter(|entry| entry.index.0 >= from) {
            let size = entry.size_bytes();
            if entry.index.0 > self.synced_last
                || chosen.len() >= count_max
                || (!chosen.is_empty() && bytes + size > bytes_max)
            {
                break;
            }
            bytes += size;
            chosen.push(entry.clone());
        }
        chosen
    }
}

fn check_reads(store: &mut dyn LogStore, model: &Model) -> Result<(), TestCaseError> {
    for from in model.snapshot_last.saturating_sub(1)..=model.last() + 1 {
        for (count_max, bytes_max) in [
            (usize::MAX, usize::MAX),
            (2, usize::MAX),
            (100, 200),
            (100, 1),
        ] {
            let read = store.read_entries(LogIndex(from), count_max, bytes_max);
            if from <= model.snapshot_last || from > model.last() {
                prop_assert!(
                    matches!(read, Err(StorageError::Misuse(_))),
                    "from {from}: {read:?}"
                );
            } else {
                prop_assert_eq!(
                    read.unwrap(),
                    model.expected(from, count_max, bytes_max),
                    "from {}",
                    from
                );
            }
        }
    }
    Ok(())
}

fn run(
    operations: &[Operation],
    mut open: impl FnMut() -> Box<dyn LogStore>,
) -> Result<(), TestCaseError> {
    let mut store = open();
    store.recover().unwrap();
    let mut model = Model {
        term: 1,
        ..Model::default()
    };
    for operation in operations {
        match operation {
            Operation::Append {
                count,
                payload_bytes,
            } => {
                let first = model.last() + 1;
                let entries: Vec<Entry> = (first..first + u64::from(*count))
                    .map(|index| Entry {
                        term: Term(model.term),
                        index: LogIndex(index),
                        payload: Payload::Command(vec![index as u8; usize::from(*payload_bytes)]),
                    })
                    .collect();
                store.append(&entries).unwrap();
                model.entries.extend(entries);
            }
            Operation::Truncate { back } => {
                let from = (model.last() + 1)
                    .saturating_sub(u64::from(*back))
                    .max(model.snapshot_last + 1);
                store.truncate_from(LogIndex(from)).unwrap();
                model.entries.retain(|entry| entry.index.0 < from);
                model.synced_last = model.synced_last.min(model.last());
                model.term += 1;
            }
            Operation::Sync => {
                store.sync().unwrap();
                model.synced_last = model.last();
            }
            Operation::Snapshot { position } => {
                let at = model.snapshot_last
                    + u64::from(*position) % (model.last() - model.snapshot_last + 3);
                if at <= model.snapshot_last {
                    continue;
                }
                let meta = SnapshotMeta {
                    last_index: LogIndex(at),
                    last_term: Term(model.term),
                    membership: VoterSet::default(),
                };
                store.save_snapshot(&meta, b"state").unwrap();
                model.entries.retain(|entry| entry.index.0 > at);
                model.snapshot_last = at;
                model.synced_last = model.last();
            }
            Operation::Reopen => {
                drop(store);
                store = open();
                let recovered = store.recover().unwrap();
                prop_assert_eq!(&recovered.entries, &model.entries);
                model.synced_last = model.last();
            }
        }
        check_reads(store.as_mut(), &model)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn wal_store_reads_what_the_model_holds(operations in prop::collection::vec(operation(), 1..40)) {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().to_path_buf();
        run(&operations, || {
            Box::new(
                WalStore::open(&path, WalOptions { segment_bytes_max: 300, fsync_policy: FsyncPolicy::Manual })
                    .unwrap(),
            )
        })?;
    }

    #[test]
    fn memory_store_reads_what_the_model_holds(operations in prop::collection::vec(operation(), 1..40)) {
        let disk = MemoryDisk::new();
        run(&operations, || Box::new(MemoryStore::open(disk.clone())))?;
    }
}
