//! What applying one lock `Acquire` costs the lock table, as its lines grow (issue 12, bug 2).
//!
//! `cargo run --release -p ha-bench --bin lock_apply_bench`
//!
//! Every replica applies every command on the task that also sends heartbeats, so this cost
//! is paid on each node's critical path. Three shapes, each at 10, 100, 1,000 and 10,000
//! sessions (the table's limits are raised to fit; the shipped per-lock limit is
//! `WAITERS_PER_LOCK_MAX`):
//!
//! - **line**: one lock held, `n` sessions waiting in its line (each its own session and
//!   lease, as HTTP clients are). Measured: one more session queueing at the back (then
//!   cancelling, not measured, so every sample sees `n` waiters).
//! - **shared line**: the same, but each of the `n` waiters also waits in a second line (for a
//!   lock of its own, held by the first lock's holder). The deadlock check must follow each of
//!   them: the worst case for the index of the lines.
//! - **chain**: `n` sessions, session `i` holding lock `i` and waiting for lock `i + 1`; the
//!   last asks for lock 1, which closes a cycle through all of them: refused as a deadlock
//!   (nothing changes), after a walk of the whole chain.
//!
//! Reported per shape and size: the median, p99 and maximum of the measured applies, and how
//! long building the state took. Every loop is bounded: sizes run in increasing order and a
//! shape stops growing once building one size took longer than `--build-budget-secs`.

use std::time::{Duration, Instant};

use clap::Parser;
use ha_core::LogIndex;
use ha_lock::{KvLockTable, LeaseId, LockCommand, LockLimits, LockResponse, SessionId};

/// Command-line options.
#[derive(Parser, Debug)]
#[command(about = "Apply time of one lock acquire as the lock table's lines grow")]
struct Options {
    /// Sizes (sessions in the line or chain), comma separated.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000,10000")]
    sizes: Vec<u64>,
    /// Measured applies per shape and size.
    #[arg(long, default_value_t = 1_000)]
    samples: usize,
    /// Stop sampling one size after this many seconds.
    #[arg(long, default_value_t = 10)]
    sample_budget_secs: u64,
    /// Do not try larger sizes of a shape once building one took longer than this.
    #[arg(long, default_value_t = 60)]
    build_budget_secs: u64,
}

/// A table fed commands at increasing log indexes.
struct Table {
    table: KvLockTable,
    index: u64,
}

impl Table {
    /// A table whose limits fit `sessions` sessions in any of the shapes.
    fn new(sessions: u64) -> Self {
        let room = usize::try_from(sessions)
            .unwrap_or(usize::MAX)
            .saturating_mul(2)
            + 16;
        let mut limits = LockLimits::default();
        limits.leases = limits.leases.max(room);
        limits.locks_held = limits.locks_held.max(room);
        limits.waiters = limits.waiters.max(room);
        limits.waiters_per_lock = limits.waiters_per_lock.max(room);
        Self {
            table: KvLockTable::with_limits(limits),
            index: 0,
        }
    }

    fn apply(&mut self, command: LockCommand) -> LockResponse {
        self.index += 1;
        self.table.apply(LogIndex(self.index), command)
    }

    /// A lease for numbered session `session`.
    fn lease(&mut self, session: u64) -> LeaseId {
        match self.apply(LockCommand::LeaseGrant {
            ttl_ms: 600_000,
            session: SessionId(session),
        }) {
            LockResponse::LeaseGranted { lease, .. } => lease,
            other => panic!("lease grant answered {other:?}"),
        }
    }

    fn acquire(&mut self, name: &str, session: u64, lease: LeaseId) -> LockResponse {
        self.apply(LockCommand::Acquire {
            name: name.to_string(),
            session: SessionId(session),
            lease,
            wait: true,
        })
    }

    fn must_hold(&mut self, name: &str, session: u64, lease: LeaseId) {
        match self.acquire(name, session, lease) {
            LockResponse::Granted { .. } => {}
            other => panic!("{session} taking free lock {name} answered {other:?}"),
        }
    }

