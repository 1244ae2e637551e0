//! Leases and fenced locks under simulated faults: `ReplicaCore<WithLocks<()>>` on every node,
//! each node's lease expiry tracker on its own drifting clock, and clients that keep leases
//! alive, take locks, write to a fenced resource only before their safe deadline, and run
//! versioned KV operations. Every run checks that lock holders never overlap and tokens only
//! grow, that no lease expires while its holder renews in time, that the KV history is
//! linearizable and that the nodes' logs agree; then it heals and must grant more locks, and
//! abandoned leases must expire and free their locks. Most of the clients' new leases come with
//! their lock in one write and end with its release in one (issue 17's lock cycle:
//! `GrantAndAcquire`, `ReleaseAndRevoke`); the others are granted first and hold many locks.
//! Every run has both from its start: a client's first lease is taken one way or the other by
//! the client's number, not drawn.
//!
//! Replay a failure with the command it prints. The default run (300 + 100 fault seeds) takes
//! about 20 s in the dev profile on 2 cores. A long sweep past the default seeds (2,000 of each
//! took 7 minutes on 2 cores):
//! `HA_SIM_SEED_BASE=300 HA_SIM_SEEDS=2000 cargo test -p ha-tests --test lock_sim -- --nocapture
//! three_node five_node` (or `--profile sim` for an optimised build with debug assertions).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use ha_core::Millis;
use ha_lock::{LeaseRenewal, LockQuery, LockQueryResponse};
use ha_tests::invariants::{
    LeaseExpiryCheck, check_leases_outlive_renewals, check_lock_holders_exclusive,
    check_lock_kv_linearizable, check_lock_logs_agree, check_writes_applied_once,
};
use ha_tests::lock_sim::{
    AppliedLog, HoldEnd, LockClusterOptions, LockNodeOutput, LockWorkload, LockWorkloadOptions,
    SimLockNode, lock_cluster, lock_leader,
};
use ha_tests::sim::{NetworkConfig, Simulator};
use ha_tests::with_seeds;
use rand::RngExt;

/// Seeds of the 3-node fault scenario in the default run (CI); with the 5-node one, sized so
/// that the whole target stays under a minute in the dev profile on 2 cores.
const THREE_NODE_SEEDS: u64 = 300;

/// Seeds of the 5-node fault scenario in the default run (CI).
const FIVE_NODE_SEEDS: u64 = 100;

/// Largest clock drift in the fault scenarios: 2%.
const DRIFT_PPM_MAX: i64 = 20_000;

/// Every safety check over a finished run; returns the lease figures.
fn check_safety(
    sim: &Simulator<SimLockNode>,
    workload: &LockWorkload,
    applied_log: &Rc<RefCell<AppliedLog>>,
) -> LeaseExpiryCheck {
    if let Some(record) = sim
        .all_outputs()
        .find(|record| matches!(record.output, LockNodeOutput::Fatal(_)))
    {
        panic!(
            "n{} stopped at {}: {:?}",
            record.node, record.at, record.output
        );
    }
    let log = applied_log.borrow();
    check_lock_logs_agree(&log).unwrap_or_else(|error| panic!("logs disagree: {error}"));
    let applied = log
        .replay()
        .unwrap_or_else(|error| panic!("replay failed: {error}"));
    // Issue 17: pipelined sessions apply every write once.
    check_writes_applied_once(&applied)
        .unwrap_or_else(|error| panic!("a write applied twice: {error}"));
    check_lock_holders_exclusive(workload.intervals(), workload.resource())
        .unwrap_or_else(|error| panic!("two holders: {error}"));
    // Issue 13: a release as a wrong holder never released, whatever its client heard.
    workload
        .check_wrong_holder_releases(&applied)
        .unwrap_or_else(|error| panic!("a wrong holder released: {error}"));
    // The holders' promise, from the shipped rule: no lease ends before its holder's safe
    // deadline.
    check_leases_outlive_renewals(&applied, workload.send_times(), holder_margin_ms(workload))
        .unwrap_or_else(|error| panic!("expiry before the holder's safe deadline: {error}"));
    // The leader's side, much tighter: no lease ends sooner after its last send than the
    // nodes' clock drift allows.
    let leases = check_leases_outlive_renewals(
        &applied,
        workload.send_times(),
        workload.options().clock_drift_bound_ms,
    )
    .unwrap_or_else(|error| panic!("early expiry: {error}"));
    check_lock_kv_linearizable(workload.kv_records(), &applied)
        .unwrap_or_else(|error| panic!("{error}"));
    leases
}

