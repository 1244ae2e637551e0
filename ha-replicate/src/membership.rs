//! Who votes and who only replicates.

use std::collections::BTreeSet;

use ha_core::NodeId;
use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

/// Most voters, and most learners, a decoded [`VoterSet`] may list (the gossip layer's
/// member limit). A longer list is refused before its ids are read: each id takes some 50 bytes
/// in memory for 2 or 3 on the wire, so an unbounded list in one 16 MiB frame could make a node
/// allocate hundreds of megabytes while decoding it.
pub const MEMBERSHIP_SET_MAX: usize = 65_536;

/// The memory one member id of a decoded membership takes, estimated (the id, its place in
/// the set, the set's node overhead), for the append decoder's budget.
pub(crate) const DECODED_MEMBER_BYTES: usize = 64;

/// Decode a voter or learner set of at most [`MEMBERSHIP_SET_MAX`] ids.
fn decode_member_set<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeSet<NodeId>, D::Error> {
    struct Members;

    impl<'de> Visitor<'de> for Members {
        type Value = BTreeSet<NodeId>;

        fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(formatter, "a set of at most {MEMBERSHIP_SET_MAX} node ids")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut sequence: A) -> Result<Self::Value, A::Error> {
            let claimed = sequence.size_hint().unwrap_or(0);
            if claimed > MEMBERSHIP_SET_MAX {
                return Err(serde::de::Error::invalid_length(claimed, &self));
            }
            let mut members = BTreeSet::new();
            let mut read = 0usize;
            while let Some(member) = sequence.next_element::<NodeId>()? {
                read += 1;
                if read > MEMBERSHIP_SET_MAX {
                    return Err(serde::de::Error::invalid_length(read, &self));
                }
                members.insert(member);
            }
            Ok(members)
        }
    }

    deserializer.deserialize_seq(Members)
}

/// The cluster configuration: voters decide elections and commits; learners receive the log
/// but do not count. Changed one node at a time, so any two majorities overlap.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoterSet {
    /// Members that vote and count towards commit (at most [`MEMBERSHIP_SET_MAX`] decode).
    #[serde(deserialize_with = "decode_member_set")]
    pub voters: BTreeSet<NodeId>,
    /// Members that replicate without voting (catching up before promotion; at most
    /// [`MEMBERSHIP_SET_MAX`] decode).
    #[serde(deserialize_with = "decode_member_set")]
    pub learners: BTreeSet<NodeId>,
}

impl VoterSet {
    /// A configuration of `voters` and no learners.
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> Self {
        Self {
            voters: voters.into_iter().collect(),
            learners: BTreeSet::new(),
        }
    }

    /// How many voters make a majority.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// Whether `node` votes.
    pub fn is_voter(&self, node: &NodeId) -> bool {
        self.voters.contains(node)
    }

    /// Whether `node` is a voter or a learner.
    pub fn contains(&self, node: &NodeId) -> bool {
        self.voters.contains(node) || self.learners.contains(node)
    }

    /// Voters and learners together.
    pub fn len(&self) -> usize {
        self.voters.len() + self.learners.len()
    }

    /// Whether there is nobody at all.
    pub fn is_empty(&self) -> bool {
        self.voters.is_empty() && self.learners.is_empty()
    }

    /// Every member, voters first.
    pub fn members(&self) -> impl Iterator<Item = &NodeId> {
        self.voters.iter().chain(self.learners.iter())
    }

    /// Whether the voters in `granted` form a majority.
    pub fn is_quorum<'a>(&self, granted: impl IntoIterator<Item = &'a NodeId>) -> bool {
        let count = granted
            .into_iter()
            .filter(|node| self.voters.contains(*node))
            .collect::<BTreeSet<_>>()
            .len();
        count >= self.quorum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> Vec<NodeId> {
        names
            .iter()
            .map(|name| NodeId::new(*name).unwrap())
            .collect()
    }

    #[test]
    fn quorum_table() {
        for (voters, quorum) in [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4)] {
            let names: Vec<String> = (0..voters).map(|i| format!("n{i}")).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            assert_eq!(VoterSet::with_voters(ids(&refs)).quorum(), quorum);
        }
    }

    #[test]
    fn only_voters_count_and_duplicates_do_not() {
        let mut membership = VoterSet::with_voters(ids(&["a", "b", "c"]));
        membership.learners.insert(NodeId::new("d").unwrap());
        assert!(!membership.is_quorum(&ids(&["a", "d"])));
        assert!(!membership.is_quorum(&ids(&["a", "a"])));
        assert!(membership.is_quorum(&ids(&["a", "c"])));
    }
}
