//! Hostile snapshots of the lock table (issue 7, "Hostile input").
//!
//! Why: a snapshot reaches a node from the leader (`InstallSnapshot`) or from its own disk, and
//! `lock_table_model.rs` only restores snapshots the table itself wrote. Here restore gets
//! random bytes, mutations of real snapshots (at both layers: `WithLocks` and the replica's
//! `Applier` around it), and, through a mirror of the documented layout, tables that decode
//! but break every invariant the table keeps (locks held under leases that do not exist,
//! waiters of dead sessions, counters at `u64::MAX`, changes out of order). Restore must
//! refuse or accept without panicking, leave the state exactly as it was when it refuses, stay
//! within a small allocation, and whatever it accepts must keep answering every command and
//! query without panicking. Arbitrary bytes decoded as the lock commands, queries and answers
//! (which the applier decodes from log entries) are refused or decoded, never a panic.
//!
//! The streamed layout (issue 18) adds: every truncation of a real stream, records claiming
//! 4 GiB or cut short, end records claiming `u64::MAX` counts, and records out of place
//! (no totals first, keys not ascending, a waiter with no lock, a reference to a value the key
//! does not hold, another format version), each refused naming the rule, state unchanged,
//! within the same allocation bound.
//!
//! Cases: 128 + 192 + 96 + 256 + one per byte of a real stream; the file runs in under 1 s in
//! the debug profile.

use std::alloc::System;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use ha_core::{LogIndex, StateMachine};
use ha_lock::{
    Command, FencingToken, LeaseId, LockCommand, LockQuery, LockQueryResponse, LockResponse, Query,
    QueryResponse, SessionId, WithLocks, holder_digest,
};
use ha_replicate::entry::{Entry, Payload};
use ha_replicate::replica::{Applier, SessionCommand};
use peakmem_alloc::{INSTRUMENTED_SYSTEM, PeakMemAlloc, PeakMemAllocTrait};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[global_allocator]
static ALLOCATOR: &PeakMemAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The allocation peak is global to the process: tests in this file run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What restoring `input_bytes` of hostile input may allocate: serde preallocates at most
/// 1 MiB for a collection whose claimed length is not there yet, plus what the bytes describe.
fn restore_peak_bytes_max(input_bytes: usize) -> usize {
    2 * 1024 * 1024 + 128 * input_bytes
}

