//! Model-based tests of the lock table and of the leader's lease expiry tracker.
//!
//! The lock table is driven (through `WithLocks<()>`, as a replica would) with random
//! sequences of KV, lease and lock commands over a few keys, locks and sessions, at increasing
//! log indexes with gaps (the host's commands share the log). The same commands go to a model
//! written from the design's semantics with plain maps and vectors. After every command the
//! answers and the whole observable state must agree, and the table's invariants must hold. At
//! random points the machine "reboots": it is snapshotted and restored into a fresh instance,
//! which carries on.
//!
//! Acquires are plain or carry a holder digest (issue 13), and releases present no key, the
//! grant's key or another one: a release releases only when the key matches what the grant
//! was made with (no key for a plain grant), so a wrong holder never releases.
//!
//! Where the design leaves an order of checks open (which refusal wins when several apply),
//! the model states the order it expects in a comment; those are the implementation's choices
//! and a change to them should be deliberate.

use std::collections::{BTreeMap, BTreeSet};

use ha_core::{LogIndex, Millis, StateMachine, Term};
use ha_lock::{
    Change, Command, FencingToken, HolderDigest, HolderKey, KEY_BYTES_MAX, KeyValue,
    LeaseExpiryTracker, LeaseId, LeaseState, Limit, LockCommand, LockLimits, LockQuery,
    LockQueryResponse, LockResponse, LockState, Response, SessionId, TxnCompare, TxnOp,
    VALUE_BYTES_MAX, VersionCmp, WaitForGraph, WithLocks, holder_digest,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// The keys commands use: two share the prefix "a/", and "b" is a prefix of "b/0". The empty
/// key is invalid.
const KEYS: [&str; 5] = ["a/0", "a/1", "b", "b/0", ""];
/// The locks commands use; the empty name is invalid.
const LOCKS: [&str; 4] = ["l0", "l1", "l2", ""];
/// Sessions are 1 to this.
const SESSIONS: u8 = 4;
/// A lease id no grant ever returns in these tests (indexes stay far below it).
const NEVER_GRANTED: LeaseId = LeaseId(1_000_000);
/// The holder keys acquires and releases use: few, so that a release often presents a key
/// that some grant (not necessarily this one) was made with.
const HOLDER_KEYS: [HolderKey; 3] = [[1; 16], [2; 16], [0xa5; 16]];

fn holder_key(n: u8) -> HolderKey {
    HOLDER_KEYS[usize::from(n) % HOLDER_KEYS.len()]
}

/// Which key a release presents.
#[derive(Clone, Copy, Debug)]
enum KeyPick {
    /// None: a plain release.
    Plain,
    /// The key the current grant was made with (a plain release for a plain grant).
    Holder,
    /// One of [`HOLDER_KEYS`], right or wrong.
    Other(u8),
}

/// Which compare-and-swap a put or delete carries.
#[derive(Clone, Copy, Debug)]
enum VersionPick {
    /// None: unconditional.
    Unconditional,
    /// The key's current version (0 when absent): succeeds.
    Current,
    /// `Some(0)`: create-only.
    CreateOnly,
    /// A version that is probably wrong.
    Other(u8),
}

/// Which lease a command names: mostly a live one, sometimes any lease ever granted (alive or
/// ended), now and then one never granted; `command_of` decides from the number.
#[derive(Clone, Copy, Debug)]
struct LeasePick(u8);

/// Which lease an acquire runs under.
#[derive(Clone, Copy, Debug)]
enum AcquireLease {
    /// A live lease of the acquiring session, if it has one (else as `Any`).
    Own(u8),
    /// Any lease, possibly another session's, ended, or never granted.
    Any(LeasePick),
}

/// Which token a release carries.
#[derive(Clone, Copy, Debug)]
enum TokenPick {
    /// The holder's token: succeeds when the lock is held.
    Holder,
    /// A token this lock had before the current one (stale), if any.
    Previous,
    /// An arbitrary small number.
    Other(u8),
}

#[derive(Clone, Debug)]
enum Step {
    Put {
        key: u8,
        value: u8,
        version: VersionPick,
        lease: Option<LeasePick>,
    },
    Delete {
        key: u8,
        version: VersionPick,
    },
    Grant {
        session: u8,
        ttl_ms: u16,
    },
    KeepAlive {
        lease: LeasePick,
    },
    Revoke {
        lease: LeasePick,
    },
    Expire {
        lease: LeasePick,
        /// With a renewal count other than the lease's (an expiry that raced a keep-alive).
        stale: bool,
    },
    Acquire {
        lock: u8,
        session: u8,
        lease: AcquireLease,
        wait: bool,
        /// With the digest of one of [`HOLDER_KEYS`].
        holder: Option<u8>,
    },
    Release {
        lock: u8,
        token: TokenPick,
        key: KeyPick,
        /// As `ReleaseAndRevoke` (issue 17): the release also ends the grant's lease.
        end_lease: bool,
    },
    /// `GrantAndAcquire` (issue 17): a new lease and an acquire under it, in one command.
    Cycle {
        lock: u8,
        session: u8,
        wait: bool,
        /// With the digest of one of [`HOLDER_KEYS`].
        holder: Option<u8>,
        /// Now and then 0, which is invalid.
        ttl_ms: u16,
    },
    CancelWait {
        lock: u8,
        session: u8,
    },
    /// A multi-key transaction: comparisons (key, how, version), then each branch's writes
    /// (key, value, lease when a put; `None` value: a delete). Keys may repeat in a branch,
    /// which is invalid.
    Txn {
        compares: Vec<(u8, u8, VersionPick)>,
        success: Vec<(u8, Option<u8>, Option<LeasePick>)>,
        failure: Vec<(u8, Option<u8>, Option<LeasePick>)>,
    },
    /// Delete the keys under one of the test's prefixes.
    DeletePrefix {
        prefix: u8,
    },
    /// Snapshot the machine and carry on with a fresh one restored from it.
    Reboot,
}

fn version_pick() -> impl Strategy<Value = VersionPick> {
    prop_oneof![
        3 => Just(VersionPick::Unconditional),
        2 => Just(VersionPick::Current),
        1 => Just(VersionPick::CreateOnly),
        1 => any::<u8>().prop_map(VersionPick::Other),
    ]
}

fn lease_pick() -> impl Strategy<Value = LeasePick> {
    any::<u8>().prop_map(LeasePick)
}

fn session() -> impl Strategy<Value = u8> {
    1..=SESSIONS
}

/// Mostly valid keys; the invalid empty key now and then.
fn key() -> impl Strategy<Value = u8> {
    prop_oneof![12 => 0..4_u8, 1 => Just(4_u8)]
}

/// Mostly valid locks; the invalid empty name now and then.
fn lock() -> impl Strategy<Value = u8> {
    prop_oneof![12 => 0..3_u8, 1 => Just(3_u8)]
}

/// One write of a transaction: a put (with a value) or a delete (without).
fn txn_op() -> impl Strategy<Value = (u8, Option<u8>, Option<LeasePick>)> {
    (
        key(),
        proptest::option::weighted(0.7, any::<u8>()),
        proptest::option::weighted(0.3, lease_pick()),
    )
}

/// The prefixes ranges, pages and prefix deletes use.
const PREFIXES: [&str; 4] = ["", "a/", "b", "b/"];

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (key(), any::<u8>(), version_pick(), proptest::option::weighted(0.6, lease_pick()))
            .prop_map(|(key, value, version, lease)| Step::Put { key, value, version, lease }),
        2 => (0..4_u8, version_pick()).prop_map(|(key, version)| Step::Delete { key, version }),
        3 => (session(), any::<u16>()).prop_map(|(session, ttl_ms)| Step::Grant { session, ttl_ms }),
        2 => lease_pick().prop_map(|lease| Step::KeepAlive { lease }),
        1 => lease_pick().prop_map(|lease| Step::Revoke { lease }),
        2 => (lease_pick(), any::<bool>()).prop_map(|(lease, stale)| Step::Expire { lease, stale }),
        8 => (
            lock(),
            session(),
            prop_oneof![5 => any::<u8>().prop_map(AcquireLease::Own), 1 => lease_pick().prop_map(AcquireLease::Any)],
            proptest::bool::weighted(0.8),
            proptest::option::weighted(0.5, any::<u8>()),
        )
            .prop_map(|(lock, session, lease, wait, holder)| Step::Acquire { lock, session, lease, wait, holder }),
        4 => (
            lock(),
            prop_oneof![
                4 => Just(TokenPick::Holder),
                1 => Just(TokenPick::Previous),
                1 => any::<u8>().prop_map(TokenPick::Other),
            ],
            prop_oneof![
                3 => Just(KeyPick::Holder),
                1 => Just(KeyPick::Plain),
                2 => any::<u8>().prop_map(KeyPick::Other),
            ],
            proptest::bool::weighted(0.3),
        )
            .prop_map(|(lock, token, key, end_lease)| Step::Release { lock, token, key, end_lease }),
        4 => (
            lock(),
            session(),
            proptest::bool::weighted(0.8),
            proptest::option::weighted(0.5, any::<u8>()),
            prop_oneof![12 => 1..=u16::MAX, 1 => Just(0_u16)],
        )
            .prop_map(|(lock, session, wait, holder, ttl_ms)| Step::Cycle { lock, session, wait, holder, ttl_ms }),
        2 => (lock(), session()).prop_map(|(lock, session)| Step::CancelWait { lock, session }),
        2 => (
            proptest::collection::vec((key(), 0..4_u8, version_pick()), 0..3),
            proptest::collection::vec(txn_op(), 0..4),
            proptest::collection::vec(txn_op(), 0..3),
        )
            .prop_map(|(compares, success, failure)| Step::Txn { compares, success, failure }),
        1 => (0..PREFIXES.len() as u8).prop_map(|prefix| Step::DeletePrefix { prefix }),
        1 => Just(Step::Reboot),
    ]
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct ModelKey {
    value: Vec<u8>,
    version: u64,
    lease: Option<LeaseId>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct ModelLease {
    session: SessionId,
    ttl_ms: u64,
    renewals: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct ModelLock {
    holder: SessionId,
    lease: LeaseId,
    token: FencingToken,
    /// The digest the grant was made with.
    digest: Option<HolderDigest>,
    /// In arrival order, with the digest each asked with.
    waiters: Vec<(SessionId, LeaseId, Option<HolderDigest>)>,
}

impl ModelLock {
    /// The line as the table's `LockState` shows it.
    fn line(&self) -> Vec<(SessionId, LeaseId)> {
        self.waiters
            .iter()
            .map(|(session, lease, _)| (*session, *lease))
            .collect()
    }
}

/// The lock table's semantics, written from the design with no concern for speed.
#[derive(Clone, Debug, Default)]
struct Model {
    keys: BTreeMap<String, ModelKey>,
    leases: BTreeMap<LeaseId, ModelLease>,
    locks: BTreeMap<String, ModelLock>,
    /// Every change ever made, in order (the tests stay far below the compaction limit).
    changes: Vec<Change>,
    /// The limits the table runs with.
    limits: LockLimits,
}

impl Model {
    fn apply(&mut self, index: u64, command: &LockCommand) -> LockResponse {
        match command.clone() {
            LockCommand::Put {
                key,
                value,
                expected_version,
                lease,
            } => {
                // Refusals in this order: invalid input, version mismatch, unknown lease, the
                // key limit (a new key only).
                if key.is_empty() || key.len() > KEY_BYTES_MAX || value.len() > VALUE_BYTES_MAX {
                    return LockResponse::Invalid {
                        reason: String::new(),
                    };
                }
                let current = self.version_of(&key);
                if let Some(expected) = expected_version
                    && expected != current
                {
                    return LockResponse::VersionMismatch { current };
                }
                if let Some(lease) = lease
                    && !self.leases.contains_key(&lease)
                {
                    return LockResponse::LeaseNotFound { lease };
                }
                if !self.keys.contains_key(&key) && self.keys.len() >= self.limits.keys {
                    return self.limit_reached(Limit::Keys);
                }
                self.set_key(index, key, value, lease);
                LockResponse::Put { version: index }
            }
            LockCommand::Delete {
                key,
                expected_version,
            } => {
                let current = self.version_of(&key);
                if let Some(expected) = expected_version
                    && expected != current
                {
                    return LockResponse::VersionMismatch { current };
                }
                let existed = self.keys.remove(&key).is_some();
                if existed {
                    self.changes.push(Change {
                        version: index,
                        key,
                        value: None,
                    });
                }
                LockResponse::Deleted { existed }
            }
            LockCommand::LeaseGrant { ttl_ms, session } => {
                if ttl_ms == 0 {
                    return LockResponse::Invalid {
                        reason: "zero TTL".to_string(),
                    };
                }
                if self.leases.len() >= self.limits.leases {
                    return self.limit_reached(Limit::Leases);
                }
                self.leases.insert(
                    LeaseId(index),
                    ModelLease {
                        session,
                        ttl_ms,
                        renewals: 0,
                    },
                );
                LockResponse::LeaseGranted {
                    lease: LeaseId(index),
                    ttl_ms,
                }
            }
            LockCommand::LeaseKeepAlive { lease } => match self.leases.get_mut(&lease) {
                Some(record) => {
                    record.renewals += 1;
                    LockResponse::LeaseRenewed {
                        lease,
                        renewals: record.renewals,
                    }
                }
                None => LockResponse::LeaseNotFound { lease },
            },
            LockCommand::LeaseRevoke { lease } => self.end_lease(index, lease),
            LockCommand::LeaseExpire { lease, renewals } => match self.leases.get(&lease) {
                None => LockResponse::LeaseNotFound { lease },
                Some(record) if record.renewals != renewals => {
                    LockResponse::LeaseStillAlive { lease }
                }
                Some(_) => self.end_lease(index, lease),
            },
            LockCommand::Acquire {
                name,
                session,
                lease,
                wait,
            } => self.acquire(index, name, session, lease, wait, None),
            LockCommand::AcquireWithHolder {
                name,
                session,
                lease,
                wait,
                holder_digest,
            } => self.acquire(index, name, session, lease, wait, Some(holder_digest)),
            LockCommand::Release { name, token } => self.release(index, &name, token, None),
            LockCommand::ReleaseWithHolder {
                name,
                token,
                holder_key,
            } => self.release(index, &name, token, Some(holder_key)),
            LockCommand::GrantAndAcquire {
                name,
                session,
                ttl_ms,
                wait,
                holder_digest,
            } => {
                // Refusals in this order, each changing nothing: a zero TTL, an invalid name,
                // the leases limit, the session already in the lock's line (busy: its place is
                // under another lease). Then an acquire under a new lease `index`, which the
                // acquire's refusals take back.
                if ttl_ms == 0 || name.is_empty() || name.len() > KEY_BYTES_MAX {
                    return LockResponse::Invalid {
                        reason: String::new(),
                    };
                }
                if self.leases.len() >= self.limits.leases {
                    return self.limit_reached(Limit::Leases);
                }
                if let Some(lock) = self.locks.get(&name)
                    && lock.waiters.iter().any(|(waiter, _, _)| *waiter == session)
                {
                    return LockResponse::Busy {
                        holder: lock.holder,
                    };
                }
                self.leases.insert(
                    LeaseId(index),
                    ModelLease {
                        session,
                        ttl_ms,
                        renewals: 0,
                    },
                );
                match self.acquire(index, name, session, LeaseId(index), wait, holder_digest) {
                    LockResponse::Granted { token } => LockResponse::GrantedWithLease {
                        lease: LeaseId(index),
                        ttl_ms,
                        token,
                    },
                    LockResponse::Queued { position } => LockResponse::QueuedWithLease {
                        lease: LeaseId(index),
                        ttl_ms,
                        position,
                    },
                    refused => {
                        self.leases.remove(&LeaseId(index));
                        refused
                    }
                }
            }
            LockCommand::ReleaseAndRevoke {
                name,
                token,
                holder_key,
            } => {
                // A release's checks, then the end of the grant's lease.
                let Some(lock) = self.locks.get(&name).filter(|lock| lock.token == token) else {
                    return LockResponse::NotHolder;
                };
                if lock.digest != holder_key.map(|key| holder_digest(&key)) {
                    return LockResponse::WrongHolder;
                }
                let lease = lock.lease;
                self.end_lease(index, lease)
            }
            LockCommand::Txn {
                compares,
                success,
                failure,
            } => self.txn(index, &compares, success, failure),
            LockCommand::DeletePrefix { prefix } => {
                // The first DELETE_PREFIX_KEYS_MAX keys in order (the tests hold far fewer).
                let doomed: Vec<String> = self
                    .keys
                    .keys()
                    .filter(|key| key.starts_with(&prefix))
                    .cloned()
                    .collect();
                for key in &doomed {
                    self.remove_key(index, key);
                }
                LockResponse::DeletedPrefix {
                    deleted: doomed.len() as u64,
                    more: false,
                }
            }
            LockCommand::CancelWait { name, session } => {
                let Some(lock) = self.locks.get_mut(&name) else {
                    return LockResponse::NotWaiting;
                };
                match lock
                    .waiters
                    .iter()
                    .position(|(waiter, _, _)| *waiter == session)
                {
                    Some(position) => {
                        lock.waiters.remove(position);
                        LockResponse::Cancelled
                    }
                    None => LockResponse::NotWaiting,
                }
            }
        }
    }

    /// A release: the token must be the holder's (else `NotHolder`), and then the key must be
    /// the one the grant was made with, by its digest: none for a plain grant (else
    /// `WrongHolder`). Either refusal changes nothing.
    fn release(
        &mut self,
        index: u64,
        name: &str,
        token: FencingToken,
        key: Option<HolderKey>,
    ) -> LockResponse {
        let Some(lock) = self.locks.get(name).filter(|lock| lock.token == token) else {
            return LockResponse::NotHolder;
        };
        if lock.digest != key.map(|key| holder_digest(&key)) {
            return LockResponse::WrongHolder;
        }
        self.pass_on(index, name);
        LockResponse::Released
    }

    /// A transaction. Refusals in this order, each changing nothing: an invalid shape (an
    /// invalid key anywhere, a key written twice in a branch); then, in the branch the
    /// comparisons choose, a put under a lease that is not alive (the first, in op order);
    /// then the key limit, counting the keys the branch deletes as freed. Otherwise its
    /// deletes, then its puts, all at `index`.
    fn txn(
        &mut self,
        index: u64,
        compares: &[TxnCompare],
        success: Vec<TxnOp>,
        failure: Vec<TxnOp>,
    ) -> LockResponse {
        let valid = |key: &str| !key.is_empty() && key.len() <= KEY_BYTES_MAX;
        let repeats = |ops: &[TxnOp]| {
            let keys: BTreeSet<&str> = ops.iter().map(TxnOp::key).collect();
            keys.len() != ops.len()
        };
        if !compares.iter().all(|compare| valid(&compare.key))
            || !success.iter().chain(&failure).all(|op| valid(op.key()))
            || repeats(&success)
            || repeats(&failure)
        {
            return LockResponse::Invalid {
                reason: String::new(),
            };
        }
        let succeeded = compares.iter().all(|compare| {
            compare
                .cmp
                .holds(self.version_of(&compare.key), compare.version)
        });
        let ops = if succeeded { success } else { failure };
        for op in &ops {
            if let TxnOp::Put {
                lease: Some(lease), ..
            } = op
                && !self.leases.contains_key(lease)
            {
                return LockResponse::LeaseNotFound { lease: *lease };
            }
        }
        let mut keys_after: BTreeSet<&str> = self.keys.keys().map(String::as_str).collect();
        for op in &ops {
            match op {
                TxnOp::Put { key, .. } => keys_after.insert(key),
                TxnOp::Delete { key } => keys_after.remove(key.as_str()),
            };
        }
        let adds = ops
            .iter()
            .any(|op| matches!(op, TxnOp::Put { key, .. } if !self.keys.contains_key(key)));
        if adds && keys_after.len() > self.limits.keys {
            return self.limit_reached(Limit::Keys);
        }
        for op in &ops {
            if let TxnOp::Delete { key } = op {
                self.remove_key(index, key);
            }
        }
        for op in ops {
            if let TxnOp::Put { key, value, lease } = op {
                self.set_key(index, key, value, lease);
            }
        }
        LockResponse::Txn {
            succeeded,
            version: index,
        }
    }

    /// Set `key` at `index`, recording the change.
    fn set_key(&mut self, index: u64, key: String, value: Vec<u8>, lease: Option<LeaseId>) {
        self.changes.push(Change {
            version: index,
            key: key.clone(),
            value: Some(value.clone()),
        });
        self.keys.insert(
            key,
            ModelKey {
                value,
                version: index,
                lease,
            },
        );
    }

    /// Remove `key` if present, recording the change.
    fn remove_key(&mut self, index: u64, key: &str) {
        if self.keys.remove(key).is_some() {
            self.changes.push(Change {
                version: index,
                key: key.to_string(),
                value: None,
            });
        }
    }

    fn limit_reached(&self, limit: Limit) -> LockResponse {
        LockResponse::LimitReached {
            limit,
            max: self.limits.max(limit) as u64,
        }
    }

    fn version_of(&self, key: &str) -> u64 {
        self.keys.get(key).map_or(0, |entry| entry.version)
    }

    fn acquire(
        &mut self,
        index: u64,
        name: String,
        session: SessionId,
        lease: LeaseId,
        wait: bool,
        digest: Option<HolderDigest>,
    ) -> LockResponse {
        // Refusals in this order: invalid name, unknown lease. Then: a free lock is granted;
        // the holder asking again under the same lease gets its grant again (with the same
        // digest; with another it is busy); a session already in line keeps its place
        // (whatever `wait` says; busy with another digest); otherwise a try is busy, a wait
        // that would close a cycle is refused, and then one past a waiter limit (the line's,
        // then the table's). Granting a free lock past the locks-held limit is refused.
        if name.is_empty() || name.len() > KEY_BYTES_MAX {
            return LockResponse::Invalid {
                reason: String::new(),
            };
        }
        if !self.leases.contains_key(&lease) {
            return LockResponse::LeaseNotFound { lease };
        }
        let Some(lock) = self.locks.get(&name) else {
            if self.locks.len() >= self.limits.locks_held {
                return self.limit_reached(Limit::LocksHeld);
            }
            self.locks.insert(
                name,
                ModelLock {
                    holder: session,
                    lease,
                    token: FencingToken(index),
                    digest,
                    waiters: Vec::new(),
                },
            );
            return LockResponse::Granted {
                token: FencingToken(index),
            };
        };
        if lock.holder == session && lock.lease == lease {
            if lock.digest != digest {
                return LockResponse::Busy {
                    holder: lock.holder,
                };
            }
            return LockResponse::Granted { token: lock.token };
        }
        if let Some(position) = lock
            .waiters
            .iter()
            .position(|(waiter, _, _)| *waiter == session)
        {
            if lock.waiters[position].2 != digest {
                return LockResponse::Busy {
                    holder: lock.holder,
                };
            }
            return LockResponse::Queued { position };
        }
        if !wait {
            return LockResponse::Busy {
                holder: lock.holder,
            };
        }
        // Joining the line means waiting for the holder and everyone ahead in it.
        let blockers: Vec<SessionId> = std::iter::once(lock.holder)
            .chain(lock.waiters.iter().map(|(ahead, _, _)| *ahead))
            .collect();
        if blockers
            .iter()
            .any(|blocker| *blocker == session || self.waits_for(*blocker, session))
        {
            // The exact cycle reported is the implementation's choice among possibly several;
            // `compare_answers` checks it is a real one.
            return LockResponse::Deadlock { cycle: vec![] };
        }
        if lock.waiters.len() >= self.limits.waiters_per_lock {
            return self.limit_reached(Limit::WaitersPerLock);
        }
        let waiters: usize = self.locks.values().map(|lock| lock.waiters.len()).sum();
        if waiters >= self.limits.waiters {
            return self.limit_reached(Limit::Waiters);
        }
        let lock = self.locks.get_mut(&name).expect("looked up above");
        lock.waiters.push((session, lease, digest));
        LockResponse::Queued {
            position: lock.waiters.len() - 1,
        }
    }

    /// Every (waiter, blocker) pair: the waiter waits for a lock the blocker holds, or is
    /// behind the blocker in that lock's line.
    fn wait_edges(&self) -> BTreeSet<(SessionId, SessionId)> {
        let mut edges = BTreeSet::new();
        for lock in self.locks.values() {
            for (position, (waiter, _, _)) in lock.waiters.iter().enumerate() {
                edges.insert((*waiter, lock.holder));
                for (ahead, _, _) in &lock.waiters[..position] {
                    if ahead != waiter {
                        edges.insert((*waiter, *ahead));
                    }
                }
            }
        }
        edges
    }

    /// Whether `from` waits, directly or through others, for `to`.
    fn waits_for(&self, from: SessionId, to: SessionId) -> bool {
        let edges = self.wait_edges();
        let mut reached = BTreeSet::from([from]);
        let mut frontier = vec![from];
        while let Some(session) = frontier.pop() {
            for (waiter, holder) in &edges {
                if *waiter == session {
                    if *holder == to {
                        return true;
                    }
                    if reached.insert(*holder) {
                        frontier.push(*holder);
                    }
                }
            }
        }
        false
    }

    /// The lock's holder is gone: the first waiter in line gets it with a token that is this
    /// index; with nobody waiting it is free.
    fn pass_on(&mut self, index: u64, name: &str) {
        let Some(mut lock) = self.locks.remove(name) else {
            return;
        };
        // Waiters under ended leases were removed when their lease ended; skipping them here
        // too keeps the model right if that ever changed.
        lock.waiters
            .retain(|(_, lease, _)| self.leases.contains_key(lease));
        if lock.waiters.is_empty() {
            return;
        }
        // The next holder's grant keeps the digest it asked with.
        let (holder, lease, digest) = lock.waiters.remove(0);
        self.locks.insert(
            name.to_string(),
            ModelLock {
                holder,
                lease,
                token: FencingToken(index),
                digest,
                waiters: lock.waiters,
            },
        );
    }

    fn end_lease(&mut self, index: u64, lease: LeaseId) -> LockResponse {
        if self.leases.remove(&lease).is_none() {
            return LockResponse::LeaseNotFound { lease };
        }
        let bound: Vec<String> = self
            .keys
            .iter()
            .filter(|(_, entry)| entry.lease == Some(lease))
            .map(|(key, _)| key.clone())
            .collect();
        for key in &bound {
            self.keys.remove(key);
            self.changes.push(Change {
                version: index,
                key: key.clone(),
                value: None,
            });
        }
        for lock in self.locks.values_mut() {
            lock.waiters.retain(|(_, waiting, _)| *waiting != lease);
        }
        let held: Vec<String> = self
            .locks
            .iter()
            .filter(|(_, lock)| lock.lease == lease)
            .map(|(name, _)| name.clone())
            .collect();
        for name in &held {
            self.pass_on(index, name);
        }
        LockResponse::LeaseEnded {
            lease,
            released_locks: held,
            deleted_keys: bound.len(),
        }
    }
}

/// Compares the table's answer with the model's. `Invalid` reasons are prose and only need to
/// be there; a `Deadlock` cycle must be a real cycle of the model's graph through the caller.
fn compare_answers(
    model_before: &Model,
    command: &LockCommand,
    actual: &LockResponse,
    expected: &LockResponse,
) -> Result<(), TestCaseError> {
    match (actual, expected) {
        (LockResponse::Invalid { reason }, LockResponse::Invalid { .. }) => {
            prop_assert!(!reason.is_empty(), "an Invalid answer explains itself");
        }
        (LockResponse::Deadlock { cycle }, LockResponse::Deadlock { .. }) => {
            let (LockCommand::Acquire { name, session, .. }
            | LockCommand::AcquireWithHolder { name, session, .. }
            | LockCommand::GrantAndAcquire { name, session, .. }) = command
            else {
                return Err(TestCaseError::fail(format!("deadlock for {command:?}")));
            };
            let holder = model_before.locks[name].holder;
            let blockers: BTreeSet<SessionId> = std::iter::once(holder)
                .chain(
                    model_before.locks[name]
                        .waiters
                        .iter()
                        .map(|(ahead, _, _)| *ahead),
                )
                .collect();
            let edges = model_before.wait_edges();
            prop_assert_eq!(
                cycle.first(),
                Some(session),
                "the cycle starts with the caller"
            );
            let distinct: BTreeSet<_> = cycle.iter().collect();
            prop_assert_eq!(
                distinct.len(),
                cycle.len(),
                "each session once: {:?}",
                cycle
            );
            if holder == *session {
                prop_assert_eq!(cycle, &vec![*session]);
            } else {
                prop_assert!(
                    cycle.get(1).is_some_and(|next| blockers.contains(next)),
                    "then the holder or someone ahead in line: {:?}",
                    cycle
                );
                for pair in cycle[1..].windows(2) {
                    prop_assert!(
                        edges.contains(&(pair[0], pair[1])),
                        "{:?} in {:?}",
                        pair,
                        cycle
                    );
                }
                let last = *cycle.last().expect("at least two");
                prop_assert!(edges.contains(&(last, *session)), "closes: {:?}", cycle);
            }
        }
        _ => prop_assert_eq!(actual, expected, "answer to {:?}", command),
    }
    Ok(())
}

fn query(machine: &WithLocks<()>, query: LockQuery) -> LockQueryResponse {
    machine.locks().query(&query)
}

/// Compares every observable part of the table with the model.
fn compare_state(
    machine: &WithLocks<()>,
    model: &Model,
    leases_ever: &[LeaseId],
    index: u64,
) -> Result<(), TestCaseError> {
    let key_value = |key: &str, entry: &ModelKey| KeyValue {
        key: key.to_string(),
        value: entry.value.clone(),
        version: entry.version,
        lease: entry.lease,
    };
    for key in KEYS {
        let expected = model.keys.get(key).map(|entry| key_value(key, entry));
        prop_assert_eq!(
            query(machine, LockQuery::Get { key: key.into() }),
            LockQueryResponse::Value(expected),
            "key {:?}",
            key
        );
    }
    for prefix in PREFIXES {
        // Pages of two, from each key in turn, against the model's keys after it.
        for start_after in [None, Some("a/0"), Some("b")] {
            let after: Vec<KeyValue> = model
                .keys
                .iter()
                .filter(|(key, _)| key.starts_with(prefix))
                .filter(|(key, _)| start_after.is_none_or(|start| key.as_str() > start))
                .map(|(key, entry)| key_value(key, entry))
                .collect();
            prop_assert_eq!(
                query(
                    machine,
                    LockQuery::RangePage {
                        prefix: prefix.into(),
                        start_after: start_after.map(str::to_string),
                        limit: 2,
                    }
                ),
                LockQueryResponse::Page(ha_lock::KvPage {
                    more: after.len() > 2,
                    values: after.into_iter().take(2).collect(),
                }),
                "page of {:?} after {:?}",
                prefix,
                start_after
            );
        }
        let expected = model
            .keys
            .iter()
            .filter(|(key, _)| key.starts_with(prefix))
            .map(|(key, entry)| key_value(key, entry))
            .collect();
        prop_assert_eq!(
            query(
                machine,
                LockQuery::Range {
                    prefix: prefix.into(),
                    limit: 100
                }
            ),
            LockQueryResponse::Values(expected),
            "range {:?}",
            prefix
        );
    }
    for name in LOCKS {
        let expected = model.locks.get(name).map(|lock| LockState {
            holder: lock.holder,
            lease: lock.lease,
            token: lock.token,
            waiters: lock.line(),
        });
        prop_assert_eq!(
            query(machine, LockQuery::Lock { name: name.into() }),
            LockQueryResponse::Lock(expected),
            "lock {:?}",
            name
        );
    }
    let lease_state = |lease: LeaseId, record: &ModelLease| LeaseState {
        lease,
        session: record.session,
        ttl_ms: record.ttl_ms,
        renewals: record.renewals,
    };
    prop_assert_eq!(
        query(machine, LockQuery::Leases),
        LockQueryResponse::Leases(
            model
                .leases
                .iter()
                .map(|(lease, record)| lease_state(*lease, record))
                .collect()
        )
    );
    for lease in leases_ever.iter().copied().chain([NEVER_GRANTED]) {
        prop_assert_eq!(
            query(machine, LockQuery::Lease { lease }),
            LockQueryResponse::Lease(
                model
                    .leases
                    .get(&lease)
                    .map(|record| lease_state(lease, record))
            ),
            "lease {}",
            lease
        );
    }
    // The whole change log, and a watch of one prefix from half-way.
    prop_assert_eq!(
        query(
            machine,
            LockQuery::Changes {
                prefix: String::new(),
                after_version: 0,
                limit: 10_000
            }
        ),
        LockQueryResponse::Changes(model.changes.clone())
    );
    let half_way = index / 2;
    prop_assert_eq!(
        query(
            machine,
            LockQuery::Changes {
                prefix: "a/".into(),
                after_version: half_way,
                limit: 10_000
            }
        ),
        LockQueryResponse::Changes(
            model
                .changes
                .iter()
                .filter(|change| change.version > half_way && change.key.starts_with("a/"))
                .cloned()
                .collect()
        )
    );
    Ok(())
}

/// What the invariants remember between steps.
#[derive(Default)]
struct History {
    /// Every grant seen: (lock, token) to (holder, lease). A fencing token must name one grant
    /// only, or two holders could both pass a fenced write.
    grants: BTreeMap<(String, FencingToken), (SessionId, LeaseId)>,
    /// The largest token each lock has had.
    largest_token: BTreeMap<String, FencingToken>,
}

/// Invariants of the real table, checked from its answers alone.
fn check_invariants(
    machine: &WithLocks<()>,
    history: &mut History,
    index: u64,
    check_cycles: bool,
) -> Result<(), TestCaseError> {
    let LockQueryResponse::Leases(leases) = query(machine, LockQuery::Leases) else {
        return Err(TestCaseError::fail("leases query"));
    };
    let alive: BTreeSet<LeaseId> = leases.iter().map(|lease| lease.lease).collect();
    let mut graph = WaitForGraph::default();
    let mut edges = Vec::new();
    for name in LOCKS {
        // A lock answers with one state, so it has at most one holder at a time; what can go
        // wrong is a token naming two grants, or a new grant not getting a larger token.
        let LockQueryResponse::Lock(state) = query(machine, LockQuery::Lock { name: name.into() })
        else {
            return Err(TestCaseError::fail("lock query"));
        };
        let Some(state) = state else { continue };
        prop_assert!(
            alive.contains(&state.lease),
            "{} held under dead lease {}",
            name,
            state.lease
        );
        prop_assert!(
            state.token <= FencingToken(index),
            "{} has a token from the future",
            name
        );
        let grant = (state.holder, state.lease);
        match history.grants.get(&(name.to_string(), state.token)) {
            Some(seen) => prop_assert_eq!(
                *seen,
                grant,
                "token {} of {} names two grants",
                state.token,
                name
            ),
            None => {
                let largest = history.largest_token.entry(name.to_string()).or_default();
                prop_assert!(
                    state.token > *largest,
                    "a new grant of {} got token {}, not above {}",
                    name,
                    state.token,
                    largest
                );
                *largest = state.token;
                history
                    .grants
                    .insert((name.to_string(), state.token), grant);
            }
        }
        let mut in_line = BTreeSet::new();
        for (waiter, lease) in &state.waiters {
            prop_assert!(
                *waiter != state.holder,
                "{} holds and waits for {}",
                waiter,
                name
            );
            prop_assert!(
                in_line.insert(*waiter),
                "{} waits twice for {}",
                waiter,
                name
            );
            prop_assert!(
                alive.contains(lease),
                "{} waits for {} under dead lease {}",
                waiter,
                name,
                lease
            );
            graph.add_wait(*waiter, state.holder);
            edges.push((*waiter, state.holder));
            let position = state
                .waiters
                .iter()
                .position(|(other, _)| other == waiter)
                .unwrap_or(0);
            for (ahead, _) in &state.waiters[..position] {
                if ahead != waiter {
                    graph.add_wait(*waiter, *ahead);
                    edges.push((*waiter, *ahead));
                }
            }
        }
    }
    for key in KEYS {
        if let LockQueryResponse::Value(Some(value)) =
            query(machine, LockQuery::Get { key: key.into() })
            && let Some(lease) = value.lease
        {
            prop_assert!(
                alive.contains(&lease),
                "{} bound to dead lease {}",
                key,
                lease
            );
        }
    }
    if check_cycles {
        // A cycle through an existing wait is what that waiter waiting again would close.
        for (waiter, holder) in edges {
            prop_assert_eq!(
                graph.cycle_if_waits(waiter, holder),
                None,
                "a wait-for cycle"
            );
        }
    }
    Ok(())
}

/// A release that released presented the key the grant was made with (none for a plain
/// grant), so a wrong holder never releases; a refused one changed nothing (the state
/// comparison after every step checks that).
fn check_release_had_the_key(
    model_before: &Model,
    command: &LockCommand,
    actual: &LockResponse,
) -> Result<(), TestCaseError> {
    let (name, token, presented) = match command {
        LockCommand::Release { name, token } => (name, *token, None),
        LockCommand::ReleaseWithHolder {
            name,
            token,
            holder_key,
        } => (name, *token, Some(holder_digest(holder_key))),
        LockCommand::ReleaseAndRevoke {
            name,
            token,
            holder_key,
        } => (name, *token, holder_key.as_ref().map(holder_digest)),
        _ => return Ok(()),
    };
    if matches!(
        actual,
        LockResponse::Released | LockResponse::LeaseEnded { .. }
    ) {
        let grant = model_before.locks.get(name);
        prop_assert!(
            grant.is_some_and(|lock| lock.token == token && lock.digest == presented),
            "{:?} released {:?} (granted as {:?})",
            command,
            name,
            grant
        );
    }
    Ok(())
}

/// Turns a step into a concrete command from the model's state (so picks like "the holder's
/// token" mean something), or `None` for a reboot.
fn command_of(
    step: &Step,
    model: &Model,
    leases_ever: &[LeaseId],
    tokens_ever: &BTreeMap<String, Vec<FencingToken>>,
) -> Option<LockCommand> {
    let pick = |LeasePick(n): LeasePick| -> LeaseId {
        let n = usize::from(n);
        let alive: Vec<LeaseId> = model.leases.keys().copied().collect();
        // One value in sixteen names a lease never granted; most of the others a live lease,
        // so that commands mostly get past the lease check; the rest any lease ever granted.
        if leases_ever.is_empty() || n % 16 == 15 {
            NEVER_GRANTED
        } else if n % 4 != 0 && !alive.is_empty() {
            alive[(n / 4) % alive.len()]
        } else {
            leases_ever[n % leases_ever.len()]
        }
    };
    let version = |pick: VersionPick, key: &str| match pick {
        VersionPick::Unconditional => None,
        VersionPick::Current => Some(model.version_of(key)),
        VersionPick::CreateOnly => Some(0),
        VersionPick::Other(n) => Some(u64::from(n)),
    };
    let command = match *step {
        Step::Put {
            key,
            value,
            version: version_pick,
            lease,
        } => {
            let key = KEYS[usize::from(key)];
            LockCommand::Put {
                key: key.into(),
                value: vec![value; usize::from(value % 4)],
                expected_version: version(version_pick, key),
                lease: lease.map(pick),
            }
        }
        Step::Delete {
            key,
            version: version_pick,
        } => {
            let key = KEYS[usize::from(key)];
            LockCommand::Delete {
                key: key.into(),
                expected_version: version(version_pick, key),
            }
        }
        Step::Grant { session, ttl_ms } => LockCommand::LeaseGrant {
            ttl_ms: u64::from(ttl_ms),
            session: SessionId(u64::from(session)),
        },
        Step::KeepAlive { lease } => LockCommand::LeaseKeepAlive { lease: pick(lease) },
        Step::Revoke { lease } => LockCommand::LeaseRevoke { lease: pick(lease) },
        Step::Expire { lease, stale } => {
            let lease = pick(lease);
            let renewals = model.leases.get(&lease).map_or(0, |record| record.renewals);
            let renewals = match (stale, renewals) {
                (false, renewals) => renewals,
                (true, 0) => 1,
                (true, renewals) => renewals - 1,
            };
            LockCommand::LeaseExpire { lease, renewals }
        }
        Step::Acquire {
            lock,
            session,
            lease,
            wait,
            holder,
        } => {
            let session = SessionId(u64::from(session));
            let lease = match lease {
                AcquireLease::Own(n) => {
                    let own: Vec<LeaseId> = model
                        .leases
                        .iter()
                        .filter(|(_, record)| record.session == session)
                        .map(|(lease, _)| *lease)
                        .collect();
                    if own.is_empty() {
                        pick(LeasePick(n))
                    } else {
                        own[usize::from(n) % own.len()]
                    }
                }
                AcquireLease::Any(lease) => pick(lease),
            };
            let name = LOCKS[usize::from(lock)].into();
            match holder {
                None => LockCommand::Acquire {
                    name,
                    session,
                    lease,
                    wait,
                },
                Some(n) => LockCommand::AcquireWithHolder {
                    name,
                    session,
                    lease,
                    wait,
                    holder_digest: holder_digest(&holder_key(n)),
                },
            }
        }
        Step::Release {
            lock,
            token,
            key,
            end_lease,
        } => {
            let name = LOCKS[usize::from(lock)];
            let current = model.locks.get(name).map(|lock| lock.token);
            let earlier = tokens_ever
                .get(name)
                .and_then(|tokens| tokens.iter().rev().find(|token| Some(**token) != current))
                .copied();
            let token = match token {
                TokenPick::Holder => current.or(earlier).unwrap_or(FencingToken(1)),
                TokenPick::Previous => earlier
                    .or(current.map(|token| FencingToken(token.0 + 1)))
                    .unwrap_or(FencingToken(1)),
                TokenPick::Other(n) => FencingToken(u64::from(n)),
            };
            // The key whose digest the grant keeps, found from the model's digest.
            let grant_key = model
                .locks
                .get(name)
                .and_then(|lock| lock.digest)
                .and_then(|digest| {
                    HOLDER_KEYS
                        .into_iter()
                        .find(|key| holder_digest(key) == digest)
                });
            let key = match key {
                KeyPick::Plain => None,
                KeyPick::Holder => grant_key,
                KeyPick::Other(n) => Some(holder_key(n)),
            };
            match (key, end_lease) {
                (holder_key, true) => LockCommand::ReleaseAndRevoke {
                    name: name.into(),
                    token,
                    holder_key,
                },
                (None, false) => LockCommand::Release {
                    name: name.into(),
                    token,
                },
                (Some(holder_key), false) => LockCommand::ReleaseWithHolder {
                    name: name.into(),
                    token,
                    holder_key,
                },
            }
        }
        Step::Cycle {
            lock,
            session,
            wait,
            holder,
            ttl_ms,
        } => LockCommand::GrantAndAcquire {
            name: LOCKS[usize::from(lock)].into(),
            session: SessionId(u64::from(session)),
            ttl_ms: u64::from(ttl_ms),
            wait,
            holder_digest: holder.map(|n| holder_digest(&holder_key(n))),
        },
        Step::CancelWait { lock, session } => LockCommand::CancelWait {
            name: LOCKS[usize::from(lock)].into(),
            session: SessionId(u64::from(session)),
        },
        Step::Txn {
            ref compares,
            ref success,
            ref failure,
        } => {
            let ops = |ops: &[(u8, Option<u8>, Option<LeasePick>)]| -> Vec<TxnOp> {
                ops.iter()
                    .map(|&(key, value, lease)| {
                        let key = KEYS[usize::from(key)].to_string();
                        match value {
                            Some(value) => TxnOp::Put {
                                key,
                                value: vec![value],
                                lease: lease.map(pick),
                            },
                            None => TxnOp::Delete { key },
                        }
                    })
                    .collect()
            };
            const CMPS: [VersionCmp; 4] = [
                VersionCmp::Equal,
                VersionCmp::NotEqual,
                VersionCmp::Less,
                VersionCmp::Greater,
            ];
            LockCommand::Txn {
                compares: compares
                    .iter()
                    .map(|&(key, cmp, version_pick)| {
                        let key = KEYS[usize::from(key)];
                        TxnCompare {
                            key: key.to_string(),
                            cmp: CMPS[usize::from(cmp) % CMPS.len()],
                            version: version(version_pick, key).unwrap_or(0),
                        }
                    })
                    .collect(),
                success: ops(success),
                failure: ops(failure),
            }
        }
        Step::DeletePrefix { prefix } => LockCommand::DeletePrefix {
            prefix: PREFIXES[usize::from(prefix)].to_string(),
        },
        Step::Reboot => return None,
    };
    Some(command)
}

fn run(steps: &[(Step, u8)], check_cycles: bool, limits: LockLimits) -> Result<(), TestCaseError> {
    let mut machine = WithLocks::with_limits((), limits);
    let mut model = Model {
        limits,
        ..Model::default()
    };
    let mut history = History::default();
    let mut leases_ever: Vec<LeaseId> = Vec::new();
    let mut tokens_ever: BTreeMap<String, Vec<FencingToken>> = BTreeMap::new();
    let mut index = 0_u64;
    for (number, (step, gap)) in steps.iter().enumerate() {
        let Some(command) = command_of(step, &model, &leases_ever, &tokens_ever) else {
            let bytes = machine
                .snapshot()
                .map_err(|error| TestCaseError::fail(format!("snapshot: {error}")))?;
            let mut restored = WithLocks::with_limits((), limits);
            restored
                .restore(&bytes)
                .map_err(|error| TestCaseError::fail(format!("restore: {error}")))?;
            prop_assert_eq!(
                restored.locks(),
                machine.locks(),
                "restored at step {}",
                number
            );
            machine = restored;
            continue;
        };
        // Host commands take some of the indexes in between.
        index += 1 + u64::from(gap % 3);
        let model_before = model.clone();
        let expected = model.apply(index, &command);
        let actual = match machine.apply(LogIndex(index), Command::Lock(command.clone())) {
            Response::Lock(response) => response,
            Response::Host(()) => return Err(TestCaseError::fail("a host response")),
        };
        compare_answers(&model_before, &command, &actual, &expected).map_err(|error| {
            TestCaseError::fail(format!("step {number} at index {index}: {error}"))
        })?;
        check_release_had_the_key(&model_before, &command, &actual).map_err(|error| {
            TestCaseError::fail(format!("step {number} at index {index}: {error}"))
        })?;
        if let LockResponse::LeaseGranted { lease, .. }
        | LockResponse::GrantedWithLease { lease, .. }
        | LockResponse::QueuedWithLease { lease, .. } = actual
        {
            leases_ever.push(lease);
        }
        for (name, lock) in &model.locks {
            let tokens = tokens_ever.entry(name.clone()).or_default();
            if tokens.last() != Some(&lock.token) {
                tokens.push(lock.token);
            }
        }
        compare_state(&machine, &model, &leases_ever, index).map_err(|error| {
            TestCaseError::fail(format!(
                "after step {number} ({command:?}) at index {index}: {error}"
            ))
        })?;
        check_invariants(&machine, &mut history, index, check_cycles).map_err(|error| {
            TestCaseError::fail(format!(
                "after step {number} ({command:?}) at index {index}: {error}"
            ))
        })?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    })]

    /// The table answers every command as the model does, shows the same state after it, and
    /// keeps its invariants, across reboots from snapshots.
    #[test]
    fn the_lock_table_agrees_with_the_model(
        steps in proptest::collection::vec((step(), any::<u8>()), 1..200)
    ) {
        run(&steps, false, LockLimits::default())?;
    }

    /// The detector refuses every acquire that would close a cycle, so no cycle ever exists.
    #[test]
    fn the_wait_for_graph_never_has_a_cycle(
        steps in proptest::collection::vec((step(), any::<u8>()), 1..200)
    ) {
        run(&steps, true, LockLimits::default())?;
    }

    /// The same with limits the steps reach often (a few keys, leases, held locks and
    /// waiters): every refusal at a limit, and what is refused first when several apply,
    /// agree with the model, and nothing changes when one is refused.
    #[test]
    fn the_lock_table_agrees_with_the_model_at_small_limits(
        steps in proptest::collection::vec((step(), any::<u8>()), 1..200)
    ) {
        let mut limits = LockLimits::default();
        limits.keys = 2;
        limits.leases = 5;
        limits.locks_held = 2;
        limits.waiters = 3;
        limits.waiters_per_lock = 2;
        run(&steps, true, limits)?;
    }
}