    fn must_queue(&mut self, name: &str, session: u64, lease: LeaseId) {
        match self.acquire(name, session, lease) {
            LockResponse::Queued { .. } => {}
            other => panic!("{session} queueing for {name} answered {other:?}"),
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Shape {
    Line,
    SharedLine,
    Chain,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Line => "line",
            Shape::SharedLine => "shared line",
            Shape::Chain => "chain (deadlock found)",
        }
    }
}

/// The state of `shape` at `size`, and the command whose apply is measured (with what it must
/// answer, and the command that undoes it, if any).
struct Built {
    table: Table,
    measured: LockCommand,
    undo: Option<LockCommand>,
}

fn build(shape: Shape, size: u64) -> Built {
    let mut table = Table::new(size);
    // Session 0 holds "a" (and every second-line lock); sessions 1..=size wait or chain.
    let holder_lease = table.lease(0);
    let newcomer = size + 1;
    match shape {
        Shape::Line | Shape::SharedLine => {
            table.must_hold("a", 0, holder_lease);
            for session in 1..=size {
                let lease = table.lease(session);
                table.must_queue("a", session, lease);
                if matches!(shape, Shape::SharedLine) {
                    let own = format!("b{session}");
                    table.must_hold(&own, 0, holder_lease);
                    table.must_queue(&own, session, lease);
                }
            }
            let lease = table.lease(newcomer);
            Built {
                table,
                measured: LockCommand::Acquire {
                    name: "a".into(),
                    session: SessionId(newcomer),
                    lease,
                    wait: true,
                },
                undo: Some(LockCommand::CancelWait {
                    name: "a".into(),
                    session: SessionId(newcomer),
                }),
            }
        }
        Shape::Chain => {
            let leases: Vec<LeaseId> = (1..=size).map(|session| table.lease(session)).collect();
            for session in 1..=size {
                table.must_hold(
                    &format!("c{session}"),
                    session,
                    leases[session as usize - 1],
                );
            }
            for session in 1..size {
                table.must_queue(
                    &format!("c{}", session + 1),
                    session,
                    leases[session as usize - 1],
                );
            }
            Built {
                table,
                measured: LockCommand::Acquire {
                    name: "c1".into(),
                    session: SessionId(size),
                    lease: leases[size as usize - 1],
                    wait: true,
                },
                undo: None,
            }
        }
    }
}

struct Row {
    shape: Shape,
    size: u64,
    build: Duration,
    samples: usize,
    median: Duration,
    p99: Duration,
    max: Duration,
}

fn measure(shape: Shape, size: u64, options: &Options) -> Row {
    let started = Instant::now();
    let mut built = build(shape, size);
    let build = started.elapsed();
    let budget = Duration::from_secs(options.sample_budget_secs);
    let sampling = Instant::now();
    let mut times = Vec::with_capacity(options.samples);
    while times.len() < options.samples.max(1) && (times.is_empty() || sampling.elapsed() < budget)
    {
        let began = Instant::now();
        let answer = built.table.apply(built.measured.clone());
        times.push(began.elapsed());
        let expected = match shape {
            Shape::Line | Shape::SharedLine => matches!(answer, LockResponse::Queued { .. }),
            Shape::Chain => {
                matches!(answer, LockResponse::Deadlock { ref cycle } if cycle.len() as u64 == size)
            }
        };
        assert!(expected, "{} at {size}: answered {answer:?}", shape.name());
        if let Some(undo) = &built.undo {
            built.table.apply(undo.clone());
        }
    }
    times.sort();
    let at = |fraction: f64| times[((times.len() - 1) as f64 * fraction).round() as usize];
    Row {
        shape,
        size,
        build,
        samples: times.len(),
        median: at(0.5),
        p99: at(0.99),
        max: times[times.len() - 1],
    }
}

fn micros(duration: Duration) -> String {
    format!("{:.1}", duration.as_secs_f64() * 1e6)
}

fn main() {
    let options = Options::parse();
    println!("| shape | sessions | acquire median µs | p99 µs | max µs | samples | build s |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut rows = Vec::new();
    for shape in [Shape::Line, Shape::SharedLine, Shape::Chain] {
        for &size in &options.sizes {
            let row = measure(shape, size, &options);
            println!(
                "| {} | {} | {} | {} | {} | {} | {:.2} |",
                row.shape.name(),
                row.size,
                micros(row.median),
                micros(row.p99),
                micros(row.max),
                row.samples,
                row.build.as_secs_f64()
            );
            let too_slow = row.build > Duration::from_secs(options.build_budget_secs);
            rows.push(row);
            if too_slow {
                println!(
                    "| {} | larger sizes skipped: building took over {} s | | | | | |",
                    shape.name(),
                    options.build_budget_secs
                );
                break;
            }
        }
    }
    // The bar: one acquire at the back of a 10,000-waiter line under 1 ms.
    if let Some(row) = rows
        .iter()
        .find(|row| matches!(row.shape, Shape::Line) && row.size == 10_000)
    {
        let verdict = if row.p99 < Duration::from_millis(1) {
            "under"
        } else {
            "NOT under"
        };
        println!(
            "\nline of 10,000 waiters: p99 {} µs, {verdict} 1 ms",
            micros(row.p99)
        );
    }
}