// A mirror of the snapshot layout (`SNAPSHOT_FORMAT_VERSION`'s docs): the header, then
// length-prefixed postcard records, then the host's bytes. Postcard encodes enums by variant
// position and structs by field position, so `RecordMirror` encodes exactly as the real
// records. The test `the_mirror_matches_the_real_layout` checks it.

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum RecordMirror {
    Totals {
        compacted_through: u64,
        grants: u64,
        waits: u64,
        deadlocks: u64,
    },
    Entry {
        key: String,
        value: Vec<u8>,
        version: u64,
        lease: Option<u64>,
    },
    Lease {
        lease: u64,
        session: u64,
        ttl_ms: u64,
        renewals: u64,
    },
    Lock {
        name: String,
        holder: u64,
        lease: u64,
        token: u64,
    },
    Waiter {
        session: u64,
        lease: u64,
    },
    Change {
        version: u64,
        key: String,
        value: ChangeValueMirror,
    },
    End {
        entries: u64,
        leases: u64,
        locks: u64,
        waiters: u64,
        changes: u64,
    },
    KeyedLock {
        name: String,
        holder: u64,
        lease: u64,
        token: u64,
        holder_digest: [u8; 32],
    },
    KeyedWaiter {
        session: u64,
        lease: u64,
        holder_digest: [u8; 32],
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum ChangeValueMirror {
    Deleted,
    Bytes(Vec<u8>),
    Current,
}

/// A table as the stream describes it (a lease's key and lock sets are derived on restore).
#[derive(Clone, Debug)]
struct TableMirror {
    entries: BTreeMap<String, EntryMirror>,
    leases: BTreeMap<u64, LeaseMirror>,
    locks: BTreeMap<String, LockMirror>,
    changes: VecDeque<ChangeMirror>,
    compacted_through: u64,
    totals: (u64, u64, u64),
}

#[derive(Clone, Debug)]
struct EntryMirror {
    value: Vec<u8>,
    version: u64,
    lease: Option<u64>,
}

#[derive(Clone, Debug)]
struct LeaseMirror {
    session: u64,
    ttl_ms: u64,
    renewals: u64,
}

#[derive(Clone, Debug)]
struct LockMirror {
    holder: u64,
    lease: u64,
    token: u64,
    digest: Option<[u8; 32]>,
    waiters: VecDeque<(u64, u64, Option<[u8; 32]>)>,
}

#[derive(Clone, Debug)]
struct ChangeMirror {
    version: u64,
    key: String,
    value: Option<Vec<u8>>,
}

const HEADER: [u8; 8] = *b"HALK\x03\0\0\0";

/// The records of `table`, in stream order, with a true end record.
fn records(table: &TableMirror) -> Vec<RecordMirror> {
    let mut records = vec![RecordMirror::Totals {
        compacted_through: table.compacted_through,
        grants: table.totals.0,
        waits: table.totals.1,
        deadlocks: table.totals.2,
    }];
    for (key, entry) in &table.entries {
        records.push(RecordMirror::Entry {
            key: key.clone(),
            value: entry.value.clone(),
            version: entry.version,
            lease: entry.lease,
        });
    }
    for (lease, record) in &table.leases {
        records.push(RecordMirror::Lease {
            lease: *lease,
            session: record.session,
            ttl_ms: record.ttl_ms,
            renewals: record.renewals,
        });
    }
    let mut waiters = 0;
    for (name, lock) in &table.locks {
        records.push(match lock.digest {
            None => RecordMirror::Lock {
                name: name.clone(),
                holder: lock.holder,
                lease: lock.lease,
                token: lock.token,
            },
            Some(holder_digest) => RecordMirror::KeyedLock {
                name: name.clone(),
                holder: lock.holder,
                lease: lock.lease,
                token: lock.token,
                holder_digest,
            },
        });
        for &(session, lease, digest) in &lock.waiters {
            records.push(match digest {
                None => RecordMirror::Waiter { session, lease },
                Some(holder_digest) => RecordMirror::KeyedWaiter {
                    session,
                    lease,
                    holder_digest,
                },
            });
            waiters += 1;
        }
    }
    for change in &table.changes {
        records.push(RecordMirror::Change {
            version: change.version,
            key: change.key.clone(),
            value: change
                .value
                .clone()
                .map_or(ChangeValueMirror::Deleted, ChangeValueMirror::Bytes),
        });
    }
    records.push(RecordMirror::End {
        entries: table.entries.len() as u64,
        leases: table.leases.len() as u64,
        locks: table.locks.len() as u64,
        waiters,
        changes: table.changes.len() as u64,
    });
    records
}

/// A snapshot stream of `records` followed by `host`.
fn stream(records: &[RecordMirror], host: &[u8]) -> Vec<u8> {
    let mut bytes = HEADER.to_vec();
    for record in records {
        let encoded = postcard::to_allocvec(record).expect("encodes");
        bytes.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&encoded);
    }
    bytes.extend_from_slice(host);
    bytes
}

/// The records of a snapshot stream and the host's bytes after them.
fn parse(bytes: &[u8]) -> (Vec<RecordMirror>, Vec<u8>) {
    assert_eq!(bytes[..8], HEADER);
    let mut rest = &bytes[8..];
    let mut records = Vec::new();
    loop {
        let length = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        let record: RecordMirror = postcard::from_bytes(&rest[4..4 + length]).expect("decodes");
        rest = &rest[4 + length..];
        let end = matches!(record, RecordMirror::End { .. });
        records.push(record);
        if end {
            return (records, rest.to_vec());
        }
    }
}

/// Small domains, so that names, sessions and leases collide and refer to each other (or to
/// nothing), and the extremes of every counter.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just("a/b".to_string()),
        Just(String::new())
    ]
}

fn number() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..4, Just(u64::MAX), Just(u64::MAX - 1), any::<u64>()]
}

/// Holder digests: the digests of two keys the commands use, or anything.
fn digest() -> impl Strategy<Value = [u8; 32]> {
    prop_oneof![
        Just(holder_digest(&[1; 16])),
        Just(holder_digest(&[2; 16])),
        any::<[u8; 32]>(),
    ]
}

