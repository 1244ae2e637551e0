//! One log for the host's state machine and the lock table.

use ha_core::{LogIndex, StateMachine, StateMachineError};
use serde::{Deserialize, Serialize};

use crate::command::{LockCommand, LockQuery, LockQueryResponse, LockResponse};
use crate::lock_table::{LockLimits, LockTable};

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

/// The host's state machine `H` and the [`LockTable`], replicated through one log: a node runs
/// one replicated log, and its host commands and lock commands are ordered together.
///
/// ```
/// use ha_core::{LogIndex, StateMachine};
/// use ha_lock::{Command, LockCommand, LockResponse, Response, WithLocks};
///
/// let mut machine = WithLocks::new(());
/// let granted = machine.apply(LogIndex(1), Command::Lock(LockCommand::LeaseGrant { ttl_ms: 1_000, session: 7 }));
/// assert_eq!(granted, Response::Lock(LockResponse::LeaseGranted { lease: 1, ttl_ms: 1_000 }));
/// ```
#[derive(Clone, Debug, Default)]
pub struct WithLocks<H> {
    host: H,
    locks: LockTable,
}

impl<H> WithLocks<H> {
    /// Compose `host` with an empty lock table.
    pub fn new(host: H) -> Self {
        Self {
            host,
            locks: LockTable::default(),
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
            locks: LockTable::with_limits(limits),
        }
    }

    /// The host's state machine.
    pub fn host(&self) -> &H {
        &self.host
    }

    /// The lock table.
    pub fn locks(&self) -> &LockTable {
        &self.locks
    }
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    format_version: u32,
    locks: LockTable,
    host: Vec<u8>,
}

const SNAPSHOT_FORMAT_VERSION: u32 = 1;

impl<H: StateMachine> StateMachine for WithLocks<H> {
    type Command = Command<H::Command>;
    type Response = Response<H::Response>;
    type Query = Query<H::Query>;
    type QueryResponse = QueryResponse<H::QueryResponse>;

    fn apply(&mut self, index: LogIndex, command: Self::Command) -> Self::Response {
        match command {
            Command::Host(command) => Response::Host(self.host.apply(index, command)),
            Command::Lock(command) => Response::Lock(self.locks.apply(index, command)),
        }
    }

    fn query(&self, query: &Self::Query) -> Self::QueryResponse {
        match query {
            Query::Host(query) => QueryResponse::Host(self.host.query(query)),
            Query::Lock(query) => QueryResponse::Lock(self.locks.query(query)),
        }
    }

    fn snapshot(&self) -> Result<Vec<u8>, StateMachineError> {
        let snapshot = Snapshot {
            format_version: SNAPSHOT_FORMAT_VERSION,
            locks: self.locks.clone(),
            host: self.host.snapshot()?,
        };
        postcard::to_allocvec(&snapshot)
            .map_err(|error| StateMachineError::SnapshotFailed(error.to_string()))
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), StateMachineError> {
        // The bounded codec also refuses trailing bytes, which plain postcard ignores.
        let snapshot: Snapshot = ha_core::codec::decode("lock snapshot", bytes, bytes.len())
            .map_err(|error| StateMachineError::Corrupt(error.to_string()))?;
        if snapshot.format_version != SNAPSHOT_FORMAT_VERSION {
            return Err(StateMachineError::Corrupt(format!(
                "lock snapshot format {} is not {SNAPSHOT_FORMAT_VERSION}",
                snapshot.format_version
            )));
        }
        self.host.restore(&snapshot.host)?;
        let limits = self.locks.limits();
        self.locks = snapshot.locks;
        self.locks.set_limits(limits);
        Ok(())
    }
}
