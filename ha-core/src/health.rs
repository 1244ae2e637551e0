//! Health of a node and of the host components it depends on.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The health of one component or of a whole node.
///
/// Ordered from best to worst except `Unknown`, which sorts last so that "worst of" treats a
/// check that never answered as a problem.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HealthStatus {
    /// Working normally.
    Healthy,
    /// Working with reduced capacity; the node serves but campaigns for leadership only when
    /// no leader has been heard for the unwell wait
    /// ([`HealthConfig::unwell_campaign_after_timeouts`](crate::HealthConfig)).
    Degraded,
    /// Not working; a leader in this state hands leadership over.
    Unhealthy,
    /// No result yet (or the check timed out).
    #[default]
    Unknown,
}

impl HealthStatus {
    /// The upper-case name used in the HTTP API.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "HEALTHY",
            HealthStatus::Degraded => "DEGRADED",
            HealthStatus::Unhealthy => "UNHEALTHY",
            HealthStatus::Unknown => "UNKNOWN",
        }
    }

    /// Whether a node in this health stands for election on its election timeout. Only a
    /// healthy node does; any other voter waits until it has heard no leader for the unwell
    /// wait ([`HealthConfig::unwell_campaign_after_timeouts`](crate::HealthConfig)), so that a
    /// cluster in which every node is equally unwell still elects one.
    pub fn may_campaign(self) -> bool {
        self == HealthStatus::Healthy
    }

    /// Whether this status is strictly better than `other`, in the order HEALTHY, DEGRADED,
    /// UNKNOWN, UNHEALTHY. An unhealthy leader hands over only to a voter better than itself.
    ///
    /// ```
    /// use ha_core::HealthStatus;
    /// assert!(HealthStatus::Degraded.is_better_than(HealthStatus::Unhealthy));
    /// assert!(!HealthStatus::Unhealthy.is_better_than(HealthStatus::Unhealthy));
    /// ```
    pub fn is_better_than(self, other: HealthStatus) -> bool {
        self.severity() < other.severity()
    }

    fn severity(self) -> u8 {
        match self {
            HealthStatus::Healthy => 0,
            HealthStatus::Degraded => 1,
            HealthStatus::Unknown => 2,
            HealthStatus::Unhealthy => 3,
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A host component's health probe: a database, a cache, a queue, a disk.
///
/// The node runs each check every `interval()` on a blocking thread with a `timeout()`; a check
/// that does not answer in time counts as [`HealthStatus::Unknown`].
///
/// ```
/// use ha_core::{HealthCheck, HealthStatus};
/// struct DiskSpace;
/// impl HealthCheck for DiskSpace {
///     fn name(&self) -> &str { "disk" }
///     fn check(&self) -> HealthStatus { HealthStatus::Healthy }
/// }
/// assert_eq!(DiskSpace.check(), HealthStatus::Healthy);
/// assert!(DiskSpace.critical());
/// ```
pub trait HealthCheck: Send + Sync + 'static {
    /// A short stable name, used in logs, the HTTP API and metric labels.
    fn name(&self) -> &str;

    /// Probe the component now. Must not panic; return `Unhealthy` on failure.
    fn check(&self) -> HealthStatus;

    /// Whether the node is unhealthy when this component is (true), or only degraded (false).
    fn critical(&self) -> bool {
        true
    }

    /// How often to run the check.
    fn interval(&self) -> Duration {
        Duration::from_secs(1)
    }

    /// How long a check may take before it counts as `Unknown`.
    fn timeout(&self) -> Duration {
        Duration::from_millis(500)
    }
}

/// One check's latest result, as reported by the node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The check's [`HealthCheck::name`].
    pub name: String,
    /// Its latest status.
    pub status: HealthStatus,
    /// Whether it is critical.
    pub critical: bool,
}

/// Combines check results into the node's health: the worst critical result decides, and a
/// non-critical failure can at most make the node `Degraded`. No checks means `Healthy`.
///
/// ```
/// use ha_core::{aggregate_health, CheckResult, HealthStatus};
/// let results = [
///     CheckResult { name: "db".into(), status: HealthStatus::Healthy, critical: true },
///     CheckResult { name: "cache".into(), status: HealthStatus::Unhealthy, critical: false },
/// ];
/// assert_eq!(aggregate_health(&results), HealthStatus::Degraded);
/// ```
pub fn aggregate_health(results: &[CheckResult]) -> HealthStatus {
    results
        .iter()
        .map(|result| {
            if result.critical || result.status == HealthStatus::Healthy {
                result.status
            } else {
                HealthStatus::Degraded
            }
        })
        .max_by_key(|status| status.severity())
        .unwrap_or(HealthStatus::Healthy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(status: HealthStatus, critical: bool) -> CheckResult {
        CheckResult {
            name: "x".into(),
            status,
            critical,
        }
    }

    #[test]
    fn worst_critical_result_decides() {
        use HealthStatus::*;
        let table = [
            (vec![], Healthy),
            (vec![result(Healthy, true)], Healthy),
            (
                vec![result(Healthy, true), result(Degraded, true)],
                Degraded,
            ),
            (
                vec![result(Degraded, true), result(Unhealthy, true)],
                Unhealthy,
            ),
            (vec![result(Unknown, true)], Unknown),
            (
                vec![result(Unknown, true), result(Unhealthy, true)],
                Unhealthy,
            ),
            (vec![result(Unhealthy, false)], Degraded),
            (
                vec![result(Unknown, false), result(Healthy, true)],
                Degraded,
            ),
        ];
        for (results, expected) in table {
            assert_eq!(aggregate_health(&results), expected, "{results:?}");
        }
    }

    #[test]
    fn only_healthy_nodes_campaign() {
        assert!(HealthStatus::Healthy.may_campaign());
        for status in [
            HealthStatus::Degraded,
            HealthStatus::Unhealthy,
            HealthStatus::Unknown,
        ] {
            assert!(!status.may_campaign());
        }
    }
}
