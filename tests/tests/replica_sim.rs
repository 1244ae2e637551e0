//! The replicated log under simulated faults: elections, replication, crashes (at any
//! millisecond, one node or all at once) with lost unsynced writes, quick restarts, partitions, slow links,
//! leadership transfers, clock drift. Every run checks the safety invariants and the
//! linearizability of the clients' history, and must make progress once healed; with lease
//! reads on (half the seeds), every millisecond it also checks that no leader of a later term
//! exists while a lease would serve a read.
//!
//! Replay a failure with the command it prints; sweep more seeds with
//! `HA_SIM_SEEDS=2000 cargo test -p ha-tests --profile sim --test replica_sim`.

use ha_core::Millis;
use ha_linearizability::{Budget, CheckResult, RegisterModel, check};
use ha_replicate::engine::Role;
use ha_replicate::entry::ElectionCause;
use ha_replicate::replica::FailoverRecord;
use ha_tests::invariants::{
    AppliedCommands, check_acknowledged_writes_survive, check_lease_excludes_later_leaders,
    check_no_refused_inputs, check_one_leader_per_term,
};
use ha_tests::replica::{ReplicaClusterOptions, SimReplica, current_leader, replica_cluster};
use ha_tests::sim::{NetworkConfig, Simulator};
use ha_tests::with_seeds;
use ha_tests::workload::{Workload, WorkloadOptions};
use rand::RngExt;

/// How many seeds the fault sweep runs by default (CI).
const SWEEP_SEEDS: u64 = 300;

#[test]
fn a_leader_is_elected_and_writes_commit_everywhere() {
    with_seeds(
        "a_leader_is_elected_and_writes_commit_everywhere",
        20,
        |seed| {
            let mut sim = replica_cluster(seed, &ReplicaClusterOptions::new(3));
            let elected =
                sim.run_until_condition(Millis(5_000), 5, |sim| current_leader(sim).is_some());
            assert!(elected.is_some(), "no leader within 5 s");
            let mut workload = Workload::new(&mut sim, WorkloadOptions::default());
            workload.run(&mut sim, Millis(8_000));
            workload.stop_issuing();
            workload.run(&mut sim, Millis(12_000));
            assert!(
                workload.completed() > 100,
                "only {} operations completed",
                workload.completed()
            );
            check_one_leader_per_term(&sim).unwrap();
            let mut applied = AppliedCommands::default();
            applied.observe(&sim).unwrap();
            let confirmed =
                check_acknowledged_writes_survive(&sim, workload.acknowledged()).unwrap();
            assert_eq!(confirmed, workload.acknowledged().len());
            let result = check(workload.history(), &RegisterModel, &Budget::default()).unwrap();
            assert!(result.is_linearizable(), "{result:?}");
            // With no faults every replica catches up with the leader.
            let indexes: Vec<_> = (0..3)
                .map(|node| sim.actor(node).unwrap().core().applier().applied_index())
                .collect();
            assert!(
                indexes.iter().all(|index| *index == indexes[0]),
                "{indexes:?}"
            );
            // The consistency monitor ran: the leader placed checkpoint entries, every replica
            // digested the latest one, and the leader judged them all alike.
            let leader = current_leader(&sim).expect("a leader after the run");
            let judged = sim.actor(leader).unwrap().core().consistency_status();
            assert!(judged.checks >= 6, "{judged:?}");
            assert_eq!(judged.mismatches, 0, "{judged:?}");
            let latest: Vec<_> = (0..3)
                .map(|node| {
                    let status = sim.actor(node).unwrap().core().consistency_status();
                    status.last_checkpoint
                })
                .collect();
            assert!(
                latest[0].is_some() && latest.iter().all(|index| *index == latest[0]),
                "{latest:?}"
            );
        },
    );
}

/// Run to `until` a millisecond at a time, stepping the clients (if any) and, with lease
/// reads on, checking that no leader of a later term exists while a lease holds.
fn run_checked(
    sim: &mut Simulator<SimReplica>,
    mut workload: Option<&mut Workload>,
    lease_reads: bool,
    until: Millis,
) {
    while sim.now() < until {
        let next = sim.now() + 1;
        sim.run_until(next);
        if let Some(workload) = workload.as_deref_mut() {
            workload.step(sim);
        }
        if lease_reads {
            check_lease_excludes_later_leaders(sim).unwrap_or_else(|error| panic!("{error}"));
        }
    }
}

