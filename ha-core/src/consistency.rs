//! Per-call consistency levels.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How much agreement a write waits for, and how fresh a read must be. Chosen per call.
///
/// | level      | a write returns when                                 | a read is served                     |
/// |------------|------------------------------------------------------|--------------------------------------|
/// | `Strong`   | committed and applied on every voter in the config   | linearizable (read-index on leader)  |
/// | `Quorum`   | committed (majority) and applied on the leader       | linearizable (read-index or lease)   |
/// | `Eventual` | appended on the leader, not yet replicated           | local replica, possibly stale        |
///
/// A `Strong` write that cannot reach every voter before its deadline fails with an error that
/// says it is committed at `Quorum` but not on all voters. An `Eventual` write can be lost if the
/// leader dies before replicating it; the lag per node tells how far behind each replica is.
///
/// ```
/// use ha_core::Consistency;
/// assert_eq!("quorum".parse::<Consistency>().unwrap(), Consistency::Quorum);
/// assert!(Consistency::Strong.is_linearizable_read());
/// assert!(!Consistency::Eventual.is_linearizable_read());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// Every voter has applied the write; reads are linearizable.
    Strong,
    /// A majority has the write and the leader applied it; reads are linearizable.
    #[default]
    Quorum,
    /// The leader appended the write; reads come from the local replica and may be stale.
    Eventual,
}

impl Consistency {
    /// Whether a read at this level reflects every write acknowledged before it started.
    pub fn is_linearizable_read(self) -> bool {
        !matches!(self, Consistency::Eventual)
    }

    /// The lower-case name used in URLs and config (`strong`, `quorum`, `eventual`).
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::Strong => "strong",
            Consistency::Quorum => "quorum",
            Consistency::Eventual => "eventual",
        }
    }
}

impl fmt::Display for Consistency {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// The text was not `strong`, `quorum` or `eventual`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown consistency {given:?}: use strong, quorum or eventual")]
pub struct UnknownConsistency {
    /// What was given.
    pub given: String,
}

impl FromStr for Consistency {
    type Err = UnknownConsistency;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "strong" => Ok(Consistency::Strong),
            "quorum" => Ok(Consistency::Quorum),
            "eventual" => Ok(Consistency::Eventual),
            _ => Err(UnknownConsistency {
                given: text.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for level in [
            Consistency::Strong,
            Consistency::Quorum,
            Consistency::Eventual,
        ] {
            assert_eq!(level.as_str().parse::<Consistency>().unwrap(), level);
        }
        assert!("linearizable".parse::<Consistency>().is_err());
    }
}
