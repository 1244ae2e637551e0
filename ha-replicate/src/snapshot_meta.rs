//! Describing a snapshot.

use ha_core::{LogIndex, Term};
use serde::{Deserialize, Serialize};

use crate::membership::Membership;

/// Which prefix of the log a snapshot replaces.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// The last entry the snapshot includes.
    pub last_index: LogIndex,
    /// That entry's term.
    pub last_term: Term,
    /// The configuration as of `last_index`.
    pub membership: Membership,
}
