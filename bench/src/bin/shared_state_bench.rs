//! Local latency of the multi-master shared map (issue 15): `put`, `get` and `increment`
//! through `node.shared_state()` in the benchmark's own process, with the map's log synced on
//! every write (`fsync = "always"`, the default) and never (`fsync = "never"`).
//!
//! `nice -n 19 cargo run --release -p ha-bench --bin shared_state_bench -- --dir DIR`
//!
//! A one-node `ha::Node` with a data dir runs in this process; each operation is called one
//! at a time from one task and timed from the call to its answer (nanoseconds), so the figures
//! are what an embedding service pays on its own request path. The map answers locally: a
//! peer would receive the write later, in the background (pushes every 20 ms, anti-entropy every
//! second), so a cluster does not change these figures, only the CPU left for them.
//!
//! Per fsync policy: `--keys` keys are loaded first (not measured), then `--samples` puts of
//! those keys (`--value-bytes` each), `--samples` gets of random loaded keys and `--samples`
//! increments of `--counters` counters; with `fsync = "always"` puts and increments are
//! measured `--synced-samples` times (each waits for a disk sync). Printed: p50, p90, p99 and
//! max in microseconds, and operations per second, as Markdown rows. Every loop is bounded by
//! the options.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use ha::{Config, Node, NodeId};
use ha_core::SharedStateFsync;

/// Command-line options.
#[derive(Parser, Debug)]
#[command(about = "Local put/get/increment latency of the shared map, fsync always and never")]
struct Options {
    /// Where the node's data dir goes (a temporary dir by default: put it on the disk you
    /// mean to measure).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keys loaded before measuring, and the keys puts and gets use.
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 64)]
    value_bytes: usize,
    /// Counters the increments spread over.
    #[arg(long, default_value_t = 100)]
    counters: u64,
    /// Measured operations of each kind without fsync.
    #[arg(long, default_value_t = 100_000)]
    samples: usize,
    /// Measured puts and increments with `fsync = "always"` (each waits for the disk).
    #[arg(long, default_value_t = 2_000)]
    synced_samples: usize,
    /// Stop measuring one kind after this many seconds, whatever the samples.
    #[arg(long, default_value_t = 30)]
    budget_secs: u64,
}

/// Percentiles of a set of latencies in nanoseconds (the map's answers take microseconds, so
/// whole microseconds would be too coarse).
struct Nanos {
    count: usize,
    p50: u64,
    p90: u64,
    p99: u64,
    max: u64,
    per_second: f64,
}

impl Nanos {
    fn of(samples: &mut [u64], took: Duration) -> Self {
        samples.sort_unstable();
        let at = |fraction: f64| {
            if samples.is_empty() {
                return 0;
            }
            let position = ((samples.len() - 1) as f64 * fraction).round() as usize;
            samples[position.min(samples.len() - 1)]
        };
        Self {
            count: samples.len(),
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: samples.last().copied().unwrap_or(0),
            per_second: samples.len() as f64 / took.as_secs_f64().max(1e-9),
        }
    }

    fn row(&self, fsync: &str, operation: &str) -> String {
        let us = |nanos: u64| nanos as f64 / 1_000.0;
        format!(
            "| {fsync} | {operation} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} |",
            self.count,
            us(self.p50),
            us(self.p90),
            us(self.p99),
            us(self.max),
            self.per_second
        )
    }
}

fn nanos(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// A small, seeded, dependency-free choice of keys (xorshift64*): the keys read are spread
/// over the whole map, not the last ones written.
struct Choice(u64);

impl Choice {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound.max(1)
    }
}

fn key(number: u64) -> String {
    format!("key-{number:08}")
}

async fn start_node(data_dir: &Path, fsync: SharedStateFsync) -> Node<()> {
    let mut config = Config::single(
        NodeId::new("n1").expect("valid"),
        "127.0.0.1:0".parse().expect("valid"),
    );
    config.data_dir = Some(data_dir.to_path_buf());
    config.shared_state.fsync = fsync;
    Node::builder(config).start().await.expect("starts")
}

async fn measure(options: &Options, dir: &Path, fsync: SharedStateFsync) -> Vec<String> {
    let data_dir = dir.join(format!("node-{}", fsync.as_str()));
    let node = start_node(&data_dir, fsync).await;
    let state = node.shared_state();
    let value = vec![b'v'; options.value_bytes];
    let budget = Duration::from_secs(options.budget_secs);
    let synced = matches!(fsync, SharedStateFsync::Always);
    let write_samples = if synced {
        options.synced_samples
    } else {
        options.samples
    };
    let started = Instant::now();
    for number in 0..options.keys {
        state
            .put(&key(number), value.clone())
            .await
            .expect("load put");
    }
    eprintln!(
        "fsync {}: {} keys loaded in {:.2} s",
        fsync.as_str(),
        options.keys,
        started.elapsed().as_secs_f64()
    );
    let mut rows = Vec::new();
    let mut choice = Choice(0x9e37_79b9_7f4a_7c15);

    let mut samples = Vec::with_capacity(write_samples);
    let phase = Instant::now();
    for _ in 0..write_samples {
        if phase.elapsed() > budget {
            break;
        }
        let name = key(choice.below(options.keys));
        let started = Instant::now();
        state.put(&name, value.clone()).await.expect("put");
        samples.push(nanos(started));
    }
    rows.push(Nanos::of(&mut samples, phase.elapsed()).row(fsync.as_str(), "put"));

    let mut samples = Vec::with_capacity(options.samples);
    let phase = Instant::now();
    for _ in 0..options.samples {
        if phase.elapsed() > budget {
            break;
        }
        let name = key(choice.below(options.keys));
        let started = Instant::now();
        let held = state.get(&name);
        samples.push(nanos(started));
        assert!(held.is_some(), "{name} was loaded");
    }
    rows.push(Nanos::of(&mut samples, phase.elapsed()).row(fsync.as_str(), "get"));

    let mut samples = Vec::with_capacity(write_samples);
    let phase = Instant::now();
    for _ in 0..write_samples {
        if phase.elapsed() > budget {
            break;
        }
        let name = format!("counter-{:04}", choice.below(options.counters));
        let started = Instant::now();
        state.increment(&name, 1).await.expect("increment");
        samples.push(nanos(started));
    }
    rows.push(Nanos::of(&mut samples, phase.elapsed()).row(fsync.as_str(), "increment"));

    node.shutdown().await;
    let _ = std::fs::remove_dir_all(&data_dir);
    rows
}

#[tokio::main]
async fn main() {
    let options = Options::parse();
    let temporary = tempfile::tempdir().expect("temporary dir");
    let dir = options
        .dir
        .clone()
        .unwrap_or_else(|| temporary.path().to_path_buf());
    std::fs::create_dir_all(&dir).expect("the data dir's parent");
    let machine = ha_bench::MachineDescription::read();
    println!(
        "shared map, one node in process, {} keys of {} bytes, {} profile; {machine}\n",
        options.keys,
        options.value_bytes,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!("| fsync | operation | samples | p50 µs | p90 µs | p99 µs | max µs | ops/s |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for fsync in [SharedStateFsync::Never, SharedStateFsync::Always] {
        for row in measure(&options, &dir, fsync).await {
            println!("{row}");
        }
    }
}
