//! Table-driven tests of `KvLockTable` through `apply` and `query` only: each step is a command
//! applied at an explicit log index (the table's only notion of time) and the exact answer it
//! must get, followed by queries of the resulting state.

use ha_core::{LogIndex, StateMachine, StateMachineError};
use ha_lock::{
    CHANGES_MAX, Change, Command, FencingToken, KEY_BYTES_MAX, KeyValue, KvLockTable, LeaseId,
    LeaseState, LockCommand, LockQuery, LockQueryResponse, LockResponse, LockState,
    QUERY_RESULTS_MAX, Query, QueryResponse, Response, SessionId, VALUE_BYTES_MAX, WaitState,
    WithLocks,
};

/// Applies every step at its index and checks its answer, naming the step that disagreed.
fn run(table: &mut KvLockTable, steps: &[(u64, LockCommand, LockResponse)]) {
    for (index, command, expected) in steps {
        let answer = table.apply(LogIndex(*index), command.clone());
        assert_eq!(&answer, expected, "at index {index}: {command:?}");
    }
}

fn put(key: &str, value: &str) -> LockCommand {
    LockCommand::Put {
        key: key.into(),
        value: value.into(),
        expected_version: None,
        lease: None,
    }
}

fn put_if(key: &str, value: &str, expected_version: u64) -> LockCommand {
    LockCommand::Put {
        key: key.into(),
        value: value.into(),
        expected_version: Some(expected_version),
        lease: None,
    }
}

fn put_under(key: &str, value: &str, lease: LeaseId) -> LockCommand {
    LockCommand::Put {
        key: key.into(),
        value: value.into(),
        expected_version: None,
        lease: Some(lease),
    }
}

fn delete(key: &str) -> LockCommand {
    LockCommand::Delete {
        key: key.into(),
        expected_version: None,
    }
}

fn delete_if(key: &str, expected_version: u64) -> LockCommand {
    LockCommand::Delete {
        key: key.into(),
        expected_version: Some(expected_version),
    }
}

fn grant(session: SessionId) -> LockCommand {
    LockCommand::LeaseGrant {
        ttl_ms: 5_000,
        session,
    }
}

fn granted(lease: LeaseId) -> LockResponse {
    LockResponse::LeaseGranted {
        lease,
        ttl_ms: 5_000,
    }
}

fn acquire(name: &str, session: SessionId, lease: LeaseId) -> LockCommand {
    LockCommand::Acquire {
        name: name.into(),
        session,
        lease,
        wait: true,
    }
}

fn try_acquire(name: &str, session: SessionId, lease: LeaseId) -> LockCommand {
    LockCommand::Acquire {
        name: name.into(),
        session,
        lease,
        wait: false,
    }
}

fn release(name: &str, token: u64) -> LockCommand {
    LockCommand::Release {
        name: name.into(),
        token: FencingToken(token),
    }
}

fn cancel(name: &str, session: SessionId) -> LockCommand {
    LockCommand::CancelWait {
        name: name.into(),
        session,
    }
}

fn get(table: &KvLockTable, key: &str) -> Option<KeyValue> {
    match table.query(&LockQuery::Get { key: key.into() }) {
        LockQueryResponse::Value(value) => value,
        other => panic!("get {key} answered {other:?}"),
    }
}

fn value(key: &str, value: &str, version: u64, lease: Option<LeaseId>) -> Option<KeyValue> {
    Some(KeyValue {
        key: key.into(),
        value: value.into(),
        version,
        lease,
    })
}

fn lock(table: &KvLockTable, name: &str) -> Option<LockState> {
    match table.query(&LockQuery::Lock { name: name.into() }) {
        LockQueryResponse::Lock(state) => state,
        other => panic!("lock {name} answered {other:?}"),
    }
}

fn wait(table: &KvLockTable, name: &str, session: SessionId, lease: LeaseId) -> WaitState {
    match table.query(&LockQuery::Wait {
        name: name.into(),
        session,
        lease,
    }) {
        LockQueryResponse::Wait(state) => state,
        other => panic!("wait {name} answered {other:?}"),
    }
}

#[test]
fn the_wait_query_answers_granted_waiting_or_not_waiting_for_one_session_and_lease() {
    let mut table = KvLockTable::default();
    run(
        &mut table,
        &[
            (1, grant(SessionId(10)), granted(LeaseId(1))),
            (2, grant(SessionId(20)), granted(LeaseId(2))),
            (3, grant(SessionId(30)), granted(LeaseId(3))),
            (
                4,
                acquire("l", SessionId(10), LeaseId(1)),
                LockResponse::Granted {
                    token: FencingToken(4),
                },
            ),
            (
                5,
                acquire("l", SessionId(20), LeaseId(2)),
                LockResponse::Queued { position: 0 },
            ),
            (
                6,
                acquire("l", SessionId(30), LeaseId(3)),
                LockResponse::Queued { position: 1 },
            ),
        ],
    );
    assert_eq!(
        wait(&table, "l", SessionId(10), LeaseId(1)),
        WaitState::Granted {
            token: FencingToken(4)
        }
    );
    assert_eq!(
        wait(&table, "l", SessionId(20), LeaseId(2)),
        WaitState::Waiting
    );
    assert_eq!(
        wait(&table, "l", SessionId(30), LeaseId(3)),
        WaitState::Waiting
    );
    // The wrong lease, an unknown session, an unknown lock: not waiting.
    assert_eq!(
        wait(&table, "l", SessionId(10), LeaseId(2)),
        WaitState::NotWaiting
    );
    assert_eq!(
        wait(&table, "l", SessionId(20), LeaseId(3)),
        WaitState::NotWaiting
    );
    assert_eq!(
        wait(&table, "l", SessionId(40), LeaseId(3)),
        WaitState::NotWaiting
    );
    assert_eq!(
        wait(&table, "m", SessionId(20), LeaseId(2)),
        WaitState::NotWaiting
    );
    // A cancelled wait is gone; a release hands the lock to the next waiter, with its token.
    run(
        &mut table,
        &[
            (7, cancel("l", SessionId(20)), LockResponse::Cancelled),
            (8, release("l", 4), LockResponse::Released),
        ],
    );
    assert_eq!(
        wait(&table, "l", SessionId(20), LeaseId(2)),
        WaitState::NotWaiting
    );
    assert_eq!(
        wait(&table, "l", SessionId(10), LeaseId(1)),
        WaitState::NotWaiting
    );
    assert_eq!(
        wait(&table, "l", SessionId(30), LeaseId(3)),
        WaitState::Granted {
            token: FencingToken(8)
        }
    );
    // A lease's end ends its waits.
    run(
        &mut table,
        &[
            (
                9,
                acquire("l", SessionId(20), LeaseId(2)),
                LockResponse::Queued { position: 0 },
            ),
            (
                10,
                LockCommand::LeaseRevoke { lease: LeaseId(2) },
                LockResponse::LeaseEnded {
                    lease: LeaseId(2),
                    released_locks: vec![],
                    deleted_keys: 0,
                },
            ),
        ],
    );
    assert_eq!(
        wait(&table, "l", SessionId(20), LeaseId(2)),
        WaitState::NotWaiting
    );
}

