//! A latency histogram with fixed buckets in seconds, for Prometheus' `histogram` type.
//!
//! Recording is lock-free (one atomic add per bucket hit, one for the sum), so the replica's
//! driver loop and the WAL's sync path can observe without waiting on a scrape; a scrape
//! takes a [`HistogramSnapshot`] and renders it. Every node owns its histograms (no global
//! registry), so several nodes in one process each report their own.
//!
//! ```
//! use std::time::Duration;
//! use ha_core::{LATENCY_BUCKETS_SECONDS, LatencyHistogram};
//!
//! let histogram = LatencyHistogram::new(&LATENCY_BUCKETS_SECONDS);
//! histogram.observe(Duration::from_micros(300));
//! histogram.observe(Duration::from_millis(7));
//! let snapshot = histogram.snapshot();
//! assert_eq!(snapshot.count, 2);
//! // Cumulative: 0.0005 holds the 0.3 ms observation, 0.01 both.
//! assert_eq!(snapshot.cumulative_count_at(0.0005), Some(1));
//! assert_eq!(snapshot.cumulative_count_at(0.01), Some(2));
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds, in seconds, of the latency histograms' buckets (`+Inf` is implied): from a
/// tenth of a millisecond (an in-memory commit on one node) to ten seconds (a stalled disk).
pub const LATENCY_BUCKETS_SECONDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Upper bounds, in seconds, for failover leaderless time: the latency buckets plus 30 s and
/// 60 s (a cluster that needs minutes to elect a leader must still land in a finite bucket).
pub const FAILOVER_BUCKETS_SECONDS: [f64; 18] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// Most buckets a histogram may have (besides `+Inf`): bounds the per-histogram memory and
/// the scrape's size.
pub const HISTOGRAM_BUCKETS_MAX: usize = 64;

/// Fixed-bucket latency histogram. Share it as an `Arc<LatencyHistogram>`.
#[derive(Debug)]
pub struct LatencyHistogram {
    /// Upper bounds in seconds, ascending.
    bounds_seconds: &'static [f64],
    /// The same bounds in nanoseconds, for an integer comparison when observing.
    bounds_nanos: Box<[u64]>,
    /// Observations per bucket, not cumulative; the last one is `+Inf`.
    counts: Box<[AtomicU64]>,
    /// Sum of every observation in nanoseconds (saturating far beyond any node's lifetime:
    /// 2^64 ns is 584 years).
    sum_nanos: AtomicU64,
}

impl LatencyHistogram {
    /// A histogram with these bucket upper bounds (seconds).
    ///
    /// # Panics
    /// When `bounds_seconds` is empty, longer than [`HISTOGRAM_BUCKETS_MAX`], not strictly
    /// ascending, or holds a bound that is not positive and finite: the bounds are constants
    /// of the program, so this is a bug, caught by the first test that builds one.
    pub fn new(bounds_seconds: &'static [f64]) -> Self {
        assert!(
            !bounds_seconds.is_empty() && bounds_seconds.len() <= HISTOGRAM_BUCKETS_MAX,
            "a histogram needs 1..={HISTOGRAM_BUCKETS_MAX} buckets"
        );
        assert!(
            bounds_seconds
                .iter()
                .all(|bound| bound.is_finite() && *bound > 0.0),
            "bucket bounds must be positive and finite"
        );
        assert!(
            bounds_seconds.windows(2).all(|pair| pair[0] < pair[1]),
            "bucket bounds must ascend strictly"
        );
        let bounds_nanos = bounds_seconds
            .iter()
            .map(|bound| (bound * 1e9).round() as u64)
            .collect();
        let counts = (0..=bounds_seconds.len())
            .map(|_| AtomicU64::new(0))
            .collect();
        Self {
            bounds_seconds,
            bounds_nanos,
            counts,
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// A histogram with [`LATENCY_BUCKETS_SECONDS`].
    pub fn latency() -> Self {
        Self::new(&LATENCY_BUCKETS_SECONDS)
    }

    /// A histogram with [`FAILOVER_BUCKETS_SECONDS`].
    pub fn failover() -> Self {
        Self::new(&FAILOVER_BUCKETS_SECONDS)
    }

    /// Record one observation.
    pub fn observe(&self, took: Duration) {
        self.observe_many(took, 1);
    }

    /// Record `count` observations of the same duration (entries committed together).
    pub fn observe_many(&self, took: Duration, count: u64) {
        if count == 0 {
            return;
        }
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        // `le` is inclusive: an observation equal to a bound belongs to that bucket.
        let bucket = self.bounds_nanos.partition_point(|bound| *bound < nanos);
        self.counts[bucket].fetch_add(count, Ordering::Relaxed);
        let add = nanos.saturating_mul(count);
        // Saturate instead of wrapping: a wrapped sum would make `rate(_sum)` negative.
        let _ = self
            .sum_nanos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |sum| {
                Some(sum.saturating_add(add))
            });
    }

    /// The bucket bounds in seconds.
    pub fn bounds_seconds(&self) -> &'static [f64] {
        self.bounds_seconds
    }

