//! `MemoryStore` and its `MemoryDisk`: what a simulated crash keeps and loses.

use crate::wal_support;

use ha_core::LogIndex;
use ha_replicate::storage::memory::{MemoryDisk, MemoryStore};
use ha_replicate::storage::{LogStore, Recovered, StorageError};
use wal_support::*;

fn recover(disk: &MemoryDisk) -> (MemoryStore, Recovered) {
    let mut store = MemoryStore::open(disk.clone());
    let recovered = store.recover().unwrap();
    (store, recovered)
}

#[test]
fn a_crash_keeps_the_synced_state_and_the_chosen_prefix_of_later_writes() {
    // Unsynced writes, in order: entry 4, entry 5, truncate from 5, hard state, entry 5'.
    for choice in 0..12u64 {
        let disk = MemoryDisk::new();
        let (mut store, _) = recover(&disk);
        store.save_hard_state(&hard_state(1, Some("n1"))).unwrap();
        store.append(&entries(1, 1, 3)).unwrap();
        store.sync().unwrap();
        store.append(&entries(1, 4, 5)).unwrap();
        store.truncate_from(LogIndex(5)).unwrap();
        store.save_hard_state(&hard_state(2, Some("n2"))).unwrap();
        store.append(&entries(2, 5, 5)).unwrap();
        assert_eq!(disk.unsynced_writes(), 5);

        let kept = disk.crash(choice);
        assert_eq!(kept as u64, choice % 6);
        let (_, recovered) = recover(&disk);
        let (expected_entries, expected_hard_state) = match kept {
            0 => (entries(1, 1, 3), hard_state(1, Some("n1"))),
            1 => (entries(1, 1, 4), hard_state(1, Some("n1"))),
            2 => (entries(1, 1, 5), hard_state(1, Some("n1"))),
            3 => (entries(1, 1, 4), hard_state(1, Some("n1"))),
            4 => (entries(1, 1, 4), hard_state(2, Some("n2"))),
            _ => {
                let mut all = entries(1, 1, 4);
                all.extend(entries(2, 5, 5));
                (all, hard_state(2, Some("n2")))
            }
        };
        assert_eq!(recovered.entries, expected_entries, "kept {kept}");
        assert_eq!(recovered.hard_state, expected_hard_state, "kept {kept}");
        assert!(recovered.repairs.is_empty());
    }
}

#[test]
fn a_snapshot_is_durable_with_every_earlier_write() {
    let disk = MemoryDisk::new();
    let (mut store, _) = recover(&disk);
    store.append(&entries(1, 1, 6)).unwrap();
    store.save_hard_state(&hard_state(1, None)).unwrap();
    store.save_snapshot(&snapshot_meta(4, 1), b"four").unwrap();
    assert_eq!(disk.unsynced_writes(), 0);
    store.append(&entries(1, 7, 7)).unwrap();
    disk.crash(0);
    let (_, recovered) = recover(&disk);
    assert_eq!(
        recovered.snapshot,
        recovered_snapshot(snapshot_meta(4, 1), b"four")
    );
    assert_eq!(recovered.entries, entries(1, 5, 6));
    assert_eq!(recovered.hard_state, hard_state(1, None));
}

#[test]
fn recovery_makes_what_it_returns_durable() {
    let disk = MemoryDisk::new();
    let (mut store, _) = recover(&disk);
    store.append(&entries(1, 1, 3)).unwrap();
    // A restart without a power failure sees the unsynced writes (they are in the page
    // cache); once recovered and acted upon, a later power failure must not take them back.
    drop(store);
    let (_, recovered) = recover(&disk);
    assert_eq!(recovered.entries, entries(1, 1, 3));
    disk.crash(0);
    assert_eq!(recover(&disk).1.entries, entries(1, 1, 3));
}

#[test]
fn a_store_from_before_a_crash_or_a_reopen_is_refused() {
    let disk = MemoryDisk::new();
    let (mut before_crash, _) = recover(&disk);
    before_crash.append(&entries(1, 1, 1)).unwrap();
    disk.crash(1);
    assert!(matches!(
        before_crash.append(&entries(1, 2, 2)),
        Err(StorageError::Misuse(_))
    ));

    let (mut first, _) = recover(&disk);
    let (mut second, recovered) = recover(&disk);
    assert_eq!(recovered.entries, entries(1, 1, 1));
    assert!(matches!(first.sync(), Err(StorageError::Misuse(_))));
    second.append(&entries(1, 2, 2)).unwrap();
    second.sync().unwrap();
    assert_eq!(disk.unsynced_writes(), 0);
}