fn lease(table: &KvLockTable, lease: LeaseId) -> Option<LeaseState> {
    match table.query(&LockQuery::Lease { lease }) {
        LockQueryResponse::Lease(state) => state,
        other => panic!("lease {lease} answered {other:?}"),
    }
}

fn changes(
    table: &KvLockTable,
    prefix: &str,
    after_version: u64,
    limit: usize,
) -> LockQueryResponse {
    table.query(&LockQuery::Changes {
        prefix: prefix.into(),
        after_version,
        limit,
    })
}

fn change(version: u64, key: &str, value: Option<&str>) -> Change {
    Change {
        version,
        key: key.into(),
        value: value.map(Vec::from),
    }
}

fn range(table: &KvLockTable, prefix: &str, limit: usize) -> Vec<String> {
    match table.query(&LockQuery::Range {
        prefix: prefix.into(),
        limit,
    }) {
        LockQueryResponse::Values(values) => values.into_iter().map(|value| value.key).collect(),
        other => panic!("range {prefix} answered {other:?}"),
    }
}

fn ended(lease: LeaseId, released_locks: &[&str], deleted_keys: usize) -> LockResponse {
    LockResponse::LeaseEnded {
        lease,
        released_locks: released_locks.iter().map(|name| name.to_string()).collect(),
        deleted_keys,
    }
}

#[test]
fn a_keys_version_is_the_index_of_the_write_that_set_it() {
    let mut table = KvLockTable::default();
    // Indexes need not be consecutive: other commands of the host share the log.
    run(
        &mut table,
        &[
            (5, put("k", "one"), LockResponse::Put { version: 5 }),
            (9, put("k", "two"), LockResponse::Put { version: 9 }),
        ],
    );
    assert_eq!(get(&table, "k"), value("k", "two", 9, None));
    assert_eq!(get(&table, "absent"), None);
    run(
        &mut table,
        &[
            (12, delete("k"), LockResponse::Deleted { existed: true }),
            (13, delete("k"), LockResponse::Deleted { existed: false }),
        ],
    );
    assert_eq!(get(&table, "k"), None);
    // A key written again after a delete starts from the new index, not from where it was.
    run(
        &mut table,
        &[(20, put("k", "three"), LockResponse::Put { version: 20 })],
    );
    assert_eq!(get(&table, "k"), value("k", "three", 20, None));
}

#[test]
fn expected_version_zero_creates_only() {
    let mut table = KvLockTable::default();
    run(
        &mut table,
        &[
            (1, put_if("k", "first", 0), LockResponse::Put { version: 1 }),
            (
                2,
                put_if("k", "second", 0),
                LockResponse::VersionMismatch { current: 1 },
            ),
            (3, delete("k"), LockResponse::Deleted { existed: true }),
            (4, put_if("k", "third", 0), LockResponse::Put { version: 4 }),
        ],
    );
    assert_eq!(get(&table, "k"), value("k", "third", 4, None));
}

#[test]
fn a_compare_and_swap_mismatch_reports_the_current_version_and_changes_nothing() {
    // (what, the command, its answer): "k" was written at index 3; "absent" never was.
    let cases = [
        (
            "put with an old version",
            put_if("k", "new", 2),
            LockResponse::VersionMismatch { current: 3 },
        ),
        (
            "put with a future version",
            put_if("k", "new", 4),
            LockResponse::VersionMismatch { current: 3 },
        ),
        (
            "put expecting an absent key to exist",
            put_if("absent", "new", 3),
            LockResponse::VersionMismatch { current: 0 },
        ),
        (
            "delete with an old version",
            delete_if("k", 1),
            LockResponse::VersionMismatch { current: 3 },
        ),
        (
            "delete expecting an absent key to exist",
            delete_if("absent", 3),
            LockResponse::VersionMismatch { current: 0 },
        ),
        (
            "create-only delete of an existing key",
            delete_if("k", 0),
            LockResponse::VersionMismatch { current: 3 },
        ),
    ];
    for (what, command, expected) in cases {
        let mut table = KvLockTable::default();
        run(
            &mut table,
            &[(3, put("k", "old"), LockResponse::Put { version: 3 })],
        );
        let before = table.clone();
        assert_eq!(table.apply(LogIndex(10), command), expected, "{what}");
        assert_eq!(table, before, "{what} changed the table");
        assert_eq!(
            changes(&table, "", 3, 10),
            LockQueryResponse::Changes(vec![]),
            "{what}"
        );
    }
}

#[test]
fn a_matching_compare_and_swap_succeeds() {
    let mut table = KvLockTable::default();
    run(
        &mut table,
        &[
            (3, put("k", "old"), LockResponse::Put { version: 3 }),
            (4, put_if("k", "new", 3), LockResponse::Put { version: 4 }),
            // A delete of an absent key expecting it absent is allowed, and deletes nothing.
            (
                5,
                delete_if("absent", 0),
                LockResponse::Deleted { existed: false },
            ),
            (
                6,
                delete_if("k", 4),
                LockResponse::Deleted { existed: true },
            ),
        ],
    );
    assert_eq!(get(&table, "k"), None);
}

#[test]
fn keys_bound_to_a_lease_are_deleted_when_it_is_revoked() {
    let mut table = KvLockTable::default();
    run(
        &mut table,
        &[
            (1, grant(SessionId(1)), granted(LeaseId(1))),
            (
                2,
                put_under("a", "x", LeaseId(1)),
                LockResponse::Put { version: 2 },
            ),
            (
                3,
                put_under("b", "y", LeaseId(1)),
                LockResponse::Put { version: 3 },
            ),
            (4, put("c", "z"), LockResponse::Put { version: 4 }),
        ],
    );
    assert_eq!(get(&table, "a"), value("a", "x", 2, Some(LeaseId(1))));
    run(
        &mut table,
        &[(
            5,
            LockCommand::LeaseRevoke { lease: LeaseId(1) },
            ended(LeaseId(1), &[], 2),
        )],
    );
    assert_eq!(get(&table, "a"), None);
    assert_eq!(get(&table, "b"), None);
    assert_eq!(get(&table, "c"), value("c", "z", 4, None));
    assert_eq!(lease(&table, LeaseId(1)), None);
    // Watchers see the deletes at the index of the revoke.
    assert_eq!(
        changes(&table, "", 4, 10),
        LockQueryResponse::Changes(vec![change(5, "a", None), change(5, "b", None)])
    );
}