    /// The counts now, cumulative as Prometheus wants them. Observations racing with the
    /// snapshot may show in a bucket and not yet in the sum (or the reverse); the count is
    /// the `+Inf` bucket's, so `_count` and `le="+Inf"` always agree.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0u64;
        let cumulative: Vec<u64> = self
            .counts
            .iter()
            .map(|count| {
                running = running.saturating_add(count.load(Ordering::Relaxed));
                running
            })
            .collect();
        HistogramSnapshot {
            bounds_seconds: self.bounds_seconds,
            count: running,
            cumulative,
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// A histogram's counts at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    /// Upper bounds in seconds, ascending (`+Inf` not included).
    pub bounds_seconds: &'static [f64],
    /// Observations at or below each bound, then the total (`+Inf`): one longer than
    /// `bounds_seconds`.
    pub cumulative: Vec<u64>,
    /// Observations in all.
    pub count: u64,
    /// Their sum in seconds.
    pub sum_seconds: f64,
}

impl HistogramSnapshot {
    /// The cumulative count of the bucket whose upper bound is `bound_seconds`, if there is
    /// one.
    pub fn cumulative_count_at(&self, bound_seconds: f64) -> Option<u64> {
        let position = self
            .bounds_seconds
            .iter()
            .position(|bound| *bound == bound_seconds)?;
        self.cumulative.get(position).copied()
    }

