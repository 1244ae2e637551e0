//! Every figure, the targets from issue 6, and the JSON, Markdown and SVG outputs.

use std::fmt::Write as _;
use std::path::Path;

use ha_bench::{LatencySummary, MachineDescription, Spread, median_round, rounds_text};
use serde::Serialize;

use super::failover::{Attempt, Trial, Variant};
use super::locks::{Contended, Uncontended};
use super::plots;
use super::reads::ReadRun;
use super::writes::WriteRun;

/// Resident memory of each member of the idle clusters.
#[derive(Clone, Debug, Serialize)]
pub struct IdleMemory {
    /// ha nodes' VmRSS in bytes.
    pub ha_bytes: Vec<u64>,
    /// etcd members' VmRSS in bytes.
    pub etcd_bytes: Vec<u64>,
}

/// Write runs, one per client count: each system's median round by writes/s.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WriteResults {
    /// ha runs.
    pub ha: Vec<WriteRun>,
    /// etcd runs.
    pub etcd: Vec<WriteRun>,
    /// ha's writes/s in every round, per client count (in the order of `ha`).
    pub ha_rounds_per_second: Vec<Vec<f64>>,
    /// etcd's writes/s in every round, per client count.
    pub etcd_rounds_per_second: Vec<Vec<f64>>,
}

impl WriteResults {
    /// Keep the median round of each system's runs at one client count.
    ///
    /// # Errors
    /// No run for a system.
    pub fn push_median_rounds(
        &mut self,
        ha: Vec<WriteRun>,
        etcd: Vec<WriteRun>,
    ) -> Result<(), String> {
        let per_second = |run: &WriteRun| run.writes_per_second;
        let (ha, ha_rounds) = median_round(ha, per_second).ok_or("no ha write run")?;
        let (etcd, etcd_rounds) = median_round(etcd, per_second).ok_or("no etcd write run")?;
        self.ha.push(ha);
        self.etcd.push(etcd);
        self.ha_rounds_per_second.push(ha_rounds);
        self.etcd_rounds_per_second.push(etcd_rounds);
        Ok(())
    }
}

/// Sequential local reads (1 client, at the leader, no replication, no disk): each system's
/// median round by p50.
#[derive(Clone, Debug, Serialize)]
pub struct LocalReads {
    /// ha's median round.
    pub ha: ReadRun,
    /// etcd's median round.
    pub etcd: ReadRun,
    /// ha's p50 in every round, microseconds.
    pub ha_rounds_p50_us: Vec<f64>,
    /// etcd's p50 in every round, microseconds.
    pub etcd_rounds_p50_us: Vec<f64>,
}

impl LocalReads {
    /// Keep each system's median round by p50.
    ///
    /// # Errors
    /// No run for a system.
    pub fn from_median_rounds(ha: Vec<ReadRun>, etcd: Vec<ReadRun>) -> Result<Self, String> {
        let p50 = |run: &ReadRun| run.latency.p50_us as f64;
        let (ha, ha_rounds_p50_us) = median_round(ha, p50).ok_or("no ha read run")?;
        let (etcd, etcd_rounds_p50_us) = median_round(etcd, p50).ok_or("no etcd read run")?;
        Ok(Self {
            ha,
            etcd,
            ha_rounds_p50_us,
            etcd_rounds_p50_us,
        })
    }
}

/// Lock figures; the uncontended cycles are each system's median round by p50.
#[derive(Clone, Debug, Serialize)]
pub struct LockResults {
    /// ha uncontended.
    pub ha_uncontended: Uncontended,
    /// etcd uncontended.
    pub etcd_uncontended: Uncontended,
    /// ha's uncontended p50 in every round, in µs.
    pub ha_uncontended_p50_rounds_us: Vec<f64>,
    /// etcd's uncontended p50 in every round, in µs.
    pub etcd_uncontended_p50_rounds_us: Vec<f64>,
    /// ha contended.
    pub ha_contended: Contended,
    /// etcd contended.
    pub etcd_contended: Contended,
}

