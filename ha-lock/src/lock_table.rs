//! The lock table: KV with versions, leases, fenced FIFO locks and a change log, as one
//! deterministic state.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use ha_core::LogIndex;
use serde::{Deserialize, Serialize};

use crate::command::{
    Change, FencingToken, KEY_BYTES_MAX, KeyValue, LeaseId, LeaseState, LockCommand, LockQuery,
    LockQueryResponse, LockResponse, LockState, LockStats, SessionId, VALUE_BYTES_MAX,
};
use crate::wait_for_graph::WaitForGraph;

/// Changes kept for watches; older ones are compacted away.
pub const CHANGES_MAX: usize = 100_000;
/// Most waiters on one lock.
pub const WAITERS_MAX: usize = 10_000;
/// Most results of one range or changes query.
pub const QUERY_RESULTS_MAX: usize = 10_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    value: Vec<u8>,
    version: u64,
    lease: Option<LeaseId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Lease {
    session: SessionId,
    ttl_ms: u64,
    renewals: u64,
    keys: BTreeSet<String>,
    locks: BTreeSet<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Lock {
    holder: SessionId,
    lease: LeaseId,
    token: FencingToken,
    waiters: VecDeque<(SessionId, LeaseId)>,
}

/// The replicated state of KV, leases and locks. Every method is a pure function of the state
/// and its arguments (log indexes stand in for time), so replicas that apply the same
/// commands agree.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockTable {
    entries: BTreeMap<String, Entry>,
    leases: BTreeMap<LeaseId, Lease>,
    locks: BTreeMap<String, Lock>,
    changes: VecDeque<Change>,
    /// The highest version dropped from `changes`.
    compacted_through: u64,
    /// Totals since the cluster began, for metrics.
    totals: LockTotals,
}

/// Running totals kept in the replicated state (so every replica, and a restarted one, reports
/// the same figures).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct LockTotals {
    grants: u64,
    waits: u64,
    deadlocks: u64,
}

