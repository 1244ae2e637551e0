//! The cost of security (issue 13), on loopback: QUORUM writes at 1, 16 and 64 clients on ha
//! plaintext, ha with the cluster key, ha secured (mutual TLS between nodes, HTTPS and a
//! bearer token for clients), etcd plaintext and etcd with peer and client TLS, all driven by
//! compare_etcd's load generator; then the failover window of ha secured vs ha plaintext.
//! Writes `target/bench/compare_security.{json,md}` (the Markdown is its section of
//! bench/RESULTS.md).
//!
//! ```text
//! target/release/compare_security            # full: 5 s per run, 5 failover trials (~4 min)
//! target/release/compare_security --quick    # 1 s per run, 3 trials: checks the harness
//! ```
//!
//! Needs `target/release/bot` with the issue-13 flags (`bot certs init`, `bot keygen`,
//! `--tls-*`, `--cluster-key-file`, `--admin-token-file`) and `etcd` on `PATH`
//! (`bench/install_peers.sh`). Every process it starts is owned by a guard that SIGKILLs and
//! reaps it on every exit path; every loop is bounded in count and time.

/// The parts, in `bench/src/bin/compare_security/`.
mod compare_security {
    pub mod report;
    pub mod setups;
}

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use ha_bench::http_load::{failover, writes};

use compare_security::report::{FailoverSeries, Results, Settings, SetupRuns};
use compare_security::setups::{Cluster, Secrets, Setup};

/// Command line.
#[derive(Debug, Parser)]
#[command(about = "The cost of mTLS, HTTPS and tokens: ha and etcd, plaintext vs secured")]
struct Args {
    /// Seconds per write run (each of 1, 16 and 64 clients, each configuration).
    #[arg(long, default_value_t = 5)]
    duration_s: u64,
    /// Failover trials per configuration (ha plaintext, ha secured).
    #[arg(long, default_value_t = 5)]
    trials: u32,
    /// Time limit of one write attempt in the failover writer, in ms.
    #[arg(long, default_value_t = 1000)]
    attempt_timeout_ms: u64,
    /// Short runs to check the harness: 1 s per write run and 3 failover trials (overrides
    /// `--duration-s` and `--trials`).
    #[arg(long)]
    quick: bool,
    /// Skip the failover trials.
    #[arg(long)]
    no_failover: bool,
    /// The configurations of the write runs (comma separated); default all. Failover runs
    /// when both ha-plaintext and ha-secured are among them.
    #[arg(long, value_enum, value_delimiter = ',')]
    setups: Vec<Setup>,
    /// The `bot` executable; default `<target>/release/bot`.
    #[arg(long)]
    bot: Option<PathBuf>,
    /// Output directory; default `<workspace>/target/bench`.
    #[arg(long)]
    out_dir: Option<PathBuf>,
}

