//! Membership changes an operator asks for: carried out by the leader's engine
//! ([`Engine::request_member_change`](crate::engine::Engine::request_member_change)),
//! forwarded by a follower like a write.

use std::net::SocketAddr;

use ha_core::{Millis, NodeId, StateMachine};

use super::{Origin, ReplicaCore};
use crate::engine::{MemberChangeError, MemberChangeStep, MemberRequest, ProposeError};
use crate::replica::client::{ClientError, ClientReply, ClientRequest};
use crate::storage::LogStore;

impl<S: StateMachine, L: LogStore> ReplicaCore<S, L> {
    /// Answer a [`ClientRequest::Member`]: `Accepted` at the configuration's index when the
    /// change was appended (or is already in force), `TransferInProgress` when the node to
    /// remove is this leader and leadership is being handed over (the caller's retry reaches
    /// the new leader, which removes it), `MembershipRefused` with the reason otherwise.
    pub(super) fn handle_member_request(
        &mut self,
        now: Millis,
        origin: Origin,
        request: MemberRequest,
        deadline: Millis,
        may_forward: bool,
    ) {
        let reply = match self.engine.request_member_change(now, &request) {
            Ok(MemberChangeStep::Proposed(index) | MemberChangeStep::AlreadyDone(index)) => {
                ClientReply::Accepted { index }
            }
            Ok(MemberChangeStep::TransferStarted(target)) => {
                tracing::info!(%target, "removing the leader: handing leadership over first");
                ClientReply::Failed(ClientError::TransferInProgress)
            }
            Err(MemberChangeError::Propose(ProposeError::NotLeader { leader })) => {
                self.forward_or_fail(
                    origin,
                    ClientRequest::Member(request),
                    leader,
                    deadline,
                    may_forward,
                );
                return;
            }
            Err(MemberChangeError::Propose(ProposeError::TransferInProgress)) => {
                ClientReply::Failed(ClientError::TransferInProgress)
            }
            Err(MemberChangeError::Propose(_)) => ClientReply::Failed(ClientError::Busy),
            Err(MemberChangeError::Refused(refusal)) => {
                ClientReply::Failed(ClientError::MembershipRefused(refusal))
            }
        };
        self.reply(origin, reply);
    }
}

/// The replication address a membership request gives for the node it adds, for the
/// driver's address book: the leader must reach a new learner before gossip has told it
/// where the learner listens. `None` for other requests.
pub(crate) fn requested_peer_address(request: &ClientRequest) -> Option<(NodeId, SocketAddr)> {
    match request {
        ClientRequest::Member(MemberRequest::Add {
            node,
            addr: Some(addr),
            ..
        }) => Some((node.clone(), *addr)),
        _ => None,
    }
}
