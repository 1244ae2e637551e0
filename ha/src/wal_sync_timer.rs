//! How long the WAL's fsyncs take: a [`LogStore`] wrapper that times each
//! [`sync`](LogStore::sync), and the window of the last minute the `wal_sync` host check
//! reads its 99th percentile from.
//!
//! The timing lives in the store the node hands its replica, not in the sans-IO core: the core
//! reads no clock, and the simulator's stores are not wrapped. A sync that has not returned
//! counts too ([`SyncLatencyWindow::read`] includes it): a disk that hangs never finishes a sync, and a
//! percentile of finished ones would call it healthy.
//!
//! Issue 16: the same timing also feeds the `ha_wal_fsync_seconds` histogram
//! ([`SyncTimedStore::with_histogram`]), which keeps every sync since the start for
//! Prometheus, where the window keeps the last minute for the health check.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ha_core::{LatencyHistogram, LogIndex};
use ha_replicate::entry::Entry;
use ha_replicate::hard_state::HardState;
use ha_replicate::snapshot_meta::{SnapshotId, SnapshotMeta};
use ha_replicate::storage::{
    IncomingSnapshot, LogStore, Recovered, SnapshotSink, StorageError, WrittenSnapshot,
};
use parking_lot::Mutex;

/// How far back the percentile looks.
pub const SYNC_WINDOW: Duration = Duration::from_secs(60);
/// Most syncs the window keeps (the newest): at one sync per millisecond a minute holds
/// 60,000; beyond this the window covers less than a minute, still the latest syncs.
pub const SYNC_SAMPLES_MAX: usize = 65_536;

/// Sync durations of the last [`SYNC_WINDOW`], shared by the store (writer) and the host
/// check (reader).
#[derive(Debug, Default)]
pub struct SyncLatencyWindow {
    state: Mutex<WindowState>,
}

#[derive(Debug, Default)]
struct WindowState {
    /// (when it finished, how long it took in microseconds), oldest first.
    samples: VecDeque<(Instant, u64)>,
    /// When the sync under way started, if one is.
    running_since: Option<Instant>,
}

/// What the window holds at one moment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SyncLatency {
    /// Syncs finished in the window.
    pub samples: usize,
    /// Their 99th percentile, in milliseconds (`None` without samples).
    pub p99_ms: Option<f64>,
    /// How long the sync under way has been running, in milliseconds, if one is.
    pub running_ms: Option<f64>,
}

impl SyncLatencyWindow {
    /// An empty window.
    pub fn new() -> Self {
        Self::default()
    }

    /// A sync starts at `now`.
    pub fn begin(&self, now: Instant) {
        self.state.lock().running_since = Some(now);
    }

    /// The sync under way finished at `now`.
    pub fn end(&self, now: Instant) {
        let mut state = self.state.lock();
        if let Some(started) = state.running_since.take() {
            let micros = u64::try_from(now.saturating_duration_since(started).as_micros())
                .unwrap_or(u64::MAX);
            state.samples.push_back((now, micros));
            if state.samples.len() > SYNC_SAMPLES_MAX {
                state.samples.pop_front();
            }
        }
    }

    /// Record a finished sync of `took`, ending at `now` (for tests and replays).
    pub fn record(&self, now: Instant, took: Duration) {
        self.begin(now.checked_sub(took).unwrap_or(now));
        self.end(now);
    }

    /// The percentile over the syncs that finished within [`SYNC_WINDOW`] before `now`
    /// (older ones are dropped), and the sync under way.
    pub fn read(&self, now: Instant) -> SyncLatency {
        let mut state = self.state.lock();
        while state
            .samples
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > SYNC_WINDOW)
        {
            state.samples.pop_front();
        }
        let mut micros: Vec<u64> = state.samples.iter().map(|(_, took)| *took).collect();
        let running_ms = state
            .running_since
            .map(|since| now.saturating_duration_since(since).as_secs_f64() * 1_000.0);
        drop(state);
        micros.sort_unstable();
        // Nearest rank: the smallest value with at least 99% of the samples at or below it.
        let p99_ms = (!micros.is_empty()).then(|| {
            let rank = (micros.len() * 99).div_ceil(100).max(1);
            micros[rank - 1] as f64 / 1_000.0
        });
        SyncLatency {
            samples: micros.len(),
            p99_ms,
            running_ms,
        }
    }
}

/// A [`LogStore`] that times every [`sync`](LogStore::sync) into a [`SyncLatencyWindow`]
/// and forwards every call, unchanged, to the store it wraps.
pub struct SyncTimedStore<L> {
    inner: L,
    window: Arc<SyncLatencyWindow>,
    histogram: Option<Arc<LatencyHistogram>>,
}

impl<L: LogStore> SyncTimedStore<L> {
    /// Wrap `inner`, recording into `window`.
    pub fn new(inner: L, window: Arc<SyncLatencyWindow>) -> Self {
        Self {
            inner,
            window,
            histogram: None,
        }
    }