    /// The observations made since `earlier` (a snapshot of the same histogram), bucket by
    /// bucket: what a benchmark measured between two scrapes.
    pub fn since(&self, earlier: &HistogramSnapshot) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds_seconds: self.bounds_seconds,
            cumulative: self
                .cumulative
                .iter()
                .zip(earlier.cumulative.iter().chain(std::iter::repeat(&0)))
                .map(|(now, before)| now.saturating_sub(*before))
                .collect(),
            count: self.count.saturating_sub(earlier.count),
            sum_seconds: (self.sum_seconds - earlier.sum_seconds).max(0.0),
        }
    }

    /// The `quantile` (0..=1) estimated as Prometheus' `histogram_quantile` does: linear
    /// interpolation inside the bucket that holds it, from 0 for the first bucket; the
    /// highest finite bound when it falls in `+Inf`. `None` without observations or for a
    /// quantile outside 0..=1.
    pub fn quantile(&self, quantile: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=1.0).contains(&quantile) {
            return None;
        }
        let rank = quantile * self.count as f64;
        let bucket = self
            .cumulative
            .iter()
            .position(|cumulative| *cumulative as f64 >= rank)
            .unwrap_or(self.cumulative.len() - 1);
        let Some(upper) = self.bounds_seconds.get(bucket).copied() else {
            return self.bounds_seconds.last().copied();
        };
        let (lower, below) = match bucket {
            0 => (0.0, 0u64),
            _ => (self.bounds_seconds[bucket - 1], self.cumulative[bucket - 1]),
        };
        let in_bucket = self.cumulative[bucket].saturating_sub(below);
        if in_bucket == 0 {
            return Some(upper);
        }
        Some(lower + (upper - lower) * (rank - below as f64) / in_bucket as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_whose_bound_holds_them() {
        let histogram = LatencyHistogram::latency();
        // Exactly on a bound: that bucket (`le` is inclusive).
        histogram.observe(Duration::from_micros(100));
        // Just above it: the next one.
        histogram.observe(Duration::from_nanos(100_001));
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_secs(11));
        let snapshot = histogram.snapshot();
        let expected: Vec<u64> = vec![1, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4];
        assert_eq!(snapshot.cumulative, expected);
        assert_eq!(snapshot.count, 4);
        let sum = 0.0001 + 0.000_100_001 + 0.003 + 11.0;
        assert!((snapshot.sum_seconds - sum).abs() < 1e-9, "{snapshot:?}");
    }

    #[test]
    fn observe_many_counts_each_and_sums_each() {
        let histogram = LatencyHistogram::latency();
        histogram.observe_many(Duration::from_millis(2), 5);
        histogram.observe_many(Duration::from_millis(2), 0);
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count, 5);
        assert_eq!(snapshot.cumulative_count_at(0.001), Some(0));
        assert_eq!(snapshot.cumulative_count_at(0.0025), Some(5));
        assert!((snapshot.sum_seconds - 0.010).abs() < 1e-9);
    }

    #[test]
    fn the_failover_histogram_has_minute_buckets() {
        let histogram = LatencyHistogram::failover();
        histogram.observe(Duration::from_secs(25));
        histogram.observe(Duration::from_secs(61));
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.cumulative_count_at(10.0), Some(0));
        assert_eq!(snapshot.cumulative_count_at(30.0), Some(1));
        assert_eq!(snapshot.cumulative_count_at(60.0), Some(1));
        assert_eq!(snapshot.cumulative.last(), Some(&2));
    }

    #[test]
    fn the_sum_saturates_instead_of_wrapping() {
        let histogram = LatencyHistogram::latency();
        histogram.observe(Duration::MAX);
        histogram.observe(Duration::MAX);
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count, 2);
        assert_eq!(snapshot.sum_seconds, u64::MAX as f64 / 1e9);
    }

    #[test]
    fn quantiles_interpolate_like_prometheus() {
        let histogram = LatencyHistogram::latency();
        assert_eq!(histogram.snapshot().quantile(0.5), None);
        // 10 observations in (0.001, 0.0025]: the median is halfway through that bucket.
        histogram.observe_many(Duration::from_millis(2), 10);
        let snapshot = histogram.snapshot();
        let median = snapshot.quantile(0.5).unwrap();
        assert!((median - 0.00175).abs() < 1e-12, "{median}");
        assert_eq!(snapshot.quantile(1.5), None);
        // Beyond the last bound: the last bound.
        let slow = LatencyHistogram::latency();
        slow.observe(Duration::from_secs(100));
        assert_eq!(slow.snapshot().quantile(0.5), Some(10.0));
    }

    #[test]
    fn since_subtracts_an_earlier_snapshot() {
        let histogram = LatencyHistogram::latency();
        histogram.observe(Duration::from_millis(2));
        let before = histogram.snapshot();
        histogram.observe(Duration::from_millis(20));
        let delta = histogram.snapshot().since(&before);
        assert_eq!(delta.count, 1);
        assert_eq!(delta.cumulative_count_at(0.0025), Some(0));
        assert_eq!(delta.cumulative_count_at(0.025), Some(1));
        assert!((delta.sum_seconds - 0.020).abs() < 1e-9);
    }

    #[test]
    fn concurrent_observers_lose_nothing() {
        let histogram = std::sync::Arc::new(LatencyHistogram::latency());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let histogram = std::sync::Arc::clone(&histogram);
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        histogram.observe(Duration::from_micros(700));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count, 40_000);
        assert_eq!(snapshot.cumulative_count_at(0.001), Some(40_000));
    }
}
