//! The side-by-side harness: runs every comparison benchmark in one go on this machine and
//! writes `bench/RESULTS.md` (with the machine's description and each benchmark's section),
//! `target/bench/compare.json` (every figure) and copies the SVG plots to `bench/results/`.
//!
//! Run it through `bench/compare.sh`, which installs the peers (etcd, Serf) from the system's
//! packages and builds what it needs first:
//!
//! ```text
//! bench/compare.sh            # everything, defaults (about 11 minutes on 2 CPUs once built)
//! bench/compare.sh --quick    # shorter runs, for checking the harness itself
//! ```
//!
//! Each benchmark is a sibling binary (`compare_etcd`, `compare_native`, `compare_gossip`,
//! `compare_scaling`, `compare_security`) that writes `target/bench/<name>.json` and a Markdown fragment
//! `target/bench/<name>.md`; a failed or missing one is reported in the results rather than
//! hiding the others. With `--only`, the benchmarks not run keep the figures of their last run
//! (their files in `target/bench/`), and the report says so. When `compare_etcd` (HTTP paths) and `compare_native` (ha's native client,
//! etcd's gRPC client) both ran, the throughput plot shows all four write paths.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use ha_bench::{DiskSyncProbe, MachineDescription};
use serde::Serialize;

mod compare {
    pub mod issue_targets;
}

use compare::issue_targets::{self, RunFigures};

/// The benchmarks, in the order they run.
const BENCHMARKS: [&str; 5] = [
    "compare_etcd",
    "compare_native",
    "compare_gossip",
    "compare_scaling",
    "compare_security",
];

/// Command-line options.
#[derive(Parser, Debug)]
#[command(about = "Run every side-by-side benchmark and write bench/RESULTS.md")]
struct Options {
    /// Shorter runs and fewer trials (figures not to be quoted).
    #[arg(long)]
    quick: bool,
    /// Run only these benchmarks (comma separated); the others keep their last run's figures.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Run nothing: write the report again from the last run's files in `target/bench/`
    /// (after a change to the report itself, such as the targets).
    #[arg(long)]
    render_only: bool,
    /// Where the report goes.
    #[arg(long, default_value = "bench/RESULTS.md")]
    report: PathBuf,
    /// Longest time one benchmark may run, in seconds.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
}

/// How one benchmark went.
#[derive(Debug, Serialize)]
struct Outcome {
    name: String,
    ok: bool,
    seconds: f64,
    detail: String,
    figures: Option<serde_json::Value>,
}

fn main() {
    let options = Options::parse();
    let executable = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("compare"));
    let directory = executable
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let output = PathBuf::from("target/bench");
    if let Err(error) = std::fs::create_dir_all(&output) {
        eprintln!("compare: cannot create {}: {error}", output.display());
        std::process::exit(1);
    }
    let machine = MachineDescription::read();
    // The disk is timed in the run whose figures it explains: re-rendering keeps the last
    // run's probe (a probe taken now, on a machine doing something else, would not say what
    // the benchmarks met).
    let disk_sync = if options.render_only {
        earlier_disk_sync(&output)
    } else {
        match DiskSyncProbe::measure(&output) {
            Ok(probe) => Some(probe),
            Err(error) => {
                eprintln!("compare: cannot probe the disk's fdatasync: {error}");
                None
            }
        }
    };
    let mut outcomes = Vec::new();
    for name in BENCHMARKS {
        let skipped = !options.only.is_empty() && !options.only.iter().any(|only| only == name);
        if skipped || options.render_only {
            if let Some(earlier) = earlier_outcome(name, &output) {
                outcomes.push(earlier);
            }
            continue;
        }
        println!("== {name}");
        let started = Instant::now();
        let mut command = Command::new(directory.join(name));
        if options.quick {
            command.args(quick_arguments(name));
        }
        let result = run_bounded(&mut command, Duration::from_secs(options.timeout_secs));
        let seconds = started.elapsed().as_secs_f64();
        let figures = std::fs::read_to_string(output.join(format!("{name}.json")))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok());
        let (ok, detail) = match result {
            Ok(status) if status.success() => (true, "ok".to_string()),
            Ok(status) => (false, format!("exited with {status}")),
            Err(error) => (false, error),
        };
        println!("== {name}: {detail} in {seconds:.0} s");
        outcomes.push(Outcome {
            name: name.to_string(),
            ok,
            seconds,
            detail,
            figures,
        });
    }
    if let Err(error) = plot_all_write_paths(&outcomes, &output) {
        eprintln!("compare: {error}");
    }
    let report = render(&machine, disk_sync.as_ref(), &options, &outcomes, &output);
    if let Err(error) = std::fs::write(&options.report, report) {
        eprintln!(
            "compare: cannot write {}: {error}",
            options.report.display()
        );
        std::process::exit(1);
    }
    // Next to the report, where its links point: bench/results/ for bench/RESULTS.md.
    let plots = options
        .report
        .parent()
        .unwrap_or(Path::new("."))
        .join("results");
    copy_plots(&output, &plots);
    let json = serde_json::json!({
        "machine": machine,
        "disk_sync": disk_sync,
        "benchmarks": outcomes,
    });
    let _ = std::fs::write(
        output.join("compare.json"),
        serde_json::to_string_pretty(&json).unwrap_or_default(),
    );
    println!("report: {}", options.report.display());
    if outcomes.iter().any(|outcome| !outcome.ok) {
        std::process::exit(1);
    }
}

