//! Issue 17, item 5: a lock cycle in two replicated writes. `GrantAndAcquire` grants a lease
//! and acquires under it in one entry; `ReleaseAndRevoke` releases a lock and ends its lease in
//! one entry. Each behaves as its separate commands would (the same state, checked against
//! them by a property test), a refusal changes nothing (no lease is left behind), and the new
//! variants come after the old ones, so logs and answers written before them decode unchanged.

use ha_core::LogIndex;
use ha_lock::{
    FencingToken, HolderKey, KvLockTable, LeaseId, Limit, LockCommand, LockLimits, LockQuery,
    LockQueryResponse, LockResponse, SessionId, holder_digest,
};
use proptest::prelude::*;

const KEY_A: HolderKey = [0xa1; 16];
const KEY_B: HolderKey = [0xb2; 16];

fn grant_and_acquire(
    name: &str,
    session: SessionId,
    wait: bool,
    key: Option<&HolderKey>,
) -> LockCommand {
    LockCommand::GrantAndAcquire {
        name: name.into(),
        session,
        ttl_ms: 5_000,
        wait,
        holder_digest: key.map(holder_digest),
    }
}

fn release_and_revoke(name: &str, token: u64, key: Option<&HolderKey>) -> LockCommand {
    LockCommand::ReleaseAndRevoke {
        name: name.into(),
        token: FencingToken(token),
        holder_key: key.copied(),
    }
}

/// The live leases' ids, as numbers.
fn leases(table: &KvLockTable) -> Vec<u64> {
    match table.query(&LockQuery::Leases) {
        LockQueryResponse::Leases(leases) => leases.iter().map(|lease| lease.lease.0).collect(),
        other => panic!("leases answered {other:?}"),
    }
}

/// The holder's session, lease and token, as numbers.
fn holder(table: &KvLockTable, name: &str) -> Option<(u64, u64, u64)> {
    match table.query(&LockQuery::Lock { name: name.into() }) {
        LockQueryResponse::Lock(state) => {
            state.map(|state| (state.holder.0, state.lease.0, state.token.0))
        }
        other => panic!("lock answered {other:?}"),
    }
}

/// A Vec of `(index, command)` applied in order; returns the answers.
fn apply_all(table: &mut KvLockTable, commands: Vec<(u64, LockCommand)>) -> Vec<LockResponse> {
    commands
        .into_iter()
        .map(|(index, command)| table.apply(LogIndex(index), command))
        .collect()
}

#[test]
fn a_cycle_grants_a_lease_and_the_lock_in_one_entry_and_ends_both_in_one() {
    let mut table = KvLockTable::default();
    assert_eq!(
        table.apply(
            LogIndex(3),
            grant_and_acquire("l", SessionId(1), true, None)
        ),
        LockResponse::GrantedWithLease {
            lease: LeaseId(3),
            ttl_ms: 5_000,
            token: FencingToken(3)
        }
    );
    assert_eq!(leases(&table), vec![3]);
    assert_eq!(holder(&table, "l"), Some((1, 3, 3)));
    // A second session queues under its own new lease.
    assert_eq!(
        table.apply(
            LogIndex(4),
            grant_and_acquire("l", SessionId(2), true, Some(&KEY_A))
        ),
        LockResponse::QueuedWithLease {
            lease: LeaseId(4),
            ttl_ms: 5_000,
            position: 0
        }
    );
    // A stale token and a key for a plain grant change nothing, the lease included.
    assert_eq!(
        table.apply(LogIndex(5), release_and_revoke("l", 2, None)),
        LockResponse::NotHolder
    );
    assert_eq!(
        table.apply(LogIndex(6), release_and_revoke("l", 3, Some(&KEY_A))),
        LockResponse::WrongHolder
    );
    assert_eq!(leases(&table), vec![3, 4]);
    // The holder's release ends its lease and hands the lock on, token = the index.
    assert_eq!(
        table.apply(LogIndex(7), release_and_revoke("l", 3, None)),
        LockResponse::LeaseEnded {
            lease: LeaseId(3),
            released_locks: vec!["l".into()],
            deleted_keys: 0
        }
    );
    assert_eq!(leases(&table), vec![4]);
    assert_eq!(holder(&table, "l"), Some((2, 4, 7)));
    // The waiter took its digest with it: no key, or another key, does not release.
    for refused in [
        release_and_revoke("l", 7, None),
        release_and_revoke("l", 7, Some(&KEY_B)),
        LockCommand::Release {
            name: "l".into(),
            token: FencingToken(7),
        },
    ] {
        assert_eq!(table.apply(LogIndex(8), refused), LockResponse::WrongHolder);
    }
    assert_eq!(
        table.apply(LogIndex(9), release_and_revoke("l", 7, Some(&KEY_A))),
        LockResponse::LeaseEnded {
            lease: LeaseId(4),
            released_locks: vec!["l".into()],
            deleted_keys: 0
        }
    );
    assert!(leases(&table).is_empty());
    assert_eq!(holder(&table, "l"), None);
}

