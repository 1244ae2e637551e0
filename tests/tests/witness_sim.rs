//! Issue 15: two data replicas and one witness under simulated faults. Each seeded run has a
//! fault phase (crashes at any millisecond with lost unsynced writes, restarts, partitions,
//! isolated leaders, leader kills, leadership transfers, message loss, duplication and
//! reordering, clock drift), then a healed phase, then the two failures a 2 + 1 cluster is
//! built to survive, each once the surviving data node is caught up: the data leader killed
//! (the other data node and the witness carry on), then the witness killed (the two data
//! nodes carry on). Throughout: the witness never becomes candidate or leader, never applies a
//! command to its state machine, no acknowledged write is lost, one leader per term, and the
//! clients' history is linearizable. Half the seeds give the witness priority 1 (the witness
//! setting alone must keep it from leading, and a transfer may pick it and be ignored), half
//! priority 0 (what a real witness runs with).
//!
//! Replay a failure with the command it prints; sweep more seeds with
//! `HA_SIM_SEEDS=2000 cargo test -p ha-tests --profile sim --test witness_sim`.

use ha_core::Millis;
use ha_linearizability::RegisterModel;
use ha_linearizability::{Budget, CheckResult, check};
use ha_replicate::engine::Role;
use ha_replicate::entry::ElectionCause;
use ha_tests::invariants::{
    AppliedCommands, check_acknowledged_writes_survive, check_no_refused_inputs,
    check_one_leader_per_term,
};
use ha_tests::replica::{
    ReplicaClusterOptions, ReplicaOutput, SimReplica, current_leader, replica_cluster, replica_id,
};
use ha_tests::sim::{NetworkConfig, Simulator};
use ha_tests::with_seeds;
use ha_tests::workload::{Workload, WorkloadOptions};
use rand::RngExt;

/// How many seeds the sweep runs by default (CI).
const SWEEP_SEEDS: u64 = 80;

/// The data replicas and the witness.
const DATA: [usize; 2] = [0, 1];
const WITNESS: usize = 2;

/// The witness never stood for election nor led, in any of its lives: no role change of its
/// to candidate or leader was ever reported.
fn check_witness_never_campaigned(sim: &Simulator<SimReplica>) -> Result<(), String> {
    for record in sim.outputs(WITNESS) {
        if let ReplicaOutput::Role {
            role: role @ (Role::Candidate | Role::Leader),
            term,
            ..
        } = &record.output
        {
            return Err(format!(
                "the witness n{WITNESS} became {role:?} in term {term} at {}",
                record.at
            ));
        }
    }
    if let Some(replica) = sim.actor(WITNESS) {
        let engine = replica.core().engine();
        if engine.elections_started() != 0 || engine.is_leader() {
            return Err(format!(
                "the witness started {} elections",
                engine.elections_started()
            ));
        }
    }
    Ok(())
}

/// Run to `until` a millisecond at a time, stepping the clients and checking the witness.
fn run_checked(sim: &mut Simulator<SimReplica>, workload: &mut Workload, until: Millis) {
    while sim.now() < until {
        let next = sim.now() + 1;
        sim.run_until(next);
        workload.step(sim);
        if let Some(replica) = sim.actor(WITNESS) {
            assert!(
                !matches!(
                    replica.core().engine().role(),
                    Role::Leader | Role::Candidate | Role::PreCandidate
                ),
                "the witness is {:?} at {}",
                replica.core().engine().role(),
                sim.now()
            );
        }
    }
}

/// Stop issuing, let every outstanding operation finish, and wait until every running node
/// holds the same log (the surviving data node is then caught up with whatever the witness
/// acknowledged). Issuing resumes afterwards.
fn quiesce(sim: &mut Simulator<SimReplica>, workload: &mut Workload, what: &str) {
    workload.stop_issuing();
    let deadline = sim.now() + 10_000;
    while sim.now() < deadline {
        let step_end = sim.now() + 10;
        run_checked(sim, workload, step_end);
        let logs: Vec<_> = sim
            .running_nodes()
            .into_iter()
            .filter_map(|node| sim.actor(node))
            .map(|replica| {
                let engine = replica.core().engine();
                (engine.last_index(), engine.commit_index())
            })
            .collect();
        let same = logs.windows(2).all(|pair| pair[0] == pair[1]);
        if workload.is_idle() && same && current_leader(sim).is_some() {
            workload.resume_issuing();
            return;
        }
    }
    panic!("{what}: the cluster did not settle within 10 s");
}

