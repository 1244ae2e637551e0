//! What the replicated KV store holds in memory per key and per byte of value, and what taking,
//! writing and installing a snapshot of it costs (issue 18, "memory proportional to the
//! data").
//!
//! `cargo run -p ha-bench --bin kv_memory_bench` (the dev profile is enough: heap bytes do not
//! depend on optimisation; times do, and are labelled with the profile).
//!
//! For each value size, `keys` puts of distinct keys go through `WithLocks::apply` (as the
//! applier applies them), under a counting global allocator. Reported:
//!
//! - **held**: the heap peak while inserting, from an empty machine. The table only grows, so
//!   this is what it holds at the end plus one command in flight (its key and value, and the
//!   value's `Arc` copy): at most two values more than the table holds.
//! - **per key**: `(held - keys x value bytes) / keys`, the overhead of a key beyond its value
//!   (the map node, the entry, the key string, its change record and that record's key).
//! - **snapshot**: the heap peak above `held` while `snapshot_source` takes its copy and
//!   `write_to` streams it to `std::io::sink()`, the time each took, and the bytes written.
//! - **writes during a snapshot**: the heap peak above `held` while 1,000 keys are overwritten
//!   with a pending snapshot copy (persistent maps copy the nodes a write touches: the price of
//!   not stopping writes), less the 1,000 new values themselves.
//! - **restore**: the heap peak of `restore_from` reading the stream from memory (the stream
//!   itself not counted), against `held`.
//!
//! Then a table at the lock limits (16,384 leases, 65,536 locks, `--limit-keys` keys): how long
//! `snapshot_source` takes (the copy is O(1) whatever the size).
//!
//! Every loop is bounded by the options.

use std::alloc::System;
use std::io::Write;
use std::time::{Duration, Instant};

use clap::Parser;
use ha_core::{LogIndex, StateMachine};
use ha_lock::{Command, LEASES_MAX, LOCKS_HELD_MAX, LeaseId, LockCommand, SessionId, WithLocks};
use peakmem_alloc::{INSTRUMENTED_SYSTEM, PeakMemAlloc, PeakMemAllocTrait};

#[global_allocator]
static ALLOCATOR: &PeakMemAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Command-line options.
#[derive(Parser, Debug)]
#[command(about = "Heap bytes per key and per value byte of the replicated KV store")]
struct Options {
    /// Runs as `keys:value_bytes`, comma separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100000:0,300000:0,100000:100,100000:1000,10000:10000,100:1048576"
    )]
    runs: Vec<String>,
    /// Keys in the table at the lock limits.
    #[arg(long, default_value_t = 100_000)]
    limit_keys: u64,
}

/// A sink that counts what it is given.
#[derive(Default)]
struct CountingSink {
    bytes: u64,
}