    /// Also record every sync's duration into `histogram` (`ha_wal_fsync_seconds`).
    pub fn with_histogram(mut self, histogram: Arc<LatencyHistogram>) -> Self {
        self.histogram = Some(histogram);
        self
    }
}

impl<L: LogStore> LogStore for SyncTimedStore<L> {
    fn reopen(&mut self) -> Result<Recovered, StorageError> {
        self.inner.reopen()
    }

    fn recover(&mut self) -> Result<Recovered, StorageError> {
        self.inner.recover()
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.inner.append(entries)
    }

    fn read_entries(
        &mut self,
        from: LogIndex,
        count_max: usize,
        bytes_max: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        self.inner.read_entries(from, count_max, bytes_max)
    }

    fn truncate_from(&mut self, from: LogIndex) -> Result<(), StorageError> {
        self.inner.truncate_from(from)
    }

    fn save_hard_state(&mut self, hard_state: &HardState) -> Result<(), StorageError> {
        self.inner.save_hard_state(hard_state)
    }

    fn snapshot_sink(&mut self) -> Result<Box<dyn SnapshotSink>, StorageError> {
        self.inner.snapshot_sink()
    }

    fn commit_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        written: &WrittenSnapshot,
    ) -> Result<SnapshotId, StorageError> {
        self.inner.commit_snapshot(meta, written)
    }

    fn save_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        data: &[u8],
    ) -> Result<SnapshotId, StorageError> {
        self.inner.save_snapshot(meta, data)
    }

    fn read_snapshot(&mut self, offset: u64, max: usize) -> Result<Vec<u8>, StorageError> {
        self.inner.read_snapshot(offset, max)
    }

    #[allow(clippy::type_complexity)]
    fn snapshot_reader(
        &mut self,
    ) -> Result<Option<(SnapshotMeta, SnapshotId, Box<dyn std::io::Read + Send>)>, StorageError>
    {
        self.inner.snapshot_reader()
    }

    fn incoming(&self) -> Option<IncomingSnapshot> {
        self.inner.incoming()
    }

    fn begin_incoming(&mut self, meta: &SnapshotMeta, id: SnapshotId) -> Result<(), StorageError> {
        self.inner.begin_incoming(meta, id)
    }

    fn append_incoming(&mut self, offset: u64, bytes: &[u8]) -> Result<(), StorageError> {
        self.inner.append_incoming(offset, bytes)
    }

    fn verify_incoming(&mut self) -> Result<bool, StorageError> {
        self.inner.verify_incoming()
    }

    fn install_incoming(&mut self) -> Result<SnapshotId, StorageError> {
        self.inner.install_incoming()
    }

    fn discard_incoming(&mut self) -> Result<(), StorageError> {
        self.inner.discard_incoming()
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        let started = Instant::now();
        self.window.begin(started);
        let result = self.inner.sync();
        let ended = Instant::now();
        self.window.end(ended);
        if let Some(histogram) = &self.histogram {
            histogram.observe(ended.saturating_duration_since(started));
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_p99_is_the_nearest_rank_over_the_last_minute() {
        let window = SyncLatencyWindow::new();
        let start = Instant::now();
        let later = start + Duration::from_secs(120);
        // 100 syncs a minute and a half before `later`: outside the window by then.
        for _ in 0..100 {
            window.record(start, Duration::from_millis(900));
        }
        // 99 fast syncs and one slow one within the minute.
        for step in 0..99u64 {
            window.record(
                later - Duration::from_millis(1_000 + step),
                Duration::from_millis(2),
            );
        }
        window.record(later, Duration::from_millis(700));
        let reading = window.read(later);
        assert_eq!(reading.samples, 100, "the old syncs left the window");
        assert_eq!(
            reading.p99_ms,
            Some(2.0),
            "one slow sync in 100 is the 100th percentile"
        );
        window.record(later, Duration::from_millis(800));
        let reading = window.read(later);
        assert_eq!(reading.samples, 101);
        assert_eq!(
            reading.p99_ms,
            Some(700.0),
            "two slow syncs in 101 reach the p99"
        );
        assert_eq!(reading.running_ms, None);
    }

    #[test]
    fn a_sync_that_has_not_returned_is_visible() {
        let window = SyncLatencyWindow::new();
        let start = Instant::now();
        window.begin(start);
        let reading = window.read(start + Duration::from_secs(3));
        assert_eq!(reading.samples, 0);
        assert_eq!(reading.p99_ms, None);
        assert_eq!(reading.running_ms, Some(3_000.0));
    }

    #[test]
    fn the_window_keeps_at_most_its_limit() {
        let window = SyncLatencyWindow::new();
        let now = Instant::now();
        for _ in 0..SYNC_SAMPLES_MAX + 10 {
            window.record(now, Duration::from_micros(5));
        }
        assert_eq!(window.read(now).samples, SYNC_SAMPLES_MAX);
    }
}
