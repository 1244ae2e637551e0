//! The in-memory log: a snapshot's metadata and the entries after it.

use ha_core::{LogIndex, Term};

use crate::entry::{Entry, Payload};
use crate::membership::Membership;
use crate::snapshot_meta::SnapshotMeta;

/// Entries after the last snapshot, kept in memory (the store has them on disk). Compaction
/// by snapshot bounds its size.
#[derive(Clone, Debug, Default)]
pub struct RaftLog {
    snapshot: SnapshotMeta,
    entries: Vec<Entry>,
    /// Configuration entries still in the log, by index; the latest one is in force.
    configs: Vec<(LogIndex, Membership)>,
    /// The entries' estimated size ([`Entry::size_bytes`]), which compaction bounds.
    bytes: usize,
}

impl RaftLog {
    /// A log restored from a snapshot and the entries after it.
    pub fn new(snapshot: SnapshotMeta, entries: Vec<Entry>) -> Self {
        let mut log = Self {
            snapshot,
            entries: Vec::new(),
            configs: Vec::new(),
            bytes: 0,
        };
        for entry in entries {
            if entry.index > log.snapshot.last_index {
                log.push(entry);
            }
        }
        log
    }

    /// The last snapshot's metadata.
    pub fn snapshot(&self) -> &SnapshotMeta {
        &self.snapshot
    }

    /// The estimated bytes of the entries held (after the snapshot).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The first index held in memory.
    pub fn first_index(&self) -> LogIndex {
        self.snapshot.last_index.next()
    }

    /// The last index (the snapshot's when there are no entries).
    pub fn last_index(&self) -> LogIndex {
        self.entries
            .last()
            .map(|entry| entry.index)
            .unwrap_or(self.snapshot.last_index)
    }

    /// The last entry's term.
    pub fn last_term(&self) -> Term {
        self.entries
            .last()
            .map(|entry| entry.term)
            .unwrap_or(self.snapshot.last_term)
    }

