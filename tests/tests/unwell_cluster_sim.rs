//! Issue 14's hazard in the simulator: nodes sharing a host or a disk cross a health threshold
//! together, and a node that is not HEALTHY does not campaign on its election timeout. With
//! the unwell wait (`health.unwell_campaign_after_timeouts`, 5 x 300 ms with the test
//! settings, twice that when UNHEALTHY) a cluster in which every voter is equally unwell still
//! elects exactly one leader per term, never before the wait, and keeps one through a crash.
//!
//! Sweep: `HA_SIM_SEEDS=500 cargo test -p ha-tests --test unwell_cluster_sim`.

use ha_core::{HealthStatus, Millis, Priority};
use ha_replicate::engine::PeerInfo;
use ha_tests::invariants::check_one_leader_per_term;
use ha_tests::replica::{
    ReplicaClusterOptions, SimReplica, current_leader, replica_cluster, replica_id,
};
use ha_tests::sim::Simulator;
use ha_tests::with_seeds;

/// The unwell wait of `EngineSettings::for_test` (LAN: 5 x 300 ms).
const WAIT_MS: u64 = 1_500;

/// Every node of the 3-node cluster turns `health` at once: first each learns the others'
/// health (as gossip's metadata would tell it), then its own health checks report it.
fn everyone(sim: &mut Simulator<SimReplica>, health: HealthStatus) {
    for node in 0..3 {
        for other in (0..3).filter(|other| *other != node) {
            let info = PeerInfo {
                priority: Priority(1),
                health,
                reachable: true,
                wants_vote: true,
                unreachable_since: None,
            };
            sim.act(node, |replica, now| {
                replica.command(now, |core, now| {
                    core.on_peer_info(now, replica_id(other), info)
                })
            });
        }
    }
    for node in 0..3 {
        sim.act(node, |replica, now| {
            replica.command(now, |core, now| core.on_local_health(now, health))
        });
    }
}

#[test]
fn every_voter_degraded_from_the_start_still_elects_one_leader_after_the_wait() {
    with_seeds("every_voter_degraded_from_the_start", 20, |seed| {
        let mut sim = replica_cluster(seed, &ReplicaClusterOptions::new(3));
        everyone(&mut sim, HealthStatus::Degraded);
        let started = sim.now();
        let elected =
            sim.run_until_condition(started + 10_000, 5, |sim| current_leader(sim).is_some());
        let Some(Millis(at)) = elected else {
            panic!("seed {seed}: no leader within 10 s although every voter is only degraded");
        };
        assert!(
            at - started.0 >= WAIT_MS,
            "seed {seed}: elected at {at} ms, before the unwell wait"
        );
        // It stays: nothing healthier to hand over to, and the others hear it.
        let leader = current_leader(&sim);
        sim.run_for(2_000);
        assert_eq!(current_leader(&sim), leader, "seed {seed}");
        check_one_leader_per_term(&sim).unwrap();
    });
}

#[test]
fn an_all_unhealthy_cluster_keeps_its_leader_and_elects_another_after_a_crash() {
    with_seeds("an_all_unhealthy_cluster_keeps_its_leader", 20, |seed| {
        let mut sim = replica_cluster(seed, &ReplicaClusterOptions::new(3));
        let first = sim
            .run_until_condition(sim.now() + 5_000, 5, |sim| current_leader(sim).is_some())
            .and_then(|_| current_leader(&sim))
            .expect("a healthy cluster elects within 5 s");
        everyone(&mut sim, HealthStatus::Unhealthy);
        sim.run_for(1_000);
        assert_eq!(
            current_leader(&sim),
            Some(first),
            "seed {seed}: an unhealthy leader with no healthier voter keeps leading"
        );
        sim.crash(first);
        let crashed_at = sim.now();
        let again = sim.run_until_condition(crashed_at + 15_000, 5, |sim| {
            current_leader(sim).is_some_and(|leader| leader != first)
        });
        let Some(Millis(at)) = again else {
            panic!("seed {seed}: the two unhealthy survivors never elected a leader");
        };
        assert!(
            at - crashed_at.0 >= 2 * WAIT_MS - 300,
            "seed {seed}: an unhealthy voter campaigned {} ms after the crash",
            at - crashed_at.0
        );
        check_one_leader_per_term(&sim).unwrap();
    });
}
