//! The lock table: KV with versions, leases, fenced FIFO locks and a change log, as one
//! deterministic state.

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::sync::Arc;

use ha_core::LogIndex;
use imbl::{OrdMap, OrdSet, Vector};

use crate::command::{
    Change, FencingToken, HolderDigest, HolderKey, KEY_BYTES_MAX, KeyValue, LeaseId, LeaseState,
    Limit, LimitRefusals, LockCommand, LockQuery, LockQueryResponse, LockResponse, LockState,
    LockStats, SessionId, VALUE_BYTES_MAX, WaitState, holder_digest,
};
use crate::wait_lines::WaitLines;

mod kv_batch;

mod lock_cycle;

/// Changes kept for watches; older ones are compacted away.
pub const CHANGES_MAX: usize = 100_000;
/// Most bytes of values the change records kept for watches refer to; older records are
/// compacted away past it, as past [`CHANGES_MAX`]. A record whose value is still the key's
/// current value shares it with the key (it costs no second copy), but every record's value
/// counts here: the sum is a function of the replicated changes alone, so every replica
/// compacts at the same change. With values of [`VALUE_BYTES_MAX`] (1 MiB) the log keeps the
/// last 64 writes; with 100-byte values the count limit comes first.
pub const CHANGE_VALUE_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Most results of one range or changes query.
pub const QUERY_RESULTS_MAX: usize = 10_000;

// The limits below bound what clients can make the table hold (docs/ARCHITECTURE.md, ha-lock: every
// count a client can raise is bounded by a named limit with a clear error). A command that
// would pass one is answered `LockResponse::LimitReached` and changes nothing. They are checked
// when a command is applied, so every replica reaches the same answer; every replica must
// therefore run with the same values (`WithLocks` always uses these).

/// Most keys stored at once. Sized for large key spaces (the benchmarks write hundreds of
/// thousands of keys); what bounds memory per key is [`KEY_BYTES_MAX`] and [`VALUE_BYTES_MAX`].
pub const KEYS_MAX: usize = 1_048_576;
/// Most live leases at once. The leader's expiry tracker reads every lease on each tick, and
/// each waiting HTTP client holds one, so this bounds that read too (16,384 leases are about
/// 500 KiB). A session is known to the table only through its leases (each names one), so
/// this also bounds the sessions the table knows; the replication layer bounds its own
/// session table separately (`ha_replicate::replica::SESSIONS_MAX`).
pub const LEASES_MAX: usize = 16_384;
/// Most locks held at once.
pub const LOCKS_HELD_MAX: usize = 65_536;
/// Most waits over all locks' lines together (a session waiting for two locks counts twice).
pub const WAITERS_MAX: usize = 16_384;
/// Most sessions waiting in one lock's line. Not the table's cost (an acquire at the back of a
/// 10,000-waiter line applies in about 1 µs: `bench/src/bin/lock_apply_bench.rs`) but the
/// waiters': each waiting `Locks` handle (each HTTP waiter) polls its own wait
/// ([`LockQuery::Wait`], O(log n)) from its node's applied state, every 15 ms for its first
/// 250 ms and then slowing to every 60 ms. Measured on 3 debug `bot` processes on 2 cores
/// (`tests/processes/waiter_flood.rs`, a writer's p99 with the line full over its p99 alone):
/// 1,024 waiters 1.62x, 2.21x, 2.56x over three runs (512: 1.88x; 256: 1.01x), no election.
/// When each waiter read the whole lock state at QUORUM every 15 ms, 128 waiters gave 4.9x,
/// 256 18x, and with 1,024 a lease grant timed out; reading only its own wait locally but
/// without slowing down, 11x. 1,024 measured again on a quiet machine: 2.37x, 2.38x, 2.79x,
/// too close to the 3x the flood test asserts, so the limit is 512: 1.37x, 1.68x, 1.54x there.
pub const WAITERS_PER_LOCK_MAX: usize = 512;