/// Shorter runs for `--quick`: enough to check the harness, not to quote.
fn quick_arguments(name: &str) -> &'static [&'static str] {
    match name {
        "compare_etcd" => &[
            "--duration-s",
            "1",
            "--lock-iterations",
            "50",
            "--lock-contended-s",
            "1",
            "--trials",
            "2",
        ],
        "compare_native" => &["--duration-s", "1"],
        "compare_gossip" => &["--trials", "2"],
        "compare_scaling" => &[
            "--duration-secs",
            "1",
            "--members",
            "10,100",
            "--warm-members",
            "100",
        ],
        "compare_security" => &["--quick"],
        _ => &[],
    }
}

/// The disk probe of the last run, from its `compare.json` (`None` when it had none).
fn earlier_disk_sync(output: &Path) -> Option<DiskSyncProbe> {
    let text = std::fs::read_to_string(output.join("compare.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    serde_json::from_value(json.get("disk_sync")?.clone()).ok()
}

/// A benchmark not run this time, from the files its last run left in `output`: `None` when
/// there are none.
fn earlier_outcome(name: &str, output: &Path) -> Option<Outcome> {
    let path = output.join(format!("{name}.json"));
    let figures: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).ok()?).ok()?;
    let when = std::fs::metadata(&path)
        .and_then(|metadata| metadata.modified())
        .map_or_else(
            |_| "an earlier run".to_string(),
            |modified| format!("the run of {}", httpdate::fmt_http_date(modified)),
        );
    Some(Outcome {
        name: name.to_string(),
        ok: true,
        seconds: 0.0,
        detail: format!("not run now: figures from {when}"),
        figures: Some(figures),
    })
}

/// Run `command` (stdout and stderr inherited), killing it after `timeout`.
fn run_bounded(
    command: &mut Command,
    timeout: Duration,
) -> Result<std::process::ExitStatus, String> {
    let mut child = command
        .spawn()
        .map_err(|error| format!("cannot start (build it with bench/compare.sh): {error}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("killed after {} s", timeout.as_secs()));
            }
            Err(error) => return Err(error.to_string()),
        }
    }
}

