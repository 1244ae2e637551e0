//! Election safety: at most one leader per term (Raft figure 3).

use std::collections::BTreeMap;

use ha_core::{Millis, Term};
use ha_replicate::engine::Role;

use crate::replica::{ReplicaOutput, SimReplica};
use crate::sim::Simulator;

/// Every node that ever became leader, by term; fails on a term with two.
///
/// # Errors
/// A description of the two leaders of one term.
pub fn check_one_leader_per_term(sim: &Simulator<SimReplica>) -> Result<usize, String> {
    one_leader_per_term(sim.all_outputs().filter_map(|record| match &record.output {
        ReplicaOutput::Role {
            role: Role::Leader,
            term,
            ..
        } => Some((*term, record.node, record.at)),
        _ => None,
    }))
}

/// The number of terms that had a leader, given every (term, node, time) at which a node
/// became leader, in the order the simulator reports them; fails on a term with two.
///
/// # Errors
/// A description of the first two leaders found for one term.
pub fn one_leader_per_term(
    elections: impl IntoIterator<Item = (Term, usize, Millis)>,
) -> Result<usize, String> {
    let mut leaders: BTreeMap<Term, usize> = BTreeMap::new();
    for (term, node, at) in elections {
        if let Some(other) = leaders.insert(term, node)
            && other != node
        {
            return Err(format!(
                "two leaders in term {term}: n{other} and n{node} (at {at})"
            ));
        }
    }
    Ok(leaders.len())
}