/// The limits a [`KvLockTable`] enforces; [`Default`] is the constants above, which is what
/// [`WithLocks`](crate::WithLocks) uses.
///
/// # Correctness requirements
/// Every replica of one table must use the same limits: a command refused on one replica and
/// applied on another makes them diverge. Other values are for tests and benchmarks of a
/// table on its own.
///
/// ```
/// use ha_lock::{LockLimits, WAITERS_PER_LOCK_MAX};
/// let mut limits = LockLimits::default();
/// assert_eq!(limits.waiters_per_lock, WAITERS_PER_LOCK_MAX);
/// limits.waiters_per_lock = 10_000;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockLimits {
    /// Most keys stored ([`KEYS_MAX`]).
    pub keys: usize,
    /// Most live leases ([`LEASES_MAX`]).
    pub leases: usize,
    /// Most locks held at once ([`LOCKS_HELD_MAX`]).
    pub locks_held: usize,
    /// Most waits over all lines ([`WAITERS_MAX`]).
    pub waiters: usize,
    /// Most waiters in one line ([`WAITERS_PER_LOCK_MAX`]).
    pub waiters_per_lock: usize,
    /// Most change records kept for watches ([`CHANGES_MAX`]); older ones are compacted
    /// away, not refused.
    pub changes: usize,
    /// Most bytes of values the kept change records refer to ([`CHANGE_VALUE_BYTES_MAX`]);
    /// older records are compacted away, not refused.
    pub change_value_bytes: u64,
}

impl Default for LockLimits {
    fn default() -> Self {
        Self {
            keys: KEYS_MAX,
            leases: LEASES_MAX,
            locks_held: LOCKS_HELD_MAX,
            waiters: WAITERS_MAX,
            waiters_per_lock: WAITERS_PER_LOCK_MAX,
            changes: CHANGES_MAX,
            change_value_bytes: CHANGE_VALUE_BYTES_MAX,
        }
    }
}

impl LockLimits {
    /// The value of `limit`.
    pub fn max(&self, limit: Limit) -> usize {
        match limit {
            Limit::Keys => self.keys,
            Limit::Leases => self.leases,
            Limit::LocksHeld => self.locks_held,
            Limit::Waiters => self.waiters,
            Limit::WaitersPerLock => self.waiters_per_lock,
        }
    }
}

/// A key's current value. The value is shared (one allocation) with the change record that
/// wrote it, while that record is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) value: Arc<[u8]>,
    pub(crate) version: u64,
    pub(crate) lease: Option<LeaseId>,
}

/// A live lease. `keys` and `locks` index what it holds: they equal the keys whose entry
/// names this lease and the locks held under it, so a snapshot does not carry them (restore
/// derives them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Lease {
    pub(crate) session: SessionId,
    pub(crate) ttl_ms: u64,
    pub(crate) renewals: u64,
    pub(crate) keys: OrdSet<String>,
    pub(crate) locks: OrdSet<String>,
}

/// A held lock and its line of waiters (bounded by [`WAITERS_PER_LOCK_MAX`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Lock {
    pub(crate) holder: SessionId,
    pub(crate) lease: LeaseId,
    pub(crate) token: FencingToken,
    /// The digest of the holder's key when it was granted with one: only a release that
    /// presents that key releases it.
    pub(crate) holder_digest: Option<HolderDigest>,
    pub(crate) waiters: VecDeque<Waiter>,
}

/// A session waiting in a lock's line, under a lease, with the digest of its holder key if it
/// asked with one (the grant takes it over).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Waiter {
    pub(crate) session: SessionId,
    pub(crate) lease: LeaseId,
    pub(crate) holder_digest: Option<HolderDigest>,
}

/// One kept change, as [`Change`] but with the value shared with the entry it wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChangeRecord {
    pub(crate) version: u64,
    pub(crate) key: String,
    pub(crate) value: Option<Arc<[u8]>>,
}

impl ChangeRecord {
    fn to_change(&self) -> Change {
        Change {
            version: self.version,
            key: self.key.clone(),
            value: self.value.as_deref().map(<[u8]>::to_vec),
        }
    }

    /// What this record counts against [`CHANGE_VALUE_BYTES_MAX`].
    pub(crate) fn value_bytes(&self) -> u64 {
        self.value.as_ref().map_or(0, |value| value.len() as u64)
    }
}

/// The replicated parts of a [`KvLockTable`] at one point in time: what a snapshot holds.
/// Every collection is persistent (`imbl`), so taking this copy costs a few reference count
/// increments, and the table's later writes copy only the tree nodes they change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TableState {
    pub(crate) entries: OrdMap<String, Entry>,
    pub(crate) leases: OrdMap<LeaseId, Lease>,
    pub(crate) locks: OrdMap<String, Lock>,
    pub(crate) changes: Vector<ChangeRecord>,
    /// The highest version dropped from `changes`.
    pub(crate) compacted_through: u64,
    pub(crate) totals: LockTotals,
}