/// One randomized fault scenario: a workload runs through partitions, crashes at random
/// milliseconds and restarts (some within a lease: after 1 to 400 ms, losing unsynced
/// writes), power failures (every node at the same millisecond), slow links (late, not lost), leadership transfers, message loss, duplication and
/// reordering, and clock drift; then the network heals and the cluster must make progress.
///
/// With `apply_ms_per_entry_max` above 0 every node's state machine is a slow host (issue 17,
/// item 2): it runs off the core and takes up to that many milliseconds per entry, so reads,
/// STRONG writes, snapshots and digests wait on an applied index that lags commit.
fn fault_scenario(seed: u64, node_count: usize, apply_ms_per_entry_max: u64) {
    let mut options = ReplicaClusterOptions::new(node_count);
    options.apply_ms_per_entry_max = apply_ms_per_entry_max;
    options.network = NetworkConfig::lan().with_drop_probability(0.02);
    options.network.duplicate_probability = 0.02;
    options.network.latency_ms_max = 8; // reordering
    options.clock_drift_ppm_max = 20_000;
    options.snapshot_every_entries = 200;
    options.lease_reads = seed.is_multiple_of(2);
    // A third of the seeds give every node its own priority: elections then use rank
    // offsets and each node's narrow timer window (`engine/election_timer.rs`) instead of
    // the whole random range, and must stay as safe. With slow hosts the highest-priority
    // node, restarted after a power failure, wins the election and must then re-apply its
    // log (seed 4: 303 entries at 20 ms, 6 s); it hands leadership to a voter that keeps up
    // (`engine/apply_lag.rs`), or clients would wait that long.
    if seed % 3 == 1 {
        options.priorities = (1..=node_count as u32).rev().collect();
    }
    let lease_reads = options.lease_reads;
    let mut sim = replica_cluster(seed, &options);
    let mut workload = Workload::new(&mut sim, WorkloadOptions::default());
    let mut applied = AppliedCommands::default();
    let fault_phase_end = Millis(15_000);
    let (mut crashes, mut partitions, mut transfers, mut power_failures) = (0, 0, 0, 0);
    // The last millisecond at which a crash or a restart drawn so far lands.
    let mut faults_land_by = Millis::ZERO;
    while sim.now() < fault_phase_end {
        let step_end = sim.now() + 500;
        run_checked(&mut sim, Some(&mut workload), lease_reads, step_end);
        applied
            .observe(&sim)
            .unwrap_or_else(|error| panic!("{error}"));
        // One fault decision per half second; crashes land at any millisecond of the next.
        let roll = sim.rng().random_range(0..100u32);
        let node = sim.rng().random_range(0..node_count);
        match roll {
            0..=11 => {
                let at = sim.now() + sim.rng().random_range(0..500u64);
                crashes += 1;
                sim.crash_at(node, at);
                faults_land_by = faults_land_by.max(at);
                if sim.rng().random_bool(0.6) {
                    let down_ms = sim.rng().random_range(1..400u64);
                    sim.start_at(node, at + down_ms);
                    faults_land_by = faults_land_by.max(at + down_ms);
                }
            }
            12..=29 => {
                sim.start_stopped();
            }
            30..=39 => {
                // Cut a minority (possibly holding the leader) from the rest.
                sim.partition_minority_from(node);
                partitions += 1;
            }
            40..=44 => {
                if let Some(leader) = current_leader(&sim) {
                    sim.isolate(leader);
                    partitions += 1;
                }
            }
            45..=49 => {
                sim.block_towards_next(node);
            }
            50..=54 => {
                let next = (node + 1) % node_count;
                let extra_ms = sim.rng().random_range(100..1_000u64);
                let (from, to) = (sim.addr(node), sim.addr(next));
                sim.network_mut().slow_one_way(from, to, extra_ms);
            }
            55..=59 => {
                if let Some(leader) = current_leader(&sim) {
                    transfers += 1;
                    sim.act(leader, |replica, now| {
                        replica.command(now, |core, at| {
                            let _ = core.on_transfer(at, None, ElectionCause::ManualTransfer);
                        })
                    });
                }
            }
            60..=74 => sim.network_mut().heal(),
            75..=79 => {
                // A power failure: every node at the same millisecond. Only what a majority
                // had made durable may be acknowledged, so nothing acknowledged is lost;
                // a build that acknowledges before durable loses writes here.
                let at = sim.now() + sim.rng().random_range(0..500u64);
                let down_ms = sim.rng().random_range(1..400u64);
                power_failures += 1;
                for each in 0..node_count {
                    sim.crash_at(each, at);
                    sim.start_at(each, at + down_ms);
                }
                faults_land_by = faults_land_by.max(at + down_ms);
            }
            _ => {}
        }
    }
    // Healed phase: no faults; the crashes and restarts drawn in the last step land first (a
    // crash up to 500 ms after its decision), then every node is up and the cluster must serve
    // writes again. Starting the stopped nodes before them left a node down for the whole
    // phase whenever the last decision was a crash without a restart (about 5% of the seeds):
    // STRONG writes, which wait for every voter, then held the clients (seed 82,922: 20
    // operations in 10 s).
    sim.network_mut().heal();
    sim.network_mut().set_config(NetworkConfig::lan());
    if faults_land_by >= sim.now() {
        run_checked(
            &mut sim,
            Some(&mut workload),
            lease_reads,
            faults_land_by + 2,
        );
    }
    sim.start_stopped();
    let before = workload.completed();
    run_checked(&mut sim, Some(&mut workload), lease_reads, Millis(25_000));
    workload.stop_issuing();
    run_checked(&mut sim, Some(&mut workload), lease_reads, Millis(30_000));
    assert!(
        workload.completed() > before + 20,
        "no progress after healing: {} operations before, {} after",
        before,
        workload.completed()
    );
    applied
        .observe(&sim)
        .unwrap_or_else(|error| panic!("{error}"));
    check_one_leader_per_term(&sim).unwrap_or_else(|error| panic!("{error}"));
    check_acknowledged_writes_survive(&sim, workload.acknowledged())
        .unwrap_or_else(|error| panic!("{error}"));
    check_no_refused_inputs(&sim).unwrap_or_else(|error| panic!("{error}"));
    let result = check(workload.history(), &RegisterModel, &Budget::default())
        .unwrap_or_else(|error| panic!("bad history: {error}"));
    let terms = check_one_leader_per_term(&sim).unwrap_or_default();
    let unknown = workload.history().len() - workload.completed();
    println!(
        "seed {seed}: {node_count} nodes, apply delay up to {apply_ms_per_entry_max} ms, lease reads {lease_reads}, {crashes} crashes, \
         {power_failures} power failures, {partitions} partitions, {transfers} transfers: {} operations answered, {unknown} unknown, {} writes acknowledged, {terms} terms with a \
         leader, {} messages lost, {} duplicated",
        workload.completed(),
        workload.acknowledged().len(),
        sim.counters().dropped_loss,
        sim.counters().duplicated,
    );
    assert!(
        matches!(result, CheckResult::Linearizable),
        "history of {} operations is not linearizable: {result:?}",
        workload.history().len()
    );
}

