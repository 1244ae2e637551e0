//! The node's built-in host checks (issue 14, item 4): free space of the data dir's
//! filesystem, the WAL's fsync p99 over the last minute, the process's resident memory, and
//! the host's CPU load, with the thresholds of [`HealthConfig`].
//!
//! Each is a [`HealthCheck`] the node runs beside the host's own, so it feeds the node's
//! health the same way (an UNHEALTHY leader hands over to a healthier voter; a node that is
//! not HEALTHY campaigns only after the longer wait of
//! [`HealthConfig::unwell_campaign_after_timeouts`]). Each also keeps its last reading, which
//! `/v1/health` shows as `host_checks`: the measured values and a sentence with the
//! thresholds. The judgements are pure functions ([`judge_disk`], [`judge_wal_sync`],
//! [`judge_memory`], [`judge_cpu_load`]) so the thresholds are tested without a full disk.
//!
//! Sources (Linux): `statvfs(2)` of the data dir, `/proc/self/status` (`VmRSS`),
//! `/proc/meminfo` (`MemTotal`), `/proc/loadavg`. A check whose source cannot be read when the
//! node starts is not registered (and says so in the log), rather than reporting UNKNOWN
//! forever: UNKNOWN is worse than DEGRADED and would keep the node from campaigning.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ha_core::{HealthCheck, HealthConfig, HealthStatus};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Number;

use crate::wal_sync_timer::{SyncLatency, SyncLatencyWindow};

/// The name of the free-space check.
pub const DISK_SPACE_CHECK: &str = "disk_space";
/// The name of the WAL fsync latency check.
pub const WAL_SYNC_CHECK: &str = "wal_sync";
/// The name of the resident memory check.
pub const MEMORY_CHECK: &str = "memory";
/// The name of the CPU load check.
pub const CPU_LOAD_CHECK: &str = "cpu_load";

/// One built-in check's latest reading: an element of `/v1/health`'s `host_checks`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCheckReport {
    /// The check ([`DISK_SPACE_CHECK`], [`WAL_SYNC_CHECK`], [`MEMORY_CHECK`],
    /// [`CPU_LOAD_CHECK`]).
    pub name: String,
    /// Its status from this reading.
    pub status: HealthStatus,
    /// Whether an UNHEALTHY reading makes the node UNHEALTHY (else at most DEGRADED).
    pub critical: bool,
    /// What was measured, by name with its unit last (`free_bytes`, `free_percent`,
    /// `p99_ms`, `samples`, `rss_bytes`, `limit_bytes`, `load_percent`, ...).
    pub measured: BTreeMap<String, Number>,
    /// The reading and the thresholds in a sentence.
    pub detail: String,
}

/// A judgement of one reading.
#[derive(Clone, Debug, PartialEq)]
pub struct Judgement {
    /// The status it earns.
    pub status: HealthStatus,
    /// The values, by name.
    pub measured: BTreeMap<String, Number>,
    /// The sentence for people.
    pub detail: String,
}

fn gib(bytes: f64) -> String {
    format!("{:.2} GiB", bytes / f64::from(1u32 << 30))
}

/// Named values as JSON numbers (a value that is not finite is left out).
fn measured<const N: usize>(values: [(&str, f64); N]) -> BTreeMap<String, Number> {
    values
        .into_iter()
        .filter_map(|(name, value)| Some((name.to_string(), Number::from_f64(value)?)))
        .collect()
}

/// Free space: `available_bytes` (what this process may use) of `total_bytes`.
pub fn judge_disk(available_bytes: u64, total_bytes: u64, config: &HealthConfig) -> Judgement {
    let percent = if total_bytes == 0 {
        0.0
    } else {
        available_bytes as f64 * 100.0 / total_bytes as f64
    };
    let below =
        |bytes: u64, percent_min: u8| available_bytes < bytes || percent < f64::from(percent_min);
    let status = if below(
        config.disk_free_bytes_unhealthy_below,
        config.disk_free_percent_unhealthy_below,
    ) {
        HealthStatus::Unhealthy
    } else if below(
        config.disk_free_bytes_degraded_below,
        config.disk_free_percent_degraded_below,
    ) {
        HealthStatus::Degraded
    } else {
        HealthStatus::Healthy
    };
    Judgement {
        status,
        measured: measured([
            ("free_bytes", available_bytes as f64),
            ("total_bytes", total_bytes as f64),
            ("free_percent", (percent * 100.0).round() / 100.0),
        ]),
        detail: format!(
            "{} ({percent:.1}%) free of {}; degraded below {} or {}%, unhealthy below {} or {}%",
            gib(available_bytes as f64),
            gib(total_bytes as f64),
            gib(config.disk_free_bytes_degraded_below as f64),
            config.disk_free_percent_degraded_below,
            gib(config.disk_free_bytes_unhealthy_below as f64),
            config.disk_free_percent_unhealthy_below,
        ),
    }
}

