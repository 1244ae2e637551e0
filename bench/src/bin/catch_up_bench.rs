//! How fast a wiped follower catches up, and what memory the state costs (issue 18, "What
//! must be shown"), on a 3-process `bot` cluster on loopback.
//!
//! ```text
//! cargo build --release -p ha-examples --bin bot
//! cargo run --release -p ha-bench --bin catch_up_bench -- --sizes-mib 10,100,1024
//! ```
//!
//! For each state size (10 MiB, 100 MiB and 1 GiB by default; `--sizes-mib` or
//! `CATCH_UP_SIZES_MIB` for a quick run), on a fresh cluster:
//!
//! 1. Resident memory (`VmRSS`) of every node with no user data, after an idle pause.
//! 2. The state: `size` values of 1 MiB (`VALUE_BYTES_MAX`) written through
//!    `PUT /v1/kv/<key>` to the leader; then every node's `VmRSS` once all have applied it,
//!    against the target of issue 18: at most 1.5 times the data plus the node's base.
//! 3. This machine's sequential write speed: a file of the same size written in 4 MiB blocks
//!    and fsynced, in the cluster's data directory (the same filesystem).
//! 4. The leader's write latency without a transfer: sequential small `PUT`s for
//!    `--load-s` seconds.
//! 5. A follower is killed (SIGKILL), its data dir removed, and it is restarted. Measured
//!    until its applied index reaches the leader's commit index at the restart: the time,
//!    as MB/s of user data (and of snapshot bytes received when the node reports them); the
//!    peak `VmRSS` of the leader and the follower sampled every 20 ms during the install, and
//!    the follower's `VmHWM`; and the leader's write latency while it streams, from the same
//!    small-`PUT` loop running through the install.
//!
//! Prints Markdown tables and writes `catch_up.json` and `catch_up.md` to `--out-dir`
//! (default `target/bench`). Nodes inherit this process's environment, so `HA_*` variables
//! reach them (for example `HA_TIMING_PRESET=wan`). Every process is owned by a guard that
//! SIGKILLs it on every exit path; every loop is bounded in count and time, and a catch-up
//! that does not finish within `--catch-up-timeout-s` is reported as such (the figures of
//! the other steps are kept).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use ha_bench::peers::{BotCluster, BotClusterOptions, default_bot_executable, rss_bytes};
use ha_bench::{LatencySummary, MachineDescription, write_report_files};
use ha_lock::VALUE_BYTES_MAX;
use serde::Serialize;

const MIB: u64 = 1 << 20;
/// Most sizes in one run.
const SIZES_MAX: usize = 16;
/// The largest state this benchmark builds, in MiB (disk and time bound it).
const SIZE_MIB_MAX: u64 = 16 * 1024;
/// Most time to wait for a leader, and for every node to be healthy.
const LEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle time before resident memory is read.
const IDLE_BEFORE_RSS: Duration = Duration::from_secs(3);
/// How often resident memory is sampled during an install.
const RSS_SAMPLE_INTERVAL: Duration = Duration::from_millis(20);
/// How often the follower's progress is polled.
const PROGRESS_POLL: Duration = Duration::from_millis(50);
/// Attempts per value while the state is built.
const WRITE_ATTEMPTS_MAX: u32 = 5;
/// The block size of the disk-speed measurement.
const DISK_BLOCK_BYTES: usize = 4 << 20;
/// The memory target of issue 18: resident memory at most this many times the data, plus
/// the node's base.
const MEMORY_RATIO_TARGET: f64 = 1.5;

/// Command line.
#[derive(Debug, Parser)]
#[command(about = "Time for a wiped follower to catch up, and memory vs data, on 3 bot nodes")]
struct Args {
    /// State sizes in MiB, comma separated.
    #[arg(
        long,
        env = "CATCH_UP_SIZES_MIB",
        value_delimiter = ',',
        default_value = "10,100,1024"
    )]
    sizes_mib: Vec<u64>,
    /// The `bot` executable; default `target/release/bot`.
    #[arg(long)]
    bot: Option<PathBuf>,
    /// Concurrent writers while the state is built.
    #[arg(long, default_value_t = 2)]
    writers: usize,
    /// Seconds of the small-write load measured without a transfer.
    #[arg(long, default_value_t = 5)]
    load_s: u64,
    /// Most seconds a catch-up may take before it is reported as not finished.
    #[arg(long, default_value_t = 900)]
    catch_up_timeout_s: u64,
    /// Output directory; default `<workspace>/target/bench`.
    #[arg(long)]
    out_dir: Option<PathBuf>,
}

