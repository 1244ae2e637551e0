//! Percentiles of a set of latencies.

use serde::{Deserialize, Serialize};

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Samples.
    pub count: usize,
    /// Fastest.
    pub min_us: u64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Slowest.
    pub max_us: u64,
}

impl LatencySummary {
    /// Summarise `samples` (sorted in place). Empty input gives all zeros.
    pub fn from_micros(samples: &mut [u64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let at = |fraction: f64| {
            let position = ((samples.len() - 1) as f64 * fraction).round() as usize;
            samples[position.min(samples.len() - 1)]
        };
        Self {
            count: samples.len(),
            min_us: samples[0],
            p50_us: at(0.50),
            p90_us: at(0.90),
            p99_us: at(0.99),
            max_us: samples[samples.len() - 1],
        }
    }
}
