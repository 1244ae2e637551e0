//! Leadership and membership policy in the simulator: health-gated handover, manual failover
//! mode, transfer to the best node, learners promoted once caught up, dead voters removed only
//! while a majority remains, and snapshot install for a node that fell behind compaction.

use ha_core::{FailoverMode, HealthStatus, LogIndex, Millis, Priority};
use ha_replicate::engine::PeerInfo;
use ha_replicate::entry::ElectionCause;
use ha_tests::invariants::check_one_leader_per_term;
use ha_tests::replica::SimReplica;
use ha_tests::replica::{ReplicaClusterOptions, current_leader, replica_cluster, replica_id};
use ha_tests::sim::Simulator;
use ha_tests::with_seeds;
use ha_tests::workload::{Workload, WorkloadOptions};

fn elect(sim: &mut Simulator<SimReplica>) -> usize {
    sim.run_until_condition(sim.now() + 5_000, 5, |sim| current_leader(sim).is_some())
        .expect("a leader within 5 s");
    current_leader(sim).expect("a leader")
}

fn last_cause(sim: &Simulator<SimReplica>, node: usize) -> Option<ElectionCause> {
    sim.actor(node)?
        .core()
        .applier()
        .history()
        .last()
        .map(|record| record.cause)
}

#[test]
fn an_unhealthy_leader_hands_over_and_does_not_come_back() {
    with_seeds(
        "an_unhealthy_leader_hands_over_and_does_not_come_back",
        10,
        |seed| {
            let mut sim = replica_cluster(seed, &ReplicaClusterOptions::new(3));
            let sick = elect(&mut sim);
            sim.act(sick, |replica, now| {
                replica.command(now, |engine, now| {
                    engine.set_local_health(now, HealthStatus::Unhealthy)
                })
            });
            let handed = sim.run_until_condition(sim.now() + 3_000, 5, |sim| {
                current_leader(sim).is_some_and(|leader| leader != sick)
            });
            assert!(handed.is_some(), "the unhealthy leader kept leading");
            let leader = current_leader(&sim).unwrap();
            let recorded = sim.run_until_condition(sim.now() + 2_000, 5, |sim| {
                last_cause(sim, leader) == Some(ElectionCause::UnhealthyLeader)
            });
            assert!(recorded.is_some(), "cause not recorded as unhealthy_leader");
            // While unhealthy it never campaigns, even with the leader gone.
            sim.crash(leader);
            sim.run_for(3_000);
            assert_ne!(current_leader(&sim), Some(sick));
            check_one_leader_per_term(&sim).unwrap();
        },
    );
}

#[test]
fn manual_mode_elects_only_on_command() {
    with_seeds("manual_mode_elects_only_on_command", 5, |seed| {
        let mut options = ReplicaClusterOptions::new(3);
        options.failover_mode = FailoverMode::Manual;
        let mut sim = replica_cluster(seed, &options);
        sim.run_for(3_000);
        assert_eq!(
            current_leader(&sim),
            None,
            "no election without an operator"
        );
        sim.act(1, |replica, now| {
            replica.command(now, |engine, now| {
                engine.campaign(now);
            })
        });
        let first =
            sim.run_until_condition(sim.now() + 2_000, 5, |sim| current_leader(sim) == Some(1));
        assert!(
            first.is_some(),
            "the operator's election did not make n1 leader"
        );
        sim.crash(1);
        sim.run_for(3_000);
        assert_eq!(
            current_leader(&sim),
            None,
            "manual mode: no automatic failover"
        );
        sim.act(2, |replica, now| {
            replica.command(now, |engine, now| {
                engine.campaign(now);
            })
        });
        let second =
            sim.run_until_condition(sim.now() + 2_000, 5, |sim| current_leader(sim) == Some(2));
        assert!(second.is_some());
        let recorded = sim.run_until_condition(sim.now() + 2_000, 5, |sim| {
            last_cause(sim, 2) == Some(ElectionCause::ManualElection)
        });
        assert!(recorded.is_some());
    });
}

#[test]
fn transfer_without_a_target_picks_the_highest_priority_voter() {
    with_seeds(
        "transfer_without_a_target_picks_the_highest_priority_voter",
        10,
        |seed| {
            let mut options = ReplicaClusterOptions::new(5);
            options.priorities = vec![9, 3, 7, 5, 1];
            let mut sim = replica_cluster(seed, &options);
            let leader = sim
                .run_until_condition(Millis(5_000), 5, |sim| current_leader(sim) == Some(0))
                .map(|_| 0)
                .unwrap_or_else(|| {
                    panic!(
                        "n0 (priority 9) should lead first, got {:?}",
                        current_leader(&sim)
                    )
                });
            sim.act(leader, |replica, now| {
                replica.command(now, |engine, now| {
                    let target = engine
                        .transfer_leadership(now, None, ElectionCause::ManualTransfer)
                        .expect("a target");
                    assert_eq!(target, replica_id(2), "priority 7 is the best other voter");
                })
            });
            let moved =
                sim.run_until_condition(sim.now() + 2_000, 5, |sim| current_leader(sim) == Some(2));
            assert!(
                moved.is_some(),
                "leadership did not move to n2: {:?}",
                current_leader(&sim)
            );
        },
    );
}

