//! Issue 16: are the latency histograms plausible? In one run, the client-measured p50 of
//! QUORUM writes and the p50 that the leader's `ha_propose_commit_seconds` histogram gives
//! for the same writes (interpolated inside its bucket, as Prometheus' `histogram_quantile`
//! does), side by side with their ratio; then the same for writes sent to a follower, against
//! its `ha_forward_round_trip_seconds`. The issue asks for the histogram's p50 within 2x of
//! the measured one.
//!
//! `cargo run --release -p ha-bench --bin histogram_bench -- --duration-secs 5`
//!
//! 3 voters in this process on loopback TCP, each with an on-disk WAL (fsync by group
//! commit). Every loop is bounded by the duration.

use std::time::Duration;

use clap::Parser;
use ha_bench::{
    Kv, LatencySummary, MachineDescription, run_write_load, start_loopback_cluster, wait_for_leader,
};
use ha_core::{HistogramSnapshot, LatencyHistogram};
use serde::Serialize;

/// Command-line options.
#[derive(Parser, Debug)]
#[command(about = "Latency histograms vs client-measured latency on a loopback cluster")]
struct Options {
    /// Concurrent clients per run (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    clients: Vec<usize>,
    /// Seconds of load per run.
    #[arg(long, default_value_t = 5)]
    duration_secs: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 128)]
    value_bytes: usize,
    /// The largest ratio (either way) between the histogram's p50 and the client's that
    /// passes; the process exits with 1 beyond it.
    #[arg(long, default_value_t = 2.0)]
    ratio_max: f64,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/histogram_bench.json")]
    json: std::path::PathBuf,
}

/// One run's figures.
#[derive(Debug, Serialize)]
struct RunResult {
    /// `leader` (writes to the leader, against propose->commit) or `follower` (writes to a
    /// follower, against the forward round trip).
    target: &'static str,
    histogram: &'static str,
    clients: usize,
    writes: usize,
    errors: usize,
    client: LatencySummary,
    /// Observations the histogram took during the run.
    histogram_count: u64,
    histogram_p50_us: f64,
    histogram_p99_us: f64,
    /// Mean from `_sum / _count`.
    histogram_mean_us: f64,
    /// Histogram p50 / client p50.
    ratio_p50: f64,
    /// Also during the run, on the node written to: commit->apply p50 (part of the client's
    /// time that propose->commit leaves out).
    commit_apply_p50_us: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    benchmark: &'static str,
    machine: MachineDescription,
    value_bytes: usize,
    ratio_max: f64,
    runs: Vec<RunResult>,
}

fn micros(snapshot: &HistogramSnapshot, quantile: f64) -> f64 {
    snapshot.quantile(quantile).unwrap_or(0.0) * 1e6
}

async fn run(
    node: &ha_replicate::driver::ReplicaNode<Kv>,
    target: &'static str,
    histogram_name: &'static str,
    histogram: &LatencyHistogram,
    clients: usize,
    options: &Options,
) -> RunResult {
    let before = histogram.snapshot();
    let apply_before = node.metrics().commit_apply.snapshot();
    let mut load = run_write_load(
        node,
        clients,
        options.value_bytes,
        Duration::from_secs(options.duration_secs),
    )
    .await;
    let during = histogram.snapshot().since(&before);
    let apply = node.metrics().commit_apply.snapshot().since(&apply_before);
    let writes = load.latencies_us.len();
    let client = LatencySummary::from_micros(&mut load.latencies_us);
    let histogram_p50_us = micros(&during, 0.5);
    RunResult {
        target,
        histogram: histogram_name,
        clients,
        writes,
        errors: load.errors,
        client,
        histogram_count: during.count,
        histogram_p50_us,
        histogram_p99_us: micros(&during, 0.99),
        histogram_mean_us: if during.count == 0 {
            0.0
        } else {
            during.sum_seconds / during.count as f64 * 1e6
        },
        ratio_p50: if client.p50_us == 0 {
            0.0
        } else {
            histogram_p50_us / client.p50_us as f64
        },
        commit_apply_p50_us: micros(&apply, 0.5),
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let options = Options::parse();
    let machine = MachineDescription::read();
    println!("machine: {machine}");
    println!(
        "cluster: 3 voters on loopback TCP, WAL with fsync (group commit), {}-byte values, QUORUM writes, {} s per run",
        options.value_bytes, options.duration_secs
    );
    let dirs: Vec<tempfile::TempDir> = (0..3)
        .map(|_| tempfile::tempdir().expect("temp dir"))
        .collect();
    let nodes = start_loopback_cluster(&dirs, Kv::default).await;
    let leader = wait_for_leader(&nodes).await;
    let follower = (leader + 1) % nodes.len();
    let mut runs = Vec::new();
    println!(
        "{:>8} {:>8} {:>8} {:>12} {:>14} {:>8} {:>14} {:>14} {:>12}",
        "target",
        "clients",
        "writes",
        "client p50us",
        "histogram p50",
        "ratio",
        "histogram p99",
        "histogram mean",
        "apply p50"
    );
    for clients in options.clients.clone() {
        for (node, target, name, histogram) in [
            (
                &nodes[leader],
                "leader",
                "ha_propose_commit_seconds",
                &nodes[leader].metrics().propose_commit,
            ),
            (
                &nodes[follower],
                "follower",
                "ha_forward_round_trip_seconds",
                &nodes[follower].metrics().forward_round_trip,
            ),
        ] {
            let result = run(node, target, name, histogram, clients, &options).await;
            println!(
                "{:>8} {:>8} {:>8} {:>12} {:>14.0} {:>8.2} {:>14.0} {:>14.0} {:>12.0}",
                result.target,
                result.clients,
                result.writes,
                result.client.p50_us,
                result.histogram_p50_us,
                result.ratio_p50,
                result.histogram_p99_us,
                result.histogram_mean_us,
                result.commit_apply_p50_us,
            );
            runs.push(result);
        }
    }
    let passed = runs.iter().all(|run| {
        run.histogram_count > 0
            && run.ratio_p50 <= options.ratio_max
            && run.ratio_p50 >= 1.0 / options.ratio_max
    });
    println!(
        "histogram p50 within {}x of the client's p50 in every run: {}",
        options.ratio_max,
        if passed { "yes" } else { "NO" }
    );
    let report = Report {
        benchmark: "histogram_vs_client_p50",
        machine,
        value_bytes: options.value_bytes,
        ratio_max: options.ratio_max,
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
    if !passed {
        std::process::exit(1);
    }
}
