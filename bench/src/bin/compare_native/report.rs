//! `compare_native`'s figures and its JSON and Markdown outputs.

use std::fmt::Write as _;
use std::path::Path;

use ha_bench::MachineDescription;
use serde::Serialize;

use super::load::{LoadRun, VALUE_BYTES};

/// Everything `compare_native` measured.
#[derive(Clone, Debug, Serialize)]
pub struct Results {
    /// Where it ran.
    pub machine: MachineDescription,
    /// Seconds per load run.
    pub duration_s: u64,
    /// Bytes per value.
    pub value_bytes: usize,
    /// ha through its native client, one run per client count.
    pub ha: Vec<LoadRun>,
    /// etcd through its gRPC client, one run per client count (empty when not measured).
    pub etcd: Vec<LoadRun>,
    /// Why etcd's gRPC path was not measured, when it was not.
    pub etcd_not_measured: Option<String>,
    /// What each figure counts.
    pub notes: Vec<String>,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn ratio(ha: f64, etcd: f64) -> f64 {
    if etcd == 0.0 { f64::NAN } else { ha / etcd }
}

impl Results {
    /// The figures with the notes that explain them.
    pub fn new(
        duration_s: u64,
        ha: Vec<LoadRun>,
        etcd: Vec<LoadRun>,
        etcd_not_measured: Option<String>,
    ) -> Self {
        Self {
            machine: MachineDescription::read(),
            duration_s,
            value_bytes: VALUE_BYTES,
            ha,
            etcd,
            etcd_not_measured,
            notes: vec![
                "ha: the service's own code path. The leader (n1, priority 30) runs inside the benchmark process (`ha::Node`, built with `Node::builder`, WAL on disk with fsync per group commit, default timing from `Config::full_ha`); each client is its own `node.kv()` session (`Kv::put` at QUORUM, the same write as `PUT /v1/kv`), so a write crosses no client connection: it goes straight to the leader's replication loop, then over loopback TCP to the two followers (this same executable in follower mode, separate processes)".to_string(),
                "etcd: the same load generator calls etcd's gRPC `KV.Put` on the leader through the `etcd-client` crate (tonic), one client and so one HTTP/2 connection per worker; 3 members, fsync on, default timing".to_string(),
                "the difference between the two paths is the point of embedding: ha's client is in-process, etcd's always crosses a loopback gRPC connection; the HTTP comparison above has a client connection on both sides".to_string(),
                "unlike the HTTP runs, ha's nodes here run no journal worker".to_string(),
                "CPU per 1,000 writes counts every process involved: the three members and the benchmark process (the load generator, and for ha also the leader inside it); the benchmark process also hosts the idle other system's client side (for etcd runs: the idle in-process ha leader)".to_string(),
                "sequential latency is the 1-client run".to_string(),
            ],
        }
    }

    /// The Markdown fragment for `bench/RESULTS.md`.
    pub fn markdown(&self) -> String {
        let mut out = String::from("## Writes: ha's native Rust client vs etcd's gRPC client\n\n");
        let _ = writeln!(
            out,
            "Machine: {}. QUORUM writes, {}-byte values, fsync on, default timing, {} s per run; ha's leader embedded in the benchmark process and written to through `node.kv()`, etcd's leader through gRPC (`etcd-client`).\n",
            self.machine, self.value_bytes, self.duration_s
        );
        if self.etcd.is_empty() {
            let _ = writeln!(
                out,
                "etcd gRPC: not measured: {}.\n",
                self.etcd_not_measured.as_deref().unwrap_or("no run")
            );
            let _ = writeln!(
                out,
                "| clients | ha writes/s | ha p50 ms | ha p99 ms | ha CPU ms / 1,000 writes | ha errors |"
            );
            let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|");
            for ha in &self.ha {
                let _ = writeln!(
                    out,
                    "| {} | {:.0} | {:.2} | {:.2} | {:.0} | {} |",
                    ha.clients,
                    ha.writes_per_second,
                    ms(ha.latency.p50_us),
                    ms(ha.latency.p99_us),
                    ha.cpu_ms_per_1000_writes,
                    ha.errors
                );
            }
        } else {
            let _ = writeln!(
                out,
                "| clients | ha writes/s | etcd writes/s | ratio ha/etcd | ha p50 ms | etcd p50 ms | ha p99 ms | etcd p99 ms | ha CPU ms / 1,000 writes | etcd CPU ms / 1,000 writes | ha errors | etcd errors |"
            );
            let _ = writeln!(
                out,
                "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            );
            for (ha, etcd) in self.ha.iter().zip(&self.etcd) {
                let _ = writeln!(
                    out,
                    "| {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} | {:.0} | {} | {} |",
                    ha.clients,
                    ha.writes_per_second,
                    etcd.writes_per_second,
                    ratio(ha.writes_per_second, etcd.writes_per_second),
                    ms(ha.latency.p50_us),
                    ms(etcd.latency.p50_us),
                    ms(ha.latency.p99_us),
                    ms(etcd.latency.p99_us),
                    ha.cpu_ms_per_1000_writes,
                    etcd.cpu_ms_per_1000_writes,
                    ha.errors,
                    etcd.errors
                );
            }
        }
        if let Some(ha) = self.ha.first() {
            let _ = write!(
                out,
                "\nSequential put latency (1 client): ha p50 {:.2} ms / p99 {:.2} ms",
                ms(ha.latency.p50_us),
                ms(ha.latency.p99_us)
            );
            match self.etcd.first() {
                Some(etcd) => {
                    let _ = writeln!(
                        out,
                        "; etcd p50 {:.2} ms / p99 {:.2} ms; ratio of p50 ha/etcd {:.2}.",
                        ms(etcd.latency.p50_us),
                        ms(etcd.latency.p99_us),
                        ratio(ha.latency.p50_us as f64, etcd.latency.p50_us as f64)
                    );
                }
                None => {
                    let _ = writeln!(out, ".");
                }
            }
        }
        for run in self.ha.iter().chain(&self.etcd) {
            if let Some(error) = &run.first_error {
                let _ = writeln!(out, "\nFirst error at {} client(s): {error}.", run.clients);
            }
        }
        let _ = writeln!(out, "\nNotes:\n");
        for note in &self.notes {
            let _ = writeln!(out, "- {note}");
        }
        out
    }

    /// Write `compare_native.json` and `compare_native.md` to `out_dir`.
    ///
    /// # Errors
    /// The file error, as text.
    pub fn write(&self, out_dir: &Path) -> Result<(), String> {
        ha_bench::write_report_files(out_dir, "compare_native", self, &self.markdown())
    }
}