/// Every figure of one state size.
#[derive(Debug, Default, Serialize)]
struct SizeResult {
    state_mib: u64,
    /// Seconds to write the state, and the rate.
    build_s: f64,
    build_mib_per_s: f64,
    /// Each node's `VmRSS` before any user data, and with the state applied, in bytes.
    rss_empty_bytes: Vec<u64>,
    rss_with_state_bytes: Vec<u64>,
    /// Snapshots the leader had taken, and its current snapshot's size, when it reports them.
    leader_snapshots_taken: Option<f64>,
    leader_snapshot_bytes: Option<f64>,
    /// Sequential write + fsync of a file of the state's size, in MB/s (10^6 bytes).
    disk_write_mb_per_s: f64,
    /// The leader's small writes without a transfer and during the install.
    writes_idle: LatencySummary,
    writes_during_install: LatencySummary,
    writes_failed_idle: u64,
    writes_failed_during_install: u64,
    /// The catch-up.
    caught_up: bool,
    catch_up_s: f64,
    catch_up_mb_per_s: f64,
    /// The follower's counters after the catch-up, when it reports them.
    follower_snapshot_installs: Option<f64>,
    follower_snapshot_bytes_received: Option<f64>,
    /// Peak `VmRSS` sampled during the install, and the follower's `VmHWM` at the end.
    leader_peak_rss_bytes: u64,
    follower_peak_rss_bytes: u64,
    follower_hwm_bytes: u64,
    leader_hwm_bytes: u64,
    /// The follower's applied index reached, and the target.
    follower_applied: u64,
    target_index: u64,
    /// What went wrong, if anything.
    note: String,
}

/// The whole report.
#[derive(Debug, Serialize)]
struct Report {
    machine: MachineDescription,
    sizes: Vec<SizeResult>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("catch_up_bench: tokio runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("catch_up_bench: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    if args.sizes_mib.is_empty() || args.sizes_mib.len() > SIZES_MAX {
        return Err(format!("give 1 to {SIZES_MAX} sizes"));
    }
    if let Some(size) = args
        .sizes_mib
        .iter()
        .find(|size| **size == 0 || **size > SIZE_MIB_MAX)
    {
        return Err(format!(
            "size {size} MiB: sizes are 1 to {SIZE_MIB_MAX} MiB"
        ));
    }
    let out_dir = args.out_dir.clone().unwrap_or_else(|| {
        let bench = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        bench.parent().unwrap_or(&bench).join("target/bench")
    });
    std::fs::create_dir_all(&out_dir).map_err(|error| format!("{}: {error}", out_dir.display()))?;
    let machine = MachineDescription::read();
    eprintln!("machine: {machine}");
    let mut sizes = Vec::new();
    for size in &args.sizes_mib {
        eprintln!("--- state of {size} MiB");
        let result = measure_size(&args, &out_dir, *size).await?;
        eprintln!("{result:?}");
        sizes.push(result);
    }
    let report = Report { machine, sizes };
    let markdown = markdown(&report);
    println!("{markdown}");
    write_report_files(&out_dir, "catch_up", &report, &markdown)?;
    eprintln!(
        "wrote {} and {}",
        out_dir.join("catch_up.json").display(),
        out_dir.join("catch_up.md").display()
    );
    Ok(())
}

fn http_client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .map_err(|error| error.to_string())
}

