//! `WalStore::reopen` (issue 14, item 5): after a failed write the store recovers from the disk
//! as a restart would, cutting a half-written record at the tail back to the last whole one,
//! keeping every synced entry, and takes writes again.

mod wal_support;

use std::os::unix::fs::FileExt;

use ha_core::{LogIndex, Term};
use ha_replicate::entry::{Entry, Payload};
use ha_replicate::hard_state::HardState;
use ha_replicate::storage::LogStore;
use ha_replicate::storage::wal::{FsyncPolicy, WalOptions, WalStore};

fn entry(index: u64) -> Entry {
    Entry {
        term: Term(2),
        index: LogIndex(index),
        payload: Payload::Command(vec![index as u8; 100]),
    }
}

fn segment(directory: &std::path::Path) -> std::path::PathBuf {
    wal_support::segment_files(directory)
        .pop()
        .expect("a segment")
}

#[test]
fn reopening_cuts_a_torn_tail_back_keeps_synced_entries_and_takes_writes_again() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let options = WalOptions {
        fsync_policy: FsyncPolicy::Manual,
        ..WalOptions::default()
    };
    let mut store = WalStore::open(directory.path(), options.clone()).expect("opens");
    store.recover().expect("recovers");
    let synced: Vec<Entry> = (1..=5).map(entry).collect();
    store.append(&synced).expect("appends");
    let hard_state = HardState {
        term: Term(2),
        voted_for: None,
    };
    store.save_hard_state(&hard_state).expect("saves");
    store.sync().expect("syncs");
    let length = wal_support::records_end(&segment(directory.path()));

    // What a write cut short by ENOSPC leaves: the start of a record after the last whole
    // one, over the zeros the store wrote ahead, and no more.
    std::fs::OpenOptions::new()
        .write(true)
        .open(segment(directory.path()))
        .expect("opens the segment")
        .write_all_at(&[40, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3], length)
        .expect("writes the torn record");

    // Closing the failed store cuts the segment back to the records it wrote (the torn
    // bytes go with the zeros), so recovery finds no damage; a killed process leaves them for
    // recovery to cut (`wal_damage.rs`).
    let recovered = store.reopen().expect("reopens");
    assert_eq!(
        recovered.entries, synced,
        "every synced entry, nothing else"
    );
    assert_eq!(recovered.hard_state, hard_state);
    assert_eq!(
        std::fs::metadata(segment(directory.path()))
            .expect("stat")
            .len(),
        length,
        "cut back to the last whole record"
    );

    // Writes go on after the last whole record, and a restart finds them.
    store.append(&[entry(6)]).expect("appends after reopening");
    store.sync().expect("syncs");
    drop(store);
    let mut restarted = WalStore::open(directory.path(), options).expect("opens");
    let recovered = restarted.recover().expect("recovers");
    assert_eq!(recovered.entries, (1..=6).map(entry).collect::<Vec<_>>());
    assert!(recovered.repairs.is_empty(), "{:?}", recovered.repairs);
}
