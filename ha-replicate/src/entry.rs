//! Log entries.

use ha_core::{LogIndex, NodeId, Term};
use serde::{Deserialize, Serialize};

use crate::membership::VoterSet;

/// One record of the replicated log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The term of the leader that created it.
    pub term: Term,
    /// Its position; entries are numbered from 1 without gaps.
    pub index: LogIndex,
    /// What it carries.
    pub payload: Payload,
}

/// What an entry carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Payload {
    /// Appended by a new leader at the start of its term, so entries of earlier terms become
    /// committed through it (Raft section 5.4.2). Applies nothing to the host's state; every
    /// node records it in the failover history.
    LeaderStart(LeaderStart),
    /// A client command, encoded by the applier (session stamp and host command).
    Command(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A new cluster configuration; takes effect as soon as it is appended.
    Membership(VoterSet),
    /// A consistency checkpoint, proposed by the leader: every replica that applies it hashes
    /// its applied state there ([`DigestJob`](crate::replica::DigestJob)), so all digests
    /// of one checkpoint describe the same index. Applies nothing to the host's state. Placed
    /// by the leader's size-aware schedule
    /// ([`ConsistencySettings::checkpoint_due`](crate::replica::ConsistencySettings::checkpoint_due));
    /// last of the variants so logs written before it still decode.
    Checkpoint,
}

impl Entry {
    /// The entry as a witness keeps it: a client command's payload is dropped (a witness has
    /// no state machine to apply it to), everything else is kept whole, so its log still
    /// holds every term, index and configuration it needs to vote and to acknowledge
    /// appends. A correct command payload is never empty (it is an encoded session command),
    /// so an empty one always marks an entry stripped by a witness.
    pub fn metadata_only(self) -> Entry {
        match self.payload {
            Payload::Command(bytes) if !bytes.is_empty() => Entry {
                payload: Payload::Command(Vec::new()),
                ..self
            },
            _ => self,
        }
    }

    /// Whether this is a client command whose payload a witness dropped
    /// ([`metadata_only`](Self::metadata_only)).
    pub fn is_stripped_command(&self) -> bool {
        matches!(&self.payload, Payload::Command(bytes) if bytes.is_empty())
    }

    /// Approximate encoded size, for batching limits.
    pub fn size_bytes(&self) -> usize {
        24 + match &self.payload {
            Payload::LeaderStart(_) => 96,
            Payload::Command(bytes) => bytes.len(),
            Payload::Membership(membership) => 72 * membership.len(),
            Payload::Checkpoint => 0,
        }
    }
}

/// Why an election was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionCause {
    /// The cluster had no leader yet.
    Startup,
    /// The leader stopped answering (crash, partition, pause).
    LeaderLost,
    /// An operator asked for a leadership transfer.
    ManualTransfer,
    /// The leader handed over to a recovered higher-priority node.
    Failback,
    /// The leader became unhealthy and handed over.
    UnhealthyLeader,
    /// The leader was shutting down and handed over.
    Shutdown,
    /// An operator started an election by hand (manual failover mode).
    ManualElection,
}

impl ElectionCause {
    /// The snake_case name used in the HTTP API and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ElectionCause::Startup => "startup",
            ElectionCause::LeaderLost => "leader_lost",
            ElectionCause::ManualTransfer => "manual_transfer",
            ElectionCause::Failback => "failback",
            ElectionCause::UnhealthyLeader => "unhealthy_leader",
            ElectionCause::Shutdown => "shutdown",
            ElectionCause::ManualElection => "manual_election",
        }
    }
}

/// What a new leader records about how it came to lead: one line of the failover history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderStart {
    /// The new leader.
    pub leader: NodeId,
    /// The leader it replaces, if it knew one.
    pub previous: Option<NodeId>,
    /// Why the election happened.
    pub cause: ElectionCause,
    /// How long the new leader was without a leader before it took over: from the last
    /// message of the previous leader (or the transfer request) to winning, in milliseconds.
    pub leaderless_ms: u64,
    /// When the new leader won, in Unix milliseconds by its wall clock (for people reading
    /// the history only: wall clocks are never used for safety).
    pub at_unix_ms: u64,
}