#[test]
fn keys_bound_to_a_lease_are_deleted_when_it_expires() {
    let mut table = KvLockTable::default();
    run(
        &mut table,
        &[
            (1, grant(SessionId(1)), granted(LeaseId(1))),
            (
                2,
                put_under("a", "x", LeaseId(1)),
                LockResponse::Put { version: 2 },
            ),
            (
                3,
                LockCommand::LeaseExpire {
                    lease: LeaseId(1),
                    renewals: 0,
                },
                ended(LeaseId(1), &[], 1),
            ),
        ],
    );
    assert_eq!(get(&table, "a"), None);
    assert_eq!(
        table.query(&LockQuery::Leases),
        LockQueryResponse::Leases(vec![])
    );
}

#[test]
fn a_key_rebound_or_unbound_by_a_later_put_follows_its_latest_lease() {
    let mut table = KvLockTable::default();
    run(
        &mut table,
        &[
            (1, grant(SessionId(1)), granted(LeaseId(1))),
            (2, grant(SessionId(2)), granted(LeaseId(2))),
            (
                3,
                put_under("moved", "x", LeaseId(1)),
                LockResponse::Put { version: 3 },
            ),
            (
                4,
                put_under("moved", "x", LeaseId(2)),
                LockResponse::Put { version: 4 },
            ),
            (
                5,
                put_under("freed", "y", LeaseId(1)),
                LockResponse::Put { version: 5 },
            ),
            (6, put("freed", "y"), LockResponse::Put { version: 6 }),
            // Neither key is bound to lease 1 any more.
            (
                7,
                LockCommand::LeaseRevoke { lease: LeaseId(1) },
                ended(LeaseId(1), &[], 0),
            ),
        ],
    );
    assert_eq!(
        get(&table, "moved"),
        value("moved", "x", 4, Some(LeaseId(2)))
    );
    assert_eq!(get(&table, "freed"), value("freed", "y", 6, None));
    run(
        &mut table,
        &[(
            8,
            LockCommand::LeaseRevoke { lease: LeaseId(2) },
            ended(LeaseId(2), &[], 1),
        )],
    );
    assert_eq!(get(&table, "moved"), None);
    assert_eq!(get(&table, "freed"), value("freed", "y", 6, None));
}

#[test]
fn a_key_deleted_before_its_lease_ends_is_not_counted_again() {
    let mut table = KvLockTable::default();
    run(
        &mut table,
        &[
            (1, grant(SessionId(1)), granted(LeaseId(1))),
            (
                2,
                put_under("a", "x", LeaseId(1)),
                LockResponse::Put { version: 2 },
            ),
            (3, delete("a"), LockResponse::Deleted { existed: true }),
            (4, put("a", "plain"), LockResponse::Put { version: 4 }),
            (
                5,
                LockCommand::LeaseRevoke { lease: LeaseId(1) },
                ended(LeaseId(1), &[], 0),
            ),
        ],
    );
    assert_eq!(get(&table, "a"), value("a", "plain", 4, None));
}

#[test]
fn a_put_under_an_unknown_or_ended_lease_is_refused_and_changes_nothing() {
    let mut table = KvLockTable::default();
    run(
        &mut table,
        &[
            (1, grant(SessionId(1)), granted(LeaseId(1))),
            (
                2,
                LockCommand::LeaseRevoke { lease: LeaseId(1) },
                ended(LeaseId(1), &[], 0),
            ),
            (3, put("k", "old"), LockResponse::Put { version: 3 }),
        ],
    );
    let before = table.clone();
    run(
        &mut table,
        &[
            (
                4,
                put_under("k", "new", LeaseId(1)),
                LockResponse::LeaseNotFound { lease: LeaseId(1) },
            ),
            (
                5,
                put_under("k", "new", LeaseId(99)),
                LockResponse::LeaseNotFound { lease: LeaseId(99) },
            ),
        ],
    );
    assert_eq!(table, before);
}

#[test]
fn an_expiry_that_raced_a_keep_alive_is_ignored() {
    let mut table = KvLockTable::default();
    let expire = |renewals| LockCommand::LeaseExpire {
        lease: LeaseId(1),
        renewals,
    };
    run(
        &mut table,
        &[
            (1, grant(SessionId(1)), granted(LeaseId(1))),
            (
                2,
                put_under("k", "v", LeaseId(1)),
                LockResponse::Put { version: 2 },
            ),
            (
                3,
                LockCommand::LeaseKeepAlive { lease: LeaseId(1) },
                LockResponse::LeaseRenewed {
                    lease: LeaseId(1),
                    renewals: 1,
                },
            ),
            // The leader decided on renewal count 0; the keep-alive got in first.
            (
                4,
                expire(0),
                LockResponse::LeaseStillAlive { lease: LeaseId(1) },
            ),
            // A count the lease has not reached is no more current than an old one.
            (
                5,
                expire(2),
                LockResponse::LeaseStillAlive { lease: LeaseId(1) },
            ),
        ],
    );
    assert_eq!(
        lease(&table, LeaseId(1)),
        Some(LeaseState {
            lease: LeaseId(1),
            session: SessionId(1),
            ttl_ms: 5_000,
            renewals: 1
        })
    );
    assert_eq!(get(&table, "k"), value("k", "v", 2, Some(LeaseId(1))));
    run(
        &mut table,
        &[
            (6, expire(1), ended(LeaseId(1), &[], 1)),
            // Once ended, the lease is gone for every lease command.
            (
                7,
                expire(1),
                LockResponse::LeaseNotFound { lease: LeaseId(1) },
            ),
            (
                8,
                LockCommand::LeaseKeepAlive { lease: LeaseId(1) },
                LockResponse::LeaseNotFound { lease: LeaseId(1) },
            ),
            (
                9,
                LockCommand::LeaseRevoke { lease: LeaseId(1) },
                LockResponse::LeaseNotFound { lease: LeaseId(1) },
            ),
        ],
    );
}

#[test]
fn lease_ids_are_grant_indexes_and_every_lease_is_listed() {
    let mut table = KvLockTable::default();
    run(
        &mut table,
        &[
            (4, grant(SessionId(7)), granted(LeaseId(4))),
            (
                6,
                LockCommand::LeaseGrant {
                    ttl_ms: 10,
                    session: SessionId(7),
                },
                LockResponse::LeaseGranted {
                    lease: LeaseId(6),
                    ttl_ms: 10,
                },
            ),
        ],
    );
    let state = |lease, ttl_ms| LeaseState {
        lease,
        session: SessionId(7),
        ttl_ms,
        renewals: 0,
    };
    assert_eq!(
        table.query(&LockQuery::Leases),
        LockQueryResponse::Leases(vec![state(LeaseId(4), 5_000), state(LeaseId(6), 10)])
    );
}

