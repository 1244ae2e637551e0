//! ha side by side with etcd, in one run on one machine, on loopback: writes over HTTP, local
//! reads, locks, failover and resources. Writes `target/bench/compare_etcd.{json,md}` and two
//! SVG plots.
//!
//! Needs `target/release/bot` (`cargo build --release --bin bot`) and `etcd` on `PATH`
//! (`bench/install_peers.sh`). Every process it starts is owned by a guard that SIGKILLs and
//! reaps it on every exit path; every loop is bounded in count and time.

/// The parts, in `bench/src/bin/compare_etcd/`.
mod compare_etcd {
    pub use ha_bench::http_load::target as api;
    pub use ha_bench::http_load::{reads, writes};
    pub mod failover;
    pub mod locks;
    pub mod plots;
    pub mod report;
    pub mod writes_only;
}

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use ha_bench::peers::{BotCluster, BotClusterOptions, EtcdCluster, EtcdClusterOptions};

use compare_etcd::failover::{self, Variant};
use compare_etcd::report::{
    FailoverSeries, IdleMemory, LocalReads, LockResults, Results, WriteResults,
};
use compare_etcd::writes_only::{self, Systems};
use compare_etcd::{locks, reads, writes};

/// Command line.
#[derive(Debug, Parser)]
#[command(about = "Benchmark ha against etcd on loopback (writes, locks, failover, resources)")]
struct Args {
    /// Seconds per write load run (each of 1, 16 and 64 clients, each system).
    #[arg(long, default_value_t = 5)]
    duration_s: u64,
    /// Uncontended lock acquire+release iterations per system.
    #[arg(long, default_value_t = 300)]
    lock_iterations: u32,
    /// Seconds of the contended lock run per system.
    #[arg(long, default_value_t = 5)]
    lock_contended_s: u64,
    /// Failover trials per configuration (at least 5 for the report).
    #[arg(long, default_value_t = 5)]
    trials: u32,
    /// Time limit of one write attempt in the failover writer, in ms.
    #[arg(long, default_value_t = 1000)]
    attempt_timeout_ms: u64,
    /// Output directory; default `<workspace>/target/bench`.
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// `writes`: run only the write loads and print a table (no locks, failover or report
    /// files); for profiling and before/after measurements.
    #[arg(long, value_parser = ["writes"])]
    only: Option<String>,
    /// With `--only writes`: which systems to start and drive.
    #[arg(long, value_enum, default_value_t = Systems::Both)]
    systems: Systems,
    /// With `--only writes`: the client counts (default 1, 16 and 64).
    #[arg(long, value_delimiter = ',')]
    clients: Vec<usize>,
    /// How many times to run each write load and the uncontended lock cycle, systems
    /// alternating within a round; the report keeps each figure's median round and lists
    /// every round's (default 3; with `--only writes` default 1, every round printed).
    #[arg(long)]
    rounds: Option<u32>,
    /// With `--only writes`: a `bot` executable to start an ha cluster of (repeat it to
    /// compare builds, runs alternating); default `target/release/bot`.
    #[arg(long)]
    bot: Vec<PathBuf>,
}

