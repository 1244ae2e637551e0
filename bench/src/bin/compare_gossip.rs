//! Gossip membership, ha vs Serf: 5 `bot` processes against 5 `serf agent` processes, all on
//! loopback, each side at its default LAN timing (and Serf also at its `local` profile).
//!
//! `cargo build --release -p examples --bin bot && cargo run --release -p ha-bench --bin compare_gossip`
//!
//! Each trial builds a fresh cluster: 4 members start and converge; then
//! - **join**: the 5th member is spawned, and the clock runs until every one of the 5 sees
//!   every other as alive (process start included on both sides);
//! - **failure detection**: one member is killed with SIGKILL, and the clock runs until every
//!   survivor reports it failed (Serf) or unreachable (ha).
//!
//! Both sides are polled the same way, every 20 ms per member: ha's views with
//! `GET /v1/cluster` on each bot's admin API, Serf's with `serf members -format=json` (so each
//! figure is late by up to one poll, about 20-30 ms). The bots' `EVENT` lines are not used: a
//! bot can miss the `up` events of members it meets before it subscribes (observed). Every
//! wait is bounded, and every spawned process is owned by a `ChildGuard` that kills it by PID
//! and reaps it on drop.

mod compare_gossip {
    pub mod child_guard;
    pub mod cluster;
    pub mod report;
}

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use compare_gossip::cluster::{System, run_trial};
use compare_gossip::report::{Report, SystemFigures, write_outputs};
use ha_bench::MachineDescription;

/// Command-line options.
#[derive(Parser, Debug)]
#[command(about = "Gossip failure detection and join convergence: 5 ha bots vs 5 Serf agents")]
struct Options {
    /// Trials per system (a fresh cluster each).
    #[arg(long, default_value_t = 5)]
    trials: usize,
    /// The bot binary.
    #[arg(long, default_value = "target/release/bot")]
    bot: PathBuf,
    /// The serf binary.
    #[arg(long, default_value = "serf")]
    serf: PathBuf,
    /// Systems to run (comma separated): ha, serf-lan, serf-local.
    #[arg(long, value_delimiter = ',', default_value = "ha,serf-lan,serf-local")]
    systems: Vec<String>,
    /// Longest wait for one convergence or one detection, in seconds.
    #[arg(long, default_value_t = 40)]
    wait_secs_max: u64,
    /// Output directory for compare_gossip.json and compare_gossip.md.
    #[arg(long, default_value = "target/bench")]
    out_dir: PathBuf,
}

fn find_serf(serf: &Path) -> Option<PathBuf> {
    if serf.components().count() > 1 {
        return serf.is_file().then(|| serf.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(serf))
        .find(|candidate| candidate.is_file())
}

fn main() {
    let options = Options::parse();
    if !options.bot.is_file() {
        eprintln!(
            "error: {} is missing; build it with `cargo build --release -p examples --bin bot`",
            options.bot.display()
        );
        std::process::exit(2);
    }
    let Some(serf) = find_serf(&options.serf) else {
        eprintln!(
            "error: serf not found ({}); install it with bench/install_peers.sh",
            options.serf.display()
        );
        std::process::exit(2);
    };
    let trials = options.trials.clamp(1, 100);
    let wait_max = Duration::from_secs(options.wait_secs_max.clamp(5, 300));
    let machine = MachineDescription::read();
    println!("machine: {machine}");
    let mut systems = Vec::new();
    for name in &options.systems {
        match name.as_str() {
            "ha" => systems.push(System::Ha {
                bot: options.bot.clone(),
            }),
            "serf-lan" => systems.push(System::Serf {
                serf: serf.clone(),
                profile: "lan",
            }),
            "serf-local" => systems.push(System::Serf {
                serf: serf.clone(),
                profile: "local",
            }),
            other => {
                eprintln!("error: unknown system {other:?} (ha, serf-lan, serf-local)");
                std::process::exit(2);
            }
        }
    }
    let mut figures = Vec::new();
    for system in &systems {
        let mut results = Vec::new();
        for trial in 0..trials {
            let result = run_trial(system, trial, wait_max);
            println!(
                "{}: trial {}: {}",
                system.label(),
                trial + 1,
                result.summary()
            );
            results.push(result);
        }
        figures.push(SystemFigures::new(system, results));
    }
    let report = Report::new(machine, trials, figures);
    print!("{}", report.markdown());
    match write_outputs(&report, &options.out_dir) {
        Ok((json, markdown)) => println!("results: {} and {}", json.display(), markdown.display()),
        Err(error) => {
            eprintln!("error: cannot write results: {error}");
            std::process::exit(1);
        }
    }
}