#[test]
fn waiters_queue_in_arrival_order_and_are_granted_in_that_order() {
    let mut table = KvLockTable::default();
    run(
        &mut table,
        &[
            (1, grant(SessionId(1)), granted(LeaseId(1))),
            (2, grant(SessionId(2)), granted(LeaseId(2))),
            (3, grant(SessionId(3)), granted(LeaseId(3))),
            (4, grant(SessionId(4)), granted(LeaseId(4))),
            (
                5,
                acquire("l", SessionId(1), LeaseId(1)),
                LockResponse::Granted {
                    token: FencingToken(5),
                },
            ),
            (
                6,
                acquire("l", SessionId(3), LeaseId(3)),
                LockResponse::Queued { position: 0 },
            ),
            (
                7,
                acquire("l", SessionId(2), LeaseId(2)),
                LockResponse::Queued { position: 1 },
            ),
            (
                8,
                acquire("l", SessionId(4), LeaseId(4)),
                LockResponse::Queued { position: 2 },
            ),
            // Asking again while waiting (a retry) keeps the place in line.
            (
                9,
                acquire("l", SessionId(2), LeaseId(2)),
                LockResponse::Queued { position: 1 },
            ),
        ],
    );
    assert_eq!(
        lock(&table, "l"),
        Some(LockState {
            holder: SessionId(1),
            lease: LeaseId(1),
            token: FencingToken(5),
            waiters: vec![
                (SessionId(3), LeaseId(3)),
                (SessionId(2), LeaseId(2)),
                (SessionId(4), LeaseId(4))
            ],
        })
    );
    // Each release passes the lock to the head of the line with the release's index.
    run(&mut table, &[(10, release("l", 5), LockResponse::Released)]);
    assert_eq!(
        lock(&table, "l"),
        Some(LockState {
            holder: SessionId(3),
            lease: LeaseId(3),
            token: FencingToken(10),
            waiters: vec![(SessionId(2), LeaseId(2)), (SessionId(4), LeaseId(4))],
        })
    );
    run(
        &mut table,
        &[
            (11, release("l", 10), LockResponse::Released),
            (12, release("l", 11), LockResponse::Released),
        ],
    );
    assert_eq!(
        lock(&table, "l"),
        Some(LockState {
            holder: SessionId(4),
            lease: LeaseId(4),
            token: FencingToken(12),
            waiters: vec![],
        })
    );
    run(
        &mut table,
        &[(13, release("l", 12), LockResponse::Released)],
    );
    assert_eq!(lock(&table, "l"), None);
}

#[test]
fn a_release_with_a_token_that_is_not_the_holders_changes_nothing() {
    let mut table = KvLockTable::default();
    run(
        &mut table,
        &[
            (1, grant(SessionId(1)), granted(LeaseId(1))),
            (2, grant(SessionId(2)), granted(LeaseId(2))),
            (
                3,
                acquire("l", SessionId(1), LeaseId(1)),
                LockResponse::Granted {
                    token: FencingToken(3),
                },
            ),
            (
                4,
                acquire("l", SessionId(2), LeaseId(2)),
                LockResponse::Queued { position: 0 },
            ),
            (5, release("l", 3), LockResponse::Released),
        ],
    );
    // Session 1's old token is stale now that 2 holds the lock with token 5.
    let before = table.clone();
    let cases = [
        ("the previous holder's token", release("l", 3)),
        ("a token never issued", release("l", 4)),
        ("a token from the future", release("l", 6)),
        ("the holder's token on another lock", release("other", 5)),
    ];
    for (what, command) in cases {
        assert_eq!(
            table.apply(LogIndex(6), command),
            LockResponse::NotHolder,
            "{what}"
        );
        assert_eq!(table, before, "{what} changed the table");
    }
}

#[test]
fn a_release_skips_waiters_whose_lease_ended_and_grants_a_larger_token() {
    let mut table = KvLockTable::default();
    run(
        &mut table,
        &[
            (1, grant(SessionId(1)), granted(LeaseId(1))),
            (2, grant(SessionId(2)), granted(LeaseId(2))),
            (3, grant(SessionId(3)), granted(LeaseId(3))),
            (
                4,
                acquire("l", SessionId(1), LeaseId(1)),
                LockResponse::Granted {
                    token: FencingToken(4),
                },
            ),
            (
                5,
                acquire("l", SessionId(2), LeaseId(2)),
                LockResponse::Queued { position: 0 },
            ),
            (
                6,
                acquire("l", SessionId(3), LeaseId(3)),
                LockResponse::Queued { position: 1 },
            ),
            (
                7,
                LockCommand::LeaseExpire {
                    lease: LeaseId(2),
                    renewals: 0,
                },
                ended(LeaseId(2), &[], 0),
            ),
        ],
    );
    // The first waiter's lease ended: it is out of the line, and the next one moves up.
    assert_eq!(
        lock(&table, "l").map(|state| state.waiters),
        Some(vec![(SessionId(3), LeaseId(3))])
    );
    run(&mut table, &[(8, release("l", 4), LockResponse::Released)]);
    let state = lock(&table, "l").expect("passed on");
    assert_eq!(
        (state.holder, state.lease, state.token),
        (SessionId(3), LeaseId(3), FencingToken(8))
    );
    assert!(state.token > FencingToken(4));
}

#[test]
fn a_lease_end_releases_every_lock_held_under_it_and_removes_its_waits() {
    // The same scenario ended by revoke and by expiry.
    let endings = [
        LockCommand::LeaseRevoke { lease: LeaseId(1) },
        LockCommand::LeaseExpire {
            lease: LeaseId(1),
            renewals: 0,
        },
    ];
    for ending in endings {
        let mut table = KvLockTable::default();
        run(
            &mut table,
            &[
                (1, grant(SessionId(1)), granted(LeaseId(1))),
                (2, grant(SessionId(2)), granted(LeaseId(2))),
                (3, grant(SessionId(3)), granted(LeaseId(3))),
                // Session 1 holds a and b, and waits for c (held by 2).
                (
                    4,
                    acquire("b", SessionId(1), LeaseId(1)),
                    LockResponse::Granted {
                        token: FencingToken(4),
                    },
                ),
                (
                    5,
                    acquire("a", SessionId(1), LeaseId(1)),
                    LockResponse::Granted {
                        token: FencingToken(5),
                    },
                ),
                (
                    6,
                    acquire("c", SessionId(2), LeaseId(2)),
                    LockResponse::Granted {
                        token: FencingToken(6),
                    },
                ),
                (
                    7,
                    acquire("c", SessionId(1), LeaseId(1)),
                    LockResponse::Queued { position: 0 },
                ),
                // Session 3 waits for a behind nobody, and for c behind 1.
                (
                    8,
                    acquire("a", SessionId(3), LeaseId(3)),
                    LockResponse::Queued { position: 0 },
                ),
                (
                    9,
                    acquire("c", SessionId(3), LeaseId(3)),
                    LockResponse::Queued { position: 1 },
                ),
                (10, ending.clone(), ended(LeaseId(1), &["a", "b"], 0)),
            ],
        );
        assert_eq!(
            lock(&table, "a"),
            Some(LockState {
                holder: SessionId(3),
                lease: LeaseId(3),
                token: FencingToken(10),
                waiters: vec![],
            }),
            "{ending:?}"
        );
        assert_eq!(lock(&table, "b"), None, "{ending:?}");
        assert_eq!(
            lock(&table, "c"),
            Some(LockState {
                holder: SessionId(2),
                lease: LeaseId(2),
                token: FencingToken(6),
                waiters: vec![(SessionId(3), LeaseId(3))],
            }),
            "{ending:?}"
        );
    }
}

