//! Lease safety: while a leader's lease would serve a read without a round trip, no node
//! leads a later term (else the lease read could miss that leader's writes).

use crate::replica::SimReplica;
use crate::sim::Simulator;

/// Check the running nodes now: a leader whose lease holds (by its own clock) and a leader of
/// a later term must not coexist. Call it often (every simulated millisecond or so).
///
/// # Errors
/// The two leaders, their terms and the time.
pub fn check_lease_excludes_later_leaders(sim: &Simulator<SimReplica>) -> Result<(), String> {
    let now = sim.now();
    let leaders: Vec<(usize, ha_core::Term, bool)> = sim
        .running_nodes()
        .into_iter()
        .filter_map(|node| {
            let replica = sim.actor(node)?;
            let engine = replica.core().engine();
            engine
                .is_leader()
                .then(|| (node, engine.term(), replica.lease_holds(now)))
        })
        .collect();
    for (holder, term, lease) in &leaders {
        if !lease {
            continue;
        }
        if let Some((other, later, _)) = leaders.iter().find(|(_, other_term, _)| other_term > term)
        {
            return Err(format!(
                "at {now}: n{holder} serves lease reads in term {term} while n{other} leads term {later}"
            ));
        }
    }
    Ok(())
}
