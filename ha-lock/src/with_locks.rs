//! One log for the host's state machine and the lock table.

use std::io::Read;

use ha_core::{LogIndex, SnapshotSource, StateMachine, StateMachineError};
use serde::{Deserialize, Serialize};

use crate::change_feed::ChangeFeed;
use crate::command::{LockCommand, LockQuery, LockQueryResponse, LockResponse};
use crate::lock_outcome::{LockObserver, Watched};
use crate::lock_snapshot::{LockSnapshotSource, read_snapshot};
use crate::lock_table::{KvLockTable, LockLimits};

/// A command for either part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command<C> {
    /// For the host's state machine.
    Host(C),
    /// For the lock table.
    Lock(LockCommand),
}

/// A response from either part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response<R> {
    /// From the host's state machine.
    Host(R),
    /// From the lock table.
    Lock(LockResponse),
}

/// A query for either part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query<Q> {
    /// For the host's state machine.
    Host(Q),
    /// For the lock table.
    Lock(LockQuery),
}

/// A query response from either part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueryResponse<R> {
    /// From the host's state machine.
    Host(R),
    /// From the lock table.
    Lock(LockQueryResponse),
}

/// The host's state machine `H` and the [`KvLockTable`], replicated through one log: a node runs
/// one replicated log, and its host commands and lock commands are ordered together.
///
/// ```
/// use ha_core::{LogIndex, StateMachine};
/// use ha_lock::{Command, LeaseId, LockCommand, LockResponse, Response, SessionId, WithLocks};
///
/// let mut machine = WithLocks::new(());
/// let grant = LockCommand::LeaseGrant { ttl_ms: 1_000, session: SessionId(7) };
/// let granted = machine.apply(LogIndex(1), Command::Lock(grant));
/// assert_eq!(granted, Response::Lock(LockResponse::LeaseGranted { lease: LeaseId(1), ttl_ms: 1_000 }));
/// ```
#[derive(Clone, Debug, Default)]
pub struct WithLocks<H> {
    host: H,
    locks: KvLockTable,
    /// Told each lock grant, release and expiry as it is applied (issue 16); configuration of
    /// this replica, not state: snapshots and restores leave it alone.
    observer: Option<LockObserver>,
    /// Told the newest change version after every lock command and restore that changed keys;
    /// configuration of this replica, as `observer`.
    feed: Option<ChangeFeed>,
}

impl<H> WithLocks<H> {
    /// Compose `host` with an empty lock table.
    pub fn new(host: H) -> Self {
        Self {
            host,
            locks: KvLockTable::default(),
            observer: None,
            feed: None,
        }
    }

    /// Compose `host` with an empty lock table that enforces `limits` instead of the default
    /// ones, for tests and benchmarks. A restore keeps them (they are configuration, not
    /// state, and snapshots do not carry them).
    ///
    /// # Correctness requirements
    /// Every replica must use the same limits (see [`LockLimits`]): a node runs
    /// [`new`](Self::new).
    pub fn with_limits(host: H, limits: LockLimits) -> Self {
        Self {
            host,
            locks: KvLockTable::with_limits(limits),
            observer: None,
            feed: None,
        }
    }

    /// Tell `observer` every lock grant, release and expiry this replica applies, in log
    /// order (see [`LockObserver`]). Changes nothing replicated: every replica computes the
    /// same state and answers with or without one.
    pub fn observe_locks(mut self, observer: LockObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Publish the newest change version to `feed` whenever this replica applies (or
    /// restores) a change to keys, so [`Watch`](crate::Watch)es wake at once instead of
    /// polling. Changes nothing replicated.
    pub fn feed_changes(mut self, feed: ChangeFeed) -> Self {
        feed.publish(self.locks.last_change_version());
        self.feed = Some(feed);
        self
    }

    /// The host's state machine.
    pub fn host(&self) -> &H {
        &self.host
    }

    /// The lock table.
    pub fn locks(&self) -> &KvLockTable {
        &self.locks
    }
}

impl<H: StateMachine> StateMachine for WithLocks<H> {
    type Command = Command<H::Command>;
    type Response = Response<H::Response>;
    type Query = Query<H::Query>;
    type QueryResponse = QueryResponse<H::QueryResponse>;

    fn apply(&mut self, index: LogIndex, command: Self::Command) -> Self::Response {
        match command {
            Command::Host(command) => Response::Host(self.host.apply(index, command)),
            Command::Lock(command) => {
                let response = match &self.observer {
                    None => self.locks.apply(index, command),
                    Some(observer) => {
                        let watched = Watched::before(&self.locks, &command);
                        let response = self.locks.apply(index, command);
                        watched.tell(observer, &self.locks, index.0, &response);
                        response
                    }
                };
                if let Some(feed) = &self.feed {
                    feed.publish(self.locks.last_change_version());
                }
                Response::Lock(response)
            }
        }
    }

    fn query(&self, query: &Self::Query) -> Self::QueryResponse {
        match query {
            Query::Host(query) => QueryResponse::Host(self.host.query(query)),
            Query::Lock(query) => QueryResponse::Lock(self.locks.query(query)),
        }
    }

    /// The snapshot as one `Vec`, through the same stream as
    /// [`snapshot_source`](StateMachine::snapshot_source) (one format only).
    fn snapshot(&self) -> Result<Vec<u8>, StateMachineError> {
        let mut bytes = Vec::new();
        self.snapshot_source()?.write_to(&mut bytes)?;
        Ok(bytes)
    }

    /// Restore from bytes in memory, through [`restore_from`](StateMachine::restore_from).
    fn restore(&mut self, bytes: &[u8]) -> Result<(), StateMachineError> {
        self.restore_from(&mut &bytes[..])
    }

    /// The lock table's replicated state at this point (O(1): its collections are
    /// persistent, see [`KvLockTable`]) and the host's own [`SnapshotSource`]. The stream's
    /// layout is described at [`SNAPSHOT_FORMAT_VERSION`](crate::SNAPSHOT_FORMAT_VERSION):
    /// records of at most [`SNAPSHOT_RECORD_BYTES_MAX`](crate::SNAPSHOT_RECORD_BYTES_MAX)
    /// bytes, then the host's bytes to the end. It is written through a `BufWriter`, one
    /// record at a time, never as a whole in memory.
    fn snapshot_source(&self) -> Result<Box<dyn SnapshotSource>, StateMachineError> {
        Ok(Box::new(LockSnapshotSource {
            table: self.locks.state(),
            host: self.host.snapshot_source()?,
        }))
    }

    /// Read the lock table's records into a new table, then hand the rest of the stream to
    /// the host's `restore_from`, and only when both succeeded replace the table: a refused
    /// snapshot leaves the lock table as it was (and the host's contract leaves the host as it
    /// was). Memory: one record of at most
    /// [`SNAPSHOT_RECORD_BYTES_MAX`](crate::SNAPSHOT_RECORD_BYTES_MAX) bytes at a time,
    /// never preallocated from a length the stream claims, plus the table being built.
    fn restore_from(&mut self, input: &mut dyn Read) -> Result<(), StateMachineError> {
        let host = &mut self.host;
        let state = read_snapshot(input, |rest| host.restore_from(rest))?;
        self.locks = KvLockTable::from_state(state, self.locks.limits());
        if let Some(feed) = &self.feed {
            feed.publish(self.locks.last_change_version());
        }
        Ok(())
    }
}
