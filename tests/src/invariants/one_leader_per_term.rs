//! Election safety: at most one leader per term (Raft figure 3).

use std::collections::BTreeMap;

use ha_core::Term;
use ha_replicate::engine::Role;

use crate::replica::{ReplicaOutput, SimReplica};
use crate::sim::Simulator;

/// Every node that ever became leader, by term; fails on a term with two.
///
/// # Errors
/// A description of the two leaders of one term.
pub fn check_one_leader_per_term(sim: &Simulator<SimReplica>) -> Result<usize, String> {
    let mut leaders: BTreeMap<Term, usize> = BTreeMap::new();
    for record in sim.all_outputs() {
        if let ReplicaOutput::Role {
            role: Role::Leader,
            term,
            ..
        } = &record.output
            && let Some(other) = leaders.insert(*term, record.node)
            && other != record.node
        {
            return Err(format!(
                "two leaders in term {term}: n{other} and n{} (at {})",
                record.node, record.at
            ));
        }
    }
    Ok(leaders.len())
}