/// One state size on a fresh cluster.
async fn measure_size(args: &Args, out_dir: &Path, size_mib: u64) -> Result<SizeResult, String> {
    let mut result = SizeResult {
        state_mib: size_mib,
        ..SizeResult::default()
    };
    let mut options = BotClusterOptions::new(3);
    options.executable = args.bot.clone().unwrap_or_else(default_bot_executable);
    // Equal priorities: no failback moves the leadership while a follower catches up.
    options.priorities = vec![1, 1, 1];
    options.base_dir = Some(out_dir.join("catch_up_data"));
    let mut cluster = BotCluster::start(options).map_err(|error| error.to_string())?;
    let logs = cluster.directory().display().to_string();
    cluster
        .wait_for_leader(LEADER_TIMEOUT)
        .await
        .map_err(|error| format!("{error} (logs in {logs})"))?;
    cluster
        .wait_until_healthy(LEADER_TIMEOUT)
        .await
        .map_err(|error| format!("{error} (logs in {logs})"))?;
    let client = http_client(Duration::from_secs(60))?;

    // 1. Memory without user data.
    tokio::time::sleep(IDLE_BEFORE_RSS).await;
    result.rss_empty_bytes = rss_of_nodes(&cluster);

    // 2. The state.
    let started = Instant::now();
    build_state(&cluster, &client, size_mib, args.writers.clamp(1, 16)).await?;
    result.build_s = started.elapsed().as_secs_f64();
    result.build_mib_per_s = size_mib as f64 / result.build_s.max(1e-6);
    eprintln!(
        "wrote {size_mib} MiB in {:.1} s ({:.1} MiB/s)",
        result.build_s, result.build_mib_per_s
    );
    let leader = current_leader(&cluster).await?;
    let target = commit_index(&client, &cluster, leader).await?;
    for index in 0..cluster.len() {
        wait_for_applied(&client, &cluster, index, target, LEADER_TIMEOUT).await?;
    }
    tokio::time::sleep(IDLE_BEFORE_RSS).await;
    result.rss_with_state_bytes = rss_of_nodes(&cluster);
    let leader_metrics = metrics(&client, &cluster, leader).await.unwrap_or_default();
    result.leader_snapshots_taken = sample(&leader_metrics, "ha_snapshots_taken_total");
    result.leader_snapshot_bytes = sample(&leader_metrics, "ha_snapshot_bytes");

    // 3. The disk.
    result.disk_write_mb_per_s = disk_write_speed(cluster.directory(), size_mib * MIB)?;

    // 4. Small writes without a transfer.
    let (idle, failed) = small_write_load(
        &client,
        &cluster.url(leader),
        LoadEnd::After(Duration::from_secs(args.load_s.clamp(1, 600))),
    )
    .await;
    result.writes_idle = idle;
    result.writes_failed_idle = failed;

    // 5. Wipe a follower and time its catch-up.
    let follower = (0..cluster.len())
        .find(|index| *index != leader)
        .ok_or("no follower")?;
    cluster.kill(follower).map_err(|error| error.to_string())?;
    let data_dir = cluster.directory().join(cluster.id(follower));
    std::fs::remove_dir_all(&data_dir)
        .map_err(|error| format!("remove {}: {error}", data_dir.display()))?;
    let target = commit_index(&client, &cluster, leader).await?;
    let leader_pid = cluster.pid(leader).ok_or("the leader is not running")?;
    let started = Instant::now();
    let follower_pid = cluster
        .restart(follower)
        .map_err(|error| error.to_string())?;
    result.target_index = target;

    let installing = Arc::new(AtomicBool::new(true));
    let sampler = tokio::spawn(sample_peak_rss(
        [leader_pid, follower_pid],
        Arc::clone(&installing),
    ));
    let load = {
        let client = client.clone();
        let url = cluster.url(leader);
        let installing = Arc::clone(&installing);
        tokio::spawn(
            async move { small_write_load(&client, &url, LoadEnd::When(installing)).await },
        )
    };
    let timeout = Duration::from_secs(args.catch_up_timeout_s.clamp(1, 24 * 3600));
    let outcome = wait_for_applied(&client, &cluster, follower, target, timeout).await;
    let took = started.elapsed();
    installing.store(false, Ordering::Relaxed);
    let peaks = sampler.await.map_err(|error| error.to_string())?;
    let (during, failed) = load.await.map_err(|error| error.to_string())?;
    result.leader_peak_rss_bytes = peaks[0];
    result.follower_peak_rss_bytes = peaks[1];
    result.leader_hwm_bytes = hwm_bytes(leader_pid).unwrap_or(0);
    result.follower_hwm_bytes = hwm_bytes(follower_pid).unwrap_or(0);
    result.writes_during_install = during;
    result.writes_failed_during_install = failed;
    match outcome {
        Ok(applied) => {
            result.caught_up = true;
            result.follower_applied = applied;
            result.catch_up_s = took.as_secs_f64();
            result.catch_up_mb_per_s = (size_mib * MIB) as f64 / 1e6 / took.as_secs_f64();
        }
        Err(reason) => {
            result.note = format!("not caught up: {reason}");
            result.catch_up_s = took.as_secs_f64();
        }
    }
    let follower_metrics = metrics(&client, &cluster, follower)
        .await
        .unwrap_or_default();
    result.follower_snapshot_installs = sample(&follower_metrics, "ha_snapshot_installs_total");
    result.follower_snapshot_bytes_received =
        sample(&follower_metrics, "ha_snapshot_bytes_received_total");
    if result.follower_applied == 0 {
        result.follower_applied =
            sample(&follower_metrics, "ha_applied_index").unwrap_or(0.0) as u64;
    }
    eprintln!(
        "catch-up of {size_mib} MiB: {} in {:.1} s (logs in {logs})",
        if result.caught_up { "done" } else { "NOT done" },
        result.catch_up_s
    );
    Ok(result)
}

