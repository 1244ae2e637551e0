//! Everything replicas say to each other over the transport.

use serde::{Deserialize, Serialize};

use ha_core::{LogIndex, Term};

use crate::engine::Message;
use crate::replica::client::{ClientReply, ClientRequest};
use crate::snapshot_meta::{SnapshotId, SnapshotMeta};

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
}