/// WAL fsyncs: the p99 of the last minute, and a sync still running (which counts as soon as
/// it is longer than a threshold, however few samples there are).
pub fn judge_wal_sync(latency: SyncLatency, config: &HealthConfig) -> Judgement {
    let enough = latency.samples >= config.wal_sync_samples_min as usize;
    let judged_ms = [latency.p99_ms.filter(|_| enough), latency.running_ms]
        .into_iter()
        .flatten()
        .fold(0.0_f64, f64::max);
    let status = if judged_ms > config.wal_sync_p99_ms_unhealthy_above as f64 {
        HealthStatus::Unhealthy
    } else if judged_ms > config.wal_sync_p99_ms_degraded_above as f64 {
        HealthStatus::Degraded
    } else {
        HealthStatus::Healthy
    };
    let mut values = measured([("samples", latency.samples as f64)]);
    if let Some(p99_ms) = latency.p99_ms {
        values.extend(measured([("p99_ms", (p99_ms * 1_000.0).round() / 1_000.0)]));
    }
    if let Some(running_ms) = latency.running_ms {
        values.extend(measured([("running_ms", running_ms.round())]));
    }
    let p99 = match latency.p99_ms {
        Some(p99_ms) if enough => format!("p99 {p99_ms:.1} ms over {} syncs", latency.samples),
        Some(p99_ms) => format!(
            "p99 {p99_ms:.1} ms over only {} syncs (fewer than {}: not judged)",
            latency.samples, config.wal_sync_samples_min
        ),
        None => "no sync in the last minute".to_string(),
    };
    let running = latency
        .running_ms
        .map(|ms| format!(", one running for {ms:.0} ms"))
        .unwrap_or_default();
    Judgement {
        status,
        measured: values,
        detail: format!(
            "{p99}{running}; degraded above {} ms, unhealthy above {} ms",
            config.wal_sync_p99_ms_degraded_above, config.wal_sync_p99_ms_unhealthy_above
        ),
    }
}

/// Resident memory against `limit_bytes`.
pub fn judge_memory(rss_bytes: u64, limit_bytes: u64, config: &HealthConfig) -> Judgement {
    let degraded_bytes =
        (u128::from(limit_bytes) * u128::from(config.rss_percent_degraded_above) / 100) as u64;
    let status = if rss_bytes > limit_bytes {
        HealthStatus::Unhealthy
    } else if rss_bytes > degraded_bytes {
        HealthStatus::Degraded
    } else {
        HealthStatus::Healthy
    };
    Judgement {
        status,
        measured: measured([
            ("rss_bytes", rss_bytes as f64),
            ("limit_bytes", limit_bytes as f64),
        ]),
        detail: format!(
            "resident {} of a {} limit; degraded above {}%, unhealthy above the limit",
            gib(rss_bytes as f64),
            gib(limit_bytes as f64),
            config.rss_percent_degraded_above
        ),
    }
}

/// The 1-minute load average over `cpus` CPUs. Never UNHEALTHY (the check is not critical).
pub fn judge_cpu_load(load_1m: f64, cpus: usize, config: &HealthConfig) -> Judgement {
    let percent = load_1m * 100.0 / cpus.max(1) as f64;
    let status = if percent > f64::from(config.cpu_load_percent_degraded_above) {
        HealthStatus::Degraded
    } else {
        HealthStatus::Healthy
    };
    Judgement {
        status,
        measured: measured([
            ("load_1m", load_1m),
            ("cpus", cpus as f64),
            ("load_percent", percent.round()),
        ]),
        detail: format!(
            "load {load_1m:.2} on {cpus} CPUs ({percent:.0}%); degraded above {}%",
            config.cpu_load_percent_degraded_above
        ),
    }
}

