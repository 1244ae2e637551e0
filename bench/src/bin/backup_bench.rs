//! What a backup costs (issue 14, item 2): the time and size of a backup file against the size
//! of the state, and the write latency of a node while backups are being taken.
//!
//! `cargo run -p ha-bench --bin backup_bench [--release] -- --keys 10000,100000,1000000`
//! (the profile is printed with the figures: times depend on it).
//!
//! **Save time and size.** For each key count, that many puts of distinct keys with
//! `--value-bytes` values go through `WithLocks::apply` (as the applier applies them, no log),
//! then the backup is taken as a node takes it: `Applier::snapshot_source` (the copy, in one
//! apply step: the only time writes wait), then the stream written through SHA-256 into a
//! backup file in `--dir` and synced (`write_backup_from_source`, the code `GET /v1/snapshot`
//! and the scheduler run), then read back and verified whole (`BackupHeader::verify_file`).
//!
//! **Writes while backups run.** A one-voter node with a data dir (WAL, fsync on each group
//! commit) holds `--load-keys` keys; `--writers` clients put keys one write at a time each for
//! `--phase-s` seconds per phase, in alternating phases without and with backups. In a "with"
//! phase a task takes backups back to back (`Node::write_backup_to`, the scheduled path: export,
//! write, fsync, rename, verify), the worst case of a scheduled backup. Reported per phase:
//! writes, p50 and p99 of the writes' latency, backups taken and their mean duration.
//!
//! Every loop is bounded by the options.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use ha::backup_file::BackupHeader;
use ha::backup_schedule::file_name;
use ha::backup_writer::write_backup_from_source;
use ha::{Config, Consistency, Node, NodeId};
use ha_bench::LatencySummary;
use ha_core::{LogIndex, StateMachine, Term};
use ha_lock::{Command, LockCommand, WithLocks};
use ha_replicate::replica::Applier;

/// Command-line options.
#[derive(Parser, Debug)]
#[command(about = "Backup save time and size vs state size; write latency while backups run")]
struct Options {
    /// Key counts for the save-time table, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    keys: Vec<u64>,
    /// Bytes per value.
    #[arg(long, default_value_t = 128)]
    value_bytes: usize,
    /// Where backup files and the node's data dir go (a temporary dir by default).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keys the node holds before the latency phases.
    #[arg(long, default_value_t = 50_000)]
    load_keys: u64,
    /// Concurrent writers in the latency phases.
    #[arg(long, default_value_t = 16)]
    writers: usize,
    /// Seconds per latency phase.
    #[arg(long, default_value_t = 5)]
    phase_s: u64,
    /// Pairs of phases (without, with).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Skip the latency phases.
    #[arg(long)]
    no_latency: bool,
}

fn put(number: u64, value_bytes: usize) -> Command<()> {
    Command::Lock(LockCommand::Put {
        key: format!("key-{number:010}"),
        value: vec![(number % 251) as u8; value_bytes],
        expected_version: None,
        lease: None,
    })
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

fn save_row(keys: u64, value_bytes: usize, dir: &Path) {
    let mut machine = WithLocks::new(());
    for number in 0..keys {
        let _ = machine.apply(LogIndex(number + 1), put(number, value_bytes));
    }
    let applier = Applier::new(machine);
    let started = Instant::now();
    let source = applier.snapshot_source().expect("a snapshot source");
    let capture = started.elapsed();
    let path = dir.join(format!("bench-{keys}.habackup"));
    let started = Instant::now();
    let mut file = std::fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .expect("create the backup file");
    let header = write_backup_from_source(
        Box::new(source),
        (LogIndex(keys), Term(1)),
        "bench",
        0,
        &mut file,
    )
    .expect("write the backup");
    file.sync_all().expect("sync");
    let write = started.elapsed();
    let started = Instant::now();
    let verified = BackupHeader::verify_file(&path, Some("bench")).expect("verifies");
    assert_eq!(verified, header, "the file read back is the one written");
    let verify = started.elapsed();
    let bytes = std::fs::metadata(&path).map_or(0, |meta| meta.len());
    println!(
        "| {keys} | {:.1} | {:.3} | {:.0} | {:.0} | {:.0} | {:.1} |",
        bytes as f64 / 1_048_576.0,
        ms(capture),
        ms(write),
        ms(verify),
        ms(capture + write + verify),
        bytes as f64 / 1_048_576.0 / (write + verify).as_secs_f64().max(1e-9),
    );
    let _ = std::fs::remove_file(&path);
}

struct Phase {
    with_backups: bool,
    latency: LatencySummary,
    backups: u64,
    backup_ms_mean: f64,
}

async fn write_phase(
    node: &Node<()>,
    writers: usize,
    seconds: u64,
    backup_dir: Option<&Path>,
    first_key: u64,
) -> Phase {
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let client = node.kv();
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut number = first_key + writer as u64 * 1_000_000;
            while Instant::now() < deadline {
                let started = Instant::now();
                client
                    .put(
                        format!("key-{number:010}"),
                        vec![7u8; 128],
                        Consistency::Quorum,
                    )
                    .await
                    .expect("put");
                samples.push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
                number += 1;
            }
            samples
        }));
    }
    let backups = backup_dir.map(|dir| {
        let node = node.clone();
        let dir = dir.to_path_buf();
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut taken = Vec::new();
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                let started = Instant::now();
                let (name, _) = node.write_backup_to(&dir, file_name).await.expect("backup");
                taken.push(started.elapsed());
                let _ = std::fs::remove_file(dir.join(name));
            }
            taken
        })
    });
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await.expect("writer"));
    }
    stop.store(true, Ordering::SeqCst);
    let taken = match backups {
        Some(task) => task.await.expect("backups"),
        None => Vec::new(),
    };
    Phase {
        with_backups: backup_dir.is_some(),
        latency: LatencySummary::from_micros(&mut samples),
        backups: taken.len() as u64,
        backup_ms_mean: if taken.is_empty() {
            0.0
        } else {
            taken.iter().map(|taken| ms(*taken)).sum::<f64>() / taken.len() as f64
        },
    }
}

