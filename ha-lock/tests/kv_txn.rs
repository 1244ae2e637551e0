//! Multi-key transactions, prefix deletes and paged ranges, through the lock table's `apply`
//! and `query`: which branch runs, that a refused transaction changes nothing, that one
//! command's changes reach a watcher as one group, and that paging visits every key once.

use ha_core::LogIndex;
use ha_lock::{
    Change, DELETE_PREFIX_KEYS_MAX, KeyValue, KvLockTable, KvPage, LeaseId, LockCommand,
    LockLimits, LockQuery, LockQueryResponse, LockResponse, TXN_OPS_MAX, Txn, TxnOp, VersionCmp,
};

fn put(key: &str, value: &str) -> LockCommand {
    LockCommand::Put {
        key: key.into(),
        value: value.into(),
        expected_version: None,
        lease: None,
    }
}

fn value(table: &KvLockTable, key: &str) -> Option<(Vec<u8>, u64)> {
    match table.query(&LockQuery::Get { key: key.into() }) {
        LockQueryResponse::Value(found) => found.map(|kv| (kv.value, kv.version)),
        other => panic!("get answered {other:?}"),
    }
}

fn page(table: &KvLockTable, prefix: &str, start_after: Option<&str>, limit: usize) -> KvPage {
    match table.query(&LockQuery::RangePage {
        prefix: prefix.into(),
        start_after: start_after.map(str::to_string),
        limit,
    }) {
        LockQueryResponse::Page(page) => page,
        other => panic!("range page answered {other:?}"),
    }
}

#[test]
fn every_comparison_must_hold_for_the_success_branch() {
    let mut table = KvLockTable::default();
    table.apply(LogIndex(1), put("/a", "1"));
    table.apply(LogIndex(2), put("/b", "1"));
    let swap = |a_version, b_version| {
        Txn::new()
            .when("/a", VersionCmp::Equal, a_version)
            .when("/b", VersionCmp::Equal, b_version)
            .when("/c", VersionCmp::Equal, 0)
            .put("/a", "2")
            .delete("/b")
            .put("/c", "new")
            .otherwise(TxnOp::Put {
                key: "/conflicts".into(),
                value: b"1".to_vec(),
                lease: None,
            })
            .into_command()
    };
    // /b is at 2, not 1: the failure branch runs, and only it.
    assert_eq!(
        table.apply(LogIndex(3), swap(1, 1)),
        LockResponse::Txn {
            succeeded: false,
            version: 3
        }
    );
    assert_eq!(value(&table, "/a"), Some((b"1".to_vec(), 1)));
    assert_eq!(value(&table, "/conflicts"), Some((b"1".to_vec(), 3)));
    // Both hold: every write of the success branch, all at the command's index.
    assert_eq!(
        table.apply(LogIndex(4), swap(1, 2)),
        LockResponse::Txn {
            succeeded: true,
            version: 4
        }
    );
    assert_eq!(value(&table, "/a"), Some((b"2".to_vec(), 4)));
    assert_eq!(value(&table, "/b"), None);
    assert_eq!(value(&table, "/c"), Some((b"new".to_vec(), 4)));
    // The other comparisons.
    let holds = |cmp, version| {
        let txn = Txn::new().when("/a", cmp, version).into_command();
        match KvLockTable::apply(&mut table.clone(), LogIndex(9), txn) {
            LockResponse::Txn { succeeded, .. } => succeeded,
            other => panic!("{other:?}"),
        }
    };
    assert!(holds(VersionCmp::NotEqual, 0), "exists");
    assert!(holds(VersionCmp::Greater, 3));
    assert!(!holds(VersionCmp::Greater, 4));
    assert!(holds(VersionCmp::Less, 5));
    assert!(!holds(VersionCmp::Less, 4));
}