/// The report: header, machine, each benchmark's fragment (or why it is missing).
fn render(
    machine: &MachineDescription,
    disk_sync: Option<&DiskSyncProbe>,
    options: &Options,
    outcomes: &[Outcome],
    output: &Path,
) -> String {
    let mut text = String::from("# ha side by side with etcd and Serf\n\n");
    text.push_str(
        "Produced by `bench/compare.sh` (the harness `bench/src/bin/compare.rs`): every system on \
         loopback on the same machine in the same run, driven by the same load generator. \
         Ratios are ha / peer: below 1 is better for ha on times and memory, above 1 on \
         throughput. Figures from one run; see the JSON in `target/bench/` for every sample \
         summary.\n\n",
    );
    text.push_str(&format!(
        "Machine: {machine}. Mode: {}.\n\n",
        if options.quick { "quick" } else { "full" }
    ));
    if let Some(probe) = disk_sync {
        text.push_str(&format!(
            "Disk: a {} KiB append + `fdatasync` takes p50 {:.2} ms, p99 {:.2} ms ({} samples, in \
             `target/bench/`): the floor under a durable write, and with 64 writes in flight \
             (one sync each at least) a ceiling of about {:.0} writes/s.\n\n",
            probe.append_bytes / 1_024,
            probe.latency.p50_us as f64 / 1e3,
            probe.latency.p99_us as f64 / 1e3,
            probe.latency.count,
            probe.writes_per_second_ceiling(64)
        ));
    }
    text.push_str(
        "Plots: ![write latency across a leader kill](results/failover_latency.svg) \
         ![throughput vs clients](results/throughput_vs_clients.svg)\n\n",
    );
    text.push_str("| benchmark | outcome | seconds |\n|---|---|---|\n");
    for outcome in outcomes {
        text.push_str(&format!(
            "| {} | {} | {:.0} |\n",
            outcome.name, outcome.detail, outcome.seconds
        ));
    }
    text.push('\n');
    for outcome in outcomes {
        match std::fs::read_to_string(output.join(format!("{}.md", outcome.name))) {
            Ok(fragment) => {
                text.push_str(fragment.trim_end());
                text.push_str("\n\n");
            }
            Err(_) => text.push_str(&format!(
                "## {}\n\nNo results: {}.\n\n",
                outcome.name, outcome.detail
            )),
        }
    }
    let figures_of = |name: &str| successful_figures(outcomes, name);
    let targets = issue_targets::judge(&RunFigures {
        http: figures_of("compare_etcd"),
        native: figures_of("compare_native"),
        gossip: figures_of("compare_gossip"),
        scaling: figures_of("compare_scaling"),
        disk_sync,
    });
    text.push_str(&issue_targets::markdown(&targets));
    text
}

/// The figures of benchmark `name`, when it ran (or was reused) successfully.
fn successful_figures<'a>(outcomes: &'a [Outcome], name: &str) -> Option<&'a serde_json::Value> {
    outcomes
        .iter()
        .find(|outcome| outcome.name == name && outcome.ok)
        .and_then(|outcome| outcome.figures.as_ref())
}

/// `(clients, writes per second)` of each run in the JSON array at `pointer` of `figures`.
fn throughput_points(figures: &serde_json::Value, pointer: &str) -> Vec<(usize, f64)> {
    figures
        .pointer(pointer)
        .and_then(serde_json::Value::as_array)
        .map(|runs| {
            runs.iter()
                .filter_map(|run| {
                    let clients = run.get("clients")?.as_u64()?;
                    let rate = run.get("writes_per_second")?.as_f64()?;
                    Some((usize::try_from(clients).ok()?, rate))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Redraw `throughput_vs_clients.svg` with every write path measured in this run: the HTTP
/// paths of `compare_etcd` and the native and gRPC paths of `compare_native`. Does nothing
/// unless both ran successfully (then `compare_etcd`'s own HTTP-only plot stays).
///
/// # Errors
/// The plot error, as text.
fn plot_all_write_paths(outcomes: &[Outcome], output: &Path) -> Result<(), String> {
    let figures_of = |name: &str| successful_figures(outcomes, name);
    let (Some(http), Some(native)) = (figures_of("compare_etcd"), figures_of("compare_native"))
    else {
        return Ok(());
    };
    let series: Vec<ha_bench::ThroughputSeries> = [
        (
            "ha HTTP (PUT /v1/kv)",
            throughput_points(http, "/writes/ha"),
        ),
        (
            "etcd HTTP (POST /v3/kv/put)",
            throughput_points(http, "/writes/etcd"),
        ),
        (
            "ha native (node.kv(), in-process leader)",
            throughput_points(native, "/ha"),
        ),
        (
            "etcd gRPC (etcd-client KV.Put)",
            throughput_points(native, "/etcd"),
        ),
    ]
    .into_iter()
    .filter(|(_, points)| !points.is_empty())
    .map(|(name, points)| (name.to_string(), points))
    .collect();
    ha_bench::throughput_vs_clients(
        &output.join("throughput_vs_clients.svg"),
        "QUORUM writes, 128-byte values, 3 members, fsync on",
        &series,
    )
}

/// Copy the SVG plots next to the report, so the committed report can link them.
fn copy_plots(from: &Path, to: &Path) {
    let Ok(entries) = std::fs::read_dir(from) else {
        return;
    };
    if std::fs::create_dir_all(to).is_err() {
        return;
    }
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|extension| extension == "svg")
            && let Some(name) = path.file_name()
            && let Err(error) = std::fs::copy(&path, to.join(name))
        {
            eprintln!("compare: cannot copy {}: {error}", path.display());
        }
    }
}