#[test]
fn a_new_node_joins_as_learner_and_is_promoted_once_caught_up() {
    with_seeds(
        "a_new_node_joins_as_learner_and_is_promoted_once_caught_up",
        5,
        |seed| {
            let mut options = ReplicaClusterOptions::new(4);
            options.founding_voters = Some(3);
            let mut sim = replica_cluster(seed, &options);
            sim.crash(3); // not started yet: joins later
            let leader = elect(&mut sim);
            let mut workload = Workload::new(&mut sim, WorkloadOptions::default());
            let until = sim.now() + 2_000;
            workload.run(&mut sim, until);
            sim.start(3);
            let promoted = sim.run_until_condition(sim.now() + 10_000, 10, |sim| {
                sim.actor(3).is_some_and(|replica| {
                    replica
                        .core()
                        .engine()
                        .membership()
                        .is_voter(&replica_id(3))
                })
            });
            assert!(promoted.is_some(), "n3 was not promoted to voter");
            let membership = sim
                .actor(leader)
                .unwrap()
                .core()
                .engine()
                .membership()
                .clone();
            assert_eq!(membership.voters.len(), 4, "{membership:?}");
            assert!(membership.learners.is_empty());
            check_one_leader_per_term(&sim).unwrap();
        },
    );
}

#[test]
fn a_dead_voter_is_removed_only_while_a_majority_remains() {
    with_seeds(
        "a_dead_voter_is_removed_only_while_a_majority_remains",
        5,
        |seed| {
            let mut options = ReplicaClusterOptions::new(5);
            options.dead_voter_after_ms = Some(2_000);
            let mut sim = replica_cluster(seed, &options);
            let leader = elect(&mut sim);
            let others: Vec<usize> = (0..5).filter(|node| *node != leader).collect();
            // Two voters die; gossip would report them unreachable.
            for dead in &others[..2] {
                sim.crash(*dead);
            }
            let now = sim.now();
            for dead in &others[..2] {
                sim.act(leader, |replica, local| {
                    let info = PeerInfo {
                        priority: Priority(1),
                        health: HealthStatus::Unknown,
                        reachable: false,
                        wants_vote: true,
                        unreachable_since: Some(replica.local(now)),
                    };
                    replica.command(local, |engine, at| {
                        engine.set_peer_info(at, replica_id(*dead), info)
                    });
                });
            }
            let shrunk = sim.run_until_condition(sim.now() + 10_000, 10, |sim| {
                sim.actor(leader)
                    .is_some_and(|replica| replica.core().engine().membership().voters.len() == 3)
            });
            assert!(shrunk.is_some(), "the dead voters were not removed");
            // With 3 voters left (2 of them reachable), removing a third would leave no reachable
            // majority of the new configuration... the live majority is kept.
            let voters = sim
                .actor(leader)
                .unwrap()
                .core()
                .engine()
                .membership()
                .voters
                .clone();
            assert!(voters.contains(&replica_id(leader)));
            assert!(
                voters.contains(&replica_id(others[2])) && voters.contains(&replica_id(others[3]))
            );
        },
    );
}

#[test]
fn a_node_behind_compaction_catches_up_by_snapshot() {
    with_seeds(
        "a_node_behind_compaction_catches_up_by_snapshot",
        5,
        |seed| {
            let mut options = ReplicaClusterOptions::new(3);
            options.snapshot_every_entries = 100;
            let mut sim = replica_cluster(seed, &options);
            let leader = elect(&mut sim);
            let lagger = (leader + 1) % 3;
            sim.crash(lagger);
            // QUORUM only: a STRONG write cannot complete while a voter is down (by design).
            let quorum_only = WorkloadOptions {
                strong_fraction: 0.0,
                ..WorkloadOptions::default()
            };
            let mut workload = Workload::new(&mut sim, quorum_only);
            let until = sim.now() + 5_000;
            workload.run(&mut sim, until);
            let compacted = sim
                .actor(leader)
                .unwrap()
                .core()
                .engine()
                .snapshot_meta()
                .last_index;
            println!(
                "leader n{leader}: applied {} commit {} completed ops {}",
                sim.actor(leader).unwrap().core().applier().applied_index(),
                sim.actor(leader).unwrap().core().engine().commit_index(),
                workload.completed()
            );
            assert!(
                compacted > LogIndex(300),
                "the leader compacted only to {compacted}"
            );
            sim.start(lagger);
            let caught_up = sim.run_until_condition(sim.now() + 5_000, 10, |sim| {
                let leader_commit = sim.actor(leader).unwrap().core().engine().commit_index();
                sim.actor(lagger).is_some_and(|replica| {
                    replica.core().applier().applied_index() >= leader_commit
                })
            });
            assert!(caught_up.is_some(), "the lagging node did not catch up");
            let installed = sim
                .actor(lagger)
                .unwrap()
                .core()
                .engine()
                .snapshot_meta()
                .last_index;
            assert!(
                installed >= compacted,
                "caught up without the snapshot ({installed} < {compacted})"
            );
        },
    );
}
