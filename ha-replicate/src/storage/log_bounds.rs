//! The index bookkeeping every [`LogStore`](super::LogStore) shares, so the disk store and the
//! memory store accept and refuse exactly the same calls.

use ha_core::LogIndex;

use super::StorageError;
use crate::entry::Entry;
use crate::snapshot_meta::SnapshotMeta;

/// Where the log stands: the snapshot's last index and the last entry's index.
///
/// Invariant: `snapshot_last <= last`. With no entry after the snapshot, `last` equals
/// `snapshot_last`; with neither, both are 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LogBounds {
    /// The last index the snapshot covers (0 without a snapshot).
    pub(crate) snapshot_last: LogIndex,
    /// The index of the last entry, or `snapshot_last` when there is none after it.
    pub(crate) last: LogIndex,
}

impl LogBounds {
    /// Bounds for a snapshot ending at `snapshot_last` followed by entries ending at `last`.
    pub(crate) fn new(snapshot_last: LogIndex, last: LogIndex) -> Self {
        debug_assert!(snapshot_last <= last);
        Self {
            snapshot_last,
            last,
        }
    }

    /// Checks that `entries` continue the log exactly: the first is `last + 1` and each next
    /// one follows without a gap. Nothing is written when this fails.
    pub(crate) fn check_append(&self, entries: &[Entry]) -> Result<(), StorageError> {
        let mut expected = self.last;
        for entry in entries {
            let Some(next) = expected.0.checked_add(1) else {
                return Err(StorageError::Misuse(format!(
                    "cannot append after index {expected}: the index space is exhausted"
                )));
            };
            if entry.index.0 != next {
                return Err(StorageError::Misuse(format!(
                    "append of entry {} does not continue the log, whose next index is {next}",
                    entry.index
                )));
            }
            expected = entry.index;
        }
        Ok(())
    }

    /// Checks that `from` names an entry after the snapshot, for
    /// [`read_entries`](super::LogStore::read_entries).
    pub(crate) fn check_read(&self, from: LogIndex) -> Result<(), StorageError> {
        if from <= self.snapshot_last {
            return Err(StorageError::Misuse(format!(
                "entry {from} is compacted: the snapshot covers up to {}",
                self.snapshot_last
            )));
        }
        if from > self.last {
            return Err(StorageError::Misuse(format!(
                "entry {from} is past the last entry, {}",
                self.last
            )));
        }
        Ok(())
    }

    /// Records that entries up to `last` were appended.
    pub(crate) fn appended(&mut self, last: LogIndex) {
        debug_assert!(last >= self.last);
        self.last = last;
    }

    /// Where a `truncate_from(from)` takes effect, or `None` when it removes nothing.
    ///
    /// Entries the snapshot covers are never removed: `from` at or below the snapshot is
    /// raised to the first index after it, so the call removes every entry after the snapshot.
    pub(crate) fn truncation_point(&self, from: LogIndex) -> Option<LogIndex> {
        let first_removable = LogIndex(self.snapshot_last.0.saturating_add(1));
        let from = from.max(first_removable);
        (from <= self.last).then_some(from)
    }

    /// Records a truncation returned by [`truncation_point`](Self::truncation_point).
    pub(crate) fn truncated(&mut self, from: LogIndex) {
        debug_assert!(from.0 > self.snapshot_last.0);
        self.last = LogIndex(from.0 - 1).min(self.last);
    }

    /// Checks that a snapshot ending at `meta.last_index` does not go back in the log: a
    /// snapshot older than the current one would need entries that compaction already dropped.
    pub(crate) fn check_snapshot(&self, meta: &SnapshotMeta) -> Result<(), StorageError> {
        if meta.last_index < self.snapshot_last {
            return Err(StorageError::Misuse(format!(
                "snapshot at index {} is older than the stored snapshot at index {}",
                meta.last_index, self.snapshot_last
            )));
        }
        Ok(())
    }

    /// Records a snapshot ending at `snapshot_last`: the entries it covers are gone, later
    /// ones stay, and a snapshot beyond the last entry leaves an empty log that continues
    /// after it.
    pub(crate) fn snapshotted(&mut self, snapshot_last: LogIndex) {
        debug_assert!(snapshot_last >= self.snapshot_last);
        self.snapshot_last = snapshot_last;
        self.last = self.last.max(snapshot_last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Payload;
    use ha_core::Term;

    fn entry(index: u64) -> Entry {
        Entry {
            term: Term(1),
            index: LogIndex(index),
            payload: Payload::Command(Vec::new()),
        }
    }

    #[test]
    fn append_must_continue_exactly() {
        let bounds = LogBounds::new(LogIndex(0), LogIndex(3));
        assert!(bounds.check_append(&[entry(4), entry(5)]).is_ok());
        assert!(bounds.check_append(&[]).is_ok());
        for bad in [vec![entry(3)], vec![entry(5)], vec![entry(4), entry(6)]] {
            assert!(matches!(
                bounds.check_append(&bad),
                Err(StorageError::Misuse(_))
            ));
        }
    }

    #[test]
    fn truncation_never_reaches_into_the_snapshot() {
        let bounds = LogBounds::new(LogIndex(5), LogIndex(9));
        assert_eq!(bounds.truncation_point(LogIndex(7)), Some(LogIndex(7)));
        assert_eq!(bounds.truncation_point(LogIndex(2)), Some(LogIndex(6)));
        assert_eq!(bounds.truncation_point(LogIndex(10)), None);
        let empty_after_snapshot = LogBounds::new(LogIndex(5), LogIndex(5));
        assert_eq!(empty_after_snapshot.truncation_point(LogIndex(1)), None);
    }

    #[test]
    fn snapshot_beyond_the_log_moves_the_end() {
        let mut bounds = LogBounds::new(LogIndex(0), LogIndex(3));
        bounds.snapshotted(LogIndex(10));
        assert_eq!(bounds, LogBounds::new(LogIndex(10), LogIndex(10)));
        let older = SnapshotMeta {
            last_index: LogIndex(9),
            ..SnapshotMeta::default()
        };
        assert!(bounds.check_snapshot(&older).is_err());
    }
}
