//! Counting the packets a node refuses, by cause.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why an incoming gossip packet was dropped. Dropping never changes membership state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DropCause {
    /// Larger than a gossip packet may be.
    Oversized,
    /// Not an ha gossip packet, an unsupported protocol version, or an undecodable body.
    Malformed,
    /// From a cluster with another name.
    WrongCluster,
    /// Sealed with a key this node does not hold, or sealed/unsealed when the other was
    /// required.
    WrongKey,
    /// Sealed, but the authentication tag does not verify (tampered or corrupted).
    Forged,
    /// Decoded, but refused by the SWIM layer (for example a packet from our own address).
    Refused,
}

impl DropCause {
    /// Every cause, in a fixed order.
    pub const ALL: [DropCause; 6] = [
        DropCause::Oversized,
        DropCause::Malformed,
        DropCause::WrongCluster,
        DropCause::WrongKey,
        DropCause::Forged,
        DropCause::Refused,
    ];

    /// The snake_case name used in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            DropCause::Oversized => "oversized",
            DropCause::Malformed => "malformed",
            DropCause::WrongCluster => "wrong_cluster",
            DropCause::WrongKey => "wrong_key",
            DropCause::Forged => "forged",
            DropCause::Refused => "refused",
        }
    }

    fn slot(self) -> usize {
        match self {
            DropCause::Oversized => 0,
            DropCause::Malformed => 1,
            DropCause::WrongCluster => 2,
            DropCause::WrongKey => 3,
            DropCause::Forged => 4,
            DropCause::Refused => 5,
        }
    }
}

impl fmt::Display for DropCause {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Dropped-packet counters, one per [`DropCause`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropCounts {
    counts: [u64; 6],
}

impl DropCounts {
    /// Count one drop.
    pub fn record(&mut self, cause: DropCause) {
        let slot = &mut self.counts[cause.slot()];
        *slot = slot.saturating_add(1);
    }

    /// Drops for one cause.
    pub fn get(&self, cause: DropCause) -> u64 {
        self.counts[cause.slot()]
    }

    /// Drops for every cause.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Each cause with its count.
    pub fn iter(&self) -> impl Iterator<Item = (DropCause, u64)> + '_ {
        DropCause::ALL
            .into_iter()
            .map(|cause| (cause, self.get(cause)))
    }
}
