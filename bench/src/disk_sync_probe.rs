//! How long this machine's disk takes to make a small append durable: the floor under every
//! durable write's latency, and so (with a fixed number of writes in flight) a ceiling on
//! throughput. Measured the way a WAL group commit uses the disk: append 4 KiB, `fdatasync`.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::LatencySummary;

/// Appends measured (each followed by its own `fdatasync`).
const APPENDS: usize = 200;
/// Bytes per append: about one group commit of a few dozen 128-byte writes.
const APPEND_BYTES: usize = 4_096;

/// The measured `fdatasync` latency of 4 KiB appends to one file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DiskSyncProbe {
    /// Bytes appended before each sync.
    pub append_bytes: usize,
    /// Latency of append + `fdatasync`, microseconds.
    pub latency: LatencySummary,
}

impl DiskSyncProbe {
    /// Append and sync 200 times to a temporary file in `directory` (the file is
    /// removed afterwards).
    ///
    /// # Errors
    /// The I/O error, when the file cannot be created, written or synced.
    pub fn measure(directory: &Path) -> std::io::Result<Self> {
        let file = tempfile::NamedTempFile::new_in(directory)?;
        let mut handle = file.as_file();
        let block = vec![0x5a_u8; APPEND_BYTES];
        let mut latencies_us = Vec::with_capacity(APPENDS);
        for _ in 0..APPENDS {
            let begun = Instant::now();
            handle.write_all(&block)?;
            handle.sync_data()?;
            latencies_us.push(u64::try_from(begun.elapsed().as_micros()).unwrap_or(u64::MAX));
        }
        Ok(Self {
            append_bytes: APPEND_BYTES,
            latency: LatencySummary::from_micros(&mut latencies_us),
        })
    }

    /// The most acknowledged writes per second `clients` writers can reach when each write
    /// waits for at least one sync of its own group commit (`clients` writes per sync, one
    /// sync at a time: clients / p50 sync time).
    pub fn writes_per_second_ceiling(&self, clients: usize) -> f64 {
        clients as f64 * 1e6 / (self.latency.p50_us.max(1) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_every_append_and_bounds_throughput_by_it() {
        let directory = tempfile::tempdir().expect("temp dir");
        let probe = DiskSyncProbe::measure(directory.path()).expect("probe");
        assert_eq!(probe.latency.count, APPENDS);
        assert!(probe.latency.min_us <= probe.latency.p50_us);
        assert!(probe.latency.p50_us <= probe.latency.max_us);
        let one = probe.writes_per_second_ceiling(1);
        assert!((probe.writes_per_second_ceiling(64) - 64.0 * one).abs() < 1e-6 * one.max(1.0));
        assert!(
            std::fs::read_dir(directory.path())
                .expect("list")
                .next()
                .is_none(),
            "the probe's file is removed"
        );
    }
}