#[test]
fn three_nodes_stay_safe_under_faults() {
    with_seeds(
        "three_nodes_stay_safe_under_faults",
        SWEEP_SEEDS / 2,
        |seed| fault_scenario(seed, 3, 0),
    );
}

/// Issue 17, item 2: the same faults with a slow host on every node (its state machine runs
/// off the core, 10 to 20 ms per entry applied): nothing stale is read, nothing acknowledged is
/// lost, the history stays linearizable.
#[test]
fn nodes_with_a_slow_state_machine_stay_safe_under_faults() {
    with_seeds(
        "nodes_with_a_slow_state_machine_stay_safe_under_faults",
        SWEEP_SEEDS / 4,
        |seed| fault_scenario(seed, 3, 20),
    );
}

/// Issue 17, item 2: a host that takes 200 to 400 ms per entry applied on every node, under a
/// steady load with no faults, triggers no election: applying is off the heartbeat path.
#[test]
fn a_slow_state_machine_triggers_no_election() {
    with_seeds("a_slow_state_machine_triggers_no_election", 10, |seed| {
        let mut options = ReplicaClusterOptions::new(3);
        options.apply_ms_per_entry_max = 400;
        let mut sim = replica_cluster(seed, &options);
        let elected =
            sim.run_until_condition(Millis(5_000), 5, |sim| current_leader(sim).is_some());
        assert!(elected.is_some(), "no leader within 5 s");
        let elections = |sim: &Simulator<SimReplica>| -> u64 {
            (0..3)
                .filter_map(|node| sim.actor(node))
                .map(|replica| replica.core().engine().elections_started())
                .sum()
        };
        let before = elections(&sim);
        // Patient clients: an answer waits on the slow host.
        let patient = WorkloadOptions {
            clients: 2,
            operation_timeout_ms: 20_000,
            attempt_timeout_ms: 5_000,
            ..WorkloadOptions::default()
        };
        let mut workload = Workload::new(&mut sim, patient);
        workload.run(&mut sim, Millis(20_000));
        workload.stop_issuing();
        workload.run(&mut sim, Millis(45_000));
        assert_eq!(elections(&sim), before, "an election was started");
        assert!(
            workload.completed() > 20,
            "only {} operations completed",
            workload.completed()
        );
        check_acknowledged_writes_survive(&sim, workload.acknowledged())
            .unwrap_or_else(|error| panic!("{error}"));
        let result = check(workload.history(), &RegisterModel, &Budget::default())
            .unwrap_or_else(|error| panic!("bad history: {error}"));
        assert!(result.is_linearizable(), "{result:?}");
    });
}