    /// The term at `index`, when known (index 0 has term 0; compacted indexes are unknown
    /// except the snapshot's last).
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == self.snapshot.last_index {
            return Some(self.snapshot.last_term);
        }
        self.entry(index).map(|entry| entry.term)
    }

    /// The entry at `index`, if held.
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        let offset = index.0.checked_sub(self.first_index().0)?;
        self.entries.get(usize::try_from(offset).ok()?)
    }

    /// Entries from `from` on, at most `count_max` of them and about `bytes_max` bytes
    /// (always at least one when any exists).
    pub fn slice(&self, from: LogIndex, count_max: usize, bytes_max: usize) -> Vec<Entry> {
        let Some(offset) = from.0.checked_sub(self.first_index().0) else {
            return Vec::new();
        };
        let Ok(offset) = usize::try_from(offset) else {
            return Vec::new();
        };
        let mut bytes = 0usize;
        let mut chosen = Vec::new();
        for entry in self.entries.iter().skip(offset).take(count_max) {
            bytes += entry.size_bytes();
            if !chosen.is_empty() && bytes > bytes_max {
                break;
            }
            chosen.push(entry.clone());
        }
        chosen
    }

    /// Entries in `(after, up_to]`.
    pub fn range(&self, after: LogIndex, up_to: LogIndex) -> Vec<Entry> {
        let count = up_to.0.saturating_sub(after.0);
        self.slice(
            after.next(),
            usize::try_from(count).unwrap_or(usize::MAX),
            usize::MAX,
        )
    }

    /// Append one entry; its index must be `last_index + 1`.
    pub fn push(&mut self, entry: Entry) {
        debug_assert_eq!(entry.index, self.last_index().next(), "log gap");
        if let Payload::Membership(membership) = &entry.payload {
            self.configs.push((entry.index, membership.clone()));
        }
        self.bytes = self.bytes.saturating_add(entry.size_bytes());
        self.entries.push(entry);
    }

    /// Drop entries from `from` on.
    pub fn truncate_from(&mut self, from: LogIndex) {
        let keep = from.0.saturating_sub(self.first_index().0);
        self.entries
            .truncate(usize::try_from(keep).unwrap_or(usize::MAX));
        self.configs.retain(|(index, _)| *index < from);
        self.bytes = self.entries.iter().map(Entry::size_bytes).sum();
    }

    /// Replace everything up to `meta.last_index` with a snapshot. Later entries are kept only
    /// if the log agrees with the snapshot at its last index; otherwise the whole log goes.
    pub fn install_snapshot(&mut self, meta: SnapshotMeta) {
        let agrees = self.term_at(meta.last_index) == Some(meta.last_term);
        let remaining: Vec<Entry> = if agrees {
            self.entries
                .drain(..)
                .filter(|entry| entry.index > meta.last_index)
                .collect()
        } else {
            Vec::new()
        };
        self.entries.clear();
        self.configs.clear();
        self.bytes = 0;
        self.snapshot = meta;
        for entry in remaining {
            self.push(entry);
        }
    }

    /// The configuration in force: the latest in the log, else the snapshot's.
    pub fn membership(&self) -> &Membership {
        self.configs
            .last()
            .map(|(_, membership)| membership)
            .unwrap_or(&self.snapshot.membership)
    }

    /// The configuration in force at `index`.
    pub fn membership_at(&self, index: LogIndex) -> Membership {
        self.configs
            .iter()
            .rev()
            .find(|(at, _)| *at <= index)
            .map(|(_, membership)| membership.clone())
            .unwrap_or_else(|| self.snapshot.membership.clone())
    }

    /// The index of the latest configuration entry (0 when it comes from the snapshot).
    pub fn membership_index(&self) -> LogIndex {
        self.configs
            .last()
            .map(|(index, _)| *index)
            .unwrap_or(self.snapshot.last_index)
    }

    /// Whether `(last_term, last_index)` is at least as up to date as this log (Raft 5.4.1).
    pub fn is_up_to_date(&self, last_term: Term, last_index: LogIndex) -> bool {
        (last_term, last_index) >= (self.last_term(), self.last_index())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            term: Term(term),
            index: LogIndex(index),
            payload: Payload::Command(vec![index as u8]),
        }
    }

    #[test]
    fn indexes_terms_and_truncation() {
        let mut log = RaftLog::default();
        for index in 1..=5 {
            log.push(entry(1 + index / 3, index));
        }
        assert_eq!(log.last_index(), LogIndex(5));
        assert_eq!(log.term_at(LogIndex(0)), Some(Term(0)));
        assert_eq!(log.term_at(LogIndex(3)), Some(Term(2)));
        assert_eq!(log.term_at(LogIndex(6)), None);
        log.truncate_from(LogIndex(4));
        assert_eq!(log.last_index(), LogIndex(3));
        assert_eq!(log.range(LogIndex(1), LogIndex(3)).len(), 2);
    }

    #[test]
    fn snapshot_keeps_agreeing_suffix_only() {
        let mut log = RaftLog::default();
        for index in 1..=5 {
            log.push(entry(1, index));
        }
        log.install_snapshot(SnapshotMeta {
            last_index: LogIndex(3),
            last_term: Term(1),
            membership: Membership::default(),
        });
        assert_eq!(log.first_index(), LogIndex(4));
        assert_eq!(log.last_index(), LogIndex(5));
        assert_eq!(log.entry(LogIndex(3)), None);
        assert_eq!(log.term_at(LogIndex(3)), Some(Term(1)));
        log.install_snapshot(SnapshotMeta {
            last_index: LogIndex(9),
            last_term: Term(4),
            membership: Membership::default(),
        });
        assert_eq!(log.last_index(), LogIndex(9));
        assert_eq!(log.entry(LogIndex(5)), None);
    }

    #[test]
    fn slice_respects_limits_but_returns_at_least_one() {
        let mut log = RaftLog::default();
        for index in 1..=10 {
            log.push(entry(1, index));
        }
        assert_eq!(log.slice(LogIndex(1), 3, usize::MAX).len(), 3);
        assert_eq!(log.slice(LogIndex(1), 100, 1).len(), 1);
        assert_eq!(log.slice(LogIndex(11), 100, 100).len(), 0);
    }
}
