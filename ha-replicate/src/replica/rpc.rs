//! Everything replicas say to each other over the transport.

use serde::{Deserialize, Serialize};

use crate::engine::Message;
use crate::replica::client::{ClientReply, ClientRequest};

/// One message between replicas.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rpc {
    /// The consensus protocol.
    Raft(Message),
    /// A client request a follower passes to the leader.
    Forward {
        /// The follower's id for matching the reply.
        forward_id: u64,
        /// The request.
        request: ClientRequest,
    },
    /// The leader's answer to a forwarded request.
    ForwardReply {
        /// The follower's id from the request.
        forward_id: u64,
        /// The answer.
        reply: ClientReply,
    },
}