/// Free and total bytes of the filesystem holding `path` (or, before the node has made it,
/// its nearest existing ancestor: the same filesystem unless a mount is made in between).
#[cfg(unix)]
fn disk_space(path: &Path) -> std::io::Result<(u64, u64)> {
    let existing = path
        .ancestors()
        .find(|ancestor| ancestor.exists())
        .unwrap_or(path);
    let stats = rustix::fs::statvfs(existing)?;
    Ok((
        stats.f_bavail.saturating_mul(stats.f_frsize),
        stats.f_blocks.saturating_mul(stats.f_frsize),
    ))
}

#[cfg(not(unix))]
fn disk_space(_path: &Path) -> std::io::Result<(u64, u64)> {
    Err(std::io::Error::other(
        "free space is read with statvfs, on Unix only",
    ))
}

/// A `Key:   123 kB` line of a `/proc` file, in bytes.
fn proc_kib_field(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|line| line.starts_with(key))?;
    let value = line[key.len()..].trim_start_matches(':').trim();
    let number = value.strip_suffix("kB").unwrap_or(value).trim();
    number.parse::<u64>().ok()?.checked_mul(1024)
}

fn read_small(path: &str) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(64 * 1024)
        .read_to_string(&mut text)?;
    Ok(text)
}

fn rss_bytes() -> std::io::Result<u64> {
    let text = read_small("/proc/self/status")?;
    proc_kib_field(&text, "VmRSS").ok_or_else(|| std::io::Error::other("no VmRSS line"))
}

fn memory_total_bytes() -> std::io::Result<u64> {
    let text = read_small("/proc/meminfo")?;
    proc_kib_field(&text, "MemTotal").ok_or_else(|| std::io::Error::other("no MemTotal line"))
}

fn load_1m() -> std::io::Result<f64> {
    let text = read_small("/proc/loadavg")?;
    text.split_whitespace()
        .next()
        .and_then(|field| field.parse::<f64>().ok())
        .ok_or_else(|| std::io::Error::other("/proc/loadavg does not start with a number"))
}

/// What one built-in check measures.
#[derive(Clone, Debug)]
enum Probe {
    Disk(PathBuf),
    WalSync(Arc<SyncLatencyWindow>),
    Memory { limit_bytes: u64 },
    CpuLoad { cpus: usize },
}

/// One built-in check: probes, judges and keeps its last report.
struct HostCheck {
    name: &'static str,
    probe: Probe,
    config: HealthConfig,
    last: Arc<Mutex<Option<HostCheckReport>>>,
}

impl HostCheck {
    fn judge(&self) -> Judgement {
        let failed = |what: &str, error: std::io::Error| Judgement {
            status: HealthStatus::Unknown,
            measured: BTreeMap::new(),
            detail: format!("cannot read {what}: {error}"),
        };
        match &self.probe {
            Probe::Disk(path) => match disk_space(path) {
                Ok((available, total)) => judge_disk(available, total, &self.config),
                Err(error) => failed(&format!("free space of {}", path.display()), error),
            },
            Probe::WalSync(window) => judge_wal_sync(window.read(Instant::now()), &self.config),
            Probe::Memory { limit_bytes } => match rss_bytes() {
                Ok(rss) => judge_memory(rss, *limit_bytes, &self.config),
                Err(error) => failed("/proc/self/status", error),
            },
            Probe::CpuLoad { cpus } => match load_1m() {
                Ok(load) => judge_cpu_load(load, *cpus, &self.config),
                Err(error) => failed("/proc/loadavg", error),
            },
        }
    }
}

impl HealthCheck for HostCheck {
    fn name(&self) -> &str {
        self.name
    }

    fn check(&self) -> HealthStatus {
        let judgement = self.judge();
        let status = judgement.status;
        *self.last.lock() = Some(HostCheckReport {
            name: self.name.to_string(),
            status,
            critical: self.critical(),
            measured: judgement.measured,
            detail: judgement.detail,
        });
        status
    }

