//! `compare_etcd --only writes`: the HTTP write runs alone, for profiling and for before/after
//! measurements of the request path (issue 17). Starts only the systems asked for, runs each
//! client count `rounds` times (alternating systems within a round), and prints one line per
//! run with writes/s, the members' CPU per 1,000 writes, the leader's share of it and the load
//! generator's own (this process). Writes no report files.

use std::time::Duration;

use ha_bench::peers::{BotCluster, BotClusterOptions, EtcdCluster, EtcdClusterOptions};

use super::api::Target;
use super::writes;

/// Which systems a writes-only run drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Systems {
    /// ha and etcd, alternating.
    Both,
    /// ha only.
    Ha,
    /// etcd only.
    Etcd,
}

/// Most rounds of a writes-only run.
pub const ROUNDS_MAX: u32 = 20;

/// A started cluster: its name in the table, its leader's target, its members and the
/// leader's process id.
struct Driven {
    name: String,
    target: Target,
    pids: Vec<u32>,
    leader_pid: u32,
}

fn cpu_seconds(pid: u32) -> f64 {
    ha_bench::peers::cpu_time(pid)
        .map(|time| time.as_secs_f64())
        .unwrap_or(0.0)
}

/// Run the write loads only; see the module documentation.
///
/// # Errors
/// A cluster that does not start or elect a leader, or a failed load run, as text.
pub async fn run(
    systems: Systems,
    bots: &[std::path::PathBuf],
    client_counts: &[usize],
    rounds: u32,
    duration: Duration,
    data_dir: &std::path::Path,
    leader_timeout: Duration,
) -> Result<(), String> {
    // The guards own the processes until this function returns.
    let mut etcd_cluster = None;
    let mut driven: Vec<Driven> = Vec::new();
    let mut ha_clusters = Vec::new();
    if systems != Systems::Etcd {
        let executables: Vec<Option<&std::path::PathBuf>> = if bots.is_empty() {
            vec![None]
        } else {
            bots.iter().map(Some).collect()
        };
        for executable in executables {
            let mut options = BotClusterOptions::new(3);
            options.base_dir = Some(data_dir.to_path_buf());
            if let Some(executable) = executable {
                options.executable = executable.clone();
            }
            let name = match executable {
                Some(path) => format!("ha ({})", path.display()),
                None => "ha".to_string(),
            };
            let ha = BotCluster::start(options).map_err(|error| error.to_string())?;
            let leader = ha.wait_for_leader(leader_timeout).await.map_err(|error| {
                format!("{name}: {error} (logs in {})", ha.directory().display())
            })?;
            ha.wait_until_healthy(leader_timeout)
                .await
                .map_err(|error| format!("{name}: {error}"))?;
            driven.push(Driven {
                target: ha.target(leader),
                pids: ha.pids(),
                leader_pid: ha.pid(leader).ok_or("ha: the leader is not running")?,
                name,
            });
            ha_clusters.push(ha);
        }
    }
    if systems != Systems::Ha {
        let mut options = EtcdClusterOptions::new(3);
        options.base_dir = Some(data_dir.to_path_buf());
        let etcd = EtcdCluster::start(options).map_err(|error| error.to_string())?;
        let leader = etcd
            .wait_for_leader(leader_timeout)
            .await
            .map_err(|error| format!("etcd: {error} (logs in {})", etcd.directory().display()))?;
        driven.push(Driven {
            name: "etcd".to_string(),
            target: etcd.target(leader),
            pids: etcd.pids(),
            leader_pid: etcd.pid(leader).ok_or("etcd: the leader is not running")?,
        });
        etcd_cluster = Some(etcd);
    }
    for system in &driven {
        eprintln!(
            "{}: members {:?}, leader pid {}",
            system.name, system.pids, system.leader_pid
        );
    }
    println!(
        "| round | system | clients | writes/s | errors | p50 us | p99 us | CPU ms / 1,000 writes (members) | leader's share | load generator's |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for round in 1..=rounds.clamp(1, ROUNDS_MAX) {
        for &clients in client_counts {
            for system in &driven {
                let prefix = format!("r{round}w{clients}");
                let leader_before = cpu_seconds(system.leader_pid);
                let load_before = cpu_seconds(std::process::id());
                let run =
                    writes::run(&system.target, clients, duration, &prefix, &system.pids).await?;
                let leader_ms = (cpu_seconds(system.leader_pid) - leader_before) * 1000.0;
                // This process is the load generator: its CPU competes with the members' for
                // the machine's cores, so it bounds writes/s too.
                let load_ms = (cpu_seconds(std::process::id()) - load_before) * 1000.0;
                let per_1000 = |milliseconds: f64| {
                    if run.writes == 0 {
                        0.0
                    } else {
                        milliseconds / (run.writes as f64 / 1000.0)
                    }
                };
                println!(
                    "| {round} | {} | {clients} | {:.0} | {} | {} | {} | {:.0} | {:.0} | {:.0} |",
                    system.name,
                    run.writes_per_second,
                    run.errors,
                    run.latency.p50_us,
                    run.latency.p99_us,
                    run.cpu_ms_per_1000_writes,
                    per_1000(leader_ms),
                    per_1000(load_ms)
                );
                if let Some(first) = &run.first_error {
                    eprintln!(
                        "{} {clients} clients, first failed write: {first}",
                        system.name
                    );
                }
            }
        }
    }
    drop(ha_clusters);
    drop(etcd_cluster);
    Ok(())
}
