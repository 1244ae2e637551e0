//! Log entries.

use ha_core::{LogIndex, Term};
use serde::{Deserialize, Serialize};

use crate::membership::Membership;

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
    /// committed through it (Raft section 5.4.2). Applies nothing.
    Blank,
    /// A client command, encoded by the applier (session stamp and host command).
    Command(Vec<u8>),
    /// A new cluster configuration; takes effect as soon as it is appended.
    Membership(Membership),
}

impl Entry {
    /// Approximate encoded size, for batching limits.
    pub fn size_bytes(&self) -> usize {
        24 + match &self.payload {
            Payload::Blank => 0,
            Payload::Command(bytes) => bytes.len(),
            Payload::Membership(membership) => 72 * membership.len(),
        }
    }
}
