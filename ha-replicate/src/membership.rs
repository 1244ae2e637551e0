//! Who votes and who only replicates.

use std::collections::BTreeSet;

use ha_core::NodeId;
use serde::{Deserialize, Serialize};

/// The cluster configuration: voters decide elections and commits; learners receive the log
/// but do not count. Changed one node at a time, so any two majorities overlap.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// Members that vote and count towards commit.
    pub voters: BTreeSet<NodeId>,
    /// Members that replicate without voting (catching up before promotion).
    pub learners: BTreeSet<NodeId>,
}

impl Membership {
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
            assert_eq!(Membership::with_voters(ids(&refs)).quorum(), quorum);
        }
    }

    #[test]
    fn only_voters_count_and_duplicates_do_not() {
        let mut membership = Membership::with_voters(ids(&["a", "b", "c"]));
        membership.learners.insert(NodeId::new("d").unwrap());
        assert!(!membership.is_quorum(&ids(&["a", "d"])));
        assert!(!membership.is_quorum(&ids(&["a", "a"])));
        assert!(membership.is_quorum(&ids(&["a", "c"])));
    }
}