#[test]
fn a_lease_end_only_releases_locks_held_under_that_lease() {
    let mut table = KvLockTable::default();
    run(
        &mut table,
        &[
            // One session, two leases: ending one keeps the locks under the other.
            (1, grant(SessionId(1)), granted(LeaseId(1))),
            (2, grant(SessionId(1)), granted(LeaseId(2))),
            (
                3,
                acquire("kept", SessionId(1), LeaseId(2)),
                LockResponse::Granted {
                    token: FencingToken(3),
                },
            ),
            (
                4,
                acquire("lost", SessionId(1), LeaseId(1)),
                LockResponse::Granted {
                    token: FencingToken(4),
                },
            ),
            (
                5,
                LockCommand::LeaseRevoke { lease: LeaseId(1) },
                ended(LeaseId(1), &["lost"], 0),
            ),
        ],
    );
    assert_eq!(
        lock(&table, "kept").map(|state| state.token),
        Some(FencingToken(3))
    );
    assert_eq!(lock(&table, "lost"), None);
}

#[test]
fn a_lock_released_before_its_lease_ends_is_not_released_again() {
    let mut table = KvLockTable::default();
    run(
        &mut table,
        &[
            (1, grant(SessionId(1)), granted(LeaseId(1))),
            (2, grant(SessionId(2)), granted(LeaseId(2))),
            (
                3,
                acquire("l", SessionId(1), LeaseId(1)),
                LockResponse::Granted {
                    token: FencingToken(3),
                },
            ),
            (4, release("l", 3), LockResponse::Released),
            (
                5,
                acquire("l", SessionId(2), LeaseId(2)),
                LockResponse::Granted {
                    token: FencingToken(5),
                },
            ),
            // Lease 1 no longer holds l: its end must not take it from session 2.
            (
                6,
                LockCommand::LeaseRevoke { lease: LeaseId(1) },
                ended(LeaseId(1), &[], 0),
            ),
        ],
    );
    assert_eq!(
        lock(&table, "l").map(|state| (state.holder, state.token)),
        Some((SessionId(2), FencingToken(5)))
    );
}

#[test]
fn acquiring_again_as_the_holder_returns_the_same_token() {
    let mut table = KvLockTable::default();
    run(
        &mut table,
        &[
            (1, grant(SessionId(1)), granted(LeaseId(1))),
            (
                2,
                acquire("l", SessionId(1), LeaseId(1)),
                LockResponse::Granted {
                    token: FencingToken(2),
                },
            ),
            (
                3,
                acquire("l", SessionId(1), LeaseId(1)),
                LockResponse::Granted {
                    token: FencingToken(2),
                },
            ),
            (
                4,
                try_acquire("l", SessionId(1), LeaseId(1)),
                LockResponse::Granted {
                    token: FencingToken(2),
                },
            ),
        ],
    );
    assert_eq!(
        lock(&table, "l").map(|state| state.token),
        Some(FencingToken(2))
    );
}

#[test]
fn try_acquire_of_a_held_lock_is_busy_and_does_not_queue() {
    let mut table = KvLockTable::default();
    run(
        &mut table,
        &[
            (1, grant(SessionId(1)), granted(LeaseId(1))),
            (2, grant(SessionId(2)), granted(LeaseId(2))),
            (
                3,
                try_acquire("l", SessionId(1), LeaseId(1)),
                LockResponse::Granted {
                    token: FencingToken(3),
                },
            ),
            (
                4,
                try_acquire("l", SessionId(2), LeaseId(2)),
                LockResponse::Busy {
                    holder: SessionId(1),
                },
            ),
        ],
    );
    assert_eq!(lock(&table, "l").map(|state| state.waiters), Some(vec![]));
    // Nobody queued, so the release frees the lock.
    run(&mut table, &[(5, release("l", 3), LockResponse::Released)]);
    assert_eq!(lock(&table, "l"), None);
}

#[test]
fn acquire_under_an_unknown_or_ended_lease_is_refused() {
    let mut table = KvLockTable::default();
    run(
        &mut table,
        &[
            (1, grant(SessionId(1)), granted(LeaseId(1))),
            (
                2,
                LockCommand::LeaseRevoke { lease: LeaseId(1) },
                ended(LeaseId(1), &[], 0),
            ),
        ],
    );
    let before = table.clone();
    run(
        &mut table,
        &[
            (
                3,
                acquire("l", SessionId(1), LeaseId(1)),
                LockResponse::LeaseNotFound { lease: LeaseId(1) },
            ),
            (
                4,
                try_acquire("l", SessionId(1), LeaseId(42)),
                LockResponse::LeaseNotFound { lease: LeaseId(42) },
            ),
        ],
    );
    assert_eq!(table, before);
}

#[test]
fn cancel_wait_removes_only_a_waiting_session() {
    let mut table = KvLockTable::default();
    run(
        &mut table,
        &[
            (1, grant(SessionId(1)), granted(LeaseId(1))),
            (2, grant(SessionId(2)), granted(LeaseId(2))),
            (3, grant(SessionId(3)), granted(LeaseId(3))),
            (
                4,
                acquire("l", SessionId(1), LeaseId(1)),
                LockResponse::Granted {
                    token: FencingToken(4),
                },
            ),
            (
                5,
                acquire("l", SessionId(2), LeaseId(2)),
                LockResponse::Queued { position: 0 },
            ),
            (
                6,
                acquire("l", SessionId(3), LeaseId(3)),
                LockResponse::Queued { position: 1 },
            ),
            (7, cancel("l", SessionId(2)), LockResponse::Cancelled),
            (8, cancel("l", SessionId(2)), LockResponse::NotWaiting),
            // The holder is not waiting, and neither is anyone for a lock nobody holds.
            (9, cancel("l", SessionId(1)), LockResponse::NotWaiting),
            (10, cancel("free", SessionId(3)), LockResponse::NotWaiting),
        ],
    );
    assert_eq!(
        lock(&table, "l").map(|state| state.waiters),
        Some(vec![(SessionId(3), LeaseId(3))])
    );
    // The session behind the cancelled one moved up, and is next.
    run(&mut table, &[(11, release("l", 4), LockResponse::Released)]);
    assert_eq!(
        lock(&table, "l").map(|state| state.holder),
        Some(SessionId(3))
    );
}

