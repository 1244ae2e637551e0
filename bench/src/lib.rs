//! # ha-bench
//!
//! Benchmark harnesses for `ha`. Each binary prints a human-readable report and writes a JSON
//! file with every figure and a description of the machine it ran on.
//!
//! ```
//! let machine = ha_bench::MachineDescription::read();
//! assert!(machine.cpus >= 1);
//! let summary = ha_bench::LatencySummary::from_micros(&mut vec![30, 10, 20]);
//! assert_eq!(summary.p50_us, 20);
//! ```

mod disk_sync_probe;
pub mod http_load;
mod kv_machine;
mod latency_summary;
mod loopback_cluster;
mod machine_description;
mod median_round;
pub mod peers;
mod report_files;
mod spread;
mod throughput_plot;
mod write_load;

pub use disk_sync_probe::DiskSyncProbe;
pub use kv_machine::{Kv, Put};
pub use latency_summary::LatencySummary;
pub use loopback_cluster::{start_loopback_cluster, wait_for_leader};
pub use machine_description::MachineDescription;
pub use median_round::{median_round, rounds_text};
pub use report_files::write_report_files;
pub use spread::Spread;
pub use throughput_plot::{ThroughputSeries, throughput_vs_clients};
pub use write_load::{WriteLoad, run_write_load, run_write_load_on_sessions};