#[test]
fn five_nodes_stay_safe_under_faults() {
    with_seeds(
        "five_nodes_stay_safe_under_faults",
        SWEEP_SEEDS / 2,
        |seed| fault_scenario(seed, 5, 0),
    );
}

/// Leaderless windows after 100 leader crashes: from each crash to the first moment a new
/// leader exists, with 1 ms links and default (LAN) timing, the nodes having `priorities`.
fn leaderless_windows_ms(name: &str, priorities: Vec<u32>) -> Vec<u64> {
    let windows_ms = std::cell::RefCell::new(Vec::new());
    with_seeds(name, 1, |seed| {
        let mut options = ReplicaClusterOptions::new(3);
        options.network.latency_ms_min = 1;
        options.network.latency_ms_max = 1;
        options.priorities = priorities.clone();
        let mut sim = replica_cluster(seed, &options);
        for crash in 0..100 {
            let leader = sim
                .run_until_condition(sim.now() + 10_000, 1, |sim| current_leader(sim).is_some())
                .and_then(|_| current_leader(&sim))
                .unwrap_or_else(|| panic!("crash {crash}: no leader to crash"));
            // Let the cluster settle so every follower has heard the leader recently.
            let settle = sim.now() + 500;
            sim.run_until(settle);
            let crashed_at = sim.now();
            sim.crash(leader);
            let elected = sim
                .run_until_condition(crashed_at + 5_000, 1, |sim| {
                    current_leader(sim).is_some_and(|node| node != leader)
                })
                .unwrap_or_else(|| panic!("crash {crash}: no new leader within 5 s"));
            windows_ms.borrow_mut().push(elected - crashed_at);
            sim.start(leader);
        }
        check_one_leader_per_term(&sim).unwrap();
    });
    let mut windows_ms = windows_ms.into_inner();
    windows_ms.sort_unstable();
    println!(
        "{name}: leaderless window over {} crashes: min {} ms, median {} ms, p90 {} ms, max {} ms",
        windows_ms.len(),
        windows_ms[0],
        windows_ms[windows_ms.len() / 2],
        windows_ms[windows_ms.len() * 9 / 10],
        windows_ms[windows_ms.len() - 1]
    );
    windows_ms
}

/// With equal priorities, at most one failover in this many may take a second or more. Such a
/// failover is a run of split votes: each round redraws the timers from [150, 300) ms, and two
/// followers whose timers fire within the 1 ms link of each other split the vote again. Over
/// seeds 90,000-91,999 (200,000 crashes) one window reached 1 s (1,041 ms), 5 passed 800 ms
/// and 30 passed 700 ms; p99.99 was 732 ms. So the default run's 100 crashes allow none, and a
/// long sweep allows ten times the measured rate.
const FAILOVERS_PER_SECOND_LONG_ONE: usize = 20_000;

/// Equal priorities: every candidate draws from the whole [150, 300) ms range.
#[test]
fn failover_is_fast() {
    let windows_ms = leaderless_windows_ms("failover_is_fast", Vec::new());
    let median = windows_ms[windows_ms.len() / 2];
    let max = windows_ms[windows_ms.len() - 1];
    assert!(median < 300, "median {median} ms");
    let second_long = windows_ms.iter().filter(|window| **window >= 1_000).count();
    assert!(
        second_long <= windows_ms.len() / FAILOVERS_PER_SECOND_LONG_ONE,
        "{second_long} of {} failovers took 1 s or more (max {max} ms)",
        windows_ms.len()
    );
    assert!(max < 2_000, "max {max} ms");
}