    fn critical(&self) -> bool {
        !matches!(self.probe, Probe::CpuLoad { .. })
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(self.config.check_interval_ms)
    }
}

/// The built-in checks of one node, and their last reports for `/v1/health`.
#[derive(Clone, Default)]
pub(crate) struct HostChecks {
    reports: Vec<Arc<Mutex<Option<HostCheckReport>>>>,
}

impl HostChecks {
    /// The checks `config` asks for, for a node with `data_dir` (none: no disk or WAL
    /// checks) whose WAL syncs are timed into `wal_window`. Returns the checks to run and the
    /// handle that reads their reports.
    pub(crate) fn build(
        config: &HealthConfig,
        data_dir: Option<&Path>,
        wal_window: Option<Arc<SyncLatencyWindow>>,
    ) -> (Vec<Arc<dyn HealthCheck>>, Self) {
        if !config.host_checks {
            return (Vec::new(), Self::default());
        }
        let mut probes: Vec<(&'static str, Probe)> = Vec::new();
        if let Some(dir) = data_dir {
            match disk_space(dir) {
                Ok(_) => probes.push((DISK_SPACE_CHECK, Probe::Disk(dir.to_path_buf()))),
                Err(error) => tracing::warn!(
                    %error,
                    dir = %dir.display(),
                    "free space of the data dir cannot be read; no disk_space check"
                ),
            }
        }
        if let Some(window) = wal_window {
            probes.push((WAL_SYNC_CHECK, Probe::WalSync(window)));
        }
        let limit_bytes = match config.rss_bytes_max {
            Some(limit) => Ok(limit),
            None => memory_total_bytes().map(|total| total / 10 * 9),
        };
        match limit_bytes.and_then(|limit| rss_bytes().map(|_| limit)) {
            Ok(limit_bytes) => probes.push((MEMORY_CHECK, Probe::Memory { limit_bytes })),
            Err(error) => tracing::warn!(%error, "resident memory cannot be read; no memory check"),
        }
        match load_1m() {
            Ok(_) => {
                let cpus = std::thread::available_parallelism().map_or(1, |cpus| cpus.get());
                probes.push((CPU_LOAD_CHECK, Probe::CpuLoad { cpus }));
            }
            Err(error) => tracing::warn!(%error, "load average cannot be read; no cpu_load check"),
        }
        let mut checks: Vec<Arc<dyn HealthCheck>> = Vec::new();
        let mut reports = Vec::new();
        for (name, probe) in probes {
            let last = Arc::new(Mutex::new(None));
            reports.push(Arc::clone(&last));
            checks.push(Arc::new(HostCheck {
                name,
                probe,
                config: config.clone(),
                last,
            }));
        }
        (checks, Self { reports })
    }

    /// Each check's last report, in registration order (a check not run yet is left out).
    pub(crate) fn reports(&self) -> Vec<HostCheckReport> {
        self.reports
            .iter()
            .filter_map(|last| last.lock().clone())
            .collect()
    }
}

/// The metric each measured value is exported as: (check, measured name, metric, help,
/// divisor to the metric's unit).
const METRICS: [(&str, &str, &str, &str, f64); 7] = [
    (
        DISK_SPACE_CHECK,
        "free_bytes",
        "ha_host_disk_free_bytes",
        "Bytes available to the node on its data dir's filesystem.",
        1.0,
    ),
    (
        DISK_SPACE_CHECK,
        "free_percent",
        "ha_host_disk_free_ratio",
        "Fraction of the data dir's filesystem available to the node.",
        100.0,
    ),
    (
        WAL_SYNC_CHECK,
        "p99_ms",
        "ha_host_wal_sync_p99_seconds",
        "99th percentile of WAL fsync durations over the last minute.",
        1_000.0,
    ),
    (
        WAL_SYNC_CHECK,
        "samples",
        "ha_host_wal_syncs",
        "WAL fsyncs finished in the last minute.",
        1.0,
    ),
    (
        MEMORY_CHECK,
        "rss_bytes",
        "ha_host_resident_memory_bytes",
        "The node process's resident set size.",
        1.0,
    ),
    (
        MEMORY_CHECK,
        "limit_bytes",
        "ha_host_memory_limit_bytes",
        "The resident memory above which the memory check is unhealthy.",
        1.0,
    ),
    (
        CPU_LOAD_CHECK,
        "load_percent",
        "ha_host_cpu_load_ratio",
        "1-minute load average per CPU (1 = one runnable thread per core).",
        100.0,
    ),
];

/// The built-in checks and the failover state in the Prometheus text format, appended to
/// `/v1/metrics`: `ha_host_check_status{check, status}` (1 for each check's status), one gauge
/// per measured value, and `ha_failover_state{state}` with `ha_failover_state_seconds`.
pub fn render_metrics(
    reports: &[HostCheckReport],
    failover: crate::failover_status::FailoverStatus,
) -> String {
    use crate::failover_status::FailoverState;
    let mut out = crate::metrics::PrometheusText::default();
    if !reports.is_empty() {
        out.family(
            "ha_host_check_status",
            "gauge",
            "1 for each built-in host check's latest status.",
        );
        for report in reports {
            for status in [
                HealthStatus::Healthy,
                HealthStatus::Degraded,
                HealthStatus::Unhealthy,
                HealthStatus::Unknown,
            ] {
                out.sample(
                    "ha_host_check_status",
                    &[("check", report.name.as_str()), ("status", status.as_str())],
                    if report.status == status { 1.0 } else { 0.0 },
                );
            }
        }
    }
    for (check, value, metric, help, divisor) in METRICS {
        let found = reports
            .iter()
            .find(|report| report.name == check)
            .and_then(|report| report.measured.get(value))
            .and_then(Number::as_f64);
        if let Some(found) = found {
            out.single(metric, "gauge", help, found / divisor);
        }
    }
    out.family(
        "ha_failover_state",
        "gauge",
        "1 for the failover state this node sees (normal, detecting, failing_over, recovering).",
    );
    for state in [
        FailoverState::Normal,
        FailoverState::Detecting,
        FailoverState::FailingOver,
        FailoverState::Recovering,
    ] {
        out.sample(
            "ha_failover_state",
            &[("state", state.as_str())],
            if failover.state == state { 1.0 } else { 0.0 },
        );
    }
    out.single(
        "ha_failover_state_seconds",
        "gauge",
        "How long this node has been in its failover state.",
        failover.since_ms as f64 / 1_000.0,
    );
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;

    /// One line per case: free bytes, total bytes, the status the defaults give.
    #[test]
    fn disk_thresholds_table() {
        let config = HealthConfig::default();
        let table = [
            (100 * GIB, 200 * GIB, HealthStatus::Healthy),
            (3 * GIB, 200 * GIB, HealthStatus::Degraded), // 1.5% < 2%
            (900 * MIB, 10 * GIB, HealthStatus::Degraded), // < 1 GiB
            (GIB, 200 * GIB, HealthStatus::Unhealthy),    // 0.5% < 1%
            (200 * MIB, 2 * GIB, HealthStatus::Unhealthy), // < 256 MiB
            (0, 0, HealthStatus::Unhealthy),
        ];
        for (free, total, expected) in table {
            let judgement = judge_disk(free, total, &config);
            assert_eq!(judgement.status, expected, "{free} of {total}");
            assert_eq!(judgement.measured["free_bytes"].as_f64(), Some(free as f64));
        }
    }

    #[test]
    fn wal_sync_judges_the_p99_only_with_enough_samples_and_always_a_hung_sync() {
        let config = HealthConfig::default();
        let latency = |samples, p99_ms, running_ms| SyncLatency {
            samples,
            p99_ms,
            running_ms,
        };
        let table = [
            (latency(0, None, None), HealthStatus::Healthy),
            (latency(100, Some(3.0), None), HealthStatus::Healthy),
            (latency(100, Some(600.0), None), HealthStatus::Degraded),
            (latency(100, Some(2_500.0), None), HealthStatus::Unhealthy),
            (latency(3, Some(2_500.0), None), HealthStatus::Healthy),
            (latency(0, None, Some(2_500.0)), HealthStatus::Unhealthy),
            (latency(100, Some(3.0), Some(700.0)), HealthStatus::Degraded),
        ];
        for (reading, expected) in table {
            assert_eq!(
                judge_wal_sync(reading, &config).status,
                expected,
                "{reading:?}"
            );
        }
        let detail = judge_wal_sync(latency(100, Some(2_500.0), None), &config).detail;
        assert!(detail.contains("p99 2500.0 ms over 100 syncs"), "{detail}");
    }

    #[test]
    fn memory_and_cpu_thresholds() {
        let config = HealthConfig::default();
        assert_eq!(
            judge_memory(GIB, 4 * GIB, &config).status,
            HealthStatus::Healthy
        );
        assert_eq!(
            judge_memory(3 * GIB + GIB / 2, 4 * GIB, &config).status,
            HealthStatus::Degraded
        );
        assert_eq!(
            judge_memory(5 * GIB, 4 * GIB, &config).status,
            HealthStatus::Unhealthy
        );
        assert_eq!(
            judge_cpu_load(2.0, 2, &config).status,
            HealthStatus::Healthy
        );
        assert_eq!(
            judge_cpu_load(21.0, 2, &config).status,
            HealthStatus::Degraded
        );
        assert_eq!(
            judge_cpu_load(1_000.0, 1, &config).status,
            HealthStatus::Degraded
        );
    }

    #[test]
    fn proc_fields_parse_in_bytes() {
        let status = "Name:\tbot\nVmRSS:\t   12345 kB\nThreads: 9\n";
        assert_eq!(proc_kib_field(status, "VmRSS"), Some(12_345 * 1024));
        assert_eq!(proc_kib_field(status, "VmSwap"), None);
        assert_eq!(proc_kib_field("VmRSS: lots kB", "VmRSS"), None);
    }

    /// On this (Linux) machine every source is readable: all four checks are registered and
    /// report a value once run.
    #[cfg(target_os = "linux")]
    #[test]
    fn every_check_reads_this_machine() {
        let dir = std::env::temp_dir();
        let window = Arc::new(SyncLatencyWindow::new());
        let (checks, host) = HostChecks::build(&HealthConfig::default(), Some(&dir), Some(window));
        let names: Vec<&str> = checks.iter().map(|check| check.name()).collect();
        assert_eq!(
            names,
            [
                DISK_SPACE_CHECK,
                WAL_SYNC_CHECK,
                MEMORY_CHECK,
                CPU_LOAD_CHECK
            ]
        );
        for check in &checks {
            assert_ne!(check.check(), HealthStatus::Unknown, "{}", check.name());
        }
        let reports = host.reports();
        assert_eq!(reports.len(), 4);
        assert!(reports[0].measured["total_bytes"].as_f64() > Some(0.0));
        assert!(reports[2].measured["rss_bytes"].as_f64() > Some(0.0));
        let (none, _) = HostChecks::build(&HealthConfig::without_host_checks(), Some(&dir), None);
        assert!(none.is_empty());
    }

    #[test]
    fn metrics_export_each_value_and_the_failover_state() {
        use crate::failover_status::{FailoverState, FailoverStatus};
        let config = HealthConfig::default();
        let disk = judge_disk(3 * GIB, 200 * GIB, &config);
        let report = HostCheckReport {
            name: DISK_SPACE_CHECK.into(),
            status: disk.status,
            critical: true,
            measured: disk.measured,
            detail: disk.detail,
        };
        let failover = FailoverStatus {
            state: FailoverState::Recovering,
            since_ms: 1_500,
        };
        let text = render_metrics(&[report], failover);
        for line in [
            "ha_host_check_status{check=\"disk_space\",status=\"DEGRADED\"} 1",
            "ha_host_check_status{check=\"disk_space\",status=\"HEALTHY\"} 0",
            "ha_host_disk_free_bytes 3221225472",
            "ha_host_disk_free_ratio 0.015",
            "ha_failover_state{state=\"recovering\"} 1",
            "ha_failover_state{state=\"normal\"} 0",
            "ha_failover_state_seconds 1.5",
        ] {
            assert!(
                text.lines().any(|got| got == line),
                "{line} missing from\n{text}"
            );
        }
        assert!(
            !text.contains("ha_host_wal_sync_p99_seconds"),
            "no value, no metric"
        );
    }
}
