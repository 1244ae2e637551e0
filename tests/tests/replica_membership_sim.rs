//! Leadership and membership policy in the simulator: health-gated handover, manual failover
//! mode, transfer to the best node, learners promoted once caught up, dead voters removed only
//! while a majority remains, snapshot install for a node that fell behind compaction, and
//! membership changes (add, promote, demote, remove) across leader churn and crash-restarts
//! with the check that configurations in use in the same or consecutive terms share a
//! majority.
//!
//! Long sweep of the membership churn (about 2,000 seeds):
//! `HA_SIM_SEEDS=2000 cargo test -p ha-tests --profile sim --test replica_membership_sim -- \
//!  membership_changes_across_leader_churn --nocapture`

use ha_core::{FailoverMode, HealthStatus, LogIndex, Millis, Priority};
use ha_linearizability::{Budget, CheckResult, RegisterModel, check};
use ha_replicate::engine::PeerInfo;
use ha_replicate::entry::ElectionCause;
use ha_replicate::membership::VoterSet;
use ha_replicate::storage::LogStore;
use ha_tests::invariants::{
    AppliedCommands, check_acknowledged_writes_survive, check_configurations_share_a_majority,
    check_no_refused_inputs, check_one_leader_per_term,
};
use ha_tests::replica::SimReplica;
use ha_tests::replica::{ReplicaClusterOptions, current_leader, replica_cluster, replica_id};
use ha_tests::sim::NetworkConfig;
use ha_tests::sim::Simulator;
use ha_tests::snapshot_writes::SIM_CHUNK_BYTES;
use ha_tests::with_seeds;
use ha_tests::workload::{Workload, WorkloadOptions};
use rand::RngExt;

/// Seeds the membership churn runs by default (CI); see the module doc for the long sweep.
const CHURN_SEEDS: u64 = 40;

fn elect(sim: &mut Simulator<SimReplica>) -> usize {
    sim.run_until_condition(sim.now() + 5_000, 5, |sim| current_leader(sim).is_some())
        .expect("a leader within 5 s");
    current_leader(sim).expect("a leader")
}