fn holder_key() -> impl Strategy<Value = [u8; 16]> {
    prop_oneof![Just([1; 16]), Just([2; 16]), any::<[u8; 16]>()]
}

fn table() -> impl Strategy<Value = TableMirror> {
    let entry = (
        proptest::collection::vec(any::<u8>(), 0..4),
        number(),
        proptest::option::of(number()),
    )
        .prop_map(|(value, version, lease)| EntryMirror {
            value,
            version,
            lease,
        });
    let lease =
        (number(), number(), number()).prop_map(|(session, ttl_ms, renewals)| LeaseMirror {
            session,
            ttl_ms,
            renewals,
        });
    let lock = (
        number(),
        number(),
        number(),
        proptest::option::of(digest()),
        proptest::collection::vec_deque((number(), number(), proptest::option::of(digest())), 0..4),
    )
        .prop_map(|(holder, lease, token, digest, waiters)| LockMirror {
            holder,
            lease,
            token,
            digest,
            waiters,
        });
    let change = (
        number(),
        name(),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..3)),
    )
        .prop_map(|(version, key, value)| ChangeMirror {
            version,
            key,
            value,
        });
    (
        proptest::collection::btree_map(name(), entry, 0..4),
        proptest::collection::btree_map(number(), lease, 0..4),
        proptest::collection::btree_map(name(), lock, 0..4),
        proptest::collection::vec_deque(change, 0..5),
        number(),
        (number(), number(), number()),
    )
        .prop_map(
            |(entries, leases, locks, changes, compacted_through, totals)| TableMirror {
                entries,
                leases,
                locks,
                changes,
                compacted_through,
                totals,
            },
        )
}

fn command() -> impl Strategy<Value = LockCommand> {
    let value = proptest::collection::vec(any::<u8>(), 0..4);
    prop_oneof![
        (
            name(),
            value,
            proptest::option::of(number()),
            proptest::option::of(number())
        )
            .prop_map(|(key, value, expected_version, lease)| LockCommand::Put {
                key,
                value,
                expected_version,
                lease: lease.map(LeaseId)
            }),
        (name(), proptest::option::of(number())).prop_map(|(key, expected_version)| {
            LockCommand::Delete {
                key,
                expected_version,
            }
        }),
        (number(), number()).prop_map(|(ttl_ms, session)| LockCommand::LeaseGrant {
            ttl_ms,
            session: SessionId(session)
        }),
        number().prop_map(|lease| LockCommand::LeaseKeepAlive {
            lease: LeaseId(lease)
        }),
        number().prop_map(|lease| LockCommand::LeaseRevoke {
            lease: LeaseId(lease)
        }),
        (number(), number()).prop_map(|(lease, renewals)| LockCommand::LeaseExpire {
            lease: LeaseId(lease),
            renewals
        }),
        (name(), number(), number(), any::<bool>()).prop_map(|(name, session, lease, wait)| {
            LockCommand::Acquire {
                name,
                session: SessionId(session),
                lease: LeaseId(lease),
                wait,
            }
        }),
        (name(), number()).prop_map(|(name, token)| LockCommand::Release {
            name,
            token: FencingToken(token)
        }),
        (name(), number(), number(), any::<bool>(), digest()).prop_map(
            |(name, session, lease, wait, holder_digest)| LockCommand::AcquireWithHolder {
                name,
                session: SessionId(session),
                lease: LeaseId(lease),
                wait,
                holder_digest,
            }
        ),
        (name(), number(), holder_key()).prop_map(|(name, token, holder_key)| {
            LockCommand::ReleaseWithHolder {
                name,
                token: FencingToken(token),
                holder_key,
            }
        }),
        (name(), number()).prop_map(|(name, session)| LockCommand::CancelWait {
            name,
            session: SessionId(session)
        }),
    ]
}

