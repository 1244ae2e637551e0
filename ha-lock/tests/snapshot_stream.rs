//! The lock table's streamed snapshot (issue 18): `snapshot_source` takes a point-in-time copy
//! in one step, `write_to` encodes it later, `restore_from` rebuilds a table from the stream.
//!
//! Why: the framework calls only these two to compact, to send a snapshot to a follower and
//! to install one. A copy that saw later writes, a restore that half-applies, a change log
//! that grows with the values or a second copy of every value would each break a promise of
//! `WithLocks` (point-in-time snapshots, unchanged state on refusal, memory that tracks the
//! data) without failing any test of the table's commands.

use ha_core::{LogIndex, SnapshotSource, StateMachine, StateMachineError};
use ha_lock::{
    CHANGE_VALUE_BYTES_MAX, Command, KvLockTable, LeaseId, LockCommand, LockLimits, LockQuery,
    LockQueryResponse, Query, QueryResponse, SessionId, VALUE_BYTES_MAX, WithLocks,
};

/// A host whose snapshot is exactly its 8 bytes, so a damaged host part is refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct ExactHost(u64);

impl StateMachine for ExactHost {
    type Command = u64;
    type Response = ();
    type Query = ();
    type QueryResponse = u64;

    fn apply(&mut self, _index: LogIndex, command: u64) {
        self.0 = command;
    }

