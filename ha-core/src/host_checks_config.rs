//! `[health]`: thresholds of the node's built-in host checks, and when a node that is not
//! healthy may still stand for election (docs/ARCHITECTURE.md, "Day-2 operations").

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// One gibibyte, for the defaults below.
const GIB: u64 = 1 << 30;
/// One mebibyte.
const MIB: u64 = 1 << 20;

/// Longest wait, in election timeouts, before a voter that is not healthy campaigns.
pub const UNWELL_CAMPAIGN_AFTER_TIMEOUTS_MAX: u32 = 1_000;

/// Thresholds of the built-in host checks and the rule that keeps a cluster of equally unwell
/// nodes from staying leaderless.
///
/// Each check is a [`HealthCheck`](crate::HealthCheck) the node registers itself (when
/// `host_checks` is on) and reports in `/v1/health` with its measured values:
///
/// | check | measures | DEGRADED when | UNHEALTHY when |
/// |---|---|---|---|
/// | `disk_space` | free space of the data dir's filesystem | below 1 GiB or 2% | below 256 MiB or 1% |
/// | `wal_sync` | p99 of WAL fsyncs over the last minute | above 500 ms | above 2,000 ms |
/// | `memory` | the process's resident set (RSS) | above 80% of the limit | above the limit (default 90% of RAM) |
/// | `cpu_load` | 1-minute load average per CPU | above 1000% | never (not critical) |
///
/// A DEGRADED node serves but does not campaign at once; an UNHEALTHY leader hands
/// leadership over to a healthier voter. Because nodes sharing a host or a disk cross these
/// thresholds together, a voter that is not healthy still campaigns once no leader has been
/// heard for `unwell_campaign_after_timeouts` election timeouts (twice that when UNHEALTHY or
/// UNKNOWN): a cluster in which every node is equally unwell still has a leader.
///
/// ```
/// use ha_core::HealthConfig;
/// let mut health = HealthConfig::default();
/// health.validate().unwrap();
/// health.disk_free_percent_degraded_below = 0;
/// assert_eq!(health.validate().unwrap_err().field, "health.disk_free_percent_degraded_below");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthConfig {
    /// Run the built-in host checks (disk space, WAL fsync latency, memory, CPU load).
    pub host_checks: bool,
    /// How often each host check runs.
    pub check_interval_ms: u64,
    /// DEGRADED when the data dir's filesystem has fewer free bytes (available to the
    /// process) than this.
    pub disk_free_bytes_degraded_below: u64,
    /// UNHEALTHY when it has fewer free bytes than this.
    pub disk_free_bytes_unhealthy_below: u64,
    /// DEGRADED when less than this percentage of the filesystem is free.
    pub disk_free_percent_degraded_below: u8,
    /// UNHEALTHY when less than this percentage is free.
    pub disk_free_percent_unhealthy_below: u8,
    /// DEGRADED when the 99th percentile of WAL fsyncs over the last minute (or a sync still
    /// running) takes longer than this.
    pub wal_sync_p99_ms_degraded_above: u64,
    /// UNHEALTHY when it takes longer than this.
    pub wal_sync_p99_ms_unhealthy_above: u64,
    /// Fewest syncs in the last minute for a percentile to count (a sync still running counts
    /// regardless): one slow sync among a handful says little.
    pub wal_sync_samples_min: u32,
    /// UNHEALTHY when the process's resident memory is above this. `None`: 90% of the
    /// machine's physical memory.
    pub rss_bytes_max: Option<u64>,
    /// DEGRADED when resident memory is above this percentage of the limit.
    pub rss_percent_degraded_above: u8,
    /// DEGRADED when the 1-minute load average is above this percentage of the CPUs (1000:
    /// ten runnable threads per core; a shared 2-core build machine was measured at 578%).
    /// CPU load never makes a node UNHEALTHY: it is shared by every process on the host and
    /// says nothing certain about this one.
    pub cpu_load_percent_degraded_above: u32,
    /// A voter that is not HEALTHY campaigns once it has heard no leader for this many maximum
    /// election timeouts (DEGRADED), or twice as many (UNHEALTHY, UNKNOWN); a healthy voter
    /// campaigns after one. 0 turns this off: such a voter never campaigns, and a cluster in
    /// which every voter is unwell has no leader.
    pub unwell_campaign_after_timeouts: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            host_checks: true,
            check_interval_ms: 1_000,
            disk_free_bytes_degraded_below: GIB,
            disk_free_bytes_unhealthy_below: 256 * MIB,
            disk_free_percent_degraded_below: 2,
            disk_free_percent_unhealthy_below: 1,
            wal_sync_p99_ms_degraded_above: 500,
            wal_sync_p99_ms_unhealthy_above: 2_000,
            wal_sync_samples_min: 10,
            rss_bytes_max: None,
            rss_percent_degraded_above: 80,
            cpu_load_percent_degraded_above: 1_000,
            unwell_campaign_after_timeouts: 5,
        }
    }
}