/// Distinct priorities: the best surviving candidate shares its priority with no one, so it
/// draws from the narrow window (168-187 ms of silence at LAN timing) instead of the whole
/// [150, 300). The simulated disk adds its syncs (up to 15 ms, one in eight up to 60 ms) for
/// the votes and the new leader's first entry. No failover may take a second timeout (a
/// pre-vote refused for stickiness would: 2 x 168 ms), and the median must beat the
/// equal-priority one by at least 20 ms (measured: 200 vs 228 ms).
#[test]
fn failover_with_distinct_priorities_uses_the_narrow_window() {
    let equal = leaderless_windows_ms("failover_equal_priorities", Vec::new());
    let distinct = leaderless_windows_ms("failover_distinct_priorities", vec![30, 20, 10]);
    let median = |windows: &[u64]| windows[windows.len() / 2];
    let max = distinct[distinct.len() - 1];
    assert!(
        max < 336,
        "a failover took {max} ms: a second election timeout"
    );
    assert!(
        median(&distinct) + 20 <= median(&equal),
        "distinct priorities median {} ms, equal priorities {} ms",
        median(&distinct),
        median(&equal)
    );
}

#[test]
fn leadership_returns_to_the_recovered_highest_priority_node() {
    with_seeds(
        "leadership_returns_to_the_recovered_highest_priority_node",
        10,
        |seed| {
            let mut options = ReplicaClusterOptions::new(3);
            options.priorities = vec![10, 5, 1];
            options.failback_after_ms = Some(1_000);
            let mut sim = replica_cluster(seed, &options);
            let first =
                sim.run_until_condition(Millis(5_000), 5, |sim| current_leader(sim) == Some(0));
            assert!(
                first.is_some(),
                "the priority-10 node did not lead first: {:?}",
                current_leader(&sim)
            );
            sim.crash(0);
            let second =
                sim.run_until_condition(sim.now() + 5_000, 5, |sim| current_leader(sim) == Some(1));
            assert!(
                second.is_some(),
                "the priority-5 node did not take over: {:?}",
                current_leader(&sim)
            );
            sim.start(0);
            let back = sim
                .run_until_condition(sim.now() + 10_000, 5, |sim| current_leader(sim) == Some(0));
            assert!(
                back.is_some(),
                "no failback to the priority-10 node: {:?}",
                current_leader(&sim)
            );
            // The new leader's LeaderStart entry (which records the cause) commits shortly after.
            let recorded = sim.run_until_condition(sim.now() + 2_000, 5, |sim| {
                sim.actor(0).is_some_and(|replica| {
                    replica
                        .core()
                        .applier()
                        .history()
                        .last()
                        .map(|record| record.cause)
                        == Some(ElectionCause::Failback)
                })
            });
            let history = failover_history(&sim, 0);
            assert!(recorded.is_some(), "no failback recorded: {history:?}");
            check_one_leader_per_term(&sim).unwrap();
        },
    );
}

/// The failover history `node` has applied (empty while it is down).
fn failover_history(sim: &Simulator<SimReplica>, node: usize) -> Vec<FailoverRecord> {
    sim.actor(node)
        .map(|replica| replica.core().applier().history().cloned().collect())
        .unwrap_or_default()
}