#[test]
fn a_refused_acquire_leaves_no_lease() {
    let mut table = KvLockTable::default();
    let answers = apply_all(
        &mut table,
        vec![
            (1, grant_and_acquire("a", SessionId(1), true, None)),
            (2, grant_and_acquire("b", SessionId(2), true, None)),
            // Busy, and not waiting.
            (3, grant_and_acquire("a", SessionId(3), false, None)),
            // Session 1 waits for b, held by 2, under a new lease ...
            (4, grant_and_acquire("b", SessionId(1), true, None)),
            // ... so 2 waiting for a, held by 1, would close a cycle.
            (5, grant_and_acquire("a", SessionId(2), true, None)),
            // 1 already waits for b (under lease 4): not a second place under a new lease.
            (6, grant_and_acquire("b", SessionId(1), true, None)),
            (7, grant_and_acquire("", SessionId(5), true, None)),
            (
                8,
                LockCommand::GrantAndAcquire {
                    name: "c".into(),
                    session: SessionId(5),
                    ttl_ms: 0,
                    wait: true,
                    holder_digest: None,
                },
            ),
        ],
    );
    let granted = |lease| LockResponse::GrantedWithLease {
        lease,
        ttl_ms: 5_000,
        token: FencingToken(lease.0),
    };
    assert_eq!(answers[..2], [granted(LeaseId(1)), granted(LeaseId(2))]);
    assert_eq!(
        answers[2],
        LockResponse::Busy {
            holder: SessionId(1)
        }
    );
    assert_eq!(
        answers[3],
        LockResponse::QueuedWithLease {
            lease: LeaseId(4),
            ttl_ms: 5_000,
            position: 0
        }
    );
    assert_eq!(
        answers[4],
        LockResponse::Deadlock {
            cycle: vec![SessionId(2), SessionId(1)]
        }
    );
    assert_eq!(
        answers[5],
        LockResponse::Busy {
            holder: SessionId(2)
        }
    );
    assert!(matches!(answers[6], LockResponse::Invalid { .. }));
    assert!(matches!(answers[7], LockResponse::Invalid { .. }));
    assert_eq!(leases(&table), vec![1, 2, 4], "no lease for a refusal");
    match table.query(&LockQuery::Stats) {
        LockQueryResponse::Stats(stats) => {
            assert_eq!((stats.deadlocks_total, stats.grants_total), (1, 2));
            assert_eq!((stats.waiters, stats.leases), (1, 3));
        }
        other => panic!("stats answered {other:?}"),
    }
}

#[test]
fn the_limits_refuse_a_cycle_before_anything_changes() {
    let mut limits = LockLimits::default();
    limits.leases = 2;
    limits.waiters_per_lock = 1;
    let mut table = KvLockTable::with_limits(limits);
    let answers = apply_all(
        &mut table,
        vec![
            (1, grant_and_acquire("x", SessionId(1), true, None)),
            (2, grant_and_acquire("x", SessionId(2), true, None)),
            (3, grant_and_acquire("y", SessionId(3), true, None)),
            (4, LockCommand::LeaseRevoke { lease: LeaseId(2) }),
            (5, grant_and_acquire("x", SessionId(4), true, None)),
            (6, grant_and_acquire("x", SessionId(5), true, None)),
        ],
    );
    assert_eq!(
        answers[2],
        LockResponse::LimitReached {
            limit: Limit::Leases,
            max: 2
        }
    );
    assert!(matches!(answers[4], LockResponse::QueuedWithLease { .. }));
    assert_eq!(
        answers[5],
        LockResponse::LimitReached {
            limit: Limit::Leases,
            max: 2
        }
    );
    let mut limits = LockLimits::default();
    limits.waiters_per_lock = 1;
    let mut table = KvLockTable::with_limits(limits);
    let answers = apply_all(
        &mut table,
        vec![
            (1, grant_and_acquire("x", SessionId(1), true, None)),
            (2, grant_and_acquire("x", SessionId(2), true, None)),
            (3, grant_and_acquire("x", SessionId(3), true, None)),
        ],
    );
    assert_eq!(
        answers[2],
        LockResponse::LimitReached {
            limit: Limit::WaitersPerLock,
            max: 1
        }
    );
    assert_eq!(leases(&table), vec![1, 2]);
}

