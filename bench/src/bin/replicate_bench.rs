//! QUORUM write throughput and latency of a 3-voter `ha-replicate` cluster on loopback TCP,
//! each node with its own on-disk WAL (fsync on, group commit), at several client counts.
//!
//! `cargo run --release -p ha-bench --bin replicate_bench -- --duration-secs 5`
//!
//! Every loop is bounded by the duration; the nodes run in this process on loopback only.

use std::time::Duration;

use clap::Parser;
use ha_bench::{
    Kv, LatencySummary, MachineDescription, run_write_load_on_sessions, start_loopback_cluster,
    wait_for_leader,
};
use ha_replicate::driver::ReplicaNode;
use serde::Serialize;

/// Command-line options.
#[derive(Parser, Debug)]
#[command(about = "QUORUM write throughput and latency on a loopback ha-replicate cluster")]
struct Options {
    /// Concurrent clients per run (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    clients: Vec<usize>,
    /// Seconds of load per client count.
    #[arg(long, default_value_t = 5)]
    duration_secs: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 128)]
    value_bytes: usize,
    /// Client sessions the writers share (0: one per writer). With fewer sessions than
    /// writers, each session has several writes in flight (pipelined sessions, issue 17).
    #[arg(long, default_value_t = 0)]
    sessions: usize,
    /// Voters in the cluster.
    #[arg(long, default_value_t = 3)]
    voters: usize,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/replicate_bench.json")]
    json: std::path::PathBuf,
}

/// One client count's figures.
#[derive(Debug, Serialize)]
struct RunResult {
    clients: usize,
    writes: usize,
    errors: usize,
    seconds: f64,
    writes_per_second: f64,
    latency: LatencySummary,
}

#[derive(Debug, Serialize)]
struct Report {
    benchmark: &'static str,
    machine: MachineDescription,
    voters: usize,
    value_bytes: usize,
    fsync: &'static str,
    runs: Vec<RunResult>,
}

async fn run(
    nodes: &[ReplicaNode<Kv>],
    leader: usize,
    clients: usize,
    options: &Options,
) -> RunResult {
    let sessions = if options.sessions == 0 {
        clients
    } else {
        options.sessions
    };
    let mut load = run_write_load_on_sessions(
        &nodes[leader],
        clients,
        sessions,
        options.value_bytes,
        Duration::from_secs(options.duration_secs),
    )
    .await;
    let (seconds, errors) = (load.seconds, load.errors);
    let latencies_us = &mut load.latencies_us;
    let writes = latencies_us.len();
    RunResult {
        clients,
        writes,
        errors,
        seconds,
        writes_per_second: writes as f64 / seconds,
        latency: LatencySummary::from_micros(latencies_us),
    }
}

/// The allocator the `bot` ships with (see `examples/src/bin/bot/main.rs`): the ha nodes this
/// binary runs in its own process are measured as the shipped binary runs them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let options = Options::parse();
    let machine = MachineDescription::read();
    println!("machine: {machine}");
    println!(
        "cluster: {} voters on loopback TCP, WAL with fsync (group commit), {}-byte values, QUORUM writes to the leader",
        options.voters, options.value_bytes
    );
    let dirs: Vec<tempfile::TempDir> = (0..options.voters)
        .map(|_| tempfile::tempdir().expect("temp dir"))
        .collect();
    let nodes = start_loopback_cluster(&dirs, Kv::default).await;
    let leader = wait_for_leader(&nodes).await;
    let mut runs = Vec::new();
    println!(
        "{:>8} {:>10} {:>12} {:>10} {:>10} {:>10} {:>8}",
        "clients", "writes", "writes/s", "p50 us", "p99 us", "max us", "errors"
    );
    for clients in options.clients.clone() {
        let result = run(&nodes, leader, clients, &options).await;
        println!(
            "{:>8} {:>10} {:>12.0} {:>10} {:>10} {:>10} {:>8}",
            result.clients,
            result.writes,
            result.writes_per_second,
            result.latency.p50_us,
            result.latency.p99_us,
            result.latency.max_us,
            result.errors
        );
        runs.push(result);
    }
    let report = Report {
        benchmark: "replicate_quorum_writes",
        machine,
        voters: options.voters,
        value_bytes: options.value_bytes,
        fsync: "fdatasync per group commit",
        runs,
    };
    if let Some(parent) = options.json.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    match serde_json::to_string_pretty(&report) {
        Ok(json) => match std::fs::write(&options.json, json) {
            Ok(()) => println!("results: {}", options.json.display()),
            Err(error) => eprintln!("cannot write {}: {error}", options.json.display()),
        },
        Err(error) => eprintln!("cannot encode results: {error}"),
    }
    for node in nodes {
        node.shutdown(Duration::from_secs(1)).await;
    }
}