#[test]
fn changes_after_a_version_filtered_by_prefix() {
    let mut table = KvLockTable::default();
    run(
        &mut table,
        &[
            (2, put("app/a", "1"), LockResponse::Put { version: 2 }),
            (3, put("other", "x"), LockResponse::Put { version: 3 }),
            (5, put("app/b", "2"), LockResponse::Put { version: 5 }),
            (6, delete("app/a"), LockResponse::Deleted { existed: true }),
            // Deleting an absent key is no change.
            (
                7,
                delete("app/zzz"),
                LockResponse::Deleted { existed: false },
            ),
            (8, put("app/a", "3"), LockResponse::Put { version: 8 }),
        ],
    );
    let every_app_change = vec![
        change(2, "app/a", Some("1")),
        change(5, "app/b", Some("2")),
        change(6, "app/a", None),
        change(8, "app/a", Some("3")),
    ];
    // (prefix, after_version, limit, expected changes)
    let cases: [(&str, u64, usize, Vec<Change>); 8] = [
        ("app/", 0, 100, every_app_change.clone()),
        ("app/", 2, 100, every_app_change[1..].to_vec()),
        // A version with no change of its own still cuts between the ones around it.
        ("app/", 4, 100, every_app_change[1..].to_vec()),
        ("app/", 6, 100, every_app_change[3..].to_vec()),
        ("app/", 8, 100, vec![]),
        ("app/", 100, 100, vec![]),
        ("app/", 0, 2, every_app_change[..2].to_vec()),
        (
            "app/a",
            0,
            100,
            vec![
                every_app_change[0].clone(),
                every_app_change[2].clone(),
                every_app_change[3].clone(),
            ],
        ),
    ];
    for (prefix, after_version, limit, expected) in cases {
        assert_eq!(
            changes(&table, prefix, after_version, limit),
            LockQueryResponse::Changes(expected),
            "prefix {prefix:?} after {after_version} limit {limit}"
        );
    }
    match changes(&table, "", 0, 100) {
        LockQueryResponse::Changes(all) => assert_eq!(all.len(), 5),
        other => panic!("{other:?}"),
    }
}

/// Fills the change log past `CHANGES_MAX` so the oldest changes are dropped. One index (a
/// lease end deleting three keys) has several changes, and the cut falls between them.
#[test]
fn changes_older_than_the_retained_log_are_compacted() {
    let started = std::time::Instant::now();
    let mut table = KvLockTable::default();
    run(
        &mut table,
        &[
            (1, grant(SessionId(1)), granted(LeaseId(1))),
            (
                2,
                put_under("a", "x", LeaseId(1)),
                LockResponse::Put { version: 2 },
            ),
            (
                3,
                put_under("b", "x", LeaseId(1)),
                LockResponse::Put { version: 3 },
            ),
            (
                4,
                put_under("c", "x", LeaseId(1)),
                LockResponse::Put { version: 4 },
            ),
            // Three changes, all at version 5.
            (
                5,
                LockCommand::LeaseRevoke { lease: LeaseId(1) },
                ended(LeaseId(1), &[], 3),
            ),
        ],
    );
    // Six changes so far; CHANGES_MAX - 2 more makes CHANGES_MAX + 4, so the first four are
    // dropped: versions 2, 3, 4 and the first of the three at version 5.
    let fill = u64::try_from(CHANGES_MAX).expect("fits") - 2;
    let first_fill = 10;
    for index in first_fill..first_fill + fill {
        assert_eq!(
            table.apply(LogIndex(index), put("fill", "v")),
            LockResponse::Put { version: index }
        );
    }
    let last = first_fill + fill - 1;
    // Asking from before the cut is refused: the delete of "a" at 5 is gone.
    for after_version in [0, 1, 4] {
        assert_eq!(
            changes(&table, "", after_version, 10),
            LockQueryResponse::Compacted {
                oldest_available: 5
            },
            "after {after_version}"
        );
    }
    // From `oldest_available` on nothing is missing: the next change is the first fill.
    assert_eq!(
        changes(&table, "", 5, 2),
        LockQueryResponse::Changes(vec![
            change(first_fill, "fill", Some("v")),
            change(first_fill + 1, "fill", Some("v")),
        ])
    );
    assert_eq!(
        changes(&table, "", last - 1, 10),
        LockQueryResponse::Changes(vec![change(last, "fill", Some("v"))])
    );
    // A query returns at most QUERY_RESULTS_MAX changes, whatever the limit asked for.
    match changes(&table, "", 5, usize::MAX) {
        LockQueryResponse::Changes(found) => assert_eq!(found.len(), QUERY_RESULTS_MAX),
        other => panic!("{other:?}"),
    }
    // The prefix filter still applies past the cut: "a", "b" and "c" have no retained change
    // after version 5.
    assert_eq!(
        changes(&table, "b", 5, 10),
        LockQueryResponse::Changes(vec![])
    );
    // One more change drops one more: the second change at version 5. Version 5 is still
    // the newest dropped, so the answer does not move.
    table.apply(LogIndex(last + 1), put("fill", "v"));
    assert_eq!(
        changes(&table, "", 4, 10),
        LockQueryResponse::Compacted {
            oldest_available: 5
        }
    );
    // Two more drop the last change at version 5 and the first fill. A watcher told to watch
    // from `oldest_available` must not miss the oldest change still kept.
    table.apply(LogIndex(last + 2), put("fill", "v"));
    table.apply(LogIndex(last + 3), put("fill", "v"));
    let LockQueryResponse::Compacted { oldest_available } = changes(&table, "", first_fill - 1, 1)
    else {
        panic!("changes after {} are compacted", first_fill - 1);
    };
    assert_eq!(
        changes(&table, "", oldest_available, 1),
        LockQueryResponse::Changes(vec![change(first_fill + 1, "fill", Some("v"))]),
        "watching from oldest_available {oldest_available}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "filling the change log took {:?}",
        started.elapsed()
    );
}