    fn query(&self, _query: &()) -> u64 {
        self.0
    }

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

type Machine = WithLocks<ExactHost>;

fn put(key: &str, value: &[u8]) -> LockCommand {
    LockCommand::Put {
        key: key.into(),
        value: value.to_vec(),
        expected_version: None,
        lease: None,
    }
}

fn apply_all(machine: &mut Machine, first_index: u64, commands: &[LockCommand]) {
    for (offset, command) in commands.iter().enumerate() {
        let _ = machine.apply(
            LogIndex(first_index + offset as u64),
            Command::Lock(command.clone()),
        );
    }
}

/// Values (one leased), leases, a held lock with two waiters, deletes and overwrites in the
/// change log, and a host state.
fn busy_machine() -> Machine {
    let mut machine = WithLocks::new(ExactHost(0));
    let lease = |session| LockCommand::LeaseGrant {
        ttl_ms: 1_000,
        session,
    };
    let acquire = |session, lease| LockCommand::Acquire {
        name: "jobs".into(),
        session,
        lease,
        wait: true,
    };
    apply_all(
        &mut machine,
        1,
        &[
            lease(SessionId(1)),
            lease(SessionId(2)),
            lease(SessionId(3)),
            put("a", b"first"),
            put("b", &[7u8; 4096]),
            LockCommand::Put {
                key: "leased".into(),
                value: b"held".to_vec(),
                expected_version: None,
                lease: Some(LeaseId(2)),
            },
            put("a", b"second"),
            LockCommand::Delete {
                key: "b".into(),
                expected_version: None,
            },
            acquire(SessionId(1), LeaseId(1)),
            acquire(SessionId(2), LeaseId(2)),
            acquire(SessionId(3), LeaseId(3)),
            LockCommand::LeaseKeepAlive { lease: LeaseId(3) },
        ],
    );
    let _ = machine.apply(LogIndex(13), Command::Host(42));
    machine
}

fn queries() -> Vec<LockQuery> {
    let mut queries = vec![LockQuery::Stats, LockQuery::Leases];
    for key in ["a", "b", "leased", "missing"] {
        queries.push(LockQuery::Get { key: key.into() });
    }
    queries.push(LockQuery::Range {
        prefix: String::new(),
        limit: 100,
    });
    for after_version in [0, 4, 7, 100] {
        queries.push(LockQuery::Changes {
            prefix: String::new(),
            after_version,
            limit: 100,
        });
    }
    queries.push(LockQuery::Lock {
        name: "jobs".into(),
    });
    for lease in 1..=3 {
        queries.push(LockQuery::Lease {
            lease: LeaseId(lease),
        });
        queries.push(LockQuery::Wait {
            name: "jobs".into(),
            session: SessionId(lease),
            lease: LeaseId(lease),
        });
    }
    queries
}

fn answers(machine: &Machine) -> Vec<QueryResponse<u64>> {
    let mut answers: Vec<_> = queries()
        .into_iter()
        .map(|query| machine.query(&Query::Lock(query)))
        .collect();
    answers.push(machine.query(&Query::Host(())));
    answers
}

fn write(source: Box<dyn SnapshotSource>) -> Vec<u8> {
    let mut bytes = Vec::new();
    source.write_to(&mut bytes).expect("writes");
    bytes
}

#[test]
fn a_table_round_trips_through_the_stream_with_equal_answers() {
    let machine = busy_machine();
    let bytes = write(machine.snapshot_source().expect("source"));
    let mut restored = WithLocks::new(ExactHost(0));
    restored.restore_from(&mut &bytes[..]).expect("restores");
    assert_eq!(restored.locks(), machine.locks());
    assert_eq!(restored.host(), machine.host());
    assert_eq!(answers(&restored), answers(&machine));
    // The in-memory form is the same stream.
    assert_eq!(machine.snapshot().expect("snapshot"), bytes);
    // And both go on identically: ending lease 2 deletes its key and passes the lock on.
    let mut original = machine.clone();
    let more = [
        LockCommand::LeaseRevoke { lease: LeaseId(1) },
        LockCommand::LeaseRevoke { lease: LeaseId(2) },
        put("c", b"after"),
    ];
    apply_all(&mut original, 20, &more);
    apply_all(&mut restored, 20, &more);
    assert_eq!(answers(&restored), answers(&original));
    assert_eq!(restored.locks(), original.locks());
}

#[test]
fn the_copy_is_the_state_when_it_was_taken_not_after_later_applies() {
    let mut machine = busy_machine();
    let at_copy = machine.clone();
    let source = machine.snapshot_source().expect("source");
    apply_all(
        &mut machine,
        20,
        &[
            put("a", b"third"),
            put("new", b"value"),
            LockCommand::Delete {
                key: "leased".into(),
                expected_version: None,
            },
            LockCommand::LeaseRevoke { lease: LeaseId(1) },
        ],
    );
    let _ = machine.apply(LogIndex(24), Command::Host(99));
    assert_ne!(machine.locks(), at_copy.locks());
    // Written after the applies (as the framework does, on another thread).
    let bytes = write(source);
    let mut restored = WithLocks::new(ExactHost(0));
    restored.restore_from(&mut &bytes[..]).expect("restores");
    assert_eq!(restored.locks(), at_copy.locks());
    assert_eq!(answers(&restored), answers(&at_copy));
}

#[test]
fn a_refused_host_part_leaves_table_and_host_unchanged() {
    let mut bytes = busy_machine().snapshot().expect("snapshot");
    // The host's part is the last 8 bytes: one more byte makes it invalid.
    bytes.push(0);
    let mut machine = WithLocks::new(ExactHost(5));
    apply_all(&mut machine, 1, &[put("mine", b"kept")]);
    let before = machine.clone();
    match machine.restore_from(&mut &bytes[..]) {
        Err(StateMachineError::Corrupt(reason)) => assert!(reason.contains("8 bytes"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(machine.locks(), before.locks());
    assert_eq!(machine.host(), before.host());
    assert_eq!(answers(&machine), answers(&before));
}

fn small_change_log(changes: usize, change_value_bytes: u64) -> LockLimits {
    let mut limits = LockLimits::default();
    limits.changes = changes;
    limits.change_value_bytes = change_value_bytes;
    limits
}

fn changes_after(table: &KvLockTable, after_version: u64) -> LockQueryResponse {
    table.query(&LockQuery::Changes {
        prefix: String::new(),
        after_version,
        limit: 1_000,
    })
}

#[test]
fn the_change_log_compacts_by_bytes_of_values_deterministically() {
    let limits = small_change_log(100, 1_000);
    let mut commands = Vec::new();
    for number in 0..10u8 {
        commands.push(put(&format!("k{number}"), &[number; 300]));
    }
    // Deletes refer to no value: they count against the record limit only.
    commands.push(LockCommand::Delete {
        key: "k0".into(),
        expected_version: None,
    });
    let mut first = WithLocks::with_limits(ExactHost(0), limits);
    let mut second = WithLocks::with_limits(ExactHost(0), limits);
    apply_all(&mut first, 1, &commands);
    apply_all(&mut second, 1, &commands);
    assert_eq!(first.locks(), second.locks());
    // 3 values of 300 bytes fit in 1,000; the 4th pushes the oldest out: versions 8, 9, 10
    // and the delete at 11 are kept, and 7 is the newest version dropped.
    assert_eq!(
        changes_after(first.locks(), 0),
        LockQueryResponse::Compacted {
            oldest_available: 7
        }
    );
    match changes_after(first.locks(), 7) {
        LockQueryResponse::Changes(changes) => {
            let versions: Vec<u64> = changes.iter().map(|change| change.version).collect();
            assert_eq!(versions, vec![8, 9, 10, 11]);
            assert_eq!(changes[0].value.as_deref(), Some(&[7u8; 300][..]));
            assert_eq!(changes[3].value, None);
        }
        other => panic!("unexpected {other:?}"),
    }
    // A restored replica holds the same log and compacts at the same change next.
    let mut restored = WithLocks::with_limits(ExactHost(0), limits);
    restored
        .restore(&first.snapshot().expect("snapshot"))
        .expect("restores");
    assert_eq!(restored.locks(), first.locks());
    apply_all(&mut first, 12, &[put("z", &[1; 300])]);
    apply_all(&mut restored, 12, &[put("z", &[1; 300])]);
    assert_eq!(restored.locks(), first.locks());
    assert_eq!(
        changes_after(restored.locks(), 0),
        LockQueryResponse::Compacted {
            oldest_available: 8
        }
    );
}

#[test]
fn the_shipped_byte_limit_keeps_the_last_64_values_of_1_mib() {
    let values = (CHANGE_VALUE_BYTES_MAX / VALUE_BYTES_MAX as u64) as usize;
    assert_eq!(values, 64);
    let mut machine = WithLocks::new(ExactHost(0));
    let value = vec![3u8; VALUE_BYTES_MAX];
    for number in 0..values + 6 {
        let _ = machine.apply(
            LogIndex(number as u64 + 1),
            Command::Lock(put(&format!("big{number}"), &value)),
        );
    }
    assert_eq!(
        changes_after(machine.locks(), 0),
        LockQueryResponse::Compacted {
            oldest_available: 6
        }
    );
}

#[test]
fn a_value_is_shared_by_its_entry_and_its_change_record_also_after_a_restore() {
    let mut machine = busy_machine();
    assert_eq!(machine.locks().change_records_sharing_value("a"), 1);
    assert_eq!(machine.locks().change_records_sharing_value("leased"), 1);
    assert_eq!(machine.locks().change_records_sharing_value("b"), 0);
    let mut restored = WithLocks::new(ExactHost(0));
    restored
        .restore(&machine.snapshot().expect("snapshot"))
        .expect("restores");
    assert_eq!(restored.locks().change_records_sharing_value("a"), 1);
    assert_eq!(restored.locks().change_records_sharing_value("leased"), 1);
    // The snapshot carries each current value once: the 4 KiB value of "b" was deleted, so
    // only its change record holds it; "second" appears once, "first" once (its old change).
    let bytes = machine.snapshot().expect("snapshot");
    let count = |needle: &[u8]| {
        bytes
            .windows(needle.len())
            .filter(|window| *window == needle)
            .count()
    };
    assert_eq!(count(b"second"), 1);
    assert_eq!(count(b"held"), 1);
    // A newer write shares its own value; the older record keeps the older one.
    apply_all(&mut machine, 20, &[put("a", b"third")]);
    assert_eq!(machine.locks().change_records_sharing_value("a"), 1);
}

fn random_command() -> impl proptest::strategy::Strategy<Value = LockCommand> {
    use proptest::prelude::*;
    let key = prop_oneof![Just("a"), Just("b"), Just("c/d")].prop_map(String::from);
    prop_oneof![
        (
            key.clone(),
            proptest::collection::vec(any::<u8>(), 0..64),
            proptest::option::of(1u64..6)
        )
            .prop_map(|(key, value, lease)| LockCommand::Put {
                key,
                value,
                expected_version: None,
                lease: lease.map(LeaseId),
            }),
        key.clone().prop_map(|key| LockCommand::Delete {
            key,
            expected_version: None,
        }),
        (1u64..4).prop_map(|session| LockCommand::LeaseGrant {
            ttl_ms: 1_000,
            session: SessionId(session),
        }),
        (1u64..6).prop_map(|lease| LockCommand::LeaseRevoke {
            lease: LeaseId(lease)
        }),
        (key, 1u64..4, 1u64..6).prop_map(|(name, session, lease)| LockCommand::Acquire {
            name,
            session: SessionId(session),
            lease: LeaseId(lease),
            wait: true,
        }),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]

    /// Any history, a copy taken at any point, any writes after it: the stream written later
    /// restores the table as it was at the copy, and the restored table goes on like it.
    #[test]
    fn any_copy_restores_the_state_at_the_copy(
        before in proptest::collection::vec(random_command(), 0..40),
        after in proptest::collection::vec(random_command(), 0..20),
    ) {
        let limits = small_change_log(8, 100);
        let mut machine = WithLocks::with_limits(ExactHost(0), limits);
        apply_all(&mut machine, 1, &before);
        let at_copy = machine.clone();
        let source = machine.snapshot_source().expect("source");
        apply_all(&mut machine, 100, &after);
        let bytes = write(source);
        let mut restored = WithLocks::with_limits(ExactHost(0), limits);
        restored.restore_from(&mut &bytes[..]).expect("restores");
        proptest::prop_assert_eq!(restored.locks(), at_copy.locks());
        proptest::prop_assert_eq!(answers(&restored), answers(&at_copy));
        let mut original = at_copy.clone();
        apply_all(&mut original, 100, &after);
        apply_all(&mut restored, 100, &after);
        proptest::prop_assert_eq!(restored.locks(), original.locks());
        proptest::prop_assert_eq!(restored.locks(), machine.locks());
    }
}