async fn latency_rows(options: &Options, dir: &Path) {
    let data = dir.join("node");
    let backups = dir.join("backups");
    std::fs::create_dir_all(&backups).expect("backup dir");
    let mut config = Config::single(
        NodeId::new("n1").expect("valid"),
        "127.0.0.1:0".parse().expect("valid"),
    );
    config.data_dir = Some(data);
    let node = Node::builder(config)
        .request_timeout(Duration::from_secs(30))
        .start()
        .await
        .expect("starts");
    let mut roles = node.watch_role();
    tokio::time::timeout(
        Duration::from_secs(30),
        roles.wait_for(|role| role.leader.is_some()),
    )
    .await
    .expect("leads within 30 s")
    .expect("running");
    // Load, 64 writers at a time.
    let started = Instant::now();
    let per_writer = options.load_keys.div_ceil(64);
    let mut tasks = Vec::new();
    for writer in 0..64u64 {
        let client = node.kv();
        let value_bytes = options.value_bytes;
        tasks.push(tokio::spawn(async move {
            for number in writer * per_writer..(writer + 1) * per_writer {
                client
                    .put(
                        format!("key-{number:010}"),
                        vec![(number % 251) as u8; value_bytes],
                        Consistency::Quorum,
                    )
                    .await
                    .expect("put");
            }
        }));
    }
    for task in tasks {
        task.await.expect("loader");
    }
    println!(
        "\nNode loaded with {} keys of {} bytes in {:.1} s.\n",
        per_writer * 64,
        options.value_bytes,
        started.elapsed().as_secs_f64()
    );
    println!(
        "| phase | backups | writes | p50 ms | p99 ms | max ms | backups taken | mean backup ms |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    let mut next_key = 1_000_000_000;
    for round in 0..options.rounds {
        for with_backups in [false, true] {
            let phase = write_phase(
                &node,
                options.writers,
                options.phase_s,
                with_backups.then_some(backups.as_path()),
                next_key,
            )
            .await;
            next_key += 100_000_000;
            println!(
                "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {} | {:.0} |",
                round + 1,
                if phase.with_backups {
                    "back to back"
                } else {
                    "none"
                },
                phase.latency.count,
                phase.latency.p50_us as f64 / 1_000.0,
                phase.latency.p99_us as f64 / 1_000.0,
                phase.latency.max_us as f64 / 1_000.0,
                phase.backups,
                phase.backup_ms_mean,
            );
        }
    }
    node.shutdown().await;
}

fn main() {
    let options = Options::parse();
    let temporary = tempfile::tempdir().expect("temp dir");
    let dir = options
        .dir
        .clone()
        .unwrap_or_else(|| temporary.path().to_path_buf());
    std::fs::create_dir_all(&dir).expect("dir");
    let profile = if cfg!(debug_assertions) {
        "dev (debug assertions on; dependencies at opt-level 2)"
    } else {
        "release"
    };
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    println!("Profile: {profile}. CPUs: {cpus}. Dir: {}.", dir.display());
    println!(
        "\n| keys | backup MiB | copy (writes wait) ms | write + SHA-256 + fsync ms | verify ms | total ms | MiB/s write+verify |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for keys in &options.keys {
        save_row(*keys, options.value_bytes, &dir);
    }
    if !options.no_latency {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(latency_rows(&options, &dir));
    }
}