/// Issue 17: after a power failure the highest-priority node wins the election and must
/// re-apply its whole log before it can answer a client. With a slow host there (10-20 ms per
/// entry, hundreds of entries) that takes seconds, while the fast followers are done at once:
/// the leader hands over to one of them (`engine/apply_lag.rs`), clients are served within
/// about a second, and failback returns leadership only once the node has applied its log.
#[test]
fn a_leader_re_applying_its_log_hands_over_to_a_voter_that_keeps_up() {
    with_seeds(
        "a_leader_re_applying_its_log_hands_over_to_a_voter_that_keeps_up",
        5,
        |seed| {
            let mut options = ReplicaClusterOptions::new(3);
            options.priorities = vec![30, 20, 10];
            options.apply_ms_per_entry_max = 20;
            options.slow_apply_nodes = vec![0];
            options.failback_after_ms = Some(1_000);
            let mut sim = replica_cluster(seed, &options);
            let first =
                sim.run_until_condition(Millis(5_000), 5, |sim| current_leader(sim) == Some(0));
            assert!(first.is_some(), "node 0 did not lead first");
            // Enough entries that re-applying them on node 0 takes seconds.
            let mut workload = Workload::new(&mut sim, WorkloadOptions::default());
            let write_until = sim.now() + 12_000;
            workload.run(&mut sim, write_until);
            workload.stop_issuing();
            let settle = sim.now() + 3_000;
            workload.run(&mut sim, settle);
            let commit = sim.actor(0).unwrap().core().engine().commit_index();
            assert!(commit.0 >= 300, "only {} entries committed", commit.0);
            assert_eq!(
                current_leader(&sim),
                Some(0),
                "leadership moved while writing"
            );
            // A power failure: every node at once; nothing is applied until the new term
            // commits. Node 1 comes back a second later, so node 0 (rank 0; node 2 waits for
            // node 1's higher priority) wins the election.
            let at = sim.now() + 10;
            for node in 0..3 {
                sim.crash_at(node, at);
                sim.start_at(node, at + if node == 1 { 1_000 } else { 50 });
            }
            sim.run_until(at + 51);
            let before = workload.completed();
            // QUORUM only from here: a STRONG write waits for every voter to apply it, node 0
            // too, which no hand-over can speed up (with the default 30% of them, a few seeds
            // in a hundred had every client stuck on one for the whole 2 s, before and after
            // session 20's changes).
            workload.set_strong_fraction(0.0);
            workload.resume_issuing();
            let served_by = sim.now() + 2_000;
            while sim.now() < served_by && workload.completed() < before + 5 {
                let next = sim.now() + 1;
                workload.run(&mut sim, next);
            }
            let history = failover_history(&sim, 2);
            assert!(
                workload.completed() >= before + 5,
                "clients waited on node 0 re-applying {} entries: {} operations in 2 s; \
                 leader {:?}; history {history:?}",
                commit.0,
                workload.completed() - before,
                current_leader(&sim)
            );
            assert!(
                history
                    .iter()
                    .any(|record| record.cause == ElectionCause::UnhealthyLeader),
                "no hand-over recorded: {history:?}"
            );
            // Failback waits for node 0 to have applied what was committed.
            workload.stop_issuing();
            let back = sim
                .run_until_condition(sim.now() + 20_000, 5, |sim| current_leader(sim) == Some(0));
            assert!(back.is_some(), "no failback to node 0");
            let applied = sim.actor(0).unwrap().core().applied_index();
            assert!(
                applied >= commit,
                "failback to node 0 with {} of {} entries applied",
                applied.0,
                commit.0
            );
            check_one_leader_per_term(&sim).unwrap();
            check_acknowledged_writes_survive(&sim, workload.acknowledged())
                .unwrap_or_else(|error| panic!("{error}"));
        },
    );
}

#[test]
fn same_seed_same_replication_trace() {
    let run = |seed| {
        let mut sim = replica_cluster(seed, &ReplicaClusterOptions::new(3));
        let mut workload = Workload::new(&mut sim, WorkloadOptions::default());
        workload.run(&mut sim, Millis(3_000));
        (sim.trace().hash(), workload.history().len())
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7).0, run(8).0);
}

#[test]
fn minority_side_has_no_leader_and_refuses_writes() {
    with_seeds(
        "minority_side_has_no_leader_and_refuses_writes",
        10,
        |seed| {
            let mut sim = replica_cluster(seed, &ReplicaClusterOptions::new(5));
            sim.run_until_condition(Millis(5_000), 5, |sim| current_leader(sim).is_some())
                .expect("a leader");
            let leader = current_leader(&sim).unwrap();
            let others: Vec<usize> = (0..5).filter(|node| *node != leader).collect();
            let minority = vec![sim.addr(leader), sim.addr(others[0])];
            let majority: Vec<_> = others[1..].iter().map(|node| sim.addr(*node)).collect();
            sim.network_mut().partition(&[minority, majority]);
            // After the check-quorum window the old leader has stepped down.
            let stepped_down = sim.run_until_condition(sim.now() + 2_000, 5, |sim| {
                !sim.actor(leader).unwrap().core().engine().is_leader()
            });
            assert!(stepped_down.is_some(), "the minority leader kept leading");
            let new_leader = sim.run_until_condition(sim.now() + 5_000, 5, |sim| {
                others[1..]
                    .iter()
                    .any(|node| sim.actor(*node).unwrap().core().engine().is_leader())
            });
            assert!(new_leader.is_some(), "the majority elected no leader");
            for node in [leader, others[0]] {
                assert_ne!(
                    sim.actor(node).unwrap().core().engine().role(),
                    Role::Leader
                );
            }
        },
    );
}