fn rss_of_nodes(cluster: &BotCluster) -> Vec<u64> {
    (0..cluster.len())
        .map(|index| {
            cluster
                .pid(index)
                .and_then(|pid| rss_bytes(pid).ok())
                .unwrap_or(0)
        })
        .collect()
}

/// `VmHWM` (peak resident memory of the process's life) in bytes.
fn hwm_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The highest `VmRSS` of each pid, sampled every `RSS_SAMPLE_INTERVAL` while `running`.
async fn sample_peak_rss(pids: [u32; 2], running: Arc<AtomicBool>) -> [u64; 2] {
    let mut peaks = [0u64; 2];
    // Bounded by the catch-up timeout through `running`, and by a count as well.
    for _sample in 0..(24 * 3600 * 50) {
        for (peak, pid) in peaks.iter_mut().zip(pids) {
            if let Ok(rss) = rss_bytes(pid) {
                *peak = (*peak).max(rss);
            }
        }
        if !running.load(Ordering::Relaxed) {
            break;
        }
        tokio::time::sleep(RSS_SAMPLE_INTERVAL).await;
    }
    peaks
}

/// Value `number` of the state: `VALUE_BYTES_MAX` bytes of text, different for each number.
fn value(number: u64) -> String {
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-_";
    let mut state = number.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut text = Vec::with_capacity(VALUE_BYTES_MAX);
    while text.len() < VALUE_BYTES_MAX {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        for byte in state.to_le_bytes() {
            if text.len() < VALUE_BYTES_MAX {
                text.push(alphabet[usize::from(byte) % alphabet.len()]);
            }
        }
    }
    String::from_utf8(text).unwrap_or_default()
}

/// The node that leads now.
async fn current_leader(cluster: &BotCluster) -> Result<usize, String> {
    cluster
        .wait_for_leader(LEADER_TIMEOUT)
        .await
        .map_err(|error| error.to_string())
}

