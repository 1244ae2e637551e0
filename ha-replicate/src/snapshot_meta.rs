//! Describing a snapshot.

use ha_core::{LogIndex, Term};
use serde::{Deserialize, Serialize};

use crate::membership::VoterSet;

/// Which prefix of the log a snapshot replaces.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// The last entry the snapshot includes.
    pub last_index: LogIndex,
    /// That entry's term.
    pub last_term: Term,
    /// The configuration as of `last_index`.
    pub membership: VoterSet,
}

/// Names one snapshot's bytes: two snapshots with the same id hold the same bytes. A follower
/// resumes an interrupted transfer only into a snapshot of the same id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SnapshotId {
    /// The last entry the snapshot includes.
    pub last_index: LogIndex,
    /// That entry's term.
    pub last_term: Term,
    /// The length of the snapshot's bytes.
    pub size: u64,
    /// The CRC-32C of the snapshot's bytes.
    pub crc32c: u32,
}
