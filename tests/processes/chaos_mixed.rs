//! Mixed faults on a 5-node cluster of real `bot` processes: a seeded schedule of kills,
//! restarts, SIGSTOP pauses, partitions, bridges and packet loss (one or two at a time), while
//! clients read, write, CAS and contend for a lock. Ends with the checks of every chaos
//! scenario: linearizable KV history, exclusive lock holds with growing tokens, one leader per
//! term, a gap-free fenced journal, clean exits.
//!
//! - `mixed_faults` runs in CI: `CHAOS_SECONDS` (default 40) of faults.
//! - `soak` is the 10-minute run, not in CI:
//!   `cargo test -p ha-examples --test chaos_mixed -- --ignored --nocapture soak`
//!   (`CHAOS_SOAK_SECONDS` changes its length).
//!
//! `CHAOS_SEED=N` replays a schedule of faults (the processes' own timing is not replayed).
//! Network faults need root (network namespaces); without it the run uses loopback and
//! process faults only, and says so.

mod support;

use std::time::{Duration, Instant};

use support::cluster::TestCluster;
use support::fabric::Fabric;
use support::faults::FaultInjector;
use support::scenario::{finish_and_check, http_addresses};
use support::serial::one_scenario_at_a_time;
use support::workload::{Workload, WorkloadOptions};

const WAIT: Duration = Duration::from_secs(20);
/// The most fault steps of one run, whatever its length (every loop is bounded).
const STEPS_MAX: u64 = 1_000;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|text| text.parse().ok())
}

fn run(label: &str, seconds: u64) {
    let _serial = one_scenario_at_a_time();
    let seed = env_u64("CHAOS_SEED").unwrap_or_else(rand::random);
    println!(
        "{label}: seed {seed}; replay the fault schedule with CHAOS_SEED={seed} cargo test -p ha-examples --test chaos_mixed -- --nocapture {label}"
    );
    let fabric = match Fabric::build("m", 5) {
        Ok(fabric) => Some(fabric),
        Err(why) => {
            println!("{label}: process faults only, on loopback: {}", why.0);
            None
        }
    };
    let mut cluster = TestCluster::start_on(fabric.as_ref(), &[1, 1, 1, 1, 1]);
    cluster.wait_for_leader(&[], WAIT);
    let options = WorkloadOptions {
        seed,
        ..WorkloadOptions::default()
    };
    let workload = Workload::start(http_addresses(&cluster), options);
    let mut faults = FaultInjector::new(fabric.as_ref(), seed);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) && faults.steps < STEPS_MAX {
        let done = faults.step(&mut cluster);
        println!("{label}: {:>5.1}s {done}", started.elapsed().as_secs_f64());
    }
    faults.heal(&mut cluster);
    let history = cluster.wait_for_leader(&[], WAIT);
    let (_, failovers) = cluster.must(history, "GET", "/v1/failover/history", "");
    println!(
        "{label}: {} steps in {:?}, faults {:?}, {} leader changes in the failover history",
        faults.steps,
        started.elapsed(),
        faults.injected,
        failovers.as_array().map_or(0, Vec::len)
    );
    finish_and_check(&mut cluster, workload, label);
}

#[test]
fn mixed_faults() {
    run("mixed_faults", env_u64("CHAOS_SECONDS").unwrap_or(40));
}

#[test]
#[ignore = "the 10-minute soak: run it by name with --ignored"]
fn soak() {
    run("soak", env_u64("CHAOS_SOAK_SECONDS").unwrap_or(600));
}