/// The margin the shipped holder rule ([`LeaseRenewal`]) keeps below the TTL: its safe
/// deadline is this much less than the TTL after the last send.
fn holder_margin_ms(workload: &LockWorkload) -> u64 {
    let ttl_ms = workload.options().ttl_ms;
    let lease = LeaseRenewal::granted(Duration::from_millis(ttl_ms), Millis::ZERO);
    ttl_ms.saturating_sub(lease.safe_deadline().0)
}

/// After the clients stopped: they finish (release their locks, cancel their waits) and then
/// abandon their leases without revoking them; a leader must expire every lease and so free
/// every lock.
fn abandoned_leases_expire(sim: &mut Simulator<SimLockNode>, workload: &mut LockWorkload) {
    workload.stop_issuing();
    let deadline = sim.now() + 10_000;
    while !workload.is_idle() && sim.now() < deadline {
        let next = sim.now() + 10;
        workload.run(sim, next);
    }
    assert!(
        workload.is_idle(),
        "clients did not finish within 10 s of stopping"
    );
    workload.abandon_leases();
    let abandoned_at = sim.now();
    let ttl_ms = workload.options().ttl_ms;
    let lock_names = workload.options().lock_names;
    // TTL, plus a lost first proposal and its re-proposal a second later, plus an election.
    let limit = abandoned_at + 3 * ttl_ms + 2_000;
    let freed = sim.run_until_condition(limit, 10, |sim| {
        lock_leader(sim).is_some_and(|leader| {
            let Some(node) = sim.actor(leader) else {
                return false;
            };
            let locks = node.core().applier().machine().locks();
            let no_leases = matches!(
                locks.query(&LockQuery::Leases),
                LockQueryResponse::Leases(leases) if leases.is_empty()
            );
            let no_locks = (0..lock_names).all(|lock| {
                matches!(
                    locks.query(&LockQuery::Lock {
                        name: format!("lock{lock}")
                    }),
                    LockQueryResponse::Lock(None)
                )
            });
            no_leases && no_locks
        })
    });
    assert!(
        freed.is_some(),
        "abandoned leases or their locks still there {} ms after the clients left",
        limit - abandoned_at
    );
}