/// The replicated state of KV, leases and locks. Every method is a pure function of the state
/// and its arguments (log indexes stand in for time), so replicas that apply the same
/// commands agree.
///
/// Snapshots hold the replicated fields only; the index of the waiting lines is rebuilt from
/// them (lazily, by the first command applied after a restore), and two tables are equal when
/// their replicated fields are.
///
/// # Memory
///
/// A value is held once: the key's entry and the change record that wrote it share one
/// `Arc<[u8]>`, and the change log is bounded in bytes of values
/// ([`CHANGE_VALUE_BYTES_MAX`]) as well as in records ([`CHANGES_MAX`]). The collections are
/// persistent maps and vectors (`imbl`), so a snapshot's point-in-time copy costs O(1) to
/// take, and a write made while a snapshot is being written copies only the tree nodes it
/// changes. Measured by `bench/src/bin/kv_memory_bench.rs` (results in
/// `bench/results/kv_memory.md`):
///
/// - a value costs its bytes once (plus a 16-byte `Arc` header): the heap held 1.01x the
///   value bytes with 1 MiB values, 1.02x with 10 KB values;
/// - a key costs about 175 bytes beyond its value (a 14-byte key: its string, its map slot
///   and share of the tree's nodes), plus about 64 bytes for each change record kept (at most
///   [`CHANGES_MAX`], so at most ~6.4 MB);
/// - values a key no longer holds cost up to [`CHANGE_VALUE_BYTES_MAX`] while change records
///   still refer to them;
/// - taking a snapshot's copy took 4-8 µs from 100 keys to 300,000 keys and at the lease and
///   lock limits; writing it streams one record at a time (heap peak above the table: 64 KiB,
///   or 2 MiB with 1 MiB values); 1,000 writes while a copy is pending copied 0.25 MiB of
///   tree nodes; a restore's peak is the restored table itself.
#[derive(Clone, Debug, Default)]
pub struct KvLockTable {
    entries: OrdMap<String, Entry>,
    leases: OrdMap<LeaseId, Lease>,
    locks: OrdMap<String, Lock>,
    changes: Vector<ChangeRecord>,
    /// The highest version dropped from `changes`.
    compacted_through: u64,
    /// Totals since the cluster began, for metrics.
    totals: LockTotals,
    /// The bytes of values `changes` refers to (derived from `changes`).
    change_value_bytes: u64,
    /// What the table refuses to grow past (configuration, not state).
    limits: LockLimits,
    /// Who waits where, for deadlock detection; derived from `locks`.
    lines: WaitLines,
    /// Whether `lines` was built from `locks` (false after a restore until the next apply).
    lines_built: bool,
    /// Commands refused at a limit by this replica since it started (not replicated state:
    /// a metric, reset by a restore).
    refusals: LimitRefusals,
}

impl PartialEq for KvLockTable {
    fn eq(&self, other: &Self) -> bool {
        // The replicated state only: the index is derived from it, and the limits are
        // configuration.
        self.entries == other.entries
            && self.leases == other.leases
            && self.locks == other.locks
            && self.changes == other.changes
            && self.compacted_through == other.compacted_through
            && self.totals == other.totals
    }
}

impl Eq for KvLockTable {}

/// Running totals kept in the replicated state (so every replica, and a restarted one, reports
/// the same figures).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LockTotals {
    pub(crate) grants: u64,
    pub(crate) waits: u64,
    pub(crate) deadlocks: u64,
}

