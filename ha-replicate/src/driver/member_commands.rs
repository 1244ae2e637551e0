//! The driver's side of the membership API: a retrying membership request, and the address
//! book the admin API reports members' replication addresses from.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use ha_core::{LogIndex, NodeId, StateMachine};
use tokio::sync::oneshot;

use crate::driver::client::ReplicaClient;
use crate::driver::replica_node::{Command, ReplicaNode};
use crate::engine::MemberRequest;
use crate::replica::{ClientError, ClientReply, ClientRequest};

impl<S: StateMachine> ReplicaClient<S> {
    /// Ask the leader (through this node, which forwards) to carry out a membership change,
    /// retrying on "not leader", transfers and timeouts until `timeout`. Returns the index of
    /// the configuration that holds the change: appended, and safe once committed (wait for
    /// the commit index to pass it), or already in force.
    ///
    /// Removing the leader makes it hand leadership over first; the retry then reaches the
    /// new leader, which removes it.
    ///
    /// # Errors
    /// [`ClientError::MembershipRefused`] with the reason (nothing changed); the other
    /// [`ClientError`]s as for a write: after a timeout or a lost leader the change may or
    /// may not have been made, so read the membership before asking again.
    pub async fn change_members(
        &self,
        request: MemberRequest,
        timeout: Duration,
    ) -> Result<LogIndex, ClientError> {
        match self
            .request_with_retries(ClientRequest::Member(request), timeout)
            .await?
        {
            ClientReply::Accepted { index } => Ok(index),
            other => Err(ClientError::InvalidQuery(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }
}

impl<S: StateMachine> ReplicaNode<S> {
    /// The replication addresses this node knows: its own (the bound transport address),
    /// its peers' from gossip, and those given by membership requests that passed through it.
    ///
    /// # Errors
    /// [`ClientError::Stopped`] once the replica has stopped.
    pub async fn peer_addresses(&self) -> Result<BTreeMap<NodeId, SocketAddr>, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::PeerAddresses(reply)).await?;
        answer.await.map_err(|_| self.stop_error())
    }
}