impl LockResults {
    /// The median rounds of the uncontended cycles, with the contended runs.
    ///
    /// # Errors
    /// No uncontended round for a system.
    pub fn from_median_rounds(
        ha_uncontended: Vec<Uncontended>,
        etcd_uncontended: Vec<Uncontended>,
        ha_contended: Contended,
        etcd_contended: Contended,
    ) -> Result<Self, String> {
        let p50 = |run: &Uncontended| run.acquire_release.p50_us as f64;
        let (ha_uncontended, ha_uncontended_p50_rounds_us) =
            median_round(ha_uncontended, p50).ok_or("no ha lock round")?;
        let (etcd_uncontended, etcd_uncontended_p50_rounds_us) =
            median_round(etcd_uncontended, p50).ok_or("no etcd lock round")?;
        Ok(Self {
            ha_uncontended,
            etcd_uncontended,
            ha_uncontended_p50_rounds_us,
            etcd_uncontended_p50_rounds_us,
            ha_contended,
            etcd_contended,
        })
    }
}

/// Failover trials of one configuration.
#[derive(Clone, Debug, Serialize)]
pub struct FailoverSeries {
    /// Which configuration.
    pub variant: Variant,
    /// Every trial.
    pub trials: Vec<Trial>,
    /// Window spread, ms.
    pub window_ms: Spread,
    /// Failed attempts spread.
    pub failed_attempts: Spread,
    /// Failed writes (distinct writes with a failed attempt) spread.
    pub failed_writes: Spread,
    /// Acknowledged writes lost, over all trials.
    pub lost_total: u64,
    /// Every attempt of the first trial (plotted).
    pub plotted_attempts: Vec<Attempt>,
}

impl FailoverSeries {
    /// An empty series.
    pub fn new(variant: Variant) -> Self {
        Self {
            variant,
            trials: Vec::new(),
            window_ms: Spread::default(),
            failed_attempts: Spread::default(),
            failed_writes: Spread::default(),
            lost_total: 0,
            plotted_attempts: Vec::new(),
        }
    }

    fn summarise(&mut self) {
        self.window_ms = Spread::of(self.trials.iter().map(|t| t.window_ms));
        self.failed_attempts = Spread::of(self.trials.iter().map(|t| t.failed_attempts as f64));
        self.failed_writes = Spread::of(self.trials.iter().map(|t| t.failed_writes as f64));
        self.lost_total = self.trials.iter().map(|t| t.lost).sum();
    }
}

/// One target from the issue.
#[derive(Clone, Debug, Serialize)]
pub struct TargetCheck {
    /// What is compared.
    pub target: String,
    /// What was measured.
    pub measured: String,
    /// Whether it holds.
    pub met: bool,
}

/// Settings of the run.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    /// Rounds of each write load and of the uncontended lock cycle (the median is reported).
    pub rounds: u32,
    /// Seconds per write run.
    pub write_duration_s: u64,
    /// Uncontended lock iterations.
    pub lock_iterations: u32,
    /// Seconds of the contended lock run.
    pub lock_contended_s: u64,
    /// Time limit of one failover write attempt, ms.
    pub attempt_timeout_ms: u64,
    /// Value size in bytes.
    pub value_bytes: usize,
    /// Notes on what each figure counts.
    pub notes: Vec<String>,
}

/// Everything measured.
#[derive(Clone, Debug, Serialize)]
pub struct Results {
    /// Where it ran.
    pub machine: MachineDescription,
    /// How it ran.
    pub settings: Settings,
    /// Idle memory.
    pub idle_memory: IdleMemory,
    /// Writes over HTTP.
    pub writes: WriteResults,
    /// Sequential local reads over HTTP.
    pub local_reads: LocalReads,
    /// Locks over HTTP.
    pub locks: LockResults,
    /// Failover.
    pub failover: Vec<FailoverSeries>,
    /// Native Rust client vs etcd gRPC.
    pub native_vs_grpc: String,
    /// Targets from issue 6.
    pub targets: Vec<TargetCheck>,
}