/// A step of the expiry tracker's world: time passes (while leading or not), or the applied
/// leases change.
#[derive(Clone, Debug)]
enum TrackerStep {
    Tick { advance_ms: u16, leading: bool },
    Grant { ttl_ms: u16 },
    KeepAlive { pick: u8 },
    End { pick: u8 },
}

fn tracker_step() -> impl Strategy<Value = TrackerStep> {
    prop_oneof![
        6 => (0..400_u16, proptest::bool::weighted(0.85))
            .prop_map(|(advance_ms, leading)| TrackerStep::Tick { advance_ms, leading }),
        2 => (0..600_u16).prop_map(|ttl_ms| TrackerStep::Grant { ttl_ms }),
        2 => any::<u8>().prop_map(|pick| TrackerStep::KeepAlive { pick }),
        1 => any::<u8>().prop_map(|pick| TrackerStep::End { pick }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    })]

    /// While leading, the tracker proposes an expiry only once the lease's TTL has passed
    /// since this leader first saw it with its current renewal count (a keep-alive or a
    /// lost-and-regained leadership starts the TTL afresh); the proposal carries that count;
    /// and a lease that is due and was not proposed yet is proposed. Not leading, it proposes
    /// nothing.
    #[test]
    fn lease_expiry_never_comes_early(
        steps in proptest::collection::vec(tracker_step(), 1..200)
    ) {
        let mut tracker = LeaseExpiryTracker::default();
        let mut leases: Vec<LeaseState> = Vec::new();
        let mut next_lease: LeaseId = LeaseId(1);
        let mut now = Millis(0);
        // For each lease, the renewal count this leader saw and since when, and whether it
        // was proposed at that count.
        let mut seen: BTreeMap<LeaseId, (u64, Millis, bool)> = BTreeMap::new();
        for step in steps {
            match step {
                TrackerStep::Grant { ttl_ms } => {
                    leases.push(LeaseState { lease: next_lease, session: SessionId(1), ttl_ms: u64::from(ttl_ms), renewals: 0 });
                    next_lease = LeaseId(next_lease.0 + 1);
                }
                TrackerStep::KeepAlive { pick } => {
                    if !leases.is_empty() {
                        let position = usize::from(pick) % leases.len();
                        leases[position].renewals += 1;
                    }
                }
                TrackerStep::End { pick } => {
                    if !leases.is_empty() {
                        leases.remove(usize::from(pick) % leases.len());
                    }
                }
                TrackerStep::Tick { advance_ms, leading } => {
                    now = now + u64::from(advance_ms);
                    let proposed = tracker.on_tick(now, leading.then_some(Term(1)), &leases);
                    if !leading {
                        prop_assert!(proposed.is_empty(), "proposed {:?} while not leading", proposed);
                        seen.clear();
                        continue;
                    }
                    let mut still_seen = BTreeMap::new();
                    for lease in &leases {
                        let entry = match seen.get(&lease.lease) {
                            Some(&(renewals, since, was_proposed)) if renewals == lease.renewals => (renewals, since, was_proposed),
                            _ => (lease.renewals, now, false),
                        };
                        still_seen.insert(lease.lease, entry);
                    }
                    seen = still_seen;
                    let mut proposed_now = BTreeSet::new();
                    for command in &proposed {
                        let LockCommand::LeaseExpire { lease, renewals } = command else {
                            return Err(TestCaseError::fail(format!("proposed {command:?}")));
                        };
                        prop_assert!(proposed_now.insert(*lease), "{} proposed twice at once", lease);
                        let Some(state) = leases.iter().find(|state| state.lease == *lease) else {
                            return Err(TestCaseError::fail(format!("expiry of unknown lease {lease}")));
                        };
                        let (seen_renewals, since, _) = seen[lease];
                        prop_assert_eq!(*renewals, seen_renewals, "expiry of {} with a stale count", lease);
                        prop_assert!(
                            now.saturating_since(since) >= state.ttl_ms,
                            "lease {} (ttl {} ms) expired at {} after being seen at {}",
                            lease, state.ttl_ms, now, since
                        );
                    }
                    for lease in &leases {
                        let entry = seen.get_mut(&lease.lease).expect("recorded above");
                        let due = now.saturating_since(entry.1) >= lease.ttl_ms;
                        if due && !entry.2 {
                            prop_assert!(proposed_now.contains(&lease.lease), "lease {} is due but was not proposed", lease.lease);
                        }
                        entry.2 |= proposed_now.contains(&lease.lease);
                    }
                }
            }
        }
    }
}
