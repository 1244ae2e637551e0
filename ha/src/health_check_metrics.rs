//! `ha_health_check_status{check,critical,status}` (issue 16): every health check's latest
//! status, the host's own checks and the built-in ones alike (`ha_host_check_status` has the
//! built-in host checks' readings), so an alert can name the check that failed.

use std::collections::BTreeSet;

use ha_core::{CheckResult, HealthStatus};

use crate::metrics::PrometheusText;

/// Every status, for the one-hot gauge.
const STATUSES: [HealthStatus; 4] = [
    HealthStatus::Healthy,
    HealthStatus::Degraded,
    HealthStatus::Unhealthy,
    HealthStatus::Unknown,
];

/// The family, one sample per check and status (1 for the check's status). Two checks with
/// one name would make duplicate series, which Prometheus refuses: the first one is kept.
pub fn render_metrics(checks: &[CheckResult]) -> String {
    let mut out = PrometheusText::default();
    out.family(
        "ha_health_check_status",
        "gauge",
        "1 for each health check's latest status (critical: whether it can make the node UNHEALTHY).",
    );
    let mut seen = BTreeSet::new();
    for check in checks {
        if !seen.insert(check.name.as_str()) {
            continue;
        }
        let critical = if check.critical { "true" } else { "false" };
        for status in STATUSES {
            out.sample(
                "ha_health_check_status",
                &[
                    ("check", check.name.as_str()),
                    ("critical", critical),
                    ("status", status.as_str()),
                ],
                if check.status == status { 1.0 } else { 0.0 },
            );
        }
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_check_is_one_hot_and_a_repeated_name_is_kept_once() {
        let check = |name: &str, status, critical| CheckResult {
            name: name.to_string(),
            status,
            critical,
        };
        let text = render_metrics(&[
            check("db", HealthStatus::Unhealthy, true),
            check("cache", HealthStatus::Healthy, false),
            check("db", HealthStatus::Healthy, true),
        ]);
        assert!(text.starts_with("# HELP ha_health_check_status "), "{text}");
        assert!(text.contains("# TYPE ha_health_check_status gauge\n"));
        for (line, value) in [
            ("check=\"db\",critical=\"true\",status=\"UNHEALTHY\"", 1),
            ("check=\"db\",critical=\"true\",status=\"HEALTHY\"", 0),
            ("check=\"cache\",critical=\"false\",status=\"HEALTHY\"", 1),
            ("check=\"cache\",critical=\"false\",status=\"DEGRADED\"", 0),
        ] {
            let sample = format!("ha_health_check_status{{{line}}} {value}\n");
            assert!(text.contains(&sample), "missing {sample:?} in {text}");
        }
        assert_eq!(text.matches("check=\"db\"").count(), 4, "{text}");
    }
}