/// Write `size_mib` values of 1 MiB with `writers` concurrent writers, each value retried
/// through whichever node leads.
async fn build_state(
    cluster: &BotCluster,
    client: &reqwest::Client,
    size_mib: u64,
    writers: usize,
) -> Result<(), String> {
    let urls: Vec<String> = (0..cluster.len()).map(|index| cluster.url(index)).collect();
    let leader = current_leader(cluster).await?;
    let mut tasks = Vec::new();
    for writer in 0..writers as u64 {
        let client = client.clone();
        let urls = urls.clone();
        tasks.push(tokio::spawn(async move {
            let mut target = leader;
            for number in (writer..size_mib).step_by(writers) {
                let body = value(number);
                let mut last_error = String::new();
                let mut written = false;
                for attempt in 0..WRITE_ATTEMPTS_MAX {
                    let url = format!("{}/v1/kv/state/{number:06}", urls[target]);
                    match client.put(&url).body(body.clone()).send().await {
                        Ok(response) if response.status().is_success() => {
                            written = true;
                            break;
                        }
                        Ok(response) => {
                            last_error = format!(
                                "{} {}",
                                response.status(),
                                response.text().await.unwrap_or_default()
                            );
                        }
                        Err(error) => last_error = error.to_string(),
                    }
                    target = (target + 1 + attempt as usize) % urls.len();
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                if !written {
                    return Err(format!("value {number}: {last_error}"));
                }
            }
            Ok(())
        }));
    }
    for task in tasks {
        task.await.map_err(|error| error.to_string())??;
    }
    Ok(())
}

/// `GET /v1/metrics` of node `index`.
async fn metrics(client: &reqwest::Client, cluster: &BotCluster, index: usize) -> Option<String> {
    let response = client
        .get(format!("{}/v1/metrics", cluster.url(index)))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.text().await.ok()
}

/// The value of the unlabelled sample `name` in a Prometheus text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The commit index node `index` reports.
async fn commit_index(
    client: &reqwest::Client,
    cluster: &BotCluster,
    index: usize,
) -> Result<u64, String> {
    let text = metrics(client, cluster, index)
        .await
        .ok_or_else(|| format!("{} does not answer /v1/metrics", cluster.id(index)))?;
    sample(&text, "ha_commit_index")
        .map(|commit| commit as u64)
        .ok_or_else(|| format!("{} reports no ha_commit_index", cluster.id(index)))
}

/// Wait until node `index` has applied `target`; its applied index, or why not.
async fn wait_for_applied(
    client: &reqwest::Client,
    cluster: &BotCluster,
    index: usize,
    target: u64,
    timeout: Duration,
) -> Result<u64, String> {
    let deadline = Instant::now() + timeout;
    let mut applied = 0;
    while Instant::now() < deadline {
        if let Some(text) = metrics(client, cluster, index).await
            && let Some(now) = sample(&text, "ha_applied_index")
        {
            applied = now as u64;
            if applied >= target {
                return Ok(applied);
            }
        }
        tokio::time::sleep(PROGRESS_POLL).await;
    }
    Err(format!(
        "{} applied {applied} of {target} within {timeout:?}",
        cluster.id(index)
    ))
}

/// When a small-write load ends.
enum LoadEnd {
    /// After this long.
    After(Duration),
    /// When the flag turns false (bounded by a day).
    When(Arc<AtomicBool>),
}

/// Sequential small `PUT`s to `base` until `end`: the latencies of the acknowledged ones and
/// the count of the others.
async fn small_write_load(
    client: &reqwest::Client,
    base: &str,
    end: LoadEnd,
) -> (LatencySummary, u64) {
    let started = Instant::now();
    let mut micros = Vec::new();
    let mut failed = 0;
    for number in 0u64..10_000_000 {
        let done = match &end {
            LoadEnd::After(duration) => started.elapsed() >= *duration,
            LoadEnd::When(running) => {
                !running.load(Ordering::Relaxed) || started.elapsed() > Duration::from_secs(86_400)
            }
        };
        if done {
            break;
        }
        let url = format!("{base}/v1/kv/load/{}", number % 64);
        let sent = Instant::now();
        match client.put(&url).body(format!("{number}")).send().await {
            Ok(response) if response.status().is_success() => {
                micros.push(sent.elapsed().as_micros() as u64);
            }
            _ => {
                failed += 1;
                // A refused write comes back at once: do not spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    (LatencySummary::from_micros(&mut micros), failed)
}

/// Write `bytes` in `DISK_BLOCK_BYTES` blocks to a file in `directory`, fsync it, and
/// return the rate in MB/s (10^6 bytes); the file is removed.
fn disk_write_speed(directory: &Path, bytes: u64) -> Result<f64, String> {
    use std::io::Write as _;
    let path = directory.join("disk_speed.tmp");
    let mut block = vec![0u8; DISK_BLOCK_BYTES];
    // Not zeros, in case the filesystem compresses or skips them.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for chunk in block.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let bytes = state.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
    let started = Instant::now();
    let mut file =
        std::fs::File::create(&path).map_err(|error| format!("{}: {error}", path.display()))?;
    let mut written = 0u64;
    while written < bytes {
        let length = (bytes - written).min(DISK_BLOCK_BYTES as u64) as usize;
        file.write_all(&block[..length])
            .map_err(|error| format!("{}: {error}", path.display()))?;
        written += length as u64;
    }
    file.sync_all()
        .map_err(|error| format!("{}: {error}", path.display()))?;
    let took = started.elapsed();
    drop(file);
    let _ = std::fs::remove_file(&path);
    Ok(bytes as f64 / 1e6 / took.as_secs_f64().max(1e-6))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

fn optional(value: Option<f64>, scale: f64) -> String {
    value.map_or("n/a".to_string(), |value| format!("{:.1}", value / scale))
}

fn latency(summary: &LatencySummary, failed: u64) -> String {
    if summary.count == 0 {
        return format!("no write acknowledged ({failed} failed)");
    }
    format!(
        "{:.1} / {:.1} / {:.1} ({} writes, {failed} failed)",
        summary.p50_us as f64 / 1e3,
        summary.p99_us as f64 / 1e3,
        summary.max_us as f64 / 1e3,
        summary.count
    )
}

/// The report's tables.
fn markdown(report: &Report) -> String {
    let mut text = String::new();
    text.push_str(&format!(
        "Machine: {}. 3 `bot` nodes on loopback; values of 1 MiB written through the HTTP KV \
         API; a follower killed, its data dir removed, restarted.\n\n",
        report.machine
    ));
    text.push_str("## Catch-up of a wiped follower\n\n");
    text.push_str(
        "| state MiB | leader snapshots / snapshot MiB | catch-up s | MB/s | disk write+fsync MB/s \
         | catch-up / disk | follower installs / MiB received | leader peak RSS MiB | follower \
         peak RSS MiB (VmHWM) |\n|---:|---|---:|---:|---:|---:|---|---:|---:|\n",
    );
    for size in &report.sizes {
        let (seconds, rate, ratio) = if size.caught_up {
            (
                format!("{:.1}", size.catch_up_s),
                format!("{:.1}", size.catch_up_mb_per_s),
                format!("{:.2}", size.catch_up_mb_per_s / size.disk_write_mb_per_s),
            )
        } else {
            (
                format!("not caught up in {:.0}", size.catch_up_s),
                "-".to_string(),
                "-".to_string(),
            )
        };
        text.push_str(&format!(
            "| {} | {} / {} | {seconds} | {rate} | {:.1} | {ratio} | {} / {} | {:.1} | {:.1} ({:.1}) |\n",
            size.state_mib,
            optional(size.leader_snapshots_taken, 1.0),
            optional(size.leader_snapshot_bytes, MIB as f64),
            size.disk_write_mb_per_s,
            optional(size.follower_snapshot_installs, 1.0),
            optional(size.follower_snapshot_bytes_received, MIB as f64),
            mib(size.leader_peak_rss_bytes),
            mib(size.follower_peak_rss_bytes),
            mib(size.follower_hwm_bytes),
        ));
    }
    text.push_str(
        "\n## Leader write latency (sequential small PUTs), ms p50 / p99 / max\n\n| state MiB | \
         no transfer | while a follower catches up |\n|---:|---|---|\n",
    );
    for size in &report.sizes {
        text.push_str(&format!(
            "| {} | {} | {} |\n",
            size.state_mib,
            latency(&size.writes_idle, size.writes_failed_idle),
            latency(
                &size.writes_during_install,
                size.writes_failed_during_install
            ),
        ));
    }
    text.push_str(&format!(
        "\n## Resident memory per node vs user data (target: at most {MEMORY_RATIO_TARGET}x \
         the data plus the node's base with no data)\n\n| user data MiB | n1 / n2 / n3 RSS MiB | \
         largest RSS / data | (largest RSS - base) / data | within target |\n|---:|---|---:|---:|---|\n"
    ));
    if let Some(first) = report.sizes.first() {
        let rss: Vec<String> = first
            .rss_empty_bytes
            .iter()
            .map(|bytes| format!("{:.1}", mib(*bytes)))
            .collect();
        text.push_str(&format!("| 0 | {} | - | - | - |\n", rss.join(" / ")));
    }
    for size in &report.sizes {
        let data = (size.state_mib * MIB) as f64;
        let rss: Vec<String> = size
            .rss_with_state_bytes
            .iter()
            .map(|bytes| format!("{:.1}", mib(*bytes)))
            .collect();
        let largest = size.rss_with_state_bytes.iter().copied().max().unwrap_or(0);
        let over_base = size
            .rss_with_state_bytes
            .iter()
            .zip(&size.rss_empty_bytes)
            .map(|(with, empty)| with.saturating_sub(*empty))
            .max()
            .unwrap_or(0);
        let within = size
            .rss_with_state_bytes
            .iter()
            .zip(&size.rss_empty_bytes)
            .all(|(with, empty)| *with as f64 <= MEMORY_RATIO_TARGET * data + *empty as f64);
        text.push_str(&format!(
            "| {} | {} | {:.2} | {:.2} | {} |\n",
            size.state_mib,
            rss.join(" / "),
            largest as f64 / data,
            over_base as f64 / data,
            if within { "yes" } else { "no" }
        ));
    }
    let notes: Vec<String> = report
        .sizes
        .iter()
        .filter(|size| !size.note.is_empty())
        .map(|size| format!("- {} MiB: {}", size.state_mib, size.note))
        .collect();
    if !notes.is_empty() {
        text.push_str(&format!("\nNotes:\n{}\n", notes.join("\n")));
    }
    text
}