/// Postcard numbers enum variants in declaration order: the commands and answers written
/// before issue 17 keep their bytes, and the new ones come after them.
#[test]
fn old_commands_and_answers_keep_their_encoding() {
    let release = LockCommand::Release {
        name: "a".into(),
        token: FencingToken(5),
    };
    let bytes = postcard::to_allocvec(&release).expect("encodes");
    assert_eq!(bytes, [7, 1, b'a', 5], "Release is still variant 7");
    assert_eq!(
        postcard::from_bytes::<LockCommand>(&bytes).expect("decodes"),
        release
    );
    let keyed = LockCommand::ReleaseWithHolder {
        name: "a".into(),
        token: FencingToken(5),
        holder_key: KEY_A,
    };
    assert_eq!(postcard::to_allocvec(&keyed).expect("encodes")[0], 10);
    let cycle = grant_and_acquire("a", SessionId(1), true, None);
    assert_eq!(postcard::to_allocvec(&cycle).expect("encodes")[0], 11);
    let cycle = release_and_revoke("a", 1, None);
    assert_eq!(postcard::to_allocvec(&cycle).expect("encodes")[0], 12);
    let answer = postcard::to_allocvec(&LockResponse::WrongHolder).expect("encodes");
    assert_eq!(answer, [18], "WrongHolder is still the last old answer");
    let answer = LockResponse::GrantedWithLease {
        lease: LeaseId(1),
        ttl_ms: 2,
        token: FencingToken(1),
    };
    let bytes = postcard::to_allocvec(&answer).expect("encodes");
    assert_eq!(bytes, [19, 1, 2, 1]);
    assert_eq!(
        postcard::from_bytes::<LockResponse>(&bytes).expect("decodes"),
        answer
    );
}

/// A step of the equivalence property.
#[derive(Clone, Debug)]
enum Step {
    /// `GrantAndAcquire` by a session for a lock, with a holder key (index) or none.
    Cycle {
        session: SessionId,
        lock: u8,
        wait: bool,
        key: Option<u8>,
    },
    /// `ReleaseAndRevoke` of a lock with its current token (or a stale one) and a key.
    Release {
        lock: u8,
        stale: bool,
        key: Option<u8>,
    },
    /// Some lease ends (revoke).
    End { pick: usize },
    /// A session stops waiting for a lock.
    Cancel { session: SessionId, lock: u8 },
}

const KEYS: [HolderKey; 2] = [KEY_A, KEY_B];

fn step() -> impl Strategy<Value = Step> {
    let key = proptest::option::of(0u8..2);
    prop_oneof![
        3 => (1u64..=4, 0u8..2, any::<bool>(), key.clone())
            .prop_map(|(session, lock, wait, key)| Step::Cycle { session: SessionId(session), lock, wait, key }),
        2 => (0u8..2, proptest::bool::weighted(0.2), key)
            .prop_map(|(lock, stale, key)| Step::Release { lock, stale, key }),
        1 => (0usize..8).prop_map(|pick| Step::End { pick }),
        1 => (1u64..=4, 0u8..2).prop_map(|(session, lock)| Step::Cancel { session: SessionId(session), lock }),
    ]
}

fn lock_name(lock: u8) -> String {
    format!("l{lock}")
}