#[test]
fn range_returns_keys_with_a_prefix_in_order_up_to_a_limit() {
    let mut table = KvLockTable::default();
    run(
        &mut table,
        &[
            (1, grant(SessionId(1)), granted(LeaseId(1))),
            (2, put("b", "1"), LockResponse::Put { version: 2 }),
            (3, put("a/2", "1"), LockResponse::Put { version: 3 }),
            (4, put("ab", "1"), LockResponse::Put { version: 4 }),
            (
                5,
                put_under("a/1", "1", LeaseId(1)),
                LockResponse::Put { version: 5 },
            ),
            (6, put("a", "1"), LockResponse::Put { version: 6 }),
        ],
    );
    let cases: [(&str, usize, &[&str]); 7] = [
        ("", 100, &["a", "a/1", "a/2", "ab", "b"]),
        ("a", 100, &["a", "a/1", "a/2", "ab"]),
        ("a/", 100, &["a/1", "a/2"]),
        ("a/", 1, &["a/1"]),
        ("", 0, &[]),
        ("c", 100, &[]),
        ("0", 100, &[]),
    ];
    for (prefix, limit, expected) in cases {
        assert_eq!(
            range(&table, prefix, limit),
            expected,
            "prefix {prefix:?} limit {limit}"
        );
    }
    // The values come with their version and lease.
    assert_eq!(
        table.query(&LockQuery::Range {
            prefix: "a/1".into(),
            limit: 10
        }),
        LockQueryResponse::Values(vec![KeyValue {
            key: "a/1".into(),
            value: b"1".to_vec(),
            version: 5,
            lease: Some(LeaseId(1)),
        }])
    );
}

#[test]
fn invalid_keys_values_and_lock_names_are_refused_and_change_nothing() {
    let longest_key = "k".repeat(KEY_BYTES_MAX);
    let too_long_key = "k".repeat(KEY_BYTES_MAX + 1);
    // Lengths are bytes, not characters: 'é' is two bytes in UTF-8.
    let too_long_key_in_characters = "é".repeat(KEY_BYTES_MAX / 2 + 1);
    let put_bytes = |key: &str, value_bytes: usize| LockCommand::Put {
        key: key.into(),
        value: vec![7; value_bytes],
        expected_version: None,
        lease: None,
    };
    let invalid = [
        ("empty key", put_bytes("", 1)),
        ("key one byte too long", put_bytes(&too_long_key, 1)),
        (
            "key too long in bytes",
            put_bytes(&too_long_key_in_characters, 1),
        ),
        (
            "value one byte too long",
            put_bytes("k", VALUE_BYTES_MAX + 1),
        ),
        // Validation comes first: an invalid key under an unknown lease is invalid.
        (
            "empty key under an unknown lease",
            LockCommand::Put {
                key: String::new(),
                value: vec![],
                expected_version: Some(5),
                lease: Some(LeaseId(77)),
            },
        ),
        ("empty lock name", acquire("", SessionId(1), LeaseId(1))),
        (
            "empty lock name, try",
            try_acquire("", SessionId(1), LeaseId(1)),
        ),
        (
            "lock name too long",
            acquire(&too_long_key, SessionId(1), LeaseId(1)),
        ),
    ];
    let mut table = KvLockTable::default();
    run(
        &mut table,
        &[
            (1, grant(SessionId(1)), granted(LeaseId(1))),
            (2, put("k", "v"), LockResponse::Put { version: 2 }),
        ],
    );
    let before = table.clone();
    for (what, command) in invalid {
        match table.apply(LogIndex(3), command) {
            LockResponse::Invalid { reason } => assert!(!reason.is_empty(), "{what}"),
            other => panic!("{what}: {other:?}"),
        }
        assert_eq!(table, before, "{what} changed the table");
    }
    // The limits themselves are allowed.
    run(
        &mut table,
        &[
            (
                4,
                put_bytes(&longest_key, VALUE_BYTES_MAX),
                LockResponse::Put { version: 4 },
            ),
            (
                5,
                put_bytes(&"é".repeat(KEY_BYTES_MAX / 2), 0),
                LockResponse::Put { version: 5 },
            ),
            (
                6,
                acquire(&longest_key, SessionId(1), LeaseId(1)),
                LockResponse::Granted {
                    token: FencingToken(6),
                },
            ),
        ],
    );
}

/// A delete of a key no put could have written can only answer "did not exist"; whether it
/// answers `Invalid` (as a put would) or `Deleted { existed: false }` is not specified, but it
/// must change nothing, and in particular record no change for watchers.
#[test]
fn deleting_an_invalid_key_changes_nothing() {
    let mut table = KvLockTable::default();
    run(
        &mut table,
        &[(1, put("k", "v"), LockResponse::Put { version: 1 })],
    );
    let before = table.clone();
    for key in [String::new(), "k".repeat(KEY_BYTES_MAX + 1)] {
        let answer = table.apply(LogIndex(2), delete(&key));
        assert!(
            matches!(
                answer,
                LockResponse::Invalid { .. } | LockResponse::Deleted { existed: false }
            ),
            "delete of a {}-byte key: {answer:?}",
            key.len()
        );
        assert_eq!(table, before);
    }
}

/// A machine with a bit of everything: keys with and without leases, a renewed lease, a lock
/// with waiters, a deleted key in the change log.
fn busy_machine() -> WithLocks<()> {
    let mut machine = WithLocks::new(());
    let commands = [
        grant(SessionId(1)),
        grant(SessionId(2)),
        grant(SessionId(3)),
        LockCommand::LeaseKeepAlive { lease: LeaseId(2) },
        put("plain", "p"),
        put_under("ephemeral", "e", LeaseId(1)),
        put("gone", "g"),
        delete("gone"),
        acquire("l", SessionId(1), LeaseId(1)),
        acquire("l", SessionId(2), LeaseId(2)),
        acquire("l", SessionId(3), LeaseId(3)),
        acquire("m", SessionId(3), LeaseId(3)),
    ];
    for (offset, command) in commands.into_iter().enumerate() {
        let index = u64::try_from(offset).expect("fits") + 1;
        machine.apply(LogIndex(index), Command::Lock(command));
    }
    machine
}

/// Every query the tests look at, for comparing two machines by what they answer.
fn answers(machine: &WithLocks<()>) -> Vec<QueryResponse<()>> {
    let mut queries: Vec<LockQuery> = ["plain", "ephemeral", "gone", "absent"]
        .into_iter()
        .map(|key| LockQuery::Get { key: key.into() })
        .collect();
    queries.extend(["l", "m", "n"].map(|name| LockQuery::Lock { name: name.into() }));
    queries.extend((1..=4).map(|lease| LockQuery::Lease {
        lease: LeaseId(lease),
    }));
    for name in ["l", "m", "n"] {
        for session in 1..=4 {
            // The restored machine answers these before its index of the lines is built.
            queries.extend((1..=4).map(|lease| LockQuery::Wait {
                name: name.into(),
                session: SessionId(session),
                lease: LeaseId(lease),
            }));
        }
    }
    queries.push(LockQuery::Leases);
    queries.push(LockQuery::Range {
        prefix: String::new(),
        limit: 100,
    });
    queries.push(LockQuery::Changes {
        prefix: String::new(),
        after_version: 0,
        limit: 100,
    });
    queries
        .into_iter()
        .map(|query| machine.query(&Query::Lock(query)))
        .collect()
}