impl HealthConfig {
    /// The same thresholds with the built-in host checks off (the node's health is then the
    /// host's own checks only).
    pub fn without_host_checks() -> Self {
        Self {
            host_checks: false,
            ..Self::default()
        }
    }

    /// Check the thresholds.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first field out of range or out of order with its pair.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(100..=3_600_000).contains(&self.check_interval_ms) {
            return Err(ConfigError::new(
                "health.check_interval_ms",
                format!("{} is outside 100..=3600000", self.check_interval_ms),
                "check about every second (1000)",
            ));
        }
        for (field, value) in [
            (
                "health.disk_free_percent_degraded_below",
                self.disk_free_percent_degraded_below,
            ),
            (
                "health.disk_free_percent_unhealthy_below",
                self.disk_free_percent_unhealthy_below,
            ),
            (
                "health.rss_percent_degraded_above",
                self.rss_percent_degraded_above,
            ),
        ] {
            if value == 0 || value > 100 {
                return Err(ConfigError::new(
                    field,
                    format!("{value} is not a percentage from 1 to 100"),
                    "give a whole percentage from 1 to 100",
                ));
            }
        }
        if self.disk_free_bytes_degraded_below < self.disk_free_bytes_unhealthy_below {
            return Err(ConfigError::new(
                "health.disk_free_bytes_degraded_below",
                format!(
                    "{} is below disk_free_bytes_unhealthy_below {}",
                    self.disk_free_bytes_degraded_below, self.disk_free_bytes_unhealthy_below
                ),
                "a node must degrade before it becomes unhealthy: give at least as many bytes",
            ));
        }
        if self.disk_free_percent_degraded_below < self.disk_free_percent_unhealthy_below {
            return Err(ConfigError::new(
                "health.disk_free_percent_degraded_below",
                format!(
                    "{} is below disk_free_percent_unhealthy_below {}",
                    self.disk_free_percent_degraded_below, self.disk_free_percent_unhealthy_below
                ),
                "a node must degrade before it becomes unhealthy: give at least the same percentage",
            ));
        }
        if self.wal_sync_p99_ms_degraded_above == 0
            || self.wal_sync_p99_ms_degraded_above > self.wal_sync_p99_ms_unhealthy_above
        {
            return Err(ConfigError::new(
                "health.wal_sync_p99_ms_degraded_above",
                format!(
                    "{} is 0 or above wal_sync_p99_ms_unhealthy_above {}",
                    self.wal_sync_p99_ms_degraded_above, self.wal_sync_p99_ms_unhealthy_above
                ),
                "give a positive latency no larger than the unhealthy one (500 and 2000)",
            ));
        }
        if self.rss_bytes_max == Some(0) {
            return Err(ConfigError::new(
                "health.rss_bytes_max",
                "is 0",
                "give a limit in bytes, or remove it for 90% of physical memory",
            ));
        }
        if self.cpu_load_percent_degraded_above == 0 {
            return Err(ConfigError::new(
                "health.cpu_load_percent_degraded_above",
                "is 0, which degrades every node that runs at all",
                "give a load per CPU in percent (1000), or turn host_checks off",
            ));
        }
        if self.unwell_campaign_after_timeouts > UNWELL_CAMPAIGN_AFTER_TIMEOUTS_MAX {
            return Err(ConfigError::new(
                "health.unwell_campaign_after_timeouts",
                format!(
                    "{} is above {UNWELL_CAMPAIGN_AFTER_TIMEOUTS_MAX}",
                    self.unwell_campaign_after_timeouts
                ),
                "a few election timeouts (5) is enough for a healthy voter to win first",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mistake_names_its_field() {
        type Mistake = fn(&mut HealthConfig);
        let cases: [(&str, Mistake); 9] = [
            ("health.check_interval_ms", |h| h.check_interval_ms = 10),
            ("health.disk_free_percent_degraded_below", |h| {
                h.disk_free_percent_degraded_below = 101
            }),
            ("health.disk_free_percent_unhealthy_below", |h| {
                h.disk_free_percent_unhealthy_below = 0
            }),
            ("health.disk_free_bytes_degraded_below", |h| {
                h.disk_free_bytes_degraded_below = 1
            }),
            ("health.disk_free_percent_degraded_below", |h| {
                h.disk_free_percent_unhealthy_below = 5
            }),
            ("health.wal_sync_p99_ms_degraded_above", |h| {
                h.wal_sync_p99_ms_degraded_above = 3_000
            }),
            ("health.rss_bytes_max", |h| h.rss_bytes_max = Some(0)),
            ("health.cpu_load_percent_degraded_above", |h| {
                h.cpu_load_percent_degraded_above = 0
            }),
            ("health.unwell_campaign_after_timeouts", |h| {
                h.unwell_campaign_after_timeouts = 1_001
            }),
        ];
        for (field, mutate) in cases {
            let mut health = HealthConfig::default();
            mutate(&mut health);
            let error = health.validate().expect_err(field);
            assert_eq!(error.field, field, "{error}");
        }
    }
}
