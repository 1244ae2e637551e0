//! Everything replicas say to each other over the transport.

use serde::{Deserialize, Serialize};

use ha_core::{LogIndex, Term};

use crate::engine::Message;
use crate::replica::client::{ClientReply, ClientRequest};
use crate::snapshot_meta::{SnapshotId, SnapshotMeta};
use crate::trace_context::TraceParent;

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
    /// Bytes of the leader's snapshot, streamed to a follower that needs it.
    SnapshotChunk {
        /// The leader's term.
        term: Term,
        /// What the snapshot covers.
        meta: SnapshotMeta,
        /// Which bytes these are part of.
        id: SnapshotId,
        /// Where in the snapshot `data` starts.
        offset: u64,
        /// The sender's round, echoed in the answer (answers to chunks of an earlier round
        /// never move the sender).
        round: u32,
        /// The bytes; at most the sender's chunk size.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// A follower's answer to a chunk: where the next chunk must start (the bytes it holds of
    /// that snapshot; its size once it holds them all, verified).
    SnapshotAck {
        /// The follower's term.
        term: Term,
        /// The snapshot answered about.
        id: SnapshotId,
        /// The offset of the chunk answered.
        chunk_offset: u64,
        /// The round of the chunk answered.
        round: u32,
        /// The offset the next chunk must start at.
        next_offset: u64,
    },
    /// A replica's digest of its applied state at a checkpoint, sent to its leader (the
    /// consistency monitor, [`consistency_monitor`](crate::replica::consistency_monitor)).
    Digest {
        /// The sender's term.
        term: Term,
        /// The checkpoint index.
        index: LogIndex,
        /// SHA-256 of the applied state there.
        digest: [u8; 32],
    },
    /// The leader's verdict on the digest a replica reported for a checkpoint.
    DigestVerdict {
        /// The leader's term.
        term: Term,
        /// The checkpoint index.
        index: LogIndex,
        /// Whether the digest equals the reference; `false` makes the replica diverged.
        ok: bool,
    },
    /// A diverged replica asks its leader for a snapshot at or past its applied index, to
    /// reinstall it.
    RepairRequest {
        /// The sender's term.
        term: Term,
        /// The sender's applied index (held there until the repair).
        applied_index: LogIndex,
    },
    /// [`Forward`](Self::Forward) with the W3C trace context of the follower's `ha.forward`
    /// span, so the leader's spans join the same trace (issue 16). Last in the enum: postcard
    /// numbers variants by position, so adding it left every other message's encoding as it
    /// was, and an untraced forward is still sent as `Forward`. Answered with `ForwardReply`.
    TracedForward {
        /// The follower's id for matching the reply.
        forward_id: u64,
        /// The request.
        request: ClientRequest,
        /// The parent of the leader's spans for this request.
        trace: TraceParent,
    },
}

#[cfg(test)]
mod tests {
    //! Issue 16: tracing added a variant without changing how any other message is encoded.

    use ha_core::Consistency;

    use super::*;
    use crate::replica::ReadRequest;

    fn request() -> ClientRequest {
        ClientRequest::Read(ReadRequest {
            query: vec![7, 7],
            consistency: Consistency::Quorum,
        })
    }

    #[test]
    fn a_traced_forward_is_the_untraced_encoding_with_its_own_tag_and_the_context_after() {
        let plain = postcard::to_allocvec(&Rpc::Forward {
            forward_id: 300,
            request: request(),
        })
        .expect("encodes");
        // Variant 1, as before tracing existed: untraced forwards are unchanged on the wire.
        assert_eq!(plain[0], 1);
        let trace: TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .expect("valid");
        let traced_rpc = Rpc::TracedForward {
            forward_id: 300,
            request: request(),
            trace,
        };
        let traced = postcard::to_allocvec(&traced_rpc).expect("encodes");
        // The last variant, after the eight that were there before.
        assert_eq!(traced[0], 8);
        assert_eq!(traced[1..plain.len()], plain[1..]);
        assert_eq!(traced.len(), plain.len() + 25);
        let back: Rpc = postcard::from_bytes(&traced).expect("decodes");
        assert_eq!(back, traced_rpc);
    }
}