fn queries() -> Vec<LockQuery> {
    let mut queries = vec![LockQuery::Stats, LockQuery::Leases];
    for name in ["a", "b", "a/b", ""] {
        queries.push(LockQuery::Get {
            key: name.to_string(),
        });
        queries.push(LockQuery::Lock {
            name: name.to_string(),
        });
        queries.push(LockQuery::Range {
            prefix: name.to_string(),
            limit: usize::MAX,
        });
        for after_version in [0, 2, u64::MAX] {
            queries.push(LockQuery::Changes {
                prefix: name.to_string(),
                after_version,
                limit: usize::MAX,
            });
        }
    }
    for lease in [0, 1, 2, 3, u64::MAX] {
        queries.push(LockQuery::Lease {
            lease: LeaseId(lease),
        });
        for session in [0, 1, 2, u64::MAX] {
            queries.push(LockQuery::Wait {
                name: "a".to_string(),
                session: SessionId(session),
                lease: LeaseId(lease),
            });
        }
    }
    queries
}

/// Every query's answer: the observable state of the table.
fn observe(machine: &WithLocks<()>) -> Vec<QueryResponse<()>> {
    queries()
        .into_iter()
        .map(|query| machine.query(&Query::Lock(query)))
        .collect()
}

/// Apply `commands` at indexes after `first_index` (any index: a hostile snapshot says
/// nothing true about where the log is) and ask every query after each.
fn exercise(machine: &mut WithLocks<()>, first_index: u64, commands: &[LockCommand]) {
    for (offset, command) in commands.iter().enumerate() {
        let index = first_index.saturating_add(offset as u64);
        let _ = machine.apply(LogIndex(index), Command::Lock(command.clone()));
        let _ = observe(machine);
    }
}

/// A table with everything in it, built by real commands.
fn real_machine() -> WithLocks<()> {
    let mut machine = WithLocks::new(());
    let commands = [
        LockCommand::LeaseGrant {
            ttl_ms: 1_000,
            session: SessionId(1),
        },
        LockCommand::LeaseGrant {
            ttl_ms: 1_000,
            session: SessionId(2),
        },
        LockCommand::Put {
            key: "a".into(),
            value: b"one".to_vec(),
            expected_version: None,
            lease: Some(LeaseId(1)),
        },
        LockCommand::Put {
            key: "b".into(),
            value: b"two".to_vec(),
            expected_version: Some(0),
            lease: None,
        },
        LockCommand::Acquire {
            name: "l".into(),
            session: SessionId(1),
            lease: LeaseId(1),
            wait: false,
        },
        LockCommand::Acquire {
            name: "l".into(),
            session: SessionId(2),
            lease: LeaseId(2),
            wait: true,
        },
        LockCommand::AcquireWithHolder {
            name: "m".into(),
            session: SessionId(2),
            lease: LeaseId(2),
            wait: false,
            holder_digest: holder_digest(&[1; 16]),
        },
        LockCommand::LeaseKeepAlive { lease: LeaseId(2) },
        LockCommand::Delete {
            key: "b".into(),
            expected_version: None,
        },
        LockCommand::LeaseGrant {
            ttl_ms: 1_000,
            session: SessionId(3),
        },
        // Session 3 (lease 10) waits for "m" with a holder digest.
        LockCommand::AcquireWithHolder {
            name: "m".into(),
            session: SessionId(3),
            lease: LeaseId(10),
            wait: true,
            holder_digest: holder_digest(&[2; 16]),
        },
    ];
    for (index, command) in commands.into_iter().enumerate() {
        let _ = machine.apply(LogIndex(index as u64 + 1), Command::Lock(command));
    }
    machine
}

#[test]
fn the_mirror_matches_the_real_layout() {
    let _serial = serial();
    let bytes = real_machine().snapshot().expect("snapshots");
    let (records, host) = parse(&bytes);
    assert!(host.is_empty());
    for kind in [
        "Totals",
        "Entry",
        "Lease",
        "Lock",
        "Waiter",
        "KeyedLock",
        "KeyedWaiter",
        "Change",
        "End",
    ] {
        assert!(
            records
                .iter()
                .any(|record| format!("{record:?}").starts_with(kind)),
            "no {kind} record in {records:?}"
        );
    }
    // A change whose value is still the key's is written as a reference to it.
    assert!(records.iter().any(|record| matches!(
        record,
        RecordMirror::Change {
            value: ChangeValueMirror::Current,
            ..
        }
    )));
    assert_eq!(stream(&records, &host), bytes);
}