impl Write for CountingSink {
    fn write(&mut self, buffer: &[u8]) -> std::io::Result<usize> {
        self.bytes += buffer.len() as u64;
        std::io::sink().write(buffer)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Row {
    keys: u64,
    value_bytes: u64,
    held_bytes: usize,
    snapshot_peak_bytes: usize,
    take: Duration,
    write: Duration,
    written_bytes: u64,
    writes_during_snapshot_bytes: usize,
    restore_peak_bytes: usize,
    restore: Duration,
}

fn key(number: u64) -> String {
    format!("key/{number:010}")
}

fn put(number: u64, value_bytes: u64) -> Command<()> {
    Command::Lock(LockCommand::Put {
        key: key(number),
        value: vec![(number % 251) as u8; value_bytes as usize],
        expected_version: None,
        lease: None,
    })
}

fn measure(keys: u64, value_bytes: u64) -> Row {
    ALLOCATOR.reset_peak_memory();
    let mut machine = WithLocks::new(());
    for number in 0..keys {
        let _ = machine.apply(LogIndex(number + 1), put(number, value_bytes));
    }
    let held_bytes = ALLOCATOR.get_peak_memory();

    ALLOCATOR.reset_peak_memory();
    let started = Instant::now();
    let source = machine.snapshot_source().expect("a snapshot source");
    let take = started.elapsed();
    let mut sink = CountingSink::default();
    let started = Instant::now();
    source.write_to(&mut sink).expect("writes");
    let write = started.elapsed();
    let snapshot_peak_bytes = ALLOCATOR.get_peak_memory();

    let overwrites = keys.min(1_000);
    ALLOCATOR.reset_peak_memory();
    let source = machine.snapshot_source().expect("a snapshot source");
    for number in 0..overwrites {
        let _ = machine.apply(LogIndex(keys + 1 + number), put(number, value_bytes));
    }
    let writes_peak_bytes = ALLOCATOR.get_peak_memory();
    drop(source);
    let new_values_bytes = (overwrites * value_bytes) as usize;
    let writes_during_snapshot_bytes = writes_peak_bytes.saturating_sub(new_values_bytes);

    let mut stream = Vec::new();
    machine
        .snapshot_source()
        .expect("a snapshot source")
        .write_to(&mut stream)
        .expect("writes");
    drop(machine);
    ALLOCATOR.reset_peak_memory();
    let mut restored = WithLocks::new(());
    let started = Instant::now();
    restored.restore_from(&mut &stream[..]).expect("restores");
    let restore = started.elapsed();
    let restore_peak_bytes = ALLOCATOR.get_peak_memory();
    drop(restored);

    Row {
        keys,
        value_bytes,
        held_bytes,
        snapshot_peak_bytes,
        take,
        write,
        written_bytes: sink.bytes,
        writes_during_snapshot_bytes,
        restore_peak_bytes,
        restore,
    }
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A table with the most leases and locks the limits allow, and `keys` small keys.
fn at_the_limits(keys: u64) {
    let mut machine = WithLocks::new(());
    let mut index = 0u64;
    let mut next = || {
        index += 1;
        LogIndex(index)
    };
    let mut leases = Vec::new();
    for session in (0..LEASES_MAX as u64).map(SessionId) {
        let at = next();
        let _ = machine.apply(
            at,
            Command::Lock(LockCommand::LeaseGrant {
                ttl_ms: 60_000,
                session,
            }),
        );
        leases.push((session, LeaseId::from(at)));
    }
    for number in 0..LOCKS_HELD_MAX as u64 {
        let (session, lease) = leases[(number as usize) % leases.len()];
        let _ = machine.apply(
            next(),
            Command::Lock(LockCommand::Acquire {
                name: format!("lock/{number:08}"),
                session,
                lease,
                wait: false,
            }),
        );
    }
    for number in 0..keys {
        let _ = machine.apply(next(), put(number, 8));
    }
    let started = Instant::now();
    let source = machine.snapshot_source().expect("a snapshot source");
    let take = started.elapsed();
    let mut sink = CountingSink::default();
    let started = Instant::now();
    source.write_to(&mut sink).expect("writes");
    let write = started.elapsed();
    println!(
        "\nAt the limits ({} leases, {} locks, {keys} keys of 8 bytes): snapshot_source {:.1} µs, \
         write_to {:.2} s for {:.1} MiB",
        LEASES_MAX,
        LOCKS_HELD_MAX,
        take.as_secs_f64() * 1e6,
        write.as_secs_f64(),
        sink.bytes as f64 / (1024.0 * 1024.0)
    );
}

fn main() {
    let options = Options::parse();
    let profile = if cfg!(debug_assertions) {
        "dev (debug assertions)"
    } else {
        "optimised"
    };
    println!("Profile: {profile}\n");
    println!(
        "| keys | value bytes | held MiB | data MiB | held / data | per key overhead B | \
         snapshot peak MiB | take µs | write s | written MiB | 1,000 writes during snapshot \
         MiB | restore peak MiB | restore s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for run in &options.runs {
        let Some((keys, value_bytes)) = run
            .split_once(':')
            .and_then(|(keys, bytes)| Some((keys.parse().ok()?, bytes.parse().ok()?)))
        else {
            eprintln!("skipping {run:?}: not keys:value_bytes");
            continue;
        };
        let row = measure(keys, value_bytes);
        let data_bytes = (row.keys * row.value_bytes) as usize;
        let overhead = (row.held_bytes.saturating_sub(data_bytes)) as f64 / row.keys as f64;
        let ratio = if data_bytes == 0 {
            "-".to_string()
        } else {
            format!("{:.3}", row.held_bytes as f64 / data_bytes as f64)
        };
        println!(
            "| {} | {} | {:.1} | {:.1} | {} | {:.0} | {:.2} | {:.1} | {:.3} | {:.1} | {:.2} | {:.1} | {:.3} |",
            row.keys,
            row.value_bytes,
            mib(row.held_bytes),
            mib(data_bytes),
            ratio,
            overhead,
            mib(row.snapshot_peak_bytes),
            row.take.as_secs_f64() * 1e6,
            row.write.as_secs_f64(),
            row.written_bytes as f64 / (1024.0 * 1024.0),
            mib(row.writes_during_snapshot_bytes),
            mib(row.restore_peak_bytes),
            row.restore.as_secs_f64(),
        );
    }
    at_the_limits(options.limit_keys);
}
