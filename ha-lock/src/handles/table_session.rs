//! One replication session used by many tasks at once, with the lock table's answers typed.

use std::time::Duration;

use ha_core::{Consistency, StateMachine};
use ha_replicate::driver::ReplicaClient;

use super::error::LockError;
use super::table_answer::{QueryAnswer, TableAnswer, answer, query_answer, undecodable};
use crate::command::{LockCommand, LockQuery, SessionId};
use crate::with_locks::{Command, Query, QueryResponse, Response, WithLocks};

/// A [`ReplicaClient`] of a [`WithLocks`] state machine, answering with the lock table's
/// types: each call names its answer type, converted here (see `table_answer.rs`), so a
/// host answer or a lock answer of another kind is [`ResponseUndecodable`](ha_replicate::replica::ClientError::ResponseUndecodable). Its writes need no turn: many may be in flight on the session at once (the
/// replicated applier keeps the responses of every write its client has not acknowledged),
/// so tasks sharing it do not queue behind each other.
pub(crate) struct TableSession<H: StateMachine> {
    client: ReplicaClient<WithLocks<H>>,
}

impl<H: StateMachine> TableSession<H> {
    pub(crate) fn new(client: ReplicaClient<WithLocks<H>>) -> Self {
        Self { client }
    }

    /// The replication session id.
    pub(crate) fn session(&self) -> SessionId {
        self.client.session()
    }

    /// Propose `command`; returns its log index and the lock table's answer as `A` (`None`
    /// for an EVENTUAL write, which is answered before it is applied).
    ///
    /// Cancel safety: the write may or may not have been applied (at most once; once a later
    /// write of the session is applied, never).
    pub(crate) async fn write<A: TableAnswer>(
        &self,
        command: LockCommand,
        consistency: Consistency,
        timeout: Duration,
    ) -> Result<(u64, Option<A>), LockError> {
        let written = self
            .client
            .write(Command::Lock(command), consistency, timeout)
            .await?;
        let response = match written.response {
            None => None,
            Some(Response::Lock(response)) => Some(answer::<A>(response)?),
            Some(Response::Host(_)) => return Err(undecodable(A::WHAT, "a host response")),
        };
        Ok((written.index.0, response))
    }

    /// Answer `query` at `consistency`, as `A`.
    ///
    /// Cancel safety: a read changes nothing, so dropping the future is harmless.
    pub(crate) async fn read<A: QueryAnswer>(
        &self,
        query: LockQuery,
        consistency: Consistency,
        timeout: Duration,
    ) -> Result<A, LockError> {
        match self
            .client
            .read(Query::Lock(query), consistency, timeout)
            .await?
        {
            QueryResponse::Lock(response) => query_answer(response),
            QueryResponse::Host(_) => Err(undecodable(A::WHAT, "a host answer")),
        }
    }
}