/// A format 2 stream (before holder digests, issue 13) is still read: its records are format
/// 3's without the keyed ones, so a node restarted on the new version keeps its snapshot.
#[test]
fn a_format_2_stream_is_still_read() {
    let _serial = serial();
    let mut machine = WithLocks::new(());
    let commands = [
        LockCommand::LeaseGrant {
            ttl_ms: 1_000,
            session: SessionId(1),
        },
        LockCommand::LeaseGrant {
            ttl_ms: 1_000,
            session: SessionId(2),
        },
        LockCommand::Acquire {
            name: "l".into(),
            session: SessionId(1),
            lease: LeaseId(1),
            wait: false,
        },
        LockCommand::Acquire {
            name: "l".into(),
            session: SessionId(2),
            lease: LeaseId(2),
            wait: true,
        },
    ];
    for (index, command) in commands.into_iter().enumerate() {
        let _ = machine.apply(LogIndex(index as u64 + 1), Command::Lock(command));
    }
    let mut bytes = machine.snapshot().expect("snapshots");
    assert_eq!(bytes[..8], HEADER);
    bytes[4] = 2;
    let mut restored = WithLocks::new(());
    restored
        .restore(&bytes)
        .expect("a format 2 stream restores");
    assert_eq!(restored.locks(), machine.locks());
    bytes[4] = 1;
    let refused = WithLocks::new(()).restore(&bytes);
    assert!(
        matches!(&refused, Err(ha_core::StateMachineError::Corrupt(reason)) if reason.contains("format 1 is not one this version reads (2 to 3)")),
        "{refused:?}"
    );
}

/// What can be done to the bytes of a real snapshot (positions modulo the length).
#[derive(Clone, Debug)]
enum Mutation {
    Set { position: usize, value: u8 },
    Truncate { keep: usize },
    Extend { tail: Vec<u8> },
    Splice { position: usize, bytes: Vec<u8> },
    Random { bytes: Vec<u8> },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>())
            .prop_map(|(position, value)| Mutation::Set { position, value }),
        any::<usize>().prop_map(|keep| Mutation::Truncate { keep }),
        proptest::collection::vec(any::<u8>(), 1..16).prop_map(|tail| Mutation::Extend { tail }),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(position, bytes)| Mutation::Splice { position, bytes }),
        proptest::collection::vec(any::<u8>(), 0..512).prop_map(|bytes| Mutation::Random { bytes }),
    ]
}

fn mutate(original: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = original.to_vec();
    for mutation in mutations {
        match mutation {
            Mutation::Set { position, value } => {
                if !bytes.is_empty() {
                    let length = bytes.len();
                    bytes[position % length] = *value;
                }
            }
            Mutation::Truncate { keep } => bytes.truncate(keep % (bytes.len() + 1)),
            Mutation::Extend { tail } => bytes.extend_from_slice(tail),
            Mutation::Splice {
                position,
                bytes: inserted,
            } => {
                let at = position % (bytes.len() + 1);
                bytes.splice(at..at, inserted.iter().copied());
            }
            Mutation::Random { bytes: random } => bytes = random.clone(),
        }
    }
    bytes
}