#[test]
fn a_refused_transaction_changes_nothing() {
    let mut limits = LockLimits::default();
    limits.keys = 3;
    let mut table = KvLockTable::with_limits(limits);
    table.apply(LogIndex(1), put("/a", "1"));
    table.apply(LogIndex(2), put("/b", "1"));
    let before = table.clone();
    // Three new keys do not fit in a table of 3 holding 2.
    let too_many = Txn::new().put("/x", "1").put("/y", "1").put("/a", "2");
    assert!(matches!(
        table.apply(LogIndex(3), too_many.into_command()),
        LockResponse::LimitReached { .. }
    ));
    // A lease that does not exist.
    let no_lease = Txn::new()
        .put("/a", "3")
        .put_with_lease("/z", "1", LeaseId(77));
    assert_eq!(
        table.apply(LogIndex(4), no_lease.into_command()),
        LockResponse::LeaseNotFound { lease: LeaseId(77) }
    );
    // A key written twice, too many operations, an empty key.
    for bad in [
        Txn::new().put("/a", "1").delete("/a"),
        (0..=TXN_OPS_MAX).fold(Txn::new(), |txn, n| txn.put(format!("/k{n}"), "v")),
        Txn::new().when("", VersionCmp::Equal, 0),
    ] {
        assert!(
            matches!(
                table.apply(LogIndex(5), bad.into_command()),
                LockResponse::Invalid { .. }
            ),
            "refused as invalid"
        );
    }
    assert_eq!(table, before, "nothing changed");
    // A delete makes room for a put in the same transaction.
    let replace = Txn::new()
        .delete("/b")
        .put("/x", "1")
        .put("/y", "1")
        .put("/z", "1");
    assert!(matches!(
        table.apply(LogIndex(6), replace.into_command()),
        LockResponse::LimitReached { .. }
    ));
    let replace = Txn::new().put("/x", "1").put("/y", "1").delete("/b");
    assert_eq!(
        table.apply(LogIndex(7), replace.into_command()),
        LockResponse::Txn {
            succeeded: true,
            version: 7
        }
    );
}

#[test]
fn a_transactions_changes_reach_a_watcher_as_one_group() {
    let mut table = KvLockTable::default();
    table.apply(LogIndex(1), put("/w/a", "1"));
    let txn = Txn::new().put("/w/b", "2").put("/w/c", "3").delete("/w/a");
    table.apply(LogIndex(2), txn.into_command());
    table.apply(LogIndex(3), put("/w/d", "4"));
    let changes = table.query(&LockQuery::Changes {
        prefix: "/w/".into(),
        after_version: 1,
        limit: 1,
    });
    let change = |key: &str, value: Option<&str>| Change {
        version: 2,
        key: key.into(),
        value: value.map(Vec::from),
    };
    assert_eq!(
        changes,
        LockQueryResponse::Changes(vec![
            change("/w/a", None),
            change("/w/b", Some("2")),
            change("/w/c", Some("3")),
        ])
    );
}

#[test]
fn a_prefix_delete_is_bounded_per_command_and_says_when_more_remain() {
    let mut table = KvLockTable::default();
    let total = DELETE_PREFIX_KEYS_MAX + 5;
    for n in 0..total {
        table.apply(LogIndex(n as u64 + 1), put(&format!("/tmp/{n:05}"), "x"));
    }
    table.apply(LogIndex(10_000), put("/keep", "x"));
    table.apply(LogIndex(10_001), put("/tmp", "x")); // the prefix itself is a key under it
    let delete = || LockCommand::DeletePrefix {
        prefix: "/tmp".into(),
    };
    assert_eq!(
        table.apply(LogIndex(10_002), delete()),
        LockResponse::DeletedPrefix {
            deleted: DELETE_PREFIX_KEYS_MAX as u64,
            more: true
        }
    );
    assert_eq!(
        table.apply(LogIndex(10_003), delete()),
        LockResponse::DeletedPrefix {
            deleted: 6,
            more: false
        }
    );
    assert_eq!(
        table.apply(LogIndex(10_004), delete()),
        LockResponse::DeletedPrefix {
            deleted: 0,
            more: false
        }
    );
    assert!(value(&table, "/keep").is_some());
    assert_eq!(page(&table, "", None, 10).values.len(), 1);
}

#[test]
fn paging_visits_every_key_under_the_prefix_once_in_order() {
    let mut table = KvLockTable::default();
    let mut expected = Vec::new();
    for n in 0..25u64 {
        let key = format!("/p/{n:02}");
        table.apply(LogIndex(n + 1), put(&key, "v"));
        expected.push(key);
    }
    table.apply(LogIndex(100), put("/o", "before"));
    table.apply(LogIndex(101), put("/q", "after"));
    let mut seen: Vec<String> = Vec::new();
    let mut start_after: Option<String> = None;
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages <= 10, "paging ends");
        let found = page(&table, "/p/", start_after.as_deref(), 7);
        seen.extend(found.values.iter().map(|kv: &KeyValue| kv.key.clone()));
        if !found.more {
            break;
        }
        start_after = seen.last().cloned();
    }
    assert_eq!(seen, expected);
    assert_eq!(pages, 4, "25 keys in pages of 7");
    // A start before the prefix starts at the prefix; a limit of 0 still makes progress.
    assert_eq!(page(&table, "/p/", Some("/a"), 1).values[0].key, "/p/00");
    assert_eq!(page(&table, "/p/", None, 0).values.len(), 1);
}