#[test]
fn a_snapshot_restored_into_a_fresh_machine_answers_identically() {
    let machine = busy_machine();
    let bytes = machine.snapshot().expect("snapshot");
    let mut restored = WithLocks::new(());
    restored.restore(&bytes).expect("restore");
    assert_eq!(answers(&restored), answers(&machine));
    assert_eq!(restored.locks(), machine.locks());
    // It also behaves identically from there: a lease end passes the lock to the same waiter
    // and deletes the same keys.
    let mut original = machine.clone();
    for (index, command) in [
        (20, LockCommand::LeaseRevoke { lease: LeaseId(1) }),
        (21, release("l", 20)),
        (22, put("after", "a")),
    ] {
        let expected = original.apply(LogIndex(index), Command::Lock(command.clone()));
        let answer = restored.apply(LogIndex(index), Command::Lock(command.clone()));
        assert_eq!(answer, expected, "{command:?}");
        assert!(
            !matches!(answer, Response::Lock(LockResponse::NotHolder)),
            "{command:?}"
        );
    }
    assert_eq!(answers(&restored), answers(&original));
}

#[test]
fn restoring_garbage_is_corrupt_and_leaves_the_state_unchanged() {
    let good = busy_machine().snapshot().expect("snapshot");
    let mut wrong_format = good.clone();
    // The format version follows the 4-byte magic, a little-endian u32.
    assert_eq!(wrong_format[..8], *b"HALK\x03\0\0\0");
    wrong_format[4] = 4;
    let cases: [(&str, Vec<u8>); 5] = [
        ("empty", vec![]),
        ("all ones", vec![0xff; 64]),
        ("text", b"this is not a snapshot".to_vec()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("another format version", wrong_format),
    ];
    for (what, bytes) in cases {
        let mut machine = busy_machine();
        let before = answers(&machine);
        match machine.restore(&bytes) {
            Err(StateMachineError::Corrupt(reason)) => assert!(!reason.is_empty(), "{what}"),
            other => panic!("{what}: {other:?}"),
        }
        assert_eq!(answers(&machine), before, "{what} changed the state");
        assert_eq!(machine.locks(), busy_machine().locks(), "{what}");
    }
}

// A full line is answered `LimitReached`: see `lock_table_limits.rs`, which fills one to the
// shipped `WAITERS_PER_LOCK_MAX`.

/// Bytes after the lock table's end record are the host's part of the snapshot (it runs to
/// the end of the stream), so a host that checks its bytes refuses trailing garbage, and the
/// lock table is then left as it was. (`()` as a host accepts any bytes: its `restore` is
/// ha-core's.) Bytes inside the table's part that do not fit the layout are refused by the
/// table itself: see `restoring_garbage_is_corrupt_and_leaves_the_state_unchanged`.
#[test]
fn trailing_bytes_go_to_the_host_which_refuses_them() {
    let mut machine = WithLocks::new(ExactHost(7));
    for (index, command) in [
        (
            1,
            LockCommand::LeaseGrant {
                ttl_ms: 1_000,
                session: SessionId(1),
            },
        ),
        (2, put("k", "v")),
    ] {
        let _ = machine.apply(LogIndex(index), Command::Lock(command));
    }
    let mut bytes = machine.snapshot().expect("snapshot");
    let mut restored = WithLocks::new(ExactHost(0));
    restored.restore(&bytes).expect("the snapshot as written");
    assert_eq!(restored.locks(), machine.locks());
    assert_eq!(restored.host().0, 7);
    bytes.extend_from_slice(b"trailing garbage");
    let mut fresh = WithLocks::new(ExactHost(0));
    assert!(matches!(
        fresh.restore(&bytes),
        Err(StateMachineError::Corrupt(_))
    ));
    assert_eq!(fresh.locks(), &KvLockTable::default());
    assert_eq!(fresh.host().0, 0);
}

/// A host whose snapshot is exactly 8 bytes.
#[derive(Clone, Debug, Default)]
struct ExactHost(u64);

impl StateMachine for ExactHost {
    type Command = ();
    type Response = ();
    type Query = ();
    type QueryResponse = ();

    fn apply(&mut self, _index: LogIndex, _command: ()) {}

    fn query(&self, _query: &()) {}

    fn snapshot(&self) -> Result<Vec<u8>, StateMachineError> {
        Ok(self.0.to_le_bytes().to_vec())
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), StateMachineError> {
        let bytes: [u8; 8] = snapshot
            .try_into()
            .map_err(|_| StateMachineError::Corrupt("the host's part is not 8 bytes".into()))?;
        self.0 = u64::from_le_bytes(bytes);
        Ok(())
    }
}

/// A lease end deletes all its keys at one version; a changes query with a small limit must
/// answer that whole group, or a reader resuming after the version would lose the rest.
#[test]
fn one_commands_changes_are_never_split_across_answers() {
    let mut table = KvLockTable::default();
    table.apply(LogIndex(1), grant(SessionId(7)));
    for (index, key) in [(2, "/jobs/a"), (3, "/jobs/b"), (4, "/jobs/c")] {
        table.apply(LogIndex(index), put_under(key, "v", LeaseId(1)));
    }
    table.apply(LogIndex(5), put("/jobs/d", "free"));
    table.apply(LogIndex(6), LockCommand::LeaseRevoke { lease: LeaseId(1) });
    table.apply(LogIndex(7), put("/jobs/e", "after"));
    let deletes = vec![
        change(6, "/jobs/a", None),
        change(6, "/jobs/b", None),
        change(6, "/jobs/c", None),
    ];
    // After version 5 with room for one: the whole group at version 6, nothing after it.
    assert_eq!(
        changes(&table, "/jobs/", 5, 1),
        LockQueryResponse::Changes(deletes.clone())
    );
    // A limit that ends inside the group runs on to its end.
    let mut expected = vec![change(5, "/jobs/d", Some("free"))];
    expected.extend(deletes);
    assert_eq!(
        changes(&table, "/jobs/", 4, 2),
        LockQueryResponse::Changes(expected)
    );
    // Resuming after the group gets what follows it.
    assert_eq!(
        changes(&table, "/jobs/", 6, 1),
        LockQueryResponse::Changes(vec![change(7, "/jobs/e", Some("after"))])
    );
}