/// The leader of a 3-node cluster with lease reads, after it has led for a while.
fn lease_cluster(seed: u64) -> (Simulator<SimReplica>, usize, usize, usize) {
    let mut options = ReplicaClusterOptions::new(3);
    options.lease_reads = true;
    let mut sim = replica_cluster(seed, &options);
    sim.run_until_condition(Millis(5_000), 1, |sim| current_leader(sim).is_some())
        .expect("a leader within 5 s");
    let leader = current_leader(&sim).expect("a leader");
    let settle = sim.now() + 300;
    run_checked(&mut sim, None, true, settle);
    let others: Vec<usize> = (0..3).filter(|node| *node != leader).collect();
    let pick = sim.rng().random_range(0..2usize);
    (sim, leader, others[pick], others[1 - pick])
}

/// The leader's lease rests on b (c cannot reach the leader and keeps campaigning). b
/// restarts again and again at random moments; a restarted b must not vote for c while the
/// leader's lease, confirmed by b just before, still holds.
#[test]
fn a_restarted_voter_elects_no_leader_within_the_lease() {
    with_seeds(
        "a_restarted_voter_elects_no_leader_within_the_lease",
        20,
        |seed| {
            let (mut sim, leader, b, c) = lease_cluster(seed);
            let (leader_addr, c_addr) = (sim.addr(leader), sim.addr(c));
            sim.network_mut().block_one_way(leader_addr, c_addr);
            sim.network_mut().block_one_way(c_addr, leader_addr);
            for _ in 0..20 {
                let wait_ms = sim.rng().random_range(60..400u64);
                let until = sim.now() + wait_ms;
                run_checked(&mut sim, None, true, until);
                sim.restart(b);
            }
            let until = sim.now() + 1_000;
            run_checked(&mut sim, None, true, until);
            check_one_leader_per_term(&sim).unwrap_or_else(|error| panic!("{error}"));
            check_no_refused_inputs(&sim).unwrap_or_else(|error| panic!("{error}"));
        },
    );
}

/// A transfer whose TimeoutNow is late: the leader's messages to the target take 700 ms
/// and the target's answers are lost, so the transfer is abandoned (after 600 ms) before the
/// target acts on TimeoutNow. The target then wins with transfer votes; the old leader must
/// not serve lease reads in the meantime.
#[test]
fn an_abandoned_transfer_elects_no_leader_within_the_lease() {
    with_seeds(
        "an_abandoned_transfer_elects_no_leader_within_the_lease",
        20,
        |seed| {
            let (mut sim, leader, target, _) = lease_cluster(seed);
            let (leader_addr, target_addr) = (sim.addr(leader), sim.addr(target));
            sim.network_mut()
                .slow_one_way(leader_addr, target_addr, 700);
            sim.network_mut().block_one_way(target_addr, leader_addr);
            sim.act(leader, |replica, now| {
                replica.command(now, |core, at| {
                    core.on_transfer(
                        at,
                        Some(ha_tests::replica::replica_id(target)),
                        ElectionCause::ManualTransfer,
                    )
                    .expect("a transfer to a caught-up voter");
                })
            });
            let until = sim.now() + 2_000;
            run_checked(&mut sim, None, true, until);
            check_one_leader_per_term(&sim).unwrap_or_else(|error| panic!("{error}"));
            check_no_refused_inputs(&sim).unwrap_or_else(|error| panic!("{error}"));
        },
    );
}