impl LockTable {
    /// Apply a command committed at `index`.
    pub fn apply(&mut self, index: LogIndex, command: LockCommand) -> LockResponse {
        let index = index.0;
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
            LockCommand::LeaseGrant { ttl_ms, session } => {
                if ttl_ms == 0 {
                    return LockResponse::Invalid {
                        reason: "a lease needs a TTL above 0 ms".to_string(),
                    };
                }
                self.leases.insert(
                    index,
                    Lease {
                        session,
                        ttl_ms,
                        renewals: 0,
                        keys: BTreeSet::new(),
                        locks: BTreeSet::new(),
                    },
                );
                LockResponse::LeaseGranted {
                    lease: index,
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
            } => self.acquire(index, name, session, lease, wait),
            LockCommand::Release { name, token } => self.release(index, &name, token),
            LockCommand::CancelWait { name, session } => {
                let Some(lock) = self.locks.get_mut(&name) else {
                    return LockResponse::NotWaiting;
                };
                let before = lock.waiters.len();
                lock.waiters.retain(|(waiter, _)| *waiter != session);
                if lock.waiters.len() < before {
                    LockResponse::Cancelled
                } else {
                    LockResponse::NotWaiting
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
        if key.is_empty() || key.len() > KEY_BYTES_MAX || value.len() > VALUE_BYTES_MAX {
            return LockResponse::Invalid {
                reason: format!(
                    "keys are 1 to {KEY_BYTES_MAX} bytes and values at most {VALUE_BYTES_MAX}"
                ),
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
        if let Some(lease) = lease {
            let Some(record) = self.leases.get_mut(&lease) else {
                return LockResponse::LeaseNotFound { lease };
            };
            record.keys.insert(key.clone());
        }
        if let Some(old) = self.entries.get(&key).and_then(|entry| entry.lease)
            && Some(old) != lease
            && let Some(record) = self.leases.get_mut(&old)
        {
            record.keys.remove(&key);
        }
        self.record_change(index, &key, Some(value.clone()));
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

    fn record_change(&mut self, index: u64, key: &str, value: Option<Vec<u8>>) {
        self.changes.push_back(Change {
            version: index,
            key: key.to_string(),
            value,
        });
        while self.changes.len() > CHANGES_MAX {
            if let Some(dropped) = self.changes.pop_front() {
                self.compacted_through = dropped.version;
            }
        }
    }

    fn end_lease(&mut self, index: u64, lease: LeaseId) -> LockResponse {
        let Some(record) = self.leases.remove(&lease) else {
            return LockResponse::LeaseNotFound { lease };
        };
        let mut deleted_keys = 0;
        for key in &record.keys {
            if self.entries.get(key).and_then(|entry| entry.lease) == Some(lease) {
                deleted_keys += usize::from(self.remove_key(index, key));
            }
        }
        // Waiting under this lease ends too.
        for lock in self.locks.values_mut() {
            lock.waiters
                .retain(|(_, waiting_lease)| *waiting_lease != lease);
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
            self.grant(index, name, session, lease);
            return LockResponse::Granted { token: index };
        };
        if lock.holder == session && lock.lease == lease {
            // Acquiring again (a retry): the same grant.
            return LockResponse::Granted { token: lock.token };
        }
        if let Some(position) = lock
            .waiters
            .iter()
            .position(|(waiter, _)| *waiter == session)
        {
            return LockResponse::Queued { position };
        }
        if !wait || lock.waiters.len() >= WAITERS_MAX {
            return LockResponse::Busy {
                holder: lock.holder,
            };
        }
        // Joining the back of the line means waiting for the holder and for everyone ahead.
        let graph = self.wait_for_graph();
        let waits_for =
            std::iter::once(lock.holder).chain(lock.waiters.iter().map(|(ahead, _)| *ahead));
        for blocker in waits_for {
            if let Some(cycle) = graph.cycle_if_waits(session, blocker) {
                self.totals.deadlocks = self.totals.deadlocks.saturating_add(1);
                return LockResponse::Deadlock { cycle };
            }
        }
        let Some(lock) = self.locks.get_mut(&name) else {
            return LockResponse::NotWaiting;
        };
        lock.waiters.push_back((session, lease));
        self.totals.waits = self.totals.waits.saturating_add(1);
        LockResponse::Queued {
            position: lock.waiters.len() - 1,
        }
    }

    fn grant(&mut self, index: u64, name: String, session: SessionId, lease: LeaseId) {
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
                token: index,
                waiters,
            },
        );
    }

    fn release(&mut self, index: u64, name: &str, token: FencingToken) -> LockResponse {
        match self.locks.get(name) {
            Some(lock) if lock.token == token => {
                if let Some(record) = self.leases.get_mut(&lock.lease) {
                    record.locks.remove(name);
                }
                self.pass_on(index, name);
                LockResponse::Released
            }
            _ => LockResponse::NotHolder,
        }
    }

    /// The holder is gone: grant the lock to the first waiter whose lease is alive, or free it.
    fn pass_on(&mut self, index: u64, name: &str) {
        let Some(mut lock) = self.locks.remove(name) else {
            return;
        };
        while let Some((session, lease)) = lock.waiters.pop_front() {
            if self.leases.contains_key(&lease) {
                self.locks.insert(name.to_string(), lock);
                self.grant(index, name.to_string(), session, lease);
                return;
            }
        }
    }

    /// Every waiter waits for the holder and for each waiter ahead of it in the line (they
    /// will hold the lock before it does), so a hand-off can never create a cycle the
    /// detector did not refuse.
    fn wait_for_graph(&self) -> WaitForGraph {
        let mut graph = WaitForGraph::default();
        for lock in self.locks.values() {
            for (position, (waiter, _)) in lock.waiters.iter().enumerate() {
                graph.add_wait(*waiter, lock.holder);
                for (ahead, _) in lock.waiters.iter().take(position) {
                    if ahead != waiter {
                        graph.add_wait(*waiter, *ahead);
                    }
                }
            }
        }
        graph
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
                let start = self
                    .changes
                    .partition_point(|change| change.version <= *after_version);
                LockQueryResponse::Changes(
                    self.changes
                        .range(start..)
                        .filter(|change| change.key.starts_with(prefix.as_str()))
                        .take((*limit).min(QUERY_RESULTS_MAX))
                        .cloned()
                        .collect(),
                )
            }
            LockQuery::Lock { name } => {
                LockQueryResponse::Lock(self.locks.get(name).map(|lock| LockState {
                    holder: lock.holder,
                    lease: lock.lease,
                    token: lock.token,
                    waiters: lock.waiters.iter().copied().collect(),
                }))
            }
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
            }),
            LockQuery::Leases => LockQueryResponse::Leases(
                self.leases
                    .keys()
                    .filter_map(|lease| self.lease_state(*lease))
                    .collect(),
            ),
        }
    }

    fn key_value(&self, key: &str) -> Option<KeyValue> {
        self.entries.get(key).map(|entry| KeyValue {
            key: key.to_string(),
            value: entry.value.clone(),
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