fn median_u64(values: &[u64]) -> f64 {
    Spread::of(values.iter().map(|v| *v as f64)).median
}

fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

fn ratio(ha: f64, etcd: f64) -> f64 {
    if etcd == 0.0 { f64::NAN } else { ha / etcd }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Every round's microseconds as milliseconds, for [`rounds_text`] (the figures are kept as
/// `f64` microseconds in the JSON; [`ms`] converts one `u64` latency field).
fn micros_as_ms(values: &[f64]) -> Vec<f64> {
    values.iter().map(|us| us / 1000.0).collect()
}

fn met(flag: bool) -> &'static str {
    if flag { "met" } else { "**missed**" }
}

impl Results {
    /// Gather the figures and check the targets.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        rounds: u32,
        write_duration_s: u64,
        lock_iterations: u32,
        lock_contended_s: u64,
        attempt_timeout_ms: u64,
        idle_memory: IdleMemory,
        writes: WriteResults,
        local_reads: LocalReads,
        locks: LockResults,
        mut failover: Vec<FailoverSeries>,
    ) -> Self {
        for series in &mut failover {
            series.summarise();
        }
        let mut results = Self {
            machine: MachineDescription::read(),
            settings: Settings {
                rounds,
                write_duration_s,
                lock_iterations,
                lock_contended_s,
                attempt_timeout_ms,
                value_bytes: 128,
                notes: vec![
                    "writes go to each system's leader over keep-alive HTTP/1.1, one connection per client; ha PUT /v1/kv (QUORUM), etcd POST /v3/kv/put (JSON gateway); both fsync on, default timing".to_string(),
                    "sequential latency is the 1-client run".to_string(),
                    "sequential local read: one client reads one key at the leader, where no replication and no disk is involved (ha GET /v1/kv/<key>?consistency=eventual, etcd serializable POST /v3/kv/range), in rounds like the writes; each system's median round by p50".to_string(),
                    "each write load and the uncontended lock cycle run in rounds (ha then etcd in each round); the tables give each system's median round (by writes/s; by p50 for locks) whole, and the rounds' figures follow each table".to_string(),
                    "lock cycle: ha POST /v1/lock?ttl_ms=5000 (grants its lease inside) + DELETE; etcd POST /v3/lease/grant + /v3/lock/lock + /v3/lock/unlock (lease grant counted, as ha's acquire includes one)".to_string(),
                    "failover: fresh 3-member cluster per trial; a new write starts every 5 ms (not waiting for earlier ones, so a write stuck on the dead leader does not hide the recovery) at a member that is not the leader, each write retried every 5 ms until acknowledged, each attempt limited to attempt_timeout_ms; window = kill to the end of the first acknowledged attempt started after the kill; failed attempts = attempts that failed and ended after the kill; lost = acknowledged writes missing on the new leader (linearizable read)".to_string(),
                    "the ha bot node also runs its journal worker (an append every 100 ms under a fenced lock) during every measurement".to_string(),
                    "CPU per 1,000 writes: sum of utime+stime of all three members over the run, divided by acknowledged writes / 1000".to_string(),
                    "what limits ha at 64 clients: the run is CPU-bound (2 CPUs for 6 servers and the load generator; see CPU per 1,000 writes above). A perf profile of the 64-client run (2026-12-04, 8d20d96, perf record -a -g, 6 s of a 12 s run; a second record with DWARF call graphs of one follower) puts the members' time mostly in the kernel (45% of all samples: context switches, wake-ups, fsync submission, loopback TCP) and libc (11%); the largest cost inside ha was then the replica consistency monitor, a full-state hash every 10,000 applied entries (22.9% of a follower's CPU at the ~150,000 keys this run reaches). Since session 19 the leader places checkpoints as log entries once the log since the last one is as large as the state, and a DWARF profile of a follower (bench/profile_follower.sh, 2026-12-04) puts the digest at 7.6% of its CPU, snapshots at 7.0%, fdatasync at 19.9% and applying the writes at 12.0% (docs/ARCHITECTURE.md, \"The state stream at 64 HTTP clients\"). Two limits this benchmark found were fixed before these runs (commit e7676ea): the admin HTTP KV path had 8 client sessions per node (now 64), and requests forwarded to a crashed leader waited out their 1 s attempt (now failed at once on a leader change), which had made ha's HTTP failover window 1,003 ms".to_string(),
                    "all six servers and the load generator share this machine's CPUs; the load generator's own CPU is not counted".to_string(),
                ],
            },
            idle_memory,
            writes,
            local_reads,
            locks,
            failover,
            native_vs_grpc: "measured by `compare_native` (its own section of bench/RESULTS.md: ha's leader embedded in the benchmark process vs etcd's gRPC API through the etcd-client crate)".to_string(),
            targets: Vec::new(),
        };
        results.targets = results.check_targets();
        results
    }

    fn series(&self, variant: Variant) -> Option<&FailoverSeries> {
        self.failover.iter().find(|s| s.variant == variant)
    }

    fn check_targets(&self) -> Vec<TargetCheck> {
        let mut checks = Vec::new();
        if let (Some(ha), Some(default), Some(tuned)) = (
            self.series(Variant::Ha),
            self.series(Variant::EtcdDefault),
            self.series(Variant::EtcdTuned),
        ) {
            let speedup = default.window_ms.median / ha.window_ms.median;
            checks.push(TargetCheck {
                target: "failover: ha median window at least 3x shorter than etcd defaults"
                    .to_string(),
                measured: format!(
                    "ha {:.0} ms vs etcd {:.0} ms: {speedup:.2}x shorter",
                    ha.window_ms.median, default.window_ms.median
                ),
                met: speedup >= 3.0,
            });
            checks.push(TargetCheck {
                target: "failover: ha median window shorter than etcd 50/250".to_string(),
                measured: format!(
                    "ha {:.0} ms vs etcd 50/250 {:.0} ms",
                    ha.window_ms.median, tuned.window_ms.median
                ),
                met: ha.window_ms.median < tuned.window_ms.median,
            });
            let lost: u64 = self.failover.iter().map(|s| s.lost_total).sum();
            checks.push(TargetCheck {
                target: "failover: zero acknowledged writes lost (all systems, all trials)"
                    .to_string(),
                measured: format!(
                    "ha lost {}, etcd lost {}",
                    ha.lost_total,
                    lost - ha.lost_total
                ),
                met: ha.lost_total == 0,
            });
        }
        if let (Some(ha), Some(etcd)) = (self.writes.ha.last(), self.writes.etcd.last()) {
            let r = ratio(ha.writes_per_second, etcd.writes_per_second);
            checks.push(TargetCheck {
                target: format!(
                    "QUORUM write throughput at {} clients at least 3x etcd's",
                    ha.clients
                ),
                measured: format!(
                    "ha {:.0}/s vs etcd {:.0}/s: {r:.2}x",
                    ha.writes_per_second, etcd.writes_per_second
                ),
                met: r >= 3.0,
            });
        }
        let ha_lock = self.locks.ha_uncontended.acquire_release.p50_us;
        let etcd_lock = self.locks.etcd_uncontended.acquire_release.p50_us;
        checks.push(TargetCheck {
            target: "lock acquire+release p50 at most half of etcd's".to_string(),
            measured: format!(
                "ha {:.2} ms vs etcd {:.2} ms: {:.2}x",
                ms(ha_lock),
                ms(etcd_lock),
                ratio(ha_lock as f64, etcd_lock as f64)
            ),
            met: ha_lock * 2 <= etcd_lock,
        });
        let ha_rss = median_u64(&self.idle_memory.ha_bytes);
        let etcd_rss = median_u64(&self.idle_memory.etcd_bytes);
        checks.push(TargetCheck {
            target: "idle node memory at most half of an etcd member's".to_string(),
            measured: format!(
                "ha {:.1} MiB vs etcd {:.1} MiB (median RSS): {:.2}x",
                mib(ha_rss),
                mib(etcd_rss),
                ratio(ha_rss, etcd_rss)
            ),
            met: ha_rss * 2.0 <= etcd_rss,
        });
        checks
    }

    /// The Markdown report.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(
            out,
            "Machine: {} CPUs ({}), {} MiB, Linux {}. All traffic on 127.0.0.1; 3 ha `bot` nodes vs 3 etcd members; 128-byte values.\n",
            m.cpus, m.cpu_model, m.memory_mib, m.kernel
        );
        let _ = writeln!(out, "## Writes\n");
        let _ = writeln!(
            out,
            "QUORUM writes over HTTP to the leader (ha `PUT /v1/kv`, etcd `POST /v3/kv/put`), fsync on, default timing, {} s per run; each row is the median of {} rounds (systems alternating).\n",
            self.settings.write_duration_s, self.settings.rounds
        );
        let _ = writeln!(
            out,
            "| clients | ha writes/s | etcd writes/s | ratio ha/etcd | ha p50 ms | etcd p50 ms | ha p99 ms | etcd p99 ms | ha errors | etcd errors |"
        );
        let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (ha, etcd) in self.writes.ha.iter().zip(&self.writes.etcd) {
            let _ = writeln!(
                out,
                "| {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} |",
                ha.clients,
                ha.writes_per_second,
                etcd.writes_per_second,
                ratio(ha.writes_per_second, etcd.writes_per_second),
                ms(ha.latency.p50_us),
                ms(etcd.latency.p50_us),
                ms(ha.latency.p99_us),
                ms(etcd.latency.p99_us),
                ha.errors,
                etcd.errors
            );
        }
        let _ = writeln!(out, "\nwrites/s in each round:\n");
        let round_rows = self.writes.ha.iter().zip(
            self.writes
                .ha_rounds_per_second
                .iter()
                .zip(&self.writes.etcd_rounds_per_second),
        );
        for (run, (ha, etcd)) in round_rows {
            let _ = writeln!(
                out,
                "- {} client(s): ha {}; etcd {}",
                run.clients,
                rounds_text(ha, 0),
                rounds_text(etcd, 0)
            );
        }
        let runs = (self.writes.ha.iter().map(|run| ("ha", run)))
            .chain(self.writes.etcd.iter().map(|run| ("etcd", run)));
        for (system, run) in runs {
            if let Some(first) = &run.first_error {
                let _ = writeln!(
                    out,
                    "\n{system}: first failed write of {}: {first}",
                    run.errors
                );
            }
        }
        let _ = writeln!(
            out,
            "\nSequential put latency (1 client): ha p50 {:.2} ms / p99 {:.2} ms; etcd p50 {:.2} ms / p99 {:.2} ms.",
            self.writes.ha.first().map_or(0.0, |r| ms(r.latency.p50_us)),
            self.writes.ha.first().map_or(0.0, |r| ms(r.latency.p99_us)),
            self.writes
                .etcd
                .first()
                .map_or(0.0, |r| ms(r.latency.p50_us)),
            self.writes
                .etcd
                .first()
                .map_or(0.0, |r| ms(r.latency.p99_us)),
        );
        let reads = &self.local_reads;
        let _ = writeln!(
            out,
            "Sequential local read (1 client, at the leader, no replication, no disk): ha p50 {:.2} ms / p99 {:.2} ms; etcd p50 {:.2} ms / p99 {:.2} ms. p50 ms in each round: ha {}; etcd {}.",
            ms(reads.ha.latency.p50_us),
            ms(reads.ha.latency.p99_us),
            ms(reads.etcd.latency.p50_us),
            ms(reads.etcd.latency.p99_us),
            rounds_text(&micros_as_ms(&reads.ha_rounds_p50_us), 2),
            rounds_text(&micros_as_ms(&reads.etcd_rounds_p50_us), 2)
        );
        let _ = writeln!(
            out,
            "Native Rust client vs etcd gRPC: {}.\n",
            self.native_vs_grpc
        );

        let _ = writeln!(out, "## Locks\n");
        let lock_row = |name: &str, u: &LatencySummary| {
            format!(
                "| {name} | {:.2} | {:.2} | {:.2} | {} |",
                ms(u.p50_us),
                ms(u.p99_us),
                ms(u.max_us),
                u.count
            )
        };
        let _ = writeln!(
            out,
            "| uncontended acquire+release | p50 ms | p99 ms | max ms | cycles |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|");
        let _ = writeln!(
            out,
            "{}",
            lock_row(
                "ha (acquire grants its lease)",
                &self.locks.ha_uncontended.acquire_release
            )
        );
        let _ = writeln!(
            out,
            "{}",
            lock_row(
                "etcd (lease grant + lock + unlock)",
                &self.locks.etcd_uncontended.acquire_release
            )
        );
        if let Some(reused) = &self.locks.etcd_uncontended.etcd_reused_lease {
            let _ = writeln!(
                out,
                "{}",
                lock_row(
                    "etcd, lease granted beforehand (lock + unlock; for reference)",
                    reused
                )
            );
        }
        let _ = writeln!(
            out,
            "\nEach row is the median of {} rounds by p50; p50 ms in each round: ha {}; etcd {}.",
            self.settings.rounds,
            rounds_text(&micros_as_ms(&self.locks.ha_uncontended_p50_rounds_us), 2),
            rounds_text(&micros_as_ms(&self.locks.etcd_uncontended_p50_rounds_us), 2)
        );
        let _ = writeln!(
            out,
            "\nRatio ha/etcd p50: {:.2}.\n",
            ratio(
                self.locks.ha_uncontended.acquire_release.p50_us as f64,
                self.locks.etcd_uncontended.acquire_release.p50_us as f64
            )
        );
        let ha_c = &self.locks.ha_contended;
        let etcd_c = &self.locks.etcd_contended;
        let _ = writeln!(
            out,
            "| contended ({} clients, one lock, {:.0} s) | acquires/s | acquires | errors |",
            ha_c.clients, ha_c.seconds
        );
        let _ = writeln!(out, "|---|---:|---:|---:|");
        let _ = writeln!(
            out,
            "| ha | {:.1} | {} | {} |",
            ha_c.acquires_per_second, ha_c.acquires, ha_c.errors
        );
        let _ = writeln!(
            out,
            "| etcd | {:.1} | {} | {} |",
            etcd_c.acquires_per_second, etcd_c.acquires, etcd_c.errors
        );
        let _ = writeln!(
            out,
            "\nRatio ha/etcd hand-off rate: {:.2}.\n",
            ratio(ha_c.acquires_per_second, etcd_c.acquires_per_second)
        );

        let _ = writeln!(out, "## Failover\n");
        let _ = writeln!(
            out,
            "SIGKILL of the leader of a fresh 3-member cluster while a writer starts a write every 5 ms (without waiting for earlier ones) at another member, retrying each every 5 ms until acknowledged (attempt limit {} ms). Window = kill to the first acknowledged attempt started after it. A failed write is one with at least one failed attempt ending after the kill.\n",
            self.settings.attempt_timeout_ms
        );
        let _ = writeln!(
            out,
            "| configuration | trials | window min ms | median | max | failed attempts min / median / max | failed writes min / median / max | acknowledged lost |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---|---|---:|");
        for s in &self.failover {
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} / {:.0} / {:.0} | {:.0} / {:.0} / {:.0} | {} |",
                s.variant.name(),
                s.trials.len(),
                s.window_ms.min,
                s.window_ms.median,
                s.window_ms.max,
                s.failed_attempts.min,
                s.failed_attempts.median,
                s.failed_attempts.max,
                s.failed_writes.min,
                s.failed_writes.median,
                s.failed_writes.max,
                s.lost_total
            );
        }
        if let (Some(ha), Some(default), Some(tuned)) = (
            self.series(Variant::Ha),
            self.series(Variant::EtcdDefault),
            self.series(Variant::EtcdTuned),
        ) {
            let _ = writeln!(
                out,
                "\nRatio of median windows ha/etcd: {:.2} (defaults), {:.2} (50/250).",
                ratio(ha.window_ms.median, default.window_ms.median),
                ratio(ha.window_ms.median, tuned.window_ms.median)
            );
        }
        if let Some(ha) = self.series(Variant::Ha) {
            let leaderless: Vec<String> = ha
                .trials
                .iter()
                .map(|t| {
                    t.leaderless_ms
                        .map_or("?".to_string(), |ms| format!("{ms:.0}"))
                })
                .collect();
            let _ = writeln!(
                out,
                "\nha's own leaderless time per trial (new leader's `/v1/failover/history`, ms): {}.",
                leaderless.join(", ")
            );
        }
        let _ = writeln!(out, "\nPer-trial windows (ms):\n");
        for s in &self.failover {
            let windows: Vec<String> = s
                .trials
                .iter()
                .map(|t| format!("{:.0}", t.window_ms))
                .collect();
            let _ = writeln!(out, "- {}: {}", s.variant.name(), windows.join(", "));
        }
        let _ = writeln!(
            out,
            "\nPlot: `failover_latency.svg` (first trial of each).\n"
        );

        let _ = writeln!(out, "## Resources\n");
        let ha_rss = median_u64(&self.idle_memory.ha_bytes);
        let etcd_rss = median_u64(&self.idle_memory.etcd_bytes);
        let list = |bytes: &[u64]| {
            bytes
                .iter()
                .map(|b| format!("{:.1}", mib(*b as f64)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(out, "| | ha | etcd | ratio ha/etcd |");
        let _ = writeln!(out, "|---|---:|---:|---:|");
        let _ = writeln!(
            out,
            "| idle RSS per member, median MiB (all: ha {}; etcd {}) | {:.1} | {:.1} | {:.2} |",
            list(&self.idle_memory.ha_bytes),
            list(&self.idle_memory.etcd_bytes),
            mib(ha_rss),
            mib(etcd_rss),
            ratio(ha_rss, etcd_rss)
        );
        for (ha, etcd) in self.writes.ha.iter().zip(&self.writes.etcd) {
            let _ = writeln!(
                out,
                "| CPU ms per 1,000 writes, 3 members, {} client(s) | {:.0} | {:.0} | {:.2} |",
                ha.clients,
                ha.cpu_ms_per_1000_writes,
                etcd.cpu_ms_per_1000_writes,
                ratio(ha.cpu_ms_per_1000_writes, etcd.cpu_ms_per_1000_writes)
            );
        }

        let _ = writeln!(out, "\n## Targets\n");
        let _ = writeln!(out, "| target | measured | verdict |");
        let _ = writeln!(out, "|---|---|---|");
        for check in &self.targets {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                check.target,
                check.measured,
                met(check.met)
            );
        }
        let _ = writeln!(out, "\nNotes:\n");
        for note in &self.settings.notes {
            let _ = writeln!(out, "- {note}");
        }
        out
    }

    /// Write the JSON, the Markdown and the plots to `out_dir`.
    ///
    /// # Errors
    /// The file or plot error, as text.
    pub fn write(&self, out_dir: &Path) -> Result<(), String> {
        ha_bench::write_report_files(out_dir, "compare_etcd", self, &self.markdown())?;
        let latency: Vec<(String, Vec<Attempt>)> = self
            .failover
            .iter()
            .map(|s| (s.variant.name().to_string(), s.plotted_attempts.clone()))
            .collect();
        plots::failover_latency(&out_dir.join("failover_latency.svg"), &latency)?;
        let throughput = vec![
            (
                "ha (PUT /v1/kv)".to_string(),
                self.writes
                    .ha
                    .iter()
                    .map(|r| (r.clients, r.writes_per_second))
                    .collect(),
            ),
            (
                "etcd (POST /v3/kv/put)".to_string(),
                self.writes
                    .etcd
                    .iter()
                    .map(|r| (r.clients, r.writes_per_second))
                    .collect(),
            ),
        ];
        ha_bench::throughput_vs_clients(
            &out_dir.join("throughput_vs_clients.svg"),
            "QUORUM writes over HTTP, 128-byte values, 3 members, fsync on",
            &throughput,
        )
    }
}
