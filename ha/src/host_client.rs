//! The node's own session, typed: the host state machine's writes and reads, and the
//! lock-table reads the node makes for itself, each projected from the combined
//! [`WithLocks`] answer here and nowhere else.

use std::time::Duration;

use ha_core::{Consistency, StateMachine};
use ha_lock::{Command, LockQuery, LockQueryResponse, Query, QueryResponse, Response, WithLocks};
use ha_replicate::driver::ReplicaClient;
use ha_replicate::replica::ClientError;

use crate::error::NodeError;
use crate::node::WriteOutcome;

/// A [`ReplicaClient`] of the node's [`WithLocks`] state machine whose answers have the
/// host's types. A host command is answered by the host's state machine and a lock query by
/// the lock table, whatever the node: an answer from the other one is a protocol violation
/// (nodes of different versions, or a bug) and becomes
/// [`ClientError::ResponseUndecodable`] (fate `Committed` for a write: it was applied, what
/// it did is not known).
pub(crate) struct HostClient<S: StateMachine> {
    client: ReplicaClient<WithLocks<S>>,
}

impl<S: StateMachine> HostClient<S> {
    pub(crate) fn new(client: ReplicaClient<WithLocks<S>>) -> Self {
        Self { client }
    }

    /// The untyped client, for what has no state-machine answer (membership changes, the
    /// backup's read barrier).
    pub(crate) fn replica(&self) -> &ReplicaClient<WithLocks<S>> {
        &self.client
    }

    /// Replicate `command` for the host's state machine and return its answer.
    pub(crate) async fn propose(
        &self,
        command: S::Command,
        consistency: Consistency,
        timeout: Duration,
    ) -> Result<WriteOutcome<S::Response>, NodeError> {
        let written = self
            .client
            .write(Command::Host(command), consistency, timeout)
            .await?;
        let response = match written.response {
            None => None,
            Some(Response::Host(response)) => Some(response),
            Some(Response::Lock(other)) => {
                return Err(undecodable("the host's response", &other));
            }
        };
        Ok(WriteOutcome {
            index: written.index,
            response,
        })
    }

    /// Answer `query` from the host's state machine.
    pub(crate) async fn read(
        &self,
        query: S::Query,
        consistency: Consistency,
        timeout: Duration,
    ) -> Result<S::QueryResponse, NodeError> {
        match self
            .client
            .read(Query::Host(query), consistency, timeout)
            .await?
        {
            QueryResponse::Host(response) => Ok(response),
            QueryResponse::Lock(other) => Err(undecodable("the host's answer", &other)),
        }
    }

    /// Answer `query` from the lock table. Reads carry no sequence and wait for no write of
    /// the session, so this never waits behind a write in flight.
    pub(crate) async fn lock_read(
        &self,
        query: LockQuery,
        consistency: Consistency,
        timeout: Duration,
    ) -> Result<LockQueryResponse, NodeError> {
        match self
            .client
            .read(Query::Lock(query), consistency, timeout)
            .await?
        {
            QueryResponse::Lock(response) => Ok(response),
            QueryResponse::Host(_) => Err(undecodable("a lock-table answer", &"a host answer")),
        }
    }
}

/// The error for an answer of the other state machine where `expected` was expected.
fn undecodable(expected: &str, got: &dyn std::fmt::Debug) -> NodeError {
    NodeError::Replication(ClientError::ResponseUndecodable(format!(
        "the replicated state machine answered {got:?} where {expected} was expected"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ha_replicate::replica::WriteFate;

    #[test]
    fn an_answer_of_the_other_state_machine_is_undecodable_and_committed() {
        let error = undecodable("the host's response", &ha_lock::LockResponse::Released);
        let NodeError::Replication(ClientError::ResponseUndecodable(detail)) = &error else {
            panic!("not ResponseUndecodable: {error:?}");
        };
        assert!(detail.contains("Released"), "{detail}");
        assert_eq!(error.fate(), WriteFate::Committed);
    }
}