/// One randomized fault scenario: lock clients run through message loss, duplication and
/// reordering, node crashes and restarts (losing unsynced writes), power failures (every node
/// at once), minority partitions, an
/// isolated leader, one-way blocks and clock drift; then the network heals and the cluster
/// must grant more locks.
fn fault_scenario(seed: u64, node_count: usize) {
    let mut options = LockClusterOptions::new(node_count);
    options.network = NetworkConfig::lan().with_drop_probability(0.02);
    options.network.duplicate_probability = 0.02;
    options.network.latency_ms_max = 8; // reordering
    options.clock_drift_ppm_max = DRIFT_PPM_MAX;
    options.snapshot_every_entries = 200;
    options.lease_reads = seed.is_multiple_of(2);
    let (mut sim, applied_log) = lock_cluster(seed, &options);
    let mut workload = LockWorkload::new(&mut sim, LockWorkloadOptions::new(DRIFT_PPM_MAX));
    let fault_phase_end = Millis(15_000);
    let (mut crashes, mut partitions, mut isolations) = (0, 0, 0);
    while sim.now() < fault_phase_end {
        let step_end = sim.now() + 500;
        workload.run(&mut sim, step_end);
        // One fault decision per half second.
        let roll = sim.rng().random_range(0..100u32);
        let node = sim.rng().random_range(0..node_count);
        match roll {
            0..=9 => {
                crashes += usize::from(sim.is_running(node));
                sim.crash(node);
            }
            10..=29 => {
                sim.start_stopped();
            }
            30..=39 => {
                // Cut a minority (possibly holding the leader) from the rest.
                sim.partition_minority_from(node);
                partitions += 1;
            }
            40..=49 => {
                if let Some(leader) = lock_leader(&sim) {
                    sim.isolate(leader);
                    partitions += 1;
                }
            }
            50..=54 => {
                sim.block_towards_next(node);
            }
            55..=74 => sim.network_mut().heal(),
            75..=84 => {
                // A client cut off while the cluster goes on: its lease runs out and its lock
                // passes to the next waiter, the case fencing exists for.
                let holders = workload.holders();
                let client = if holders.is_empty() {
                    sim.rng().random_range(0..workload.client_count())
                } else {
                    holders[sim.rng().random_range(0..holders.len())]
                };
                let isolated_ms = sim.rng().random_range(300..2_000);
                let until = sim.now() + isolated_ms;
                workload.isolate_client(client, until);
                isolations += 1;
            }
            85..=89 => {
                // A power failure: every node at once, back 1-400 ms later. Only what a
                // majority made durable was acknowledged, so no grant or write is lost; a
                // build that acknowledges before durable loses them here.
                let down_ms = sim.rng().random_range(1..400u64);
                let back = sim.now() + down_ms;
                crashes += node_count;
                for each in 0..node_count {
                    sim.crash(each);
                    sim.start_at(each, back);
                }
            }
            _ => {}
        }
    }
    // Healed phase: everything up, no faults; the cluster must grant locks again.
    sim.network_mut().heal();
    sim.network_mut().set_config(NetworkConfig::lan());
    for node in 0..node_count {
        if !sim.is_running(node) {
            sim.start(node);
        }
    }
    let before = workload.stats();
    workload.run(&mut sim, Millis(25_000));
    let after = workload.stats();
    abandoned_leases_expire(&mut sim, &mut workload);
    let leases = check_safety(&sim, &workload, &applied_log);
    let expiries_proposed = sim
        .all_outputs()
        .filter(|record| matches!(record.output, LockNodeOutput::ExpiryProposed { .. }))
        .count();
    let stats = workload.stats();
    println!(
        "seed {seed}: {node_count} nodes, {crashes} crashes, {partitions} partitions, {isolations} \
         clients cut off: {} locks used ({} during faults, {} ended by a lost lease), {} leases granted, {} lost, {} revoked; {} expiries proposed, {} ended a \
         lease (shortest {} ms after the last send, promised {} ms), {} refused; {} KV operations, \
         {} unknown; {} messages lost, {} duplicated; {} releases as a wrong holder refused; \
         {} lock cycles begun in one write, {} ended in one",
        workload.intervals().len(),
        before.locks_granted,
        workload
            .intervals()
            .iter()
            .filter(|interval| interval.ended_by == HoldEnd::LeaseLost)
            .count(),
        stats.leases_granted,
        stats.leases_lost,
        stats.leases_revoked,
        expiries_proposed,
        leases.expiries_checked,
        leases
            .shortest_life_after_last_send_ms
            .map_or_else(|| "-".to_string(), |ms| ms.to_string()),
        workload.options().ttl_ms - workload.options().clock_drift_bound_ms,
        leases.expiries_refused,
        stats.kv_completed,
        stats.kv_unknown,
        sim.counters().dropped_loss,
        sim.counters().duplicated,
        stats.wrong_holder_releases_refused,
        stats.leases_granted_with_lock,
        stats.releases_ending_lease,
    );
    assert!(
        after.locks_granted >= before.locks_granted + 10,
        "no progress after healing: {} locks granted before, {} after",
        before.locks_granted,
        after.locks_granted
    );
    assert!(
        after.kv_completed >= before.kv_completed + 20,
        "no KV progress after healing: {} before, {} after",
        before.kv_completed,
        after.kv_completed
    );
}

#[test]
fn three_node_locks_stay_safe_under_faults() {
    with_seeds(
        "three_node_locks_stay_safe_under_faults",
        THREE_NODE_SEEDS,
        |seed| fault_scenario(seed, 3),
    );
}

