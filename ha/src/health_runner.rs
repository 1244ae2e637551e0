//! Runs the host's health checks on their intervals and keeps the aggregate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ha_core::{CheckResult, HealthCheck, HealthStatus, aggregate_health};

/// Most health checks one node runs.
pub const HEALTH_CHECKS_MAX: usize = 64;

/// The checks and when each is next due.
pub(crate) struct HealthRunner {
    checks: Vec<(Arc<dyn HealthCheck>, Instant)>,
    results: Vec<CheckResult>,
}

impl HealthRunner {
    pub(crate) fn new(checks: Vec<Arc<dyn HealthCheck>>) -> Self {
        let now = Instant::now();
        let results = checks
            .iter()
            .map(|check| CheckResult {
                name: check.name().to_string(),
                status: HealthStatus::Unknown,
                critical: check.critical(),
            })
            .collect();
        Self {
            checks: checks.into_iter().map(|check| (check, now)).collect(),
            results,
        }
    }

    /// The latest result of every check.
    pub(crate) fn results(&self) -> &[CheckResult] {
        &self.results
    }

    /// The aggregate: healthy with no checks.
    pub(crate) fn status(&self) -> HealthStatus {
        aggregate_health(&self.results)
    }

    /// How long until the next check is due.
    pub(crate) fn next_due(&self) -> Duration {
        let now = Instant::now();
        self.checks
            .iter()
            .map(|(_, due)| due.saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::from_secs(3600))
    }

    /// Run every check that is due, each on the blocking pool within its timeout (a check that
    /// hangs or panics counts as `Unknown`). Returns whether the aggregate changed.
    pub(crate) async fn run_due(&mut self) -> bool {
        let before = self.status();
        let now = Instant::now();
        for (slot, (check, due)) in self.checks.iter_mut().enumerate() {
            if *due > now {
                continue;
            }
            *due = now + check.interval().max(Duration::from_millis(10));
            let probe = Arc::clone(check);
            let timeout = check.timeout();
            let status = match tokio::time::timeout(
                timeout,
                tokio::task::spawn_blocking(move || probe.check()),
            )
            .await
            {
                Ok(Ok(status)) => status,
                Ok(Err(_)) | Err(_) => HealthStatus::Unknown,
            };
            if let Some(result) = self.results.get_mut(slot) {
                if result.status != status {
                    tracing::info!(check = %result.name, from = %result.status, to = %status, "health check changed");
                }
                result.status = status;
            }
        }
        self.status() != before
    }
}