impl KvLockTable {
    /// An empty table that enforces `limits` instead of the default ones (see the
    /// correctness requirements of [`LockLimits`]).
    pub fn with_limits(limits: LockLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// The version of the newest change kept (or compacted away), 0 before any: what a
    /// [`ChangeFeed`](crate::ChangeFeed) publishes.
    pub(crate) fn last_change_version(&self) -> u64 {
        self.changes
            .back()
            .map_or(self.compacted_through, |change| change.version)
    }

    /// The limits this table enforces.
    pub fn limits(&self) -> LockLimits {
        self.limits
    }

    /// The token of the grant holding `name`, if held (for [`LockObserver`](crate::LockObserver)).
    pub(crate) fn lock_token(&self, name: &str) -> Option<FencingToken> {
        self.locks.get(name).map(|lock| lock.token)
    }

    /// The locks `lease` holds and their tokens (for [`LockObserver`](crate::LockObserver)).
    pub(crate) fn lease_lock_tokens(&self, lease: LeaseId) -> Vec<(String, FencingToken)> {
        let Some(record) = self.leases.get(&lease) else {
            return Vec::new();
        };
        record
            .locks
            .iter()
            .filter_map(|name| {
                self.locks
                    .get(name)
                    .filter(|lock| lock.lease == lease)
                    .map(|lock| (name.clone(), lock.token))
            })
            .collect()
    }

    /// Apply a command committed at `index`.
    pub fn apply(&mut self, index: LogIndex, command: LockCommand) -> LockResponse {
        if !self.lines_built {
            self.rebuild_lines();
        }
        let response = self.apply_command(index.0, command);
        debug_assert_eq!(
            self.lines.total(),
            self.locks
                .values()
                .map(|lock| lock.waiters.len())
                .sum::<usize>(),
            "the index of the waiting lines agrees with the lines"
        );
        response
    }

    /// Build the index of the waiting lines from `locks`. A line the table can never produce
    /// (a session listed twice, or the holder listed in its own line: only a hostile or
    /// damaged snapshot holds one) keeps only the waits the index accepts, so the two agree.
    fn rebuild_lines(&mut self) {
        let mut lines = WaitLines::default();
        let mut trimmed = Vec::new();
        for (name, lock) in &self.locks {
            let holder = lock.holder;
            let mut kept = VecDeque::new();
            let mut dropped = false;
            for waiter in &lock.waiters {
                let (session, lease) = (waiter.session, waiter.lease);
                if session == holder || lines.waits_in(session, name) {
                    dropped = true;
                    continue;
                }
                lines.join(name, session, lease);
                kept.push_back(*waiter);
            }
            if dropped {
                trimmed.push((name.clone(), kept));
            }
        }
        for (name, waiters) in trimmed {
            if let Some(lock) = self.locks.get_mut(&name) {
                lock.waiters = waiters;
            }
        }
        self.lines = lines;
        self.lines_built = true;
    }

    /// A point-in-time copy of the replicated state, for a snapshot: O(1), the collections
    /// share their nodes with the table until it writes to them.
    pub(crate) fn state(&self) -> TableState {
        TableState {
            entries: self.entries.clone(),
            leases: self.leases.clone(),
            locks: self.locks.clone(),
            changes: self.changes.clone(),
            compacted_through: self.compacted_through,
            totals: self.totals,
        }
    }

    /// A table holding `state` (read from a snapshot) that enforces `limits`. The change log
    /// is compacted to the limits at once, as the next write would.
    pub(crate) fn from_state(state: TableState, limits: LockLimits) -> Self {
        let change_value_bytes = state
            .changes
            .iter()
            .map(ChangeRecord::value_bytes)
            .fold(0u64, u64::saturating_add);
        let mut table = Self {
            entries: state.entries,
            leases: state.leases,
            locks: state.locks,
            changes: state.changes,
            compacted_through: state.compacted_through,
            totals: state.totals,
            change_value_bytes,
            limits,
            ..Self::default()
        };
        table.compact_changes();
        table
    }

    /// How many kept change records share the current value of `key` (the same allocation,
    /// not an equal copy): 1 right after a put, 0 once that change is compacted away or for a
    /// missing key. For tests and benchmarks of the memory cost.
    pub fn change_records_sharing_value(&self, key: &str) -> usize {
        let Some(entry) = self.entries.get(key) else {
            return 0;
        };
        self.changes
            .iter()
            .filter(|change| {
                change
                    .value
                    .as_ref()
                    .is_some_and(|value| Arc::ptr_eq(value, &entry.value))
            })
            .count()
    }

    fn limit_reached(&mut self, limit: Limit) -> LockResponse {
        self.refusals.count(limit);
        LockResponse::LimitReached {
            limit,
            max: u64::try_from(self.limits.max(limit)).unwrap_or(u64::MAX),
        }
    }

    fn apply_command(&mut self, index: u64, command: LockCommand) -> LockResponse {
        match command {
            LockCommand::Put {
                key,
                value,
                expected_version,
                lease,
            } => self.put(index, key, value, expected_version, lease),
            LockCommand::Delete {
                key,
                expected_version,
            } => self.delete(index, key, expected_version),
            LockCommand::Txn {
                compares,
                success,
                failure,
            } => self.apply_txn(index, compares, success, failure),
            LockCommand::DeletePrefix { prefix } => self.delete_prefix(index, &prefix),
            LockCommand::LeaseGrant { ttl_ms, session } => {
                if ttl_ms == 0 {
                    return LockResponse::Invalid {
                        reason: "a lease needs a TTL above 0 ms".to_string(),
                    };
                }
                if !self.leases.contains_key(&LeaseId(index))
                    && self.leases.len() >= self.limits.leases
                {
                    return self.limit_reached(Limit::Leases);
                }
                self.leases.insert(
                    LeaseId(index),
                    Lease {
                        session,
                        ttl_ms,
                        renewals: 0,
                        keys: OrdSet::new(),
                        locks: OrdSet::new(),
                    },
                );
                LockResponse::LeaseGranted {
                    lease: LeaseId(index),
                    ttl_ms,
                }
            }
            LockCommand::LeaseKeepAlive { lease } => match self.leases.get_mut(&lease) {
                Some(record) => {
                    // Saturating: a restored snapshot may hold any count (issue 7, hostile input).
                    record.renewals = record.renewals.saturating_add(1);
                    LockResponse::LeaseRenewed {
                        lease,
                        renewals: record.renewals,
                    }
                }
                None => LockResponse::LeaseNotFound { lease },
            },
            LockCommand::LeaseRevoke { lease } => self.end_lease(index, lease),
            LockCommand::LeaseExpire { lease, renewals } => match self.leases.get(&lease) {
                Some(record) if record.renewals != renewals => {
                    LockResponse::LeaseStillAlive { lease }
                }
                Some(_) => self.end_lease(index, lease),
                None => LockResponse::LeaseNotFound { lease },
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
            } => self.release(index, &name, token, Some(&holder_key)),
            LockCommand::GrantAndAcquire {
                name,
                session,
                ttl_ms,
                wait,
                holder_digest,
            } => self.grant_and_acquire(index, name, session, ttl_ms, wait, holder_digest),
            LockCommand::ReleaseAndRevoke {
                name,
                token,
                holder_key,
            } => self.release_and_revoke(index, &name, token, holder_key.as_ref()),
            LockCommand::CancelWait { name, session } => {
                let Some(lock) = self.locks.get_mut(&name) else {
                    return LockResponse::NotWaiting;
                };
                let Some(position) = lock
                    .waiters
                    .iter()
                    .position(|waiter| waiter.session == session)
                else {
                    return LockResponse::NotWaiting;
                };
                match lock.waiters.remove(position) {
                    Some(waiter) => {
                        self.lines.leave(&name, session, waiter.lease);
                        LockResponse::Cancelled
                    }
                    None => LockResponse::NotWaiting,
                }
            }
        }
    }

    fn put(
        &mut self,
        index: u64,
        key: String,
        value: Vec<u8>,
        expected_version: Option<u64>,
        lease: Option<LeaseId>,
    ) -> LockResponse {
        // One allocation for the value, shared by the entry and its change record.
        if key.is_empty() || key.len() > KEY_BYTES_MAX || value.len() > VALUE_BYTES_MAX {
            return LockResponse::Invalid {
                reason: format!(
                    "keys are 1 to {KEY_BYTES_MAX} bytes and values at most {VALUE_BYTES_MAX}"
                ),
            };
        }
        // One search of the key's entry for every check below (issue 17: the same key was
        // searched three times before the insert, a third of `put`'s cost in a large table).
        let existing = self
            .entries
            .get(&key)
            .map(|entry| (entry.version, entry.lease));
        let current = existing.map_or(0, |(version, _)| version);
        if expected_version.is_some_and(|expected| expected != current) {
            return LockResponse::VersionMismatch { current };
        }
        if let Some(lease) = lease
            && !self.leases.contains_key(&lease)
        {
            return LockResponse::LeaseNotFound { lease };
        }
        if existing.is_none() && self.entries.len() >= self.limits.keys {
            return self.limit_reached(Limit::Keys);
        }
        if let Some(lease) = lease
            && let Some(record) = self.leases.get_mut(&lease)
        {
            record.keys.insert(key.clone());
        }
        if let Some(old) = existing.and_then(|(_, old_lease)| old_lease)
            && Some(old) != lease
            && let Some(record) = self.leases.get_mut(&old)
        {
            record.keys.remove(&key);
        }
        let value: Arc<[u8]> = Arc::from(value);
        self.record_change(index, &key, Some(Arc::clone(&value)));
        self.entries.insert(
            key,
            Entry {
                value,
                version: index,
                lease,
            },
        );
        LockResponse::Put { version: index }
    }

    fn delete(&mut self, index: u64, key: String, expected_version: Option<u64>) -> LockResponse {
        if key.is_empty() || key.len() > KEY_BYTES_MAX {
            return LockResponse::Invalid {
                reason: format!("keys are 1 to {KEY_BYTES_MAX} bytes"),
            };
        }
        let current = self
            .entries
            .get(&key)
            .map(|entry| entry.version)
            .unwrap_or(0);
        if expected_version.is_some_and(|expected| expected != current) {
            return LockResponse::VersionMismatch { current };
        }
        let existed = self.remove_key(index, &key);
        LockResponse::Deleted { existed }
    }

    fn remove_key(&mut self, index: u64, key: &str) -> bool {
        let Some(entry) = self.entries.remove(key) else {
            return false;
        };
        if let Some(lease) = entry.lease
            && let Some(record) = self.leases.get_mut(&lease)
        {
            record.keys.remove(key);
        }
        self.record_change(index, key, None);
        true
    }

    fn record_change(&mut self, index: u64, key: &str, value: Option<Arc<[u8]>>) {
        let record = ChangeRecord {
            version: index,
            key: key.to_string(),
            value,
        };
        self.change_value_bytes = self.change_value_bytes.saturating_add(record.value_bytes());
        self.changes.push_back(record);
        self.compact_changes();
    }

    /// Drop the oldest change records while the log holds more records, or refers to more
    /// bytes of values, than the limits allow. Both counts are functions of the replicated
    /// changes, so every replica drops the same records.
    fn compact_changes(&mut self) {
        while self.changes.len() > self.limits.changes
            || self.change_value_bytes > self.limits.change_value_bytes
        {
            let Some(dropped) = self.changes.pop_front() else {
                break;
            };
            self.change_value_bytes = self
                .change_value_bytes
                .saturating_sub(dropped.value_bytes());
            self.compacted_through = dropped.version;
        }
    }

    fn end_lease(&mut self, index: u64, lease: LeaseId) -> LockResponse {
        let Some(record) = self.leases.remove(&lease) else {
            return LockResponse::LeaseNotFound { lease };
        };
        let mut deleted_keys = 0;
        for key in record.keys.iter() {
            if self.entries.get(key).and_then(|entry| entry.lease) == Some(lease) {
                deleted_keys += usize::from(self.remove_key(index, key));
            }
        }
        // Waiting under this lease ends too.
        for (name, session) in self.lines.waits_under(lease) {
            if let Some(lock) = self.locks.get_mut(&name) {
                lock.waiters
                    .retain(|waiter| (waiter.session, waiter.lease) != (session, lease));
            }
            self.lines.leave(&name, session, lease);
        }
        let mut released_locks = Vec::new();
        for name in &record.locks {
            if self.locks.get(name).is_some_and(|lock| lock.lease == lease) {
                self.pass_on(index, name);
                released_locks.push(name.clone());
            }
        }
        LockResponse::LeaseEnded {
            lease,
            released_locks,
            deleted_keys,
        }
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
        if name.is_empty() || name.len() > KEY_BYTES_MAX {
            return LockResponse::Invalid {
                reason: format!("lock names are 1 to {KEY_BYTES_MAX} bytes"),
            };
        }
        if !self.leases.contains_key(&lease) {
            return LockResponse::LeaseNotFound { lease };
        }
        let Some(lock) = self.locks.get(&name) else {
            if self.locks.len() >= self.limits.locks_held {
                return self.limit_reached(Limit::LocksHeld);
            }
            self.grant(index, name, session, lease, digest);
            return LockResponse::Granted {
                token: FencingToken(index),
            };
        };
        if lock.holder == session && lock.lease == lease {
            // Acquiring again (a retry): the same grant, for the same holder digest only (a
            // different one would hand out a grant that its key cannot release).
            if lock.holder_digest != digest {
                return LockResponse::Busy {
                    holder: lock.holder,
                };
            }
            return LockResponse::Granted { token: lock.token };
        }
        if self.lines.waits_in(session, &name)
            && let Some(position) = lock
                .waiters
                .iter()
                .position(|waiter| waiter.session == session)
        {
            // Asking again while waiting: the same place, for the same holder digest only.
            if lock.waiters[position].holder_digest != digest {
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
        // Joining the back of the line means waiting for the holder and for everyone ahead;
        // the index walks only what that reaches (see `WaitLines::cycle_if_joins`).
        let locks = &self.locks;
        if let Some(cycle) = self.lines.cycle_if_joins(session, &name, |lock| {
            locks.get(lock).map(|lock| lock.holder)
        }) {
            self.totals.deadlocks = self.totals.deadlocks.saturating_add(1);
            return LockResponse::Deadlock { cycle };
        }
        if lock.waiters.len() >= self.limits.waiters_per_lock {
            return self.limit_reached(Limit::WaitersPerLock);
        }
        if self.lines.total() >= self.limits.waiters {
            return self.limit_reached(Limit::Waiters);
        }
        let Some(lock) = self.locks.get_mut(&name) else {
            return LockResponse::NotWaiting;
        };
        lock.waiters.push_back(Waiter {
            session,
            lease,
            holder_digest: digest,
        });
        let position = lock.waiters.len() - 1;
        self.lines.join(&name, session, lease);
        self.totals.waits = self.totals.waits.saturating_add(1);
        LockResponse::Queued { position }
    }

    fn grant(
        &mut self,
        index: u64,
        name: String,
        session: SessionId,
        lease: LeaseId,
        holder_digest: Option<HolderDigest>,
    ) {
        self.totals.grants = self.totals.grants.saturating_add(1);
        if let Some(record) = self.leases.get_mut(&lease) {
            record.locks.insert(name.clone());
        }
        let waiters = self
            .locks
            .remove(&name)
            .map(|lock| lock.waiters)
            .unwrap_or_default();
        self.locks.insert(
            name,
            Lock {
                holder: session,
                lease,
                token: FencingToken(index),
                holder_digest,
                waiters,
            },
        );
    }

    /// Release `name` for `token`; a grant made with a holder digest only for the key whose
    /// digest it is (`key`), and a key only for a grant made with its digest.
    fn release(
        &mut self,
        index: u64,
        name: &str,
        token: FencingToken,
        key: Option<&HolderKey>,
    ) -> LockResponse {
        match self.locks.get(name) {
            Some(lock) if lock.token == token => {
                if !Self::key_matches(lock.holder_digest, key) {
                    return LockResponse::WrongHolder;
                }
                if let Some(record) = self.leases.get_mut(&lock.lease) {
                    record.locks.remove(name);
                }
                self.pass_on(index, name);
                LockResponse::Released
            }
            _ => LockResponse::NotHolder,
        }
    }

    /// Whether a release presenting `key` may release a grant that keeps `digest`: a grant
    /// made with a digest only for the key whose digest it is, and a key only for a grant
    /// made with its digest.
    fn key_matches(digest: Option<HolderDigest>, key: Option<&HolderKey>) -> bool {
        match (digest, key) {
            (None, None) => true,
            (Some(digest), Some(key)) => holder_digest(key) == digest,
            (None, Some(_)) | (Some(_), None) => false,
        }
    }

    /// The holder is gone: grant the lock to the first waiter whose lease is alive, or free it.
    fn pass_on(&mut self, index: u64, name: &str) {
        let Some(mut lock) = self.locks.remove(name) else {
            return;
        };
        while let Some(waiter) = lock.waiters.pop_front() {
            let (session, lease) = (waiter.session, waiter.lease);
            self.lines.leave(name, session, lease);
            if self.leases.contains_key(&lease) {
                self.locks.insert(name.to_string(), lock);
                self.grant(
                    index,
                    name.to_string(),
                    session,
                    lease,
                    waiter.holder_digest,
                );
                return;
            }
        }
    }

    /// Where `session`'s wait for lock `name` under `lease` stands. O(log n) through the index
    /// of the lines; before the index is built (a restored table that has applied nothing
    /// yet) it looks through the one line, which a limit bounds.
    fn wait_state(&self, name: &str, session: SessionId, lease: LeaseId) -> WaitState {
        let Some(lock) = self.locks.get(name) else {
            return WaitState::NotWaiting;
        };
        if lock.holder == session && lock.lease == lease {
            return WaitState::Granted { token: lock.token };
        }
        let waiting = if self.lines_built {
            self.lines.waits_in_under(session, name, lease)
        } else {
            lock.waiters
                .iter()
                .any(|waiter| (waiter.session, waiter.lease) == (session, lease))
        };
        if waiting {
            WaitState::Waiting
        } else {
            WaitState::NotWaiting
        }
    }

    /// Answer a query.
    pub fn query(&self, query: &LockQuery) -> LockQueryResponse {
        match query {
            LockQuery::Get { key } => LockQueryResponse::Value(self.key_value(key)),
            LockQuery::Range { prefix, limit } => LockQueryResponse::Values(
                self.entries
                    .range(prefix.clone()..)
                    .take_while(|(key, _)| key.starts_with(prefix.as_str()))
                    .take((*limit).min(QUERY_RESULTS_MAX))
                    .filter_map(|(key, _)| self.key_value(key))
                    .collect(),
            ),
            LockQuery::Changes {
                prefix,
                after_version,
                limit,
            } => {
                if *after_version < self.compacted_through {
                    return LockQueryResponse::Compacted {
                        oldest_available: self.compacted_through,
                    };
                }
                // The first change after `after_version` (the log is in version order).
                let start = match self.changes.binary_search_by(|change| {
                    if change.version <= *after_version {
                        Ordering::Less
                    } else {
                        Ordering::Greater
                    }
                }) {
                    Ok(position) | Err(position) => position,
                };
                LockQueryResponse::Changes(self.changes_after(start, prefix, *limit))
            }
            LockQuery::Lock { name } => LockQueryResponse::Lock(self.locks.get(name).map(|lock| {
                LockState {
                    holder: lock.holder,
                    lease: lock.lease,
                    token: lock.token,
                    waiters: lock
                        .waiters
                        .iter()
                        .map(|waiter| (waiter.session, waiter.lease))
                        .collect(),
                }
            })),
            LockQuery::Lease { lease } => LockQueryResponse::Lease(self.lease_state(*lease)),
            LockQuery::Stats => LockQueryResponse::Stats(LockStats {
                keys: self.entries.len() as u64,
                leases: self.leases.len() as u64,
                locks_held: self.locks.len() as u64,
                waiters: self
                    .locks
                    .values()
                    .map(|lock| lock.waiters.len() as u64)
                    .sum(),
                grants_total: self.totals.grants,
                waits_total: self.totals.waits,
                deadlocks_total: self.totals.deadlocks,
                limit_refusals: self.refusals,
            }),
            LockQuery::Wait {
                name,
                session,
                lease,
            } => LockQueryResponse::Wait(self.wait_state(name, *session, *lease)),
            LockQuery::RangePage {
                prefix,
                start_after,
                limit,
            } => LockQueryResponse::Page(self.range_page(prefix, start_after.as_deref(), *limit)),
            LockQuery::Leases => LockQueryResponse::Leases(
                self.leases
                    .keys()
                    .filter_map(|lease| self.lease_state(*lease))
                    .collect(),
            ),
        }
    }

    /// The changes under `prefix` from position `start` of the change log, at most `limit`
    /// (and [`QUERY_RESULTS_MAX`]) of them, except that the changes one command made (a lease
    /// end, which deletes its keys at one version) are never split: the answer runs on to
    /// the end of its last version. A reader resumes after a version, so a split group would
    /// lose the rest of it. A group is at most as large as the keys one command can delete,
    /// and one command's changes all fit in the change log, which is bounded.
    fn changes_after(&self, start: usize, prefix: &str, limit: usize) -> Vec<Change> {
        let limit = limit.clamp(1, QUERY_RESULTS_MAX);
        let mut found: Vec<Change> = Vec::new();
        for change in self.changes.skip(start).iter() {
            if !change.key.starts_with(prefix) {
                continue;
            }
            if let Some(last) = found.last()
                && found.len() >= limit
                && last.version != change.version
            {
                break;
            }
            found.push(change.to_change());
        }
        found
    }

    fn key_value(&self, key: &str) -> Option<KeyValue> {
        self.entries.get(key).map(|entry| KeyValue {
            key: key.to_string(),
            value: entry.value.to_vec(),
            version: entry.version,
            lease: entry.lease,
        })
    }

    fn lease_state(&self, lease: LeaseId) -> Option<LeaseState> {
        self.leases.get(&lease).map(|record| LeaseState {
            lease,
            session: record.session,
            ttl_ms: record.ttl_ms,
            renewals: record.renewals,
        })
    }
}