#[test]
fn five_node_locks_stay_safe_under_faults() {
    with_seeds(
        "five_node_locks_stay_safe_under_faults",
        FIVE_NODE_SEEDS,
        |seed| fault_scenario(seed, 5),
    );
}

/// Leader crashes while every client renews: the new leader must start every lease's TTL
/// afresh, so no holder that renews in time loses its lease; locks keep being handed over.
#[test]
fn leases_survive_leader_failovers() {
    with_seeds("leases_survive_leader_failovers", 10, |seed| {
        let mut options = LockClusterOptions::new(3);
        options.clock_drift_ppm_max = DRIFT_PPM_MAX;
        let (mut sim, applied_log) = lock_cluster(seed, &options);
        let mut workload = LockWorkload::new(&mut sim, LockWorkloadOptions::new(DRIFT_PPM_MAX));
        workload.run(&mut sim, Millis(2_000));
        let mut failovers = 0;
        while sim.now() < Millis(20_000) {
            if let Some(leader) = lock_leader(&sim) {
                sim.crash(leader);
                failovers += 1;
                let restart_at = sim.now() + 300;
                workload.run(&mut sim, restart_at);
                sim.start(leader);
            }
            let next = sim.now() + 1_200;
            workload.run(&mut sim, next);
        }
        workload.run(&mut sim, Millis(23_000));
        let locks_before_end = workload.stats().locks_granted;
        abandoned_leases_expire(&mut sim, &mut workload);
        let leases = check_safety(&sim, &workload, &applied_log);
        let stats = workload.stats();
        println!(
            "seed {seed}: {failovers} leader crashes, {} locks used, {} leases granted, {} lost, \
             {} expiries ended a lease, {} refused",
            workload.intervals().len(),
            stats.leases_granted,
            stats.leases_lost,
            leases.expiries_checked,
            leases.expiries_refused
        );
        assert!(failovers >= 10, "only {failovers} failovers");
        assert!(
            locks_before_end > 20,
            "only {locks_before_end} locks granted"
        );
    });
}

#[test]
fn locks_hand_over_and_leases_expire_without_faults() {
    with_seeds(
        "locks_hand_over_and_leases_expire_without_faults",
        5,
        |seed| {
            let (mut sim, applied_log) = lock_cluster(seed, &LockClusterOptions::new(3));
            let mut workload = LockWorkload::new(&mut sim, LockWorkloadOptions::new(0));
            workload.run(&mut sim, Millis(20_000));
            abandoned_leases_expire(&mut sim, &mut workload);
            let leases = check_safety(&sim, &workload, &applied_log);
            let stats = workload.stats();
            // Without faults every renewal lands, so only abandoned leases expire, and every
            // expiry the tracker proposes ends a lease.
            assert_eq!(stats.leases_lost, 0, "{stats:?}");
            assert_eq!(leases.expiries_refused, 0, "{leases:?}");
            assert!(leases.expiries_checked >= 1, "{leases:?}");
            assert!(workload.intervals().len() > 20, "{stats:?}");
            assert!(stats.kv_completed > 50, "{stats:?}");
            // Issue 17: both ways to take a lock ran, the two-write cycle among them.
            assert!(stats.leases_granted_with_lock >= 3, "{stats:?}");
            assert!(stats.releases_ending_lease >= 3, "{stats:?}");
            assert!(
                stats.leases_granted > stats.leases_granted_with_lock,
                "{stats:?}"
            );
        },
    );
}

#[test]
fn same_seed_same_lock_trace() {
    let run = |seed| {
        let mut options = LockClusterOptions::new(3);
        options.network = NetworkConfig::lan().with_drop_probability(0.02);
        options.clock_drift_ppm_max = DRIFT_PPM_MAX;
        let (mut sim, _) = lock_cluster(seed, &options);
        let mut workload = LockWorkload::new(&mut sim, LockWorkloadOptions::new(DRIFT_PPM_MAX));
        workload.run(&mut sim, Millis(3_000));
        (
            sim.trace().hash(),
            workload.intervals().len(),
            workload.kv_records().len(),
        )
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7).0, run(8).0);
}