/// A follower given a snapshot that does not decode, or whose contents end elsewhere than its
/// metadata says, or an `InstallSnapshot` with no bytes at all, refuses it and carries on (before, the first stopped the replica as if its
/// own disk were corrupt, and the second left the state machine behind the engine's index).
#[test]
fn a_forged_snapshot_is_refused_and_the_follower_carries_on() {
    use ha_replicate::engine::{Message, RefusalCause};
    use ha_replicate::replica::Rpc;
    use ha_replicate::snapshot_meta::{SnapshotId, SnapshotMeta};
    use ha_tests::replica::replica_id;

    with_seeds(
        "a_forged_snapshot_is_refused_and_the_follower_carries_on",
        5,
        |seed| {
            let mut sim = replica_cluster(seed, &ReplicaClusterOptions::new(3));
            let mut workload = Workload::new(&mut sim, WorkloadOptions::default());
            workload.run(&mut sim, Millis(2_000));
            let leader = current_leader(&sim).expect("a leader");
            let follower = (leader + 1) % 3;
            let engine = sim.actor(leader).unwrap().core().engine();
            let term = engine.term();
            let membership = engine.membership().clone();
            let commit = engine.commit_index();
            let genuine = sim
                .actor(leader)
                .unwrap()
                .core()
                .applier()
                .snapshot()
                .unwrap();
            let meta = |last_index: u64| SnapshotMeta {
                last_index: ha_core::LogIndex(last_index),
                last_term: term,
                membership: membership.clone(),
            };
            let forged = |last_index: u64, data: Vec<u8>| Rpc::SnapshotChunk {
                term,
                meta: meta(last_index),
                id: SnapshotId {
                    last_index: ha_core::LogIndex(last_index),
                    last_term: term,
                    size: data.len() as u64,
                    crc32c: 0,
                },
                offset: 0,
                round: 0,
                data,
            };
            let garbage = forged(commit.0 + 100, vec![0xff; 64]);
            let misplaced = forged(commit.0 + 100, genuine);
            // The engine's message alone, without the bytes a transfer brings.
            let bare = Rpc::Raft(Message::InstallSnapshot {
                term,
                meta: meta(commit.0 + 100),
            });
            for rpc in [garbage, misplaced, bare] {
                sim.act(follower, |replica, now| {
                    let local = replica.local(now);
                    replica.core_mut().on_rpc(local, replica_id(leader), rpc);
                });
            }
            workload.run(&mut sim, Millis(4_000));
            workload.stop_issuing();
            workload.run(&mut sim, Millis(6_000));
            let replica = sim.actor(follower).unwrap();
            assert_eq!(replica.core().fatal(), None, "the follower stopped");
            assert_eq!(
                replica
                    .core()
                    .engine()
                    .refused_inputs()
                    .count(RefusalCause::BadSnapshot),
                3
            );
            AppliedCommands::default()
                .observe(&sim)
                .unwrap_or_else(|error| panic!("{error}"));
            check_acknowledged_writes_survive(&sim, workload.acknowledged())
                .unwrap_or_else(|error| panic!("{error}"));
        },
    );
}

/// Fewest STRONG operations one client completes in 4 s in
/// `strong_writes_do_not_wait_for_a_delayed_commit_notice` (calibrated there).
const STRONG_OPERATIONS_IN_4_S_MIN: usize = 175;

/// A STRONG write waits for every voter to apply it, so its leader tells followers of the
/// commit at once instead of after the commit notice's delay (`EngineSettings::
/// commit_notice_delay_ms`, here 10 s so that only that flush, or a heartbeat every 50 ms,
/// can tell them): one client's STRONG operations keep their pace.
#[test]
fn strong_writes_do_not_wait_for_a_delayed_commit_notice() {
    with_seeds(
        "strong_writes_do_not_wait_for_a_delayed_commit_notice",
        5,
        |seed| {
            let mut options = ReplicaClusterOptions::new(3);
            options.commit_notice_delay_ms = Some(10_000);
            let mut sim = replica_cluster(seed, &options);
            let elected =
                sim.run_until_condition(Millis(5_000), 5, |sim| current_leader(sim).is_some());
            let started = elected.expect("no leader within 5 s");
            let mut workload = Workload::new(
                &mut sim,
                WorkloadOptions {
                    clients: 1,
                    strong_fraction: 1.0,
                    ..WorkloadOptions::default()
                },
            );
            workload.run(&mut sim, started + 4_000);
            // Operations in these 4 s over seeds 60,000-60,149 (session 26): 196-269, mean 233,
            // sd 13 (with the default notice delay instead of 10 s: 204-277, mean 238); with
            // the flush removed, a write waits for the next heartbeat (50 ms): 108-153, mean
            // 131, sd 9. The bound sits between them, over 4 sd from either mean. (It was 200,
            // set from seed 0's 250; seed 60,001 gave 196 with the flush in place.)
            assert!(
                workload.completed() >= STRONG_OPERATIONS_IN_4_S_MIN,
                "only {} STRONG operations in 4 s (at least {STRONG_OPERATIONS_IN_4_S_MIN} \
                 expected; a write that waits for a heartbeat gives about 131)",
                workload.completed()
            );
            check_one_leader_per_term(&sim).unwrap();
        },
    );
}