/// Concurrent clients of the write runs (as compare_etcd's).
const CLIENT_COUNTS: [usize; 3] = [1, 16, 64];
/// Most trials per configuration.
const TRIALS_MAX: u32 = 50;
/// Failover trials in `--quick`.
const QUICK_TRIALS: u32 = 3;

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("compare_security: tokio runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("compare_security: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let out_dir = args.out_dir.clone().unwrap_or_else(|| {
        let bench = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        bench.parent().unwrap_or(&bench).join("target/bench")
    });
    std::fs::create_dir_all(&out_dir).map_err(|error| format!("{}: {error}", out_dir.display()))?;
    // Data directories on the same disk as the target directory (fsync is real there).
    let data_dir = out_dir.join("compare_security_data");
    let (duration_s, trials) = if args.quick {
        (1, QUICK_TRIALS)
    } else {
        (
            args.duration_s.clamp(1, 600),
            args.trials.clamp(1, TRIALS_MAX),
        )
    };
    let duration = Duration::from_secs(duration_s);
    let attempt_timeout = Duration::from_millis(args.attempt_timeout_ms.clamp(10, 10_000));

    let setups: Vec<Setup> = Setup::ALL
        .into_iter()
        .filter(|setup| args.setups.is_empty() || args.setups.contains(setup))
        .collect();
    let failover_variants = [Setup::HaPlaintext, Setup::HaSecured];
    let run_failover =
        !args.no_failover && failover_variants.iter().all(|setup| setups.contains(setup));

    eprintln!("making certificates and keys (bot certs init, bot keygen, rcgen for etcd)");
    let secrets = Secrets::generate(
        &data_dir,
        args.bot.clone(),
        setups.iter().any(|setup| setup.needs_bot_secrets()),
    )
    .map_err(|error| error.to_string())?;

    eprintln!(
        "starting {} clusters of 3: {}",
        setups.len(),
        setups
            .iter()
            .map(|setup| setup.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut clusters = Vec::with_capacity(setups.len());
    for setup in setups.iter().copied() {
        let cluster = Cluster::start(setup, &secrets, &data_dir)
            .map_err(|error| format!("{}: {error}", setup.name()))?;
        clusters.push((setup, cluster));
    }
    let mut targets = Vec::with_capacity(clusters.len());
    for (setup, cluster) in &clusters {
        let leader = cluster
            .wait_for_leader()
            .await
            .map_err(|error| format!("{}: {error}", setup.name()))?;
        targets.push((*setup, cluster.target(leader), cluster.pids()));
    }

    let mut write_results: Vec<SetupRuns> = setups
        .iter()
        .map(|setup| SetupRuns {
            setup: *setup,
            name: setup.name().to_string(),
            runs: Vec::new(),
        })
        .collect();
    for clients in CLIENT_COUNTS {
        eprintln!("writes: {clients} client(s), {duration:?} each configuration");
        for (index, (setup, target, pids)) in targets.iter().enumerate() {
            let run = writes::run(target, clients, duration, &format!("w{clients}"), pids)
                .await
                .map_err(|error| format!("{}: {error}", setup.name()))?;
            eprintln!(
                "  {}: {:.0} writes/s, p50 {} us, p99 {} us, {} errors",
                setup.name(),
                run.writes_per_second,
                run.latency.p50_us,
                run.latency.p99_us,
                run.errors
            );
            write_results[index].runs.push(run);
        }
    }
    drop(targets);
    drop(clusters);

    let mut failover_series = Vec::new();
    if run_failover {
        let variants = failover_variants;
        let mut trials_of: Vec<Vec<failover::Trial>> = vec![Vec::new(); variants.len()];
        for trial in 0..trials {
            for (index, setup) in variants.iter().enumerate() {
                let cluster = Cluster::start(*setup, &secrets, &data_dir)
                    .map_err(|error| format!("{}: {error}", setup.name()))?;
                let (figures, _attempts) =
                    failover::trial(cluster.into(), setup.name(), attempt_timeout).await?;
                eprintln!(
                    "failover {} trial {}: window {:.0} ms, {} failed writes, {} acknowledged, {} lost",
                    setup.name(),
                    trial + 1,
                    figures.window_ms,
                    figures.failed_writes,
                    figures.acknowledged,
                    figures.lost
                );
                trials_of[index].push(figures);
            }
        }
        failover_series = variants
            .iter()
            .zip(trials_of)
            .map(|(setup, trials)| FailoverSeries::new(*setup, trials))
            .collect();
    }

    let results = Results::new(
        Settings {
            write_duration_s: duration_s,
            failover_trials: if run_failover { trials } else { 0 },
            attempt_timeout_ms: args.attempt_timeout_ms,
            value_bytes: writes::value_128().len(),
            quick: args.quick,
        },
        write_results,
        failover_series,
    );
    results.write(&out_dir)?;
    println!("{}", results.markdown());
    eprintln!(
        "wrote {0}/compare_security.json, {0}/compare_security.md",
        out_dir.display()
    );
    Ok(())
}