/// The membership node `node` currently holds (it must be running).
#[track_caller]
fn membership_of(sim: &Simulator<SimReplica>, node: usize) -> VoterSet {
    sim.actor(node)
        .unwrap()
        .core()
        .engine()
        .membership()
        .clone()
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
                replica.command(now, |core, now| {
                    core.on_local_health(now, HealthStatus::Unhealthy)
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
            replica.command(now, |core, now| {
                core.on_campaign(now);
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
            replica.command(now, |core, now| {
                core.on_campaign(now);
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
                replica.command(now, |core, now| {
                    let target = core
                        .on_transfer(now, None, ElectionCause::ManualTransfer)
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
            let membership = membership_of(&sim, leader);
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
                    replica.command(local, |core, at| {
                        core.on_peer_info(at, replica_id(*dead), info)
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
            let voters = membership_of(&sim, leader).voters;
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
            // 10 s: writes wait for the simulated disks' real sync delays (`SyncDelays`).
            let until = sim.now() + 10_000;
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
            if caught_up.is_none() {
                let lagging = sim.actor(lagger).unwrap().core();
                let leading = sim.actor(leader).unwrap().core();
                panic!(
                    "the lagging node did not catch up: applied {}, received {:?}, holding {:?}; \
                     the leader's transfer to it: {:?}",
                    lagging.applier().applied_index(),
                    lagging.snapshot_stats(),
                    lagging.store().incoming(),
                    leading.transfer_progress(sim.now(), &replica_id(lagger)),
                );
            }
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
            let stats = sim.actor(lagger).unwrap().core().snapshot_stats();
            assert!(
                stats.installs >= 1 && stats.bytes_received > 2 * SIM_CHUNK_BYTES as u64,
                "the snapshot did not arrive in several chunks: {stats:?}"
            );
        },
    );
}

/// Whether `node` holds part, not all, of a snapshot it is receiving.
fn mid_install(sim: &Simulator<SimReplica>, node: usize) -> bool {
    sim.actor(node).is_some_and(|replica| {
        replica
            .core()
            .store()
            .incoming()
            .is_some_and(|incoming| incoming.held > 0 && incoming.held < incoming.id.size)
    })
}

/// A chunked install under 5% loss, duplication and reordering, interrupted twice: the
/// receiving node crashes mid-install (it restarts and resumes, or starts over when its
/// partial bytes were lost unsynced), then the leader crashes mid-install (the node completes
/// from the new leader, whose snapshot may be another). The node ends with the state every
/// other replica applied, and no acknowledged write is lost.
#[test]
fn a_chunked_install_survives_loss_and_crashes_of_both_ends() {
    with_seeds(
        "a_chunked_install_survives_loss_and_crashes_of_both_ends",
        10,
        |seed| {
            let mut options = ReplicaClusterOptions::new(5);
            options.snapshot_every_entries = 50;
            options.network = NetworkConfig::lan().with_drop_probability(0.05);
            options.network.duplicate_probability = 0.02;
            options.network.latency_ms_max = 8;
            let mut sim = replica_cluster(seed, &options);
            let leader = elect(&mut sim);
            let lagger = (leader + 1) % 5;
            sim.crash(lagger);
            let quorum_only = WorkloadOptions {
                strong_fraction: 0.0,
                ..WorkloadOptions::default()
            };
            let mut workload = Workload::new(&mut sim, quorum_only);
            let until = sim.now() + 3_000;
            workload.run(&mut sim, until);
            sim.start(lagger);
            let mut interruptions = 0;
            for _ in 0..2 {
                let Some(_) =
                    sim.run_until_condition(sim.now() + 5_000, 1, |sim| mid_install(sim, lagger))
                else {
                    break;
                };
                interruptions += 1;
                if interruptions == 1 {
                    sim.crash(lagger);
                    let restart = sim.now() + 50;
                    sim.run_until(restart);
                    sim.start(lagger);
                } else if let Some(current) = current_leader(&sim) {
                    sim.crash(current);
                    let restart = sim.now() + 500;
                    sim.run_until(restart);
                    sim.start(current);
                }
            }
            assert!(
                interruptions >= 1,
                "the node was never caught in the middle of an install"
            );
            workload.stop_issuing();
            let until = sim.now() + 2_000;
            workload.run(&mut sim, until);
            let caught_up = sim.run_until_condition(sim.now() + 10_000, 10, |sim| {
                let Some(leader) = current_leader(sim) else {
                    return false;
                };
                let leader_commit = sim.actor(leader).unwrap().core().engine().commit_index();
                sim.actor(lagger).is_some_and(|replica| {
                    replica.core().applier().applied_index() >= leader_commit
                })
            });
            assert!(
                caught_up.is_some(),
                "the node did not catch up after {interruptions} interruptions"
            );
            let stats = sim.actor(lagger).unwrap().core().snapshot_stats();
            assert!(stats.installs >= 1, "no snapshot installed: {stats:?}");
            println!("interruptions {interruptions}, receiver {stats:?}");
            AppliedCommands::default()
                .observe(&sim)
                .unwrap_or_else(|error| panic!("{error}"));
            check_acknowledged_writes_survive(&sim, workload.acknowledged())
                .unwrap_or_else(|error| panic!("{error}"));
            check_one_leader_per_term(&sim).unwrap_or_else(|error| panic!("{error}"));
            check_no_refused_inputs(&sim).unwrap_or_else(|error| panic!("{error}"));
        },
    );
}

/// Tell every running node that gossip reaches `node` or not (since now), as the failure
/// detector would; the leader's dead-voter removal and learner addition act on it.
fn report_reachability(sim: &mut Simulator<SimReplica>, node: usize, reachable: bool) {
    let now = sim.now();
    for observer in sim.running_nodes() {
        if observer == node {
            continue;
        }
        sim.act(observer, |replica, _| {
            let since = replica.local(now);
            let info = PeerInfo {
                priority: Priority(1),
                health: if reachable {
                    HealthStatus::Healthy
                } else {
                    HealthStatus::Unknown
                },
                reachable,
                wants_vote: true,
                unreachable_since: (!reachable).then_some(since),
            };
            replica.command(now, |core, at| {
                core.on_peer_info(at, replica_id(node), info)
            });
        });
    }
}

/// A membership change the current leader proposes, drawn at random: remove a voter, demote
/// a voter to learner, promote a learner, or add a non-member as learner. The leader also
/// adds and promotes on its own (every node wants to vote) and removes voters unreachable
/// for 400 ms. Refused proposals (pending change, leader term not committed) are fine.
fn propose_random_change(sim: &mut Simulator<SimReplica>, leader: usize, node_count: usize) {
    let target = sim.rng().random_range(0..node_count);
    let kind = sim.rng().random_range(0..4u32);
    sim.act(leader, |replica, now| {
        replica.command(now, |core, at| {
            let mut next = core.engine().membership().clone();
            let id = replica_id(target);
            match kind {
                0 => {
                    next.voters.remove(&id);
                }
                1 => {
                    if next.voters.remove(&id) {
                        next.learners.insert(id);
                    }
                }
                2 => {
                    if next.learners.remove(&id) {
                        next.voters.insert(id);
                    }
                }
                _ => {
                    if !next.contains(&id) {
                        next.learners.insert(id);
                    }
                }
            }
            if next != *core.engine().membership() && next.voters.len() >= 2 {
                let _ = core.on_propose_membership(at, next);
            }
        })
    });
}

/// One membership churn run: 5 nodes of which 3 found the cluster, a client workload, and
/// every few milliseconds a random step: a membership change proposed on the leader (often
/// right after it was elected, before its first entry can commit), a crash or restart at a
/// random moment (the leader's included), a partition, a heal. Then everything heals and the
/// cluster must serve again. Checked: one leader per term, configurations in use in the same
/// or consecutive terms share a majority, applied commands agree, acknowledged writes
/// survive, the history is linearizable.
fn membership_churn(seed: u64) {
    let node_count = 5;
    let mut options = ReplicaClusterOptions::new(node_count);
    options.founding_voters = Some(3);
    options.dead_voter_after_ms = Some(400);
    options.network = NetworkConfig::lan().with_drop_probability(0.01);
    options.network.latency_ms_max = 6;
    options.snapshot_every_entries = 300;
    let mut sim = replica_cluster(seed, &options);
    let quorum_only = WorkloadOptions {
        strong_fraction: 0.0,
        ..WorkloadOptions::default()
    };
    let mut workload = Workload::new(&mut sim, quorum_only);
    let mut applied = AppliedCommands::default();
    let fault_phase_end = Millis(8_000);
    let mut leader_seen: Option<(usize, ha_core::Term)> = None;
    let (mut crashes, mut proposals, mut partitions) = (0u32, 0u32, 0u32);
    while sim.now() < fault_phase_end {
        let next = sim.now() + 1;
        sim.run_until(next);
        workload.step(&mut sim);
        let leader = current_leader(&sim);
        let term = leader.and_then(|node| {
            sim.actor(node)
                .map(|replica| replica.core().engine().term())
        });
        let fresh_leader = leader.is_some() && leader.zip(term) != leader_seen;
        if let (Some(node), Some(term)) = (leader, term) {
            leader_seen = Some((node, term));
        }
        // A new leader is asked for a change at once half the time; otherwise every 25 ms
        // on average.
        let propose = match leader {
            Some(_) if fresh_leader => sim.rng().random_bool(0.5),
            Some(_) => sim.rng().random_range(0..25u32) == 0,
            None => false,
        };
        if let (true, Some(node)) = (propose, leader) {
            propose_random_change(&mut sim, node, node_count);
            proposals += 1;
        }
        // Faults: on average one every 40 ms.
        if sim.rng().random_range(0..40u32) != 0 {
            continue;
        }
        let node = sim.rng().random_range(0..node_count);
        match sim.rng().random_range(0..100u32) {
            0..=24 => {
                // Crash soon (the leader, when there is one, half the time), restart later.
                let victim = match leader {
                    Some(leader) if sim.rng().random_bool(0.5) => leader,
                    _ => node,
                };
                let crash_in = sim.rng().random_range(0..20u64);
                let down_for = sim.rng().random_range(1..600u64);
                let at = sim.now() + crash_in;
                crashes += u32::from(sim.is_running(victim));
                sim.crash_at(victim, at);
                sim.start_at(victim, at + down_for);
                report_reachability(&mut sim, victim, false);
            }
            25..=44 => {
                for node in 0..node_count {
                    if sim.is_running(node) {
                        report_reachability(&mut sim, node, true);
                    }
                }
            }
            45..=59 => {
                sim.partition_minority_from(node);
                partitions += 1;
            }
            60..=69 => {
                if let Some(leader) = leader {
                    sim.isolate(leader);
                    partitions += 1;
                }
            }
            _ => sim.network_mut().heal(),
        }
        if sim.now().0 % 500 < 40 {
            applied
                .observe(&sim)
                .unwrap_or_else(|error| panic!("{error}"));
        }
    }
    sim.network_mut().heal();
    sim.network_mut().set_config(NetworkConfig::lan());
    for node in 0..node_count {
        if !sim.is_running(node) {
            sim.start(node);
        }
    }
    for node in 0..node_count {
        report_reachability(&mut sim, node, true);
    }
    let before = workload.completed();
    workload.run(&mut sim, Millis(14_000));
    workload.stop_issuing();
    workload.run(&mut sim, Millis(17_000));
    applied
        .observe(&sim)
        .unwrap_or_else(|error| panic!("{error}"));
    let terms = check_one_leader_per_term(&sim).unwrap_or_else(|error| panic!("{error}"));
    let uses =
        check_configurations_share_a_majority(&sim).unwrap_or_else(|error| panic!("{error}"));
    check_acknowledged_writes_survive(&sim, workload.acknowledged())
        .unwrap_or_else(|error| panic!("{error}"));
    check_no_refused_inputs(&sim).unwrap_or_else(|error| panic!("{error}"));
    let result = check(workload.history(), &RegisterModel, &Budget::default())
        .unwrap_or_else(|error| panic!("bad history: {error}"));
    let membership = current_leader(&sim)
        .and_then(|leader| sim.actor(leader))
        .map(|replica| replica.core().engine().membership().clone());
    println!(
        "seed {seed}: {proposals} changes asked, {crashes} crashes, {partitions} partitions, \
         {terms} terms with a leader, {uses} configuration uses checked, {} operations \
         answered, final membership {membership:?}",
        workload.completed()
    );
    assert!(
        matches!(result, CheckResult::Linearizable),
        "history of {} operations is not linearizable: {result:?}",
        workload.history().len()
    );
    assert!(
        workload.completed() > before + 20,
        "no progress after healing: {before} operations before, {} after",
        workload.completed()
    );
}

#[test]
fn membership_changes_across_leader_churn_keep_majorities_overlapping() {
    with_seeds(
        "membership_changes_across_leader_churn_keep_majorities_overlapping",
        CHURN_SEEDS,
        membership_churn,
    );
}

/// Tell every running node whether `node` wants to vote (gossip metadata), so the leader's
/// automatic learner addition and promotion leave it alone or not.
fn set_wants_vote(sim: &mut Simulator<SimReplica>, node: usize, wants_vote: bool) {
    for observer in sim.running_nodes() {
        if observer == node {
            continue;
        }
        sim.act(observer, |replica, now| {
            replica.command(now, |core, at| {
                let info = PeerInfo {
                    priority: Priority(1),
                    health: HealthStatus::Healthy,
                    reachable: true,
                    wants_vote,
                    unreachable_since: None,
                };
                core.on_peer_info(at, replica_id(node), info)
            });
        });
    }
}

/// The raft-dev 2015 scenario, with the timing drawn from the seed. Voters {L1, x, y, z}
/// and learner e. L1, cut off with e, appends "promote e" (reaching only e). x, y, z elect
/// L2; one of them (D) crashes at once, and L2 is asked to remove D before its LeaderStart
/// can commit (only L2 and the third voter are up). Then L2 and the third voter crash, D
/// comes back, the network heals: L1 and e, with D's vote, can win under {L1, x, y, z, e}.
/// Had L2 removed D, the configurations {L1, L2, third} and {L1, x, y, z, e} would both
/// have decided in consecutive terms without a common majority.
fn change_before_own_entry(seed: u64) {
    let mut options = ReplicaClusterOptions::new(5);
    options.founding_voters = Some(4);
    options.network.latency_ms_min = 3;
    options.network.latency_ms_max = 8;
    let mut sim = replica_cluster(seed, &options);
    set_wants_vote(&mut sim, 4, false);
    let first = elect(&mut sim);
    // e joins as a learner (committed everywhere), once L1 may change the membership.
    let mut with_learner = membership_of(&sim, first);
    with_learner.learners.insert(replica_id(4));
    let mut added = false;
    for _ in 0..600 {
        let proposal = with_learner.clone();
        sim.act(first, |replica, now| {
            replica.command(now, |core, at| {
                added = core.on_propose_membership(at, proposal).is_ok();
            })
        });
        if added {
            break;
        }
        sim.run_for(5);
    }
    assert!(added, "the learner could not be added");
    let committed = sim.run_until_condition(sim.now() + 3_000, 5, |sim| {
        (0..5).all(|node| {
            sim.actor(node).is_some_and(|replica| {
                let engine = replica.core().engine();
                engine.membership().learners.contains(&replica_id(4))
                    && engine.commit_index() >= engine.last_index()
            })
        })
    });
    assert!(committed.is_some(), "the learner was not added everywhere");
    // L1 and e are cut off; L1 appends "promote e", which only e receives.
    let others: Vec<usize> = (0..4).filter(|node| *node != first).collect();
    let cut_off = vec![sim.addr(first), sim.addr(4)];
    let rest: Vec<_> = others.iter().map(|node| sim.addr(*node)).collect();
    sim.network_mut().partition(&[cut_off, rest]);
    let mut promoted = membership_of(&sim, first);
    promoted.learners.remove(&replica_id(4));
    promoted.voters.insert(replica_id(4));
    sim.act(first, |replica, now| {
        replica.command(now, |core, at| {
            core.on_propose_membership(at, promoted)
                .expect("the promotion is appended");
        })
    });
    // x, y, z elect L2; D crashes the moment L2 wins, before L2's first entry reaches it.
    let second = sim
        .run_until_condition(sim.now() + 5_000, 1, |sim| {
            others.iter().any(|node| {
                sim.actor(*node)
                    .is_some_and(|replica| replica.core().engine().is_leader())
            })
        })
        .and_then(|_| {
            others.iter().copied().find(|node| {
                sim.actor(*node)
                    .is_some_and(|replica| replica.core().engine().is_leader())
            })
        })
        .expect("the majority side elects a leader");
    let rest: Vec<usize> = others
        .iter()
        .copied()
        .filter(|node| *node != second)
        .collect();
    let pick = sim.rng().random_range(0..2usize);
    let (dead, third) = (rest[pick], rest[1 - pick]);
    sim.crash(dead);
    let mut removed = membership_of(&sim, second);
    removed.voters.remove(&replica_id(dead));
    // Asked again every few milliseconds, as the automatic dead-voter removal would.
    for _ in 0..60 {
        let removed = removed.clone();
        sim.act(second, |replica, now| {
            replica.command(now, |core, at| {
                let _ = core.on_propose_membership(at, removed);
            })
        });
        let step = sim.now() + 5;
        sim.run_until(step);
    }
    // L2 and the third voter go; D comes back; the network heals.
    sim.crash(second);
    sim.crash(third);
    sim.network_mut().heal();
    sim.start(dead);
    let elected =
        sim.run_until_condition(sim.now() + 5_000, 5, |sim| current_leader(sim).is_some());
    sim.start(second);
    sim.start(third);
    sim.run_for(3_000);
    check_one_leader_per_term(&sim).unwrap_or_else(|error| panic!("{error}"));
    check_configurations_share_a_majority(&sim).unwrap_or_else(|error| panic!("{error}"));
    check_no_refused_inputs(&sim).unwrap_or_else(|error| panic!("{error}"));
    AppliedCommands::default()
        .observe(&sim)
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(elected.is_some(), "no leader after the heal");
}

#[test]
fn a_change_waits_for_the_new_leaders_own_entry() {
    with_seeds(
        "a_change_waits_for_the_new_leaders_own_entry",
        10,
        change_before_own_entry,
    );
}
