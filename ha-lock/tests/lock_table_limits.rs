//! The lock table's named limits (issue 12): keys, leases, locks held, waiters over all lines
//! and waiters in one line. A command that would pass one is answered `LimitReached` with the
//! limit and its value, changes nothing, and is answered the same on every replica (the check
//! is part of applying it). Most cases use small limits through `KvLockTable::with_limits`; one
//! fills a line to the shipped `WAITERS_PER_LOCK_MAX`.

use ha_core::{LogIndex, StateMachine};
use ha_lock::{
    Command, KvLockTable, LeaseId, Limit, LimitRefusals, LockCommand, LockLimits, LockQuery,
    LockQueryResponse, LockResponse, Response, SessionId, WAITERS_PER_LOCK_MAX, WithLocks,
};

/// A table driven one command at a time at increasing log indexes.
struct Table {
    table: KvLockTable,
    index: u64,
}

impl Table {
    fn new(limits: LockLimits) -> Self {
        Self {
            table: KvLockTable::with_limits(limits),
            index: 0,
        }
    }

    fn apply(&mut self, command: LockCommand) -> LockResponse {
        self.index += 1;
        self.table.apply(LogIndex(self.index), command)
    }

    /// Apply `command`, which must be refused at `limit`, and check nothing changed.
    fn refused(&mut self, command: LockCommand, limit: Limit) {
        let before = self.table.clone();
        let refusals_before = self.refusals();
        let max = u64::try_from(self.table.limits().max(limit)).expect("fits");
        assert_eq!(
            self.apply(command.clone()),
            LockResponse::LimitReached { limit, max },
            "{command:?}"
        );
        assert_eq!(
            self.table, before,
            "a refused {command:?} changed the table"
        );
        // Counted once, at that limit only (for the metric).
        let refusals = self.refusals();
        for other in Limit::ALL {
            let expected = refusals_before.get(other) + u64::from(other == limit);
            assert_eq!(refusals.get(other), expected, "{other:?} after {command:?}");
        }
    }

    fn refusals(&self) -> LimitRefusals {
        match self.table.query(&LockQuery::Stats) {
            LockQueryResponse::Stats(stats) => stats.limit_refusals,
            other => panic!("stats answered {other:?}"),
        }
    }

    fn lease(&mut self, session: SessionId) -> LeaseId {
        match self.apply(LockCommand::LeaseGrant {
            ttl_ms: 10_000,
            session,
        }) {
            LockResponse::LeaseGranted { lease, .. } => lease,
            other => panic!("lease grant answered {other:?}"),
        }
    }
}

fn small() -> LockLimits {
    let mut limits = LockLimits::default();
    limits.keys = 2;
    limits.leases = 4;
    limits.locks_held = 2;
    limits.waiters = 3;
    limits.waiters_per_lock = 2;
    limits
}