/// Apply `step` at `index` to `combined` with the new commands and to `separate` with the
/// commands a cycle took before them; the answers must correspond.
fn apply_both(combined: &mut KvLockTable, separate: &mut KvLockTable, index: u64, step: &Step) {
    let at = LogIndex(index);
    match step {
        Step::Cycle {
            session,
            lock,
            wait,
            key,
        } => {
            let name = lock_name(*lock);
            let key = key.map(|key| KEYS[usize::from(key)]);
            let answer =
                combined.apply(at, grant_and_acquire(&name, *session, *wait, key.as_ref()));
            let already_waiting = match separate.query(&LockQuery::Lock { name: name.clone() }) {
                LockQueryResponse::Lock(Some(state)) => state
                    .waiters
                    .iter()
                    .any(|(waiter, _)| waiter == session)
                    .then_some(state.holder),
                _ => None,
            };
            if let Some(holder) = already_waiting {
                assert_eq!(answer, LockResponse::Busy { holder });
                return;
            }
            let granted = separate.apply(
                at,
                LockCommand::LeaseGrant {
                    ttl_ms: 5_000,
                    session: *session,
                },
            );
            assert_eq!(
                granted,
                LockResponse::LeaseGranted {
                    lease: LeaseId(index),
                    ttl_ms: 5_000
                }
            );
            let acquire = match key {
                None => LockCommand::Acquire {
                    name,
                    session: *session,
                    lease: LeaseId(index),
                    wait: *wait,
                },
                Some(key) => LockCommand::AcquireWithHolder {
                    name,
                    session: *session,
                    lease: LeaseId(index),
                    wait: *wait,
                    holder_digest: holder_digest(&key),
                },
            };
            match separate.apply(at, acquire) {
                LockResponse::Granted { token } => assert_eq!(
                    answer,
                    LockResponse::GrantedWithLease {
                        lease: LeaseId(index),
                        ttl_ms: 5_000,
                        token
                    }
                ),
                LockResponse::Queued { position } => assert_eq!(
                    answer,
                    LockResponse::QueuedWithLease {
                        lease: LeaseId(index),
                        ttl_ms: 5_000,
                        position
                    }
                ),
                refused => {
                    assert_eq!(answer, refused);
                    separate.apply(
                        at,
                        LockCommand::LeaseRevoke {
                            lease: LeaseId(index),
                        },
                    );
                }
            }
        }
        Step::Release { lock, stale, key } => {
            let name = lock_name(*lock);
            let Some((_, lease, token)) = holder(separate, &name) else {
                let answer = combined.apply(at, release_and_revoke(&name, 1, None));
                assert_eq!(answer, LockResponse::NotHolder);
                return;
            };
            let token = if *stale { token - 1 } else { token };
            let key = key.map(|key| KEYS[usize::from(key)]);
            let answer = combined.apply(at, release_and_revoke(&name, token, key.as_ref()));
            let release = match key {
                None => LockCommand::Release {
                    name: name.clone(),
                    token: FencingToken(token),
                },
                Some(holder_key) => LockCommand::ReleaseWithHolder {
                    name: name.clone(),
                    token: FencingToken(token),
                    holder_key,
                },
            };
            match separate.apply(at, release) {
                LockResponse::Released => {
                    let ended = separate.apply(
                        at,
                        LockCommand::LeaseRevoke {
                            lease: LeaseId(lease),
                        },
                    );
                    let LockResponse::LeaseEnded {
                        lease: ended_lease,
                        deleted_keys,
                        ..
                    } = ended
                    else {
                        panic!("revoke answered {ended:?}");
                    };
                    assert_eq!(
                        answer,
                        LockResponse::LeaseEnded {
                            lease: ended_lease,
                            released_locks: vec![name],
                            deleted_keys
                        }
                    );
                }
                refused => assert_eq!(answer, refused),
            }
        }
        Step::End { pick } => {
            let all = leases(separate);
            if let Some(lease) = all.get(pick % all.len().max(1)) {
                let command = LockCommand::LeaseRevoke {
                    lease: LeaseId(*lease),
                };
                assert_eq!(
                    combined.apply(at, command.clone()),
                    separate.apply(at, command)
                );
            }
        }
        Step::Cancel { session, lock } => {
            let command = LockCommand::CancelWait {
                name: lock_name(*lock),
                session: *session,
            };
            assert_eq!(
                combined.apply(at, command.clone()),
                separate.apply(at, command)
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any sequence of cycles, releases, lease ends and cancels leaves the table the new
    /// commands build equal to the one the separate commands build (keys, leases, locks,
    /// lines, tokens and totals), with corresponding answers.
    #[test]
    fn the_combined_commands_do_what_the_separate_ones_did(
        steps in proptest::collection::vec(step(), 1..60)
    ) {
        let mut combined = KvLockTable::default();
        let mut separate = KvLockTable::default();
        for (offset, step) in steps.iter().enumerate() {
            // Room between indexes: a stale token is an index below a real one.
            let index = 10 + 2 * offset as u64;
            apply_both(&mut combined, &mut separate, index, step);
            prop_assert_eq!(&combined, &separate, "after {:?} at {}", step, index);
        }
    }
}
