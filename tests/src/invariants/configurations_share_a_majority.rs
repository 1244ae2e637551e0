//! Membership safety: any two configurations in use in the same term, or in consecutive
//! terms, share a majority (every majority of one meets every majority of the other), so
//! two leaders can never be elected, or commit, with disjoint majorities.
//!
//! "In use" means a leader decided something counting those voters: it won its election
//! with them, or advanced its commit index with them ([`ReplicaOutput::ConfigUsed`]). A
//! configuration only held by a lagging node decides nothing until that node wins. Within a
//! term the leader's configurations are checked one after the next; across terms, the last
//! configuration a leader used is checked against the one the next leader was elected with
//! (terms without a leader are skipped: they decided nothing).

use std::collections::{BTreeMap, BTreeSet};

use ha_core::{Millis, NodeId, Term};

use crate::replica::{ReplicaOutput, SimReplica};
use crate::sim::Simulator;

/// Whether every majority of `first` meets every majority of `second`: two disjoint
/// majorities need `quorum - |only in that one|` members of the intersection each, which the
/// intersection cannot supply.
pub fn share_a_majority(first: &BTreeSet<NodeId>, second: &BTreeSet<NodeId>) -> bool {
    let quorum = |voters: &BTreeSet<NodeId>| voters.len() / 2 + 1;
    let only_first = first.difference(second).count();
    let only_second = second.difference(first).count();
    let both = first.intersection(second).count();
    quorum(first).saturating_sub(only_first) + quorum(second).saturating_sub(only_second) > both
}

/// When, on which node, with which voters, and whether by winning the election.
type ConfigUse = (Millis, usize, BTreeSet<NodeId>, bool);

fn names(voters: &BTreeSet<NodeId>) -> String {
    let names: Vec<&str> = voters.iter().map(NodeId::as_str).collect();
    format!("{{{}}}", names.join(","))
}

/// Check every pair of configurations in use in the same or consecutive (leader) terms.
/// Returns how many configuration uses were checked.
///
/// # Errors
/// The first pair that does not share a majority, with when and by whom each was used.
pub fn check_configurations_share_a_majority(sim: &Simulator<SimReplica>) -> Result<usize, String> {
    let mut by_term: BTreeMap<Term, Vec<ConfigUse>> = BTreeMap::new();
    for record in sim.all_outputs() {
        if let ReplicaOutput::ConfigUsed {
            term,
            voters,
            elected,
        } = &record.output
        {
            by_term.entry(*term).or_default().push((
                record.at,
                record.node,
                voters.clone(),
                *elected,
            ));
        }
    }
    let mut checked = 0;
    let mut previous: Option<(Term, Millis, usize, BTreeSet<NodeId>)> = None;
    for (term, mut uses) in by_term {
        uses.sort_by_key(|(at, node, _, _)| (*at, *node));
        for (at, node, voters, elected) in uses {
            checked += 1;
            if let Some((earlier_term, earlier_at, earlier_node, earlier)) = &previous
                && !share_a_majority(earlier, &voters)
            {
                let how = if elected {
                    "was elected with"
                } else {
                    "committed with"
                };
                return Err(format!(
                    "configurations without a common majority: n{earlier_node} used \
                     {} in term {earlier_term} (at {earlier_at}), then n{node} {how} {} in \
                     term {term} (at {at})",
                    names(earlier),
                    names(&voters)
                ));
            }
            previous = Some((term, at, node, voters));
        }
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<NodeId> {
        names
            .iter()
            .map(|name| NodeId::new(*name).unwrap())
            .collect()
    }

    /// One line per case: two voter sets, and whether they share a majority.
    #[test]
    fn share_a_majority_table() {
        let cases: [(&[&str], &[&str], bool); 8] = [
            (&["a", "b", "c"], &["a", "b", "c"], true),
            (&["a", "b", "c"], &["a", "b", "c", "d"], true),
            (&["a", "b", "c", "d"], &["a", "b", "c"], true),
            (&["a", "b", "c"], &["a", "b"], true),
            // Two single changes from {a,b,c,d}: add e, remove d (raft-dev 2015).
            (&["a", "b", "c", "d", "e"], &["a", "b", "c"], false),
            // Two additions in a row: {a,b} and {c,d,e} are majorities of each.
            (&["a", "b", "c"], &["a", "b", "c", "d", "e"], false),
            (&["a"], &["b"], false),
            (&["a", "b", "c"], &["b", "c", "d"], false),
        ];
        for (first, second, expected) in cases {
            assert_eq!(
                share_a_majority(&set(first), &set(second)),
                expected,
                "{first:?} vs {second:?}"
            );
        }
    }
}