fn put(key: &str) -> LockCommand {
    LockCommand::Put {
        key: key.into(),
        value: b"v".to_vec(),
        expected_version: None,
        lease: None,
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

#[test]
fn a_new_key_past_the_limit_is_refused_and_an_existing_one_still_changes() {
    let mut table = Table::new(small());
    assert!(matches!(table.apply(put("a")), LockResponse::Put { .. }));
    assert!(matches!(table.apply(put("b")), LockResponse::Put { .. }));
    table.refused(put("c"), Limit::Keys);
    // Overwriting a key adds none.
    assert!(matches!(table.apply(put("a")), LockResponse::Put { .. }));
    // A refusal for another reason comes first: a failed compare is still a mismatch.
    assert_eq!(
        table.apply(LockCommand::Put {
            key: "c".into(),
            value: Vec::new(),
            expected_version: Some(7),
            lease: None,
        }),
        LockResponse::VersionMismatch { current: 0 }
    );
    // Deleting one makes room.
    assert!(matches!(
        table.apply(LockCommand::Delete {
            key: "b".into(),
            expected_version: None
        }),
        LockResponse::Deleted { existed: true }
    ));
    assert!(matches!(table.apply(put("c")), LockResponse::Put { .. }));
}

#[test]
fn a_lease_past_the_limit_is_refused_until_one_ends() {
    let mut table = Table::new(small());
    let leases: Vec<LeaseId> = (1..=4)
        .map(|session| table.lease(SessionId(session)))
        .collect();
    table.refused(
        LockCommand::LeaseGrant {
            ttl_ms: 10_000,
            session: SessionId(5),
        },
        Limit::Leases,
    );
    assert!(matches!(
        table.apply(LockCommand::LeaseRevoke { lease: leases[0] }),
        LockResponse::LeaseEnded { .. }
    ));
    table.lease(SessionId(5));
}

#[test]
fn a_free_lock_past_the_locks_held_limit_is_refused_but_queueing_for_a_held_one_is_not() {
    let mut table = Table::new(small());
    let (one, two) = (table.lease(SessionId(1)), table.lease(SessionId(2)));
    assert!(matches!(
        table.apply(acquire("a", SessionId(1), one)),
        LockResponse::Granted { .. }
    ));
    let token_b = match table.apply(acquire("b", SessionId(1), one)) {
        LockResponse::Granted { token } => token,
        other => panic!("{other:?}"),
    };
    table.refused(acquire("c", SessionId(2), two), Limit::LocksHeld);
    // Waiting for a held lock holds nothing more.
    assert_eq!(
        table.apply(acquire("a", SessionId(2), two)),
        LockResponse::Queued { position: 0 }
    );
    // A release makes room.
    assert_eq!(
        table.apply(LockCommand::Release {
            name: "b".into(),
            token: token_b
        }),
        LockResponse::Released
    );
    assert!(matches!(
        table.apply(acquire("c", SessionId(1), one)),
        LockResponse::Granted { .. }
    ));
}

#[test]
fn a_waiter_past_either_waiter_limit_is_refused_and_a_retry_keeps_its_place() {
    let mut limits = LockLimits::default();
    limits.waiters = 3;
    limits.waiters_per_lock = 2;
    let mut table = Table::new(limits);
    let leases: Vec<LeaseId> = (0..=4)
        .map(|session| table.lease(SessionId(session)))
        .collect();
    assert!(matches!(
        table.apply(acquire("a", SessionId(0), leases[0])),
        LockResponse::Granted { .. }
    ));
    assert!(matches!(
        table.apply(acquire("b", SessionId(1), leases[1])),
        LockResponse::Granted { .. }
    ));
    assert_eq!(
        table.apply(acquire("a", SessionId(2), leases[2])),
        LockResponse::Queued { position: 0 }
    );
    assert_eq!(
        table.apply(acquire("a", SessionId(3), leases[3])),
        LockResponse::Queued { position: 1 }
    );
    // a's line is full; a session already in it keeps its place when it asks again.
    table.refused(acquire("a", SessionId(4), leases[4]), Limit::WaitersPerLock);
    assert_eq!(
        table.apply(acquire("a", SessionId(3), leases[3])),
        LockResponse::Queued { position: 1 }
    );
    // The third wait in all fills the table's limit.
    assert_eq!(
        table.apply(acquire("b", SessionId(4), leases[4])),
        LockResponse::Queued { position: 0 }
    );
    table.refused(acquire("b", SessionId(2), leases[2]), Limit::Waiters);
    // A wait that would deadlock is refused as a deadlock, full line or not: 0 holds a, for
    // which 2 waits.
    assert_eq!(
        table.apply(LockCommand::CancelWait {
            name: "a".into(),
            session: SessionId(3)
        }),
        LockResponse::Cancelled
    );
    assert_eq!(
        table.apply(acquire("b", SessionId(2), leases[2])),
        LockResponse::Queued { position: 1 }
    );
    assert_eq!(
        table.apply(acquire("b", SessionId(0), leases[0])),
        LockResponse::Deadlock {
            cycle: vec![SessionId(0), SessionId(2)]
        }
    );
    // A lease's end frees its waits: 2 leaves both lines.
    assert!(matches!(
        table.apply(LockCommand::LeaseRevoke { lease: leases[2] }),
        LockResponse::LeaseEnded { .. }
    ));
    assert_eq!(
        table.apply(acquire("a", SessionId(3), leases[3])),
        LockResponse::Queued { position: 0 }
    );
}

fn lock_state(machine: &WithLocks<()>, name: &str) -> Option<ha_lock::LockState> {
    match machine
        .locks()
        .query(&LockQuery::Lock { name: name.into() })
    {
        LockQueryResponse::Lock(state) => state,
        other => panic!("lock query answered {other:?}"),
    }
}

/// The shipped limit, through the replicated machine: a line fills to `WAITERS_PER_LOCK_MAX`,
/// the next waiter is refused, and after a snapshot and a restore (which rebuilds the index of
/// the lines) the line is the same, still full, and hands the lock on in order.
#[test]
fn a_line_fills_to_the_shipped_limit_and_stays_full_across_a_restore() {
    let mut machine = WithLocks::new(());
    let mut index = 0;
    let mut apply = |machine: &mut WithLocks<()>, command: LockCommand| {
        index += 1;
        match machine.apply(LogIndex(index), Command::Lock(command)) {
            Response::Lock(answer) => answer,
            Response::Host(()) => panic!("a host answer"),
        }
    };
    let waiters = u64::try_from(WAITERS_PER_LOCK_MAX).expect("fits");
    let mut leases = Vec::new();
    for session in 0..=waiters + 1 {
        match apply(
            &mut machine,
            LockCommand::LeaseGrant {
                ttl_ms: 10_000,
                session: SessionId(session),
            },
        ) {
            LockResponse::LeaseGranted { lease, .. } => leases.push(lease),
            other => panic!("lease grant answered {other:?}"),
        }
    }
    let token = match apply(&mut machine, acquire("l", SessionId(0), leases[0])) {
        LockResponse::Granted { token } => token,
        other => panic!("{other:?}"),
    };
    for session in 1..=waiters {
        let position = usize::try_from(session - 1).expect("fits");
        assert_eq!(
            apply(
                &mut machine,
                acquire("l", SessionId(session), leases[session as usize])
            ),
            LockResponse::Queued { position }
        );
    }
    let last = waiters + 1;
    let refusal = LockResponse::LimitReached {
        limit: Limit::WaitersPerLock,
        max: waiters,
    };
    assert_eq!(
        apply(
            &mut machine,
            acquire("l", SessionId(last), leases[last as usize])
        ),
        refusal
    );
    let state = lock_state(&machine, "l").expect("held");
    assert_eq!(state.waiters.len(), WAITERS_PER_LOCK_MAX);

    let mut restored = WithLocks::new(());
    restored
        .restore(&machine.snapshot().expect("snapshot"))
        .expect("restore");
    assert_eq!(restored.locks(), machine.locks());
    machine = restored;
    assert_eq!(
        apply(
            &mut machine,
            acquire("l", SessionId(last), leases[last as usize])
        ),
        refusal
    );
    assert_eq!(
        apply(
            &mut machine,
            LockCommand::Release {
                name: "l".into(),
                token
            }
        ),
        LockResponse::Released
    );
    let state = lock_state(&machine, "l").expect("passed on");
    assert_eq!(state.holder, SessionId(1));
    assert_eq!(state.waiters.len(), WAITERS_PER_LOCK_MAX - 1);
    // The hand-off made room at the back.
    assert_eq!(
        apply(
            &mut machine,
            acquire("l", SessionId(last), leases[last as usize])
        ),
        LockResponse::Queued {
            position: WAITERS_PER_LOCK_MAX - 1
        }
    );
}
