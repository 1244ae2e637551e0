//! ha's native Rust client against etcd's gRPC client, on loopback, in one run: the same
//! closed-loop load generator writes 128-byte values at QUORUM with 1, 16 and 64 concurrent
//! clients to a 3-node ha cluster whose leader runs in this process (written to through
//! `node.kv()`, as an embedding service would) and to a 3-member etcd cluster (gRPC `KV.Put`
//! through the `etcd-client` crate). Writes `target/bench/compare_native.{json,md}`.
//!
//! ```text
//! cargo build --release -p ha-bench --features grpc --bin compare_native   # needs protoc
//! target/release/compare_native [--duration-s 5]
//! ```
//!
//! Without the `grpc` feature only ha's side runs and the report says why etcd's is missing.
//! The two ha followers are this executable in follower mode (`compare_native follower ...`);
//! every process it starts is owned by a guard that SIGKILLs and reaps it on every exit path,
//! and every loop is bounded in count and time.

/// The parts, in `bench/src/bin/compare_native/`.
mod compare_native {
    #[cfg(feature = "grpc")]
    pub mod grpc;
    pub mod load;
    pub mod native_cluster;
    pub mod report;
}

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use compare_native::load::{self, PutWorker};
use compare_native::native_cluster::{FollowerArgs, NativeCluster, run_follower};
use compare_native::report::Results;

/// Command line.
#[derive(Debug, Parser)]
#[command(about = "Benchmark ha's native Rust client against etcd's gRPC client on loopback")]
struct Args {
    /// Follower mode (started by the benchmark itself).
    #[command(subcommand)]
    mode: Option<Mode>,
    /// Seconds per load run (each of 1, 16 and 64 clients, each system).
    #[arg(long, default_value_t = 5)]
    duration_s: u64,
    /// Skip etcd (measure ha's side only).
    #[arg(long)]
    no_etcd: bool,
    /// Output directory; default `<workspace>/target/bench`.
    #[arg(long)]
    out_dir: Option<PathBuf>,
}

/// Modes other than the benchmark.
#[derive(Debug, Subcommand)]
enum Mode {
    /// Run one follower node of the ha cluster until standard input closes.
    Follower(FollowerArgs),
}