/// Run `ms` more with clients issuing; they must complete more than `at_least` operations.
fn must_progress(
    sim: &mut Simulator<SimReplica>,
    workload: &mut Workload,
    ms: u64,
    at_least: usize,
    what: &str,
) {
    let before = workload.completed();
    let until = sim.now() + ms;
    run_checked(sim, workload, until);
    let done = workload.completed() - before;
    assert!(
        done > at_least,
        "{what}: only {done} operations completed in {ms} ms; nodes: {}",
        describe(sim)
    );
}

/// Each node's role, term, leader, last index and commit index, for failure messages.
fn describe(sim: &Simulator<SimReplica>) -> String {
    (0..3)
        .map(|node| match sim.actor(node) {
            Some(replica) => {
                let engine = replica.core().engine();
                format!(
                    "n{node} {:?} term {} leader {:?} last {} commit {} applied {}",
                    engine.role(),
                    engine.term(),
                    engine.leader(),
                    engine.last_index(),
                    engine.commit_index(),
                    engine.applied_index()
                )
            }
            None => format!("n{node} down"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn witness_scenario(seed: u64) {
    let mut options = ReplicaClusterOptions::new(3);
    options.witnesses = vec![WITNESS];
    let witness_priority = if seed.is_multiple_of(2) { 1 } else { 0 };
    options.priorities = vec![1, 1, witness_priority];
    options.network = NetworkConfig::lan().with_drop_probability(0.02);
    options.network.duplicate_probability = 0.02;
    options.network.latency_ms_max = 8;
    options.clock_drift_ppm_max = 20_000;
    options.snapshot_every_entries = 100;
    let mut sim = replica_cluster(seed, &options);
    let mut workload = Workload::new(&mut sim, WorkloadOptions::default());
    let mut applied = AppliedCommands::default();
    let fault_phase_end = Millis(12_000);
    let (mut crashes, mut kills, mut partitions, mut transfers) = (0, 0, 0, 0);
    let mut transfers_to_witness = 0;
    let mut timeout_now_ignored = 0;
    while sim.now() < fault_phase_end {
        let step_end = sim.now() + 500;
        run_checked(&mut sim, &mut workload, step_end);
        applied
            .observe(&sim)
            .unwrap_or_else(|error| panic!("{error}"));
        check_witness_never_campaigned(&sim).unwrap_or_else(|error| panic!("{error}"));
        let roll = sim.rng().random_range(0..100u32);
        let node = sim.rng().random_range(0..3usize);
        match roll {
            0..=11 => {
                let at = sim.now() + sim.rng().random_range(0..500u64);
                crashes += 1;
                sim.crash_at(node, at);
                if sim.rng().random_bool(0.6) {
                    let down_ms = sim.rng().random_range(1..400u64);
                    sim.start_at(node, at + down_ms);
                }
            }
            12..=19 => {
                if let Some(leader) = current_leader(&sim) {
                    kills += 1;
                    sim.crash(leader);
                    let down_ms = sim.rng().random_range(1..2_000u64);
                    let at = sim.now() + down_ms;
                    sim.start_at(leader, at);
                }
            }
            20..=34 => sim.start_stopped(),
            35..=44 => {
                sim.isolate(node);
                partitions += 1;
            }
            45..=49 => {
                if let Some(leader) = current_leader(&sim) {
                    sim.isolate(leader);
                    partitions += 1;
                }
            }
            50..=54 => {
                let next = (node + 1) % 3;
                let extra_ms = sim.rng().random_range(100..1_000u64);
                let (from, to) = (sim.addr(node), sim.addr(next));
                sim.network_mut().slow_one_way(from, to, extra_ms);
            }
            55..=62 => {
                if let Some(leader) = current_leader(&sim) {
                    transfers += 1;
                    let to_witness = std::cell::Cell::new(false);
                    sim.act(leader, |replica, now| {
                        replica.command(now, |core, at| {
                            let target = core.on_transfer(at, None, ElectionCause::ManualTransfer);
                            to_witness.set(target == Ok(replica_id(WITNESS)));
                        })
                    });
                    if to_witness.get() {
                        transfers_to_witness += 1;
                    }
                }
            }
            63..=77 => sim.network_mut().heal(),
            _ => {}
        }
    }
    // Healed: no faults; crashes and restarts scheduled in the last step (a crash up to
    // 500 ms ahead, a restart up to 2 s after a kill) happen first; then everything is up and
    // the cluster must serve writes again.
    sim.network_mut().heal();
    sim.network_mut().set_config(NetworkConfig::lan());
    let settled = sim.now() + 2_500;
    run_checked(&mut sim, &mut workload, settled);
    sim.start_stopped();
    must_progress(&mut sim, &mut workload, 6_000, 20, "after healing");

    // The data leader dies once the other data node is caught up: the other data node and
    // the witness elect it and go on.
    quiesce(&mut sim, &mut workload, "before the leader kill");
    let leader = current_leader(&sim).expect("a leader after quiescing");
    assert!(DATA.contains(&leader), "the witness leads");
    let survivor = DATA[1 - DATA.iter().position(|node| *node == leader).unwrap()];
    // With a voter down a STRONG write cannot complete (it waits for every voter): QUORUM
    // only while one is down.
    workload.set_strong_fraction(0.0);
    sim.crash(leader);
    must_progress(&mut sim, &mut workload, 6_000, 50, "data leader killed");
    assert_eq!(current_leader(&sim), Some(survivor));
    sim.start(leader);

    // The witness dies once both data nodes are caught up: they go on alone.
    quiesce(&mut sim, &mut workload, "before the witness kill");
    if let Some(witness) = sim.actor(WITNESS) {
        timeout_now_ignored = witness.core().engine().timeout_now_ignored();
    }
    sim.crash(WITNESS);
    must_progress(&mut sim, &mut workload, 6_000, 50, "witness killed");
    sim.start(WITNESS);
    workload.set_strong_fraction(WorkloadOptions::default().strong_fraction);
    must_progress(&mut sim, &mut workload, 3_000, 10, "witness back");
    workload.stop_issuing();
    let until = sim.now() + 4_000;
    run_checked(&mut sim, &mut workload, until);

    applied
        .observe(&sim)
        .unwrap_or_else(|error| panic!("{error}"));
    check_witness_never_campaigned(&sim).unwrap_or_else(|error| panic!("{error}"));
    let terms = check_one_leader_per_term(&sim).unwrap_or_else(|error| panic!("{error}"));
    let confirmed = check_acknowledged_writes_survive(&sim, workload.acknowledged())
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(
        confirmed,
        workload.acknowledged().len(),
        "every acknowledged write reached a running data node"
    );
    check_no_refused_inputs(&sim).unwrap_or_else(|error| panic!("{error}"));
    let witness = sim.actor(WITNESS).expect("the witness runs");
    assert_eq!(witness.core().applier().machine().digests().len(), 0);
    let result = check(workload.history(), &RegisterModel, &Budget::default())
        .unwrap_or_else(|error| panic!("bad history: {error}"));
    println!(
        "seed {seed}: witness priority {witness_priority}, {crashes} crashes, {kills} leader \
         kills, {partitions} partitions, {transfers} transfers ({transfers_to_witness} to the \
         witness; its last life ignored {timeout_now_ignored} TimeoutNow): {} operations \
         answered, {} writes acknowledged, {terms} terms with a leader",
        workload.completed(),
        workload.acknowledged().len(),
    );
    assert!(
        matches!(result, CheckResult::Linearizable),
        "history of {} operations is not linearizable: {result:?}",
        workload.history().len()
    );
}

#[test]
fn two_data_nodes_and_a_witness_stay_safe_and_the_witness_never_leads() {
    with_seeds(
        "two_data_nodes_and_a_witness_stay_safe_and_the_witness_never_leads",
        SWEEP_SEEDS,
        witness_scenario,
    );
}