/// Concurrent clients of the write runs.
const CLIENT_COUNTS: [usize; 3] = [1, 16, 64];
/// Contended lock clients.
const LOCK_CLIENTS: usize = 8;
/// Most time to wait for a cluster's leader.
const LEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle time before reading resident memory.
const IDLE_BEFORE_RSS: Duration = Duration::from_secs(2);
/// Most trials per configuration.
const TRIALS_MAX: u32 = 50;
/// Rounds of the write loads and the uncontended lock cycle in the full report: the median
/// of three keeps one unlucky run from deciding a target near its line.
const REPORT_ROUNDS: u32 = 3;

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("compare_etcd: tokio runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("compare_etcd: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn rss_of(pids: &[u32]) -> Vec<u64> {
    pids.iter()
        .filter_map(|pid| ha_bench::peers::rss_bytes(*pid).ok())
        .collect()
}

async fn run(args: Args) -> Result<(), String> {
    let out_dir = args.out_dir.clone().unwrap_or_else(|| {
        let bench = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        bench.parent().unwrap_or(&bench).join("target/bench")
    });
    std::fs::create_dir_all(&out_dir).map_err(|error| format!("{}: {error}", out_dir.display()))?;
    // Data directories on the same disk as the target directory (fsync is real there).
    let data_dir = out_dir.join("compare_etcd_data");
    let trials = args.trials.clamp(1, TRIALS_MAX);
    let duration = Duration::from_secs(args.duration_s.clamp(1, 600));
    if args.only.is_some() {
        let clients: Vec<usize> = if args.clients.is_empty() {
            CLIENT_COUNTS.to_vec()
        } else {
            args.clients
                .iter()
                .map(|count| (*count).clamp(1, 1024))
                .collect()
        };
        return writes_only::run(
            args.systems,
            &args.bot,
            &clients,
            args.rounds.unwrap_or(1),
            duration,
            &data_dir,
            LEADER_TIMEOUT,
        )
        .await;
    }

    eprintln!("starting 3 ha nodes and 3 etcd members");
    let mut ha_options = BotClusterOptions::new(3);
    ha_options.base_dir = Some(data_dir.clone());
    let ha = BotCluster::start(ha_options).map_err(|error| error.to_string())?;
    let mut etcd_options = EtcdClusterOptions::new(3);
    etcd_options.base_dir = Some(data_dir.clone());
    let etcd = EtcdCluster::start(etcd_options).map_err(|error| error.to_string())?;
    let ha_leader = ha
        .wait_for_leader(LEADER_TIMEOUT)
        .await
        .map_err(|error| format!("ha: {error} (logs in {})", ha.directory().display()))?;
    ha.wait_until_healthy(LEADER_TIMEOUT)
        .await
        .map_err(|error| format!("ha: {error}"))?;
    let etcd_leader = etcd
        .wait_for_leader(LEADER_TIMEOUT)
        .await
        .map_err(|error| format!("etcd: {error} (logs in {})", etcd.directory().display()))?;
    let ha_target = ha.target(ha_leader);
    let etcd_target = etcd.target(etcd_leader);

    tokio::time::sleep(IDLE_BEFORE_RSS).await;
    let idle = IdleMemory {
        ha_bytes: rss_of(&ha.pids()),
        etcd_bytes: rss_of(&etcd.pids()),
    };

    let rounds = args
        .rounds
        .unwrap_or(REPORT_ROUNDS)
        .clamp(1, writes_only::ROUNDS_MAX);
    let mut write_results = WriteResults::default();
    for clients in CLIENT_COUNTS {
        eprintln!("writes: {clients} client(s), {duration:?} each system, {rounds} round(s)");
        let (mut ha_runs, mut etcd_runs) = (Vec::new(), Vec::new());
        for round in 1..=rounds {
            let prefix = format!("r{round}w{clients}");
            ha_runs.push(writes::run(&ha_target, clients, duration, &prefix, &ha.pids()).await?);
            etcd_runs
                .push(writes::run(&etcd_target, clients, duration, &prefix, &etcd.pids()).await?);
        }
        write_results.push_median_rounds(ha_runs, etcd_runs)?;
    }

    eprintln!("local reads: 1 client, {duration:?} each system, {rounds} round(s)");
    let (mut ha_reads, mut etcd_reads) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let key = format!("r{round}read");
        ha_reads.push(reads::sequential(&ha_target, duration, &key).await?);
        etcd_reads.push(reads::sequential(&etcd_target, duration, &key).await?);
    }
    let local_reads = LocalReads::from_median_rounds(ha_reads, etcd_reads)?;

    eprintln!(
        "locks: {} uncontended cycles, {rounds} round(s); {LOCK_CLIENTS} clients contended",
        args.lock_iterations
    );
    let (mut ha_cycles, mut etcd_cycles) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        ha_cycles.push(locks::uncontended(&ha_target, args.lock_iterations).await?);
        etcd_cycles.push(locks::uncontended(&etcd_target, args.lock_iterations).await?);
    }
    let lock_duration = Duration::from_secs(args.lock_contended_s.clamp(1, 600));
    let lock_results = LockResults::from_median_rounds(
        ha_cycles,
        etcd_cycles,
        locks::contended(&ha_target, LOCK_CLIENTS, lock_duration).await?,
        locks::contended(&etcd_target, LOCK_CLIENTS, lock_duration).await?,
    )?;
    drop(ha);
    drop(etcd);

    let variants = [Variant::Ha, Variant::EtcdDefault, Variant::EtcdTuned];
    let mut series: Vec<FailoverSeries> =
        variants.iter().map(|v| FailoverSeries::new(*v)).collect();
    let attempt_timeout = Duration::from_millis(args.attempt_timeout_ms.clamp(10, 10_000));
    for trial in 0..trials {
        for (index, variant) in variants.iter().enumerate() {
            let (figures, attempts) = failover::trial(*variant, &data_dir, attempt_timeout).await?;
            eprintln!(
                "failover {} trial {}: window {:.0} ms, {} failed attempts ({} writes), {} acknowledged, {} lost",
                variant.name(),
                trial + 1,
                figures.window_ms,
                figures.failed_attempts,
                figures.failed_writes,
                figures.acknowledged,
                figures.lost
            );
            series[index].trials.push(figures);
            if trial == 0 {
                series[index].plotted_attempts = attempts;
            }
        }
    }

    let results = Results::new(
        rounds,
        args.duration_s,
        args.lock_iterations,
        args.lock_contended_s,
        args.attempt_timeout_ms,
        idle,
        write_results,
        local_reads,
        lock_results,
        series,
    );
    results.write(&out_dir)?;
    println!("{}", results.markdown());
    eprintln!(
        "wrote {0}/compare_etcd.json, {0}/compare_etcd.md, {0}/failover_latency.svg, {0}/throughput_vs_clients.svg",
        out_dir.display()
    );
    Ok(())
}
