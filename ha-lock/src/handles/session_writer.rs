//! One replication session used by many tasks, one write at a time.

use std::time::Duration;

use ha_core::{Consistency, StateMachine};
use ha_replicate::driver::ReplicaClient;
use ha_replicate::replica::ClientError;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::error::LockError;
use crate::command::{LockCommand, LockQuery, LockQueryResponse, LockResponse, SessionId};
use crate::with_locks::{Command, Query, QueryResponse, Response, WithLocks};

/// A [`ReplicaClient`] whose writes go out one at a time.
///
/// Why a gate: the replicated applier remembers only the latest sequence number per session
/// and answers an older one that arrives later with "stale, not applied". Two writes in flight
/// on one session could therefore drop each other. Reads carry no sequence and skip the gate.
pub(crate) struct SessionWriter<H: StateMachine> {
    client: ReplicaClient<WithLocks<H>>,
    gate: Mutex<()>,
}

impl<H: StateMachine> SessionWriter<H> {
    pub(crate) fn new(client: ReplicaClient<WithLocks<H>>) -> Self {
        Self {
            client,
            gate: Mutex::new(()),
        }
    }

    /// The replication session id.
    pub(crate) fn session(&self) -> SessionId {
        self.client.session()
    }

    /// Propose `command`; returns its log index and the lock table's answer (`None` for an
    /// EVENTUAL write, which is answered before it is applied). `timeout` covers the wait for
    /// the gate too.
    ///
    /// Cancel safety: dropping the future releases the gate; the write may or may not have
    /// been applied (the next write on the session supersedes it if it was not).
    pub(crate) async fn write(
        &self,
        command: LockCommand,
        consistency: Consistency,
        timeout: Duration,
    ) -> Result<(u64, Option<LockResponse>), LockError> {
        let deadline = Instant::now() + timeout;
        let _turn = tokio::time::timeout_at(deadline, self.gate.lock())
            .await
            .map_err(|_| ClientError::Timeout)?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(ClientError::Timeout.into());
        }
        let written = self
            .client
            .write(Command::Lock(command), consistency, remaining)
            .await?;
        match written.response {
            None => Ok((written.index.0, None)),
            Some(Response::Lock(response)) => Ok((written.index.0, Some(response))),
            Some(Response::Host(_)) => Err(LockError::unexpected(
                "a host response to a lock command".to_string(),
            )),
        }
    }

    /// Answer `query` at `consistency`.
    ///
    /// Cancel safety: a read changes nothing, so dropping the future is harmless.
    pub(crate) async fn read(
        &self,
        query: LockQuery,
        consistency: Consistency,
        timeout: Duration,
    ) -> Result<LockQueryResponse, LockError> {
        match self
            .client
            .read(Query::Lock(query), consistency, timeout)
            .await?
        {
            QueryResponse::Lock(response) => Ok(response),
            QueryResponse::Host(_) => Err(LockError::unexpected(
                "a host answer to a lock query".to_string(),
            )),
        }
    }
}