/// Restore `bytes` into a copy of `machine`: on refusal the copy must be unchanged; on
/// acceptance it must keep working. Returns the allocation peak of the restore.
fn restore_checked(
    machine: &WithLocks<()>,
    bytes: &[u8],
    commands: &[LockCommand],
) -> Result<usize, TestCaseError> {
    let before = observe(machine);
    let mut restored = machine.clone();
    ALLOCATOR.reset_peak_memory();
    let result = restored.restore(bytes);
    let peak_bytes = ALLOCATOR.get_peak_memory();
    match result {
        Err(error) => {
            prop_assert!(!error.to_string().is_empty());
            prop_assert_eq!(
                restored.locks(),
                machine.locks(),
                "a refused restore changed the state"
            );
            prop_assert_eq!(observe(&restored), before);
        }
        Ok(()) => exercise(&mut restored, 1_000, commands),
    }
    Ok(peak_bytes)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Tables that decode but break every invariant: accepted (the layout is valid), and
    /// then every command and query still answers without a panic.
    #[test]
    fn tables_that_break_every_invariant_never_panic_the_table(
        table in table(),
        commands in proptest::collection::vec(command(), 0..24),
        first_index in number(),
    ) {
        let _serial = serial();
        let bytes = stream(&records(&table), &[]);
        let mut machine = WithLocks::new(());
        machine.restore(&bytes).map_err(|error| TestCaseError::fail(error.to_string()))?;
        let _ = observe(&machine);
        exercise(&mut machine, first_index, &commands);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    /// Mutations of a real snapshot and random bytes: refused with the state untouched, or
    /// accepted and still working; a small allocation either way.
    #[test]
    fn mutated_snapshots_are_refused_untouched_or_keep_working(
        mutations in proptest::collection::vec(mutation(), 1..4),
        commands in proptest::collection::vec(command(), 0..12),
    ) {
        let _serial = serial();
        let machine = real_machine();
        let original = machine.snapshot().expect("snapshots");
        let bytes = mutate(&original, &mutations);
        let peak_bytes = restore_checked(&machine, &bytes, &commands)?;
        prop_assert!(peak_bytes <= restore_peak_bytes_max(bytes.len()), "restore allocated {}", peak_bytes);
    }
}

/// The replica's applied state around the lock table: a few entries applied through the real
/// session layer, then a leader start.
fn real_applier() -> Applier<WithLocks<()>> {
    let mut applier = Applier::new(WithLocks::new(()));
    let commands = [
        LockCommand::LeaseGrant {
            ttl_ms: 1_000,
            session: SessionId(1),
        },
        LockCommand::Put {
            key: "a".into(),
            value: b"one".to_vec(),
            expected_version: None,
            lease: Some(LeaseId(1)),
        },
    ];
    for (number, command) in commands.into_iter().enumerate() {
        let stamped = SessionCommand {
            session: SessionId(7),
            sequence: number as u64 + 1,
            lowest_unanswered: number as u64 + 1,
            command: ha_core::codec::encode("command", &Command::<()>::Lock(command), 1 << 20)
                .expect("encodes"),
        };
        let entry = Entry {
            term: ha_core::Term(1),
            index: LogIndex(number as u64 + 1),
            payload: Payload::Command(stamped.encode(1 << 20).expect("encodes")),
        };
        let _ = applier.apply(&entry);
    }
    applier
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// The same at the replica's layer (sessions, failover history, the machine's snapshot
    /// inside): refused with everything as it was, or accepted and still answering.
    #[test]
    fn mutated_applier_snapshots_are_refused_untouched(
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let _serial = serial();
        let mut applier = real_applier();
        let original = applier.snapshot().expect("snapshots");
        let bytes = mutate(&original, &mutations);
        let applied_before = applier.applied_index();
        let history_before: Vec<_> = applier.history().cloned().collect();
        let locks_before = applier.machine().locks().clone();
        ALLOCATOR.reset_peak_memory();
        let result = applier.restore(&bytes);
        let peak_bytes = ALLOCATOR.get_peak_memory();
        prop_assert!(peak_bytes <= restore_peak_bytes_max(bytes.len()), "restore allocated {}", peak_bytes);
        match result {
            Err(_) => {
                prop_assert_eq!(applier.applied_index(), applied_before);
                prop_assert_eq!(applier.history().cloned().collect::<Vec<_>>(), history_before);
                prop_assert_eq!(applier.machine().locks(), &locks_before);
            }
            Ok(()) => {
                let query = ha_core::codec::encode("query", &Query::<()>::Lock(LockQuery::Stats), 1 << 10)
                    .expect("encodes");
                let _ = applier.query(&query);
                let next = Entry {
                    term: ha_core::Term(2),
                    index: applier.applied_index().next(),
                    payload: Payload::Command(vec![0, 0, 0]),
                };
                let _ = applier.apply(&next);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// What the applier decodes from log entries and queries, and what clients decode from
    /// answers: arbitrary bytes are refused or decoded, never a panic.
    #[test]
    fn arbitrary_bytes_decode_as_lock_messages_without_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..1024),
    ) {
        let _serial = serial();
        let limit = bytes.len();
        ALLOCATOR.reset_peak_memory();
        let _ = ha_core::codec::decode::<Command<()>>("command", &bytes, limit);
        let _ = ha_core::codec::decode::<LockCommand>("lock command", &bytes, limit);
        let _ = ha_core::codec::decode::<Query<()>>("query", &bytes, limit);
        let _ = ha_core::codec::decode::<LockQuery>("lock query", &bytes, limit);
        let _ = ha_core::codec::decode::<LockResponse>("lock response", &bytes, limit);
        let _ = ha_core::codec::decode::<LockQueryResponse>("lock query response", &bytes, limit);
        let _ = ha_core::codec::decode::<SessionCommand>("session command", &bytes, limit);
        let _ = SessionCommand::decode(&bytes);
        let peak_bytes = ALLOCATOR.get_peak_memory();
        prop_assert!(peak_bytes <= restore_peak_bytes_max(bytes.len()), "decoding allocated {}", peak_bytes);
    }
}

/// Regression test for the bug this file found: a restored table whose lease renewal count or
/// totals stood at `u64::MAX` panicked ("attempt to add with overflow", lock_table.rs) on the
/// next keep-alive, grant, wait or refused deadlock in builds with overflow checks (debug and
/// the simulator's profile). The counts now saturate.
#[test]
fn counters_at_their_maximum_in_a_restored_table_do_not_overflow() {
    let _serial = serial();
    let lease = LeaseMirror {
        session: 1,
        ttl_ms: 1_000,
        renewals: u64::MAX,
    };
    let table = TableMirror {
        entries: BTreeMap::new(),
        leases: BTreeMap::from([
            (1, lease.clone()),
            (
                2,
                LeaseMirror {
                    session: 2,
                    ..lease
                },
            ),
        ]),
        locks: BTreeMap::new(),
        changes: VecDeque::new(),
        compacted_through: 0,
        totals: (u64::MAX, u64::MAX, u64::MAX),
    };
    let bytes = stream(&records(&table), &[]);
    let mut machine = WithLocks::new(());
    machine.restore(&bytes).expect("a valid layout");
    let acquire = |session, lease| LockCommand::Acquire {
        name: "l".into(),
        session,
        lease,
        wait: true,
    };
    exercise(
        &mut machine,
        10,
        &[
            LockCommand::LeaseKeepAlive { lease: LeaseId(1) },
            acquire(SessionId(1), LeaseId(1)),
            acquire(SessionId(2), LeaseId(2)),
            LockCommand::Acquire {
                name: "m".into(),
                session: SessionId(2),
                lease: LeaseId(2),
                wait: false,
            },
            LockCommand::Acquire {
                name: "m".into(),
                session: SessionId(1),
                lease: LeaseId(1),
                wait: true,
            },
        ],
    );
    match machine.query(&Query::Lock(LockQuery::Stats)) {
        QueryResponse::Lock(LockQueryResponse::Stats(stats)) => {
            assert_eq!(stats.grants_total, u64::MAX);
            assert_eq!(stats.waits_total, u64::MAX);
        }
        other => panic!("unexpected answer {other:?}"),
    }
}

/// Restore `bytes` into a copy of `real_machine()`; it must be refused, naming `expected`,
/// leave the state as it was, and allocate no more than the input bound allows.
fn refused_within_bounds(what: &str, bytes: &[u8], expected: &str) {
    let machine = real_machine();
    let mut restored = machine.clone();
    ALLOCATOR.reset_peak_memory();
    let result = restored.restore_from(&mut &bytes[..]);
    let peak_bytes = ALLOCATOR.get_peak_memory();
    match result {
        Err(ha_core::StateMachineError::Corrupt(reason)) => {
            assert!(reason.contains(expected), "{what}: {reason}");
        }
        other => panic!("{what}: expected a refusal, got {other:?}"),
    }
    assert_eq!(
        restored.locks(),
        machine.locks(),
        "{what} changed the state"
    );
    assert!(
        peak_bytes <= restore_peak_bytes_max(bytes.len()),
        "{what}: restore allocated {peak_bytes} bytes for {} bytes of input",
        bytes.len()
    );
}

/// Every proper prefix of a real stream ends inside the table's records (the host `()` writes
/// nothing), so each is refused.
#[test]
fn every_truncation_of_a_real_stream_is_refused() {
    let _serial = serial();
    let bytes = real_machine().snapshot().expect("snapshots");
    for keep in 0..bytes.len() {
        let expected = if keep < 8 { "header" } else { "record" };
        refused_within_bounds(&format!("the first {keep} bytes"), &bytes[..keep], expected);
    }
}

/// Lengths and counts the stream claims are never allocated up front: a record claiming
/// 4 GiB, or the most a record may hold with 10 bytes behind it, and an end record claiming
/// `u64::MAX` of everything are refused within a small allocation.
#[test]
fn claimed_lengths_and_counts_are_checked_not_allocated() {
    let _serial = serial();
    let totals = RecordMirror::Totals {
        compacted_through: 0,
        grants: 0,
        waits: 0,
        deadlocks: 0,
    };
    let mut huge_length = stream(std::slice::from_ref(&totals), &[]);
    huge_length.extend_from_slice(&u32::MAX.to_le_bytes());
    huge_length.extend_from_slice(&[0; 10]);
    refused_within_bounds(
        "a record claiming 4 GiB",
        &huge_length,
        "a record is at most",
    );

    let mut longest = stream(std::slice::from_ref(&totals), &[]);
    longest.extend_from_slice(&(ha_lock::SNAPSHOT_RECORD_BYTES_MAX as u32).to_le_bytes());
    longest.extend_from_slice(&[1; 10]);
    refused_within_bounds("a record cut short", &longest, "the stream ends after 10");

    let end = RecordMirror::End {
        entries: u64::MAX,
        leases: u64::MAX,
        locks: u64::MAX,
        waiters: u64::MAX,
        changes: u64::MAX,
    };
    refused_within_bounds(
        "an end record claiming u64::MAX of everything",
        &stream(&[totals.clone(), end], &[]),
        "the end record counts",
    );

    // A sequence claiming a huge length inside a record (postcard's varint).
    let mut claimed_sequence = HEADER.to_vec();
    let record = [1u8, 0xff, 0xff, 0xff, 0xff, 0x0f];
    claimed_sequence.extend_from_slice(&(record.len() as u32).to_le_bytes());
    claimed_sequence.extend_from_slice(&record);
    refused_within_bounds("a key claiming 4 GiB", &claimed_sequence, "record 0");
}

/// Records that decode but break the layout's rules name what is wrong.
#[test]
fn records_out_of_place_are_refused_naming_the_rule() {
    let _serial = serial();
    let totals = RecordMirror::Totals {
        compacted_through: 0,
        grants: 0,
        waits: 0,
        deadlocks: 0,
    };
    let entry = |key: &str, version| RecordMirror::Entry {
        key: key.into(),
        value: b"v".to_vec(),
        version,
        lease: None,
    };
    let end = |entries, changes| RecordMirror::End {
        entries,
        leases: 0,
        locks: 0,
        waiters: 0,
        changes,
    };
    let change = |version, value| RecordMirror::Change {
        version,
        key: "a".into(),
        value,
    };
    let cases: Vec<(&str, Vec<RecordMirror>, &str)> = vec![
        (
            "no totals first",
            vec![entry("a", 1), end(1, 0)],
            "first record",
        ),
        (
            "two totals",
            vec![totals.clone(), totals.clone(), end(0, 0)],
            "second totals",
        ),
        (
            "keys not ascending",
            vec![totals.clone(), entry("b", 1), entry("a", 2), end(2, 0)],
            "not after the previous key",
        ),
        (
            "a waiter without a lock",
            vec![
                totals.clone(),
                RecordMirror::Waiter {
                    session: 1,
                    lease: 1,
                },
                end(0, 0),
            ],
            "does not follow a lock",
        ),
        (
            "an entry after a change",
            vec![
                totals.clone(),
                change(1, ChangeValueMirror::Deleted),
                entry("a", 1),
                end(1, 1),
            ],
            "out of order",
        ),
        (
            "a reference to a value the key does not hold",
            vec![
                totals.clone(),
                entry("a", 1),
                change(2, ChangeValueMirror::Current),
                end(1, 1),
            ],
            "not at that version",
        ),
        (
            "a wrong format version",
            vec![totals.clone(), end(0, 0)],
            "format 4",
        ),
        (
            "a keyed waiter without a lock",
            vec![
                totals.clone(),
                RecordMirror::KeyedWaiter {
                    session: 1,
                    lease: 1,
                    holder_digest: [7; 32],
                },
                end(0, 0),
            ],
            "does not follow a lock",
        ),
    ];
    for (what, records, expected) in cases {
        let mut bytes = stream(&records, &[]);
        if what == "a wrong format version" {
            bytes[4] = 4;
        }
        refused_within_bounds(what, &bytes, expected);
    }
}