/// Concurrent clients of the load runs.
const CLIENT_COUNTS: [usize; 3] = [1, 16, 64];
/// Most time to wait for a cluster's leader.
const LEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Per-request time limit of the gRPC client (ha's client has the node's 5 s request timeout).
#[cfg(feature = "grpc")]
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The allocator the `bot` ships with (see `examples/src/bin/bot/main.rs`): the ha nodes this
/// binary runs in its own process are measured as the shipped binary runs them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if let Some(Mode::Follower(follower)) = &args.mode {
        return match run_follower(follower) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("compare_native follower: {error}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("compare_native: tokio runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("compare_native: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Make `clients` workers with `connect` and give each one write, so connection and session
/// setup is not measured.
async fn warmed_up<W: PutWorker, F: Future<Output = Result<W, String>>>(
    clients: usize,
    prefix: &str,
    mut connect: impl FnMut() -> F,
) -> Result<Vec<W>, String> {
    let mut workers = Vec::with_capacity(clients);
    for worker in 0..clients {
        let mut client = connect().await?;
        client
            .put(format!("{prefix}/{worker}/warm"), load::value())
            .await
            .map_err(|error| format!("warm-up put: {error}"))?;
        workers.push(client);
    }
    Ok(workers)
}

/// etcd's side: a cluster and its leader's client URL, or why there is none.
#[cfg(feature = "grpc")]
struct EtcdSide {
    cluster: ha_bench::peers::EtcdCluster,
    endpoint: String,
}

#[cfg(feature = "grpc")]
async fn start_etcd(data_dir: &std::path::Path) -> Result<EtcdSide, String> {
    use ha_bench::peers::{EtcdCluster, EtcdClusterOptions};
    let mut options = EtcdClusterOptions::new(3);
    options.base_dir = Some(data_dir.to_path_buf());
    let cluster = EtcdCluster::start(options).map_err(|error| error.to_string())?;
    let leader = cluster
        .wait_for_leader(LEADER_TIMEOUT)
        .await
        .map_err(|error| format!("etcd: {error} (logs in {})", cluster.directory().display()))?;
    let endpoint = cluster.url(leader);
    Ok(EtcdSide { cluster, endpoint })
}

#[cfg(feature = "grpc")]
async fn etcd_run(
    side: &EtcdSide,
    clients: usize,
    duration: Duration,
    prefix: &str,
) -> Result<load::LoadRun, String> {
    let workers = warmed_up(clients, prefix, || {
        compare_native::grpc::connect(&side.endpoint, REQUEST_TIMEOUT)
    })
    .await
    .map_err(|error| format!("etcd: {error}"))?;
    Ok(load::run(workers, duration, prefix, &side.cluster.pids()).await)
}

async fn run(args: Args) -> Result<(), String> {
    let out_dir = args.out_dir.clone().unwrap_or_else(|| {
        let bench = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        bench.parent().unwrap_or(&bench).join("target/bench")
    });
    std::fs::create_dir_all(&out_dir).map_err(|error| format!("{}: {error}", out_dir.display()))?;
    // Data directories on the same disk as the target directory (fsync is real there).
    let data_dir = out_dir.join("compare_native_data");
    let duration = Duration::from_secs(args.duration_s.clamp(1, 600));
    let executable = std::env::current_exe().map_err(|error| format!("own executable: {error}"))?;

    eprintln!("starting 3 ha nodes (leader in this process)");
    let ha = NativeCluster::start(&executable, &data_dir, LEADER_TIMEOUT).await?;

    #[cfg(feature = "grpc")]
    let etcd = if args.no_etcd {
        Err("skipped (--no-etcd)".to_string())
    } else {
        eprintln!("starting 3 etcd members");
        start_etcd(&data_dir).await
    };
    #[cfg(not(feature = "grpc"))]
    let etcd: Result<(), String> = Err(if args.no_etcd {
        "skipped (--no-etcd)".to_string()
    } else {
        "this build has no gRPC client: build with `--features grpc` (needs protoc; bench/compare.sh does it)".to_string()
    });
    if let Err(reason) = &etcd {
        eprintln!("etcd gRPC: not measured: {reason}");
    }

    let mut ha_runs = Vec::new();
    // Only the gRPC build adds etcd runs.
    #[cfg_attr(not(feature = "grpc"), allow(unused_mut))]
    let mut etcd_runs = Vec::<load::LoadRun>::new();
    for clients in CLIENT_COUNTS {
        eprintln!("writes: {clients} client(s), {duration:?} each system");
        let prefix = format!("n{clients}");
        let workers = warmed_up(clients, &prefix, || {
            let worker = ha.worker();
            async move { Ok::<_, String>(worker) }
        })
        .await
        .map_err(|error| format!("ha: {error}"))?;
        let run = load::run(workers, duration, &prefix, &ha.follower_pids()).await;
        eprintln!(
            "  ha native: {:.0} writes/s, p50 {} us, p99 {} us, {} errors",
            run.writes_per_second, run.latency.p50_us, run.latency.p99_us, run.errors
        );
        ha_runs.push(run);
        #[cfg(feature = "grpc")]
        if let Ok(side) = &etcd {
            let run = etcd_run(side, clients, duration, &prefix).await?;
            eprintln!(
                "  etcd gRPC: {:.0} writes/s, p50 {} us, p99 {} us, {} errors",
                run.writes_per_second, run.latency.p50_us, run.latency.p99_us, run.errors
            );
            etcd_runs.push(run);
        }
    }
    drop(ha);
    let etcd_not_measured = etcd.err();
    let results = Results::new(args.duration_s, ha_runs, etcd_runs, etcd_not_measured);
    results.write(&out_dir)?;
    println!("{}", results.markdown());
    eprintln!(
        "wrote {0}/compare_native.json and {0}/compare_native.md",
        out_dir.display()
    );
    Ok(())
}
