//! The in-memory log: a snapshot's metadata and the entries after it.

use std::collections::VecDeque;

use ha_core::{LogIndex, Term};

use crate::entry::{Entry, Payload};
use crate::membership::VoterSet;
use crate::snapshot_meta::SnapshotMeta;

/// What stays in memory of an entry whose payload was evicted: enough for `term_at`, for
/// conflict checks and for sizing a read of it back from the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct EvictedEntry {
    term: Term,
    /// [`Entry::size_bytes`] of the entry, so batches read back from the store are cut at
    /// the same place an in-memory send would cut them.
    size_bytes: usize,
}

/// Entries after the last snapshot. The store has them on disk; memory holds every entry's
/// term, every configuration (separately, for [`membership_at`](Self::membership_at)) and the
/// payloads of the newest entries: [`evict`](Self::evict) drops the payloads of the oldest
/// entries that are applied and durable once the payloads held pass a budget. Compaction by
/// snapshot bounds the rest.
#[derive(Clone, Debug, Default)]
pub struct RaftLog {
    snapshot: SnapshotMeta,
    /// The entries right after the snapshot whose payloads were evicted, oldest first.
    evicted: Vec<EvictedEntry>,
    /// The entries after those, with their payloads.
    held: VecDeque<Entry>,
    /// Configuration entries still in the log, by index; the latest one is in force.
    configs: Vec<(LogIndex, VoterSet)>,
    /// The estimated size ([`Entry::size_bytes`]) of every entry after the snapshot, evicted
    /// or not, which compaction bounds.
    bytes: usize,
    /// The estimated size of the entries whose payloads are held.
    held_bytes: usize,
    /// Consistency checkpoint entries still in the log, by index, oldest first (evicted
    /// entries keep no payload, so they are remembered here, as configurations are).
    checkpoints: Vec<LogIndex>,
    /// The estimated size of the entries after the latest checkpoint (after the snapshot when
    /// the log holds none): what the leader's checkpoint schedule weighs.
    bytes_since_checkpoint: usize,
}

impl RaftLog {
    /// A log restored from a snapshot and the entries after it.
    pub fn new(snapshot: SnapshotMeta, entries: Vec<Entry>) -> Self {
        let mut log = Self {
            snapshot,
            ..Self::default()
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

    /// The estimated bytes of all entries after the snapshot, evicted ones included (what a
    /// restart replays and compaction bounds).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The estimated bytes of the entries whose payloads are held in memory.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// The first index after the snapshot.
    pub fn first_index(&self) -> LogIndex {
        self.snapshot.last_index.next()
    }

    /// The first index whose payload is held in memory (`last_index + 1` when none is):
    /// entries from [`first_index`](Self::first_index) up to it were evicted and must be
    /// read back from the store.
    pub fn held_from(&self) -> LogIndex {
        LogIndex(self.first_index().0 + self.evicted.len() as u64)
    }

    /// The last index (the snapshot's when there are no entries).
    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.held_from().0 + self.held.len() as u64 - 1)
    }

    /// The last entry's term.
    pub fn last_term(&self) -> Term {
        if let Some(entry) = self.held.back() {
            return entry.term;
        }
        self.evicted
            .last()
            .map(|evicted| evicted.term)
            .unwrap_or(self.snapshot.last_term)
    }

    /// The term at `index`, when known (index 0 has term 0; compacted indexes are unknown
    /// except the snapshot's last). Evicted entries keep their terms.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == self.snapshot.last_index {
            return Some(self.snapshot.last_term);
        }
        let offset = usize::try_from(index.0.checked_sub(self.first_index().0)?).ok()?;
        if let Some(evicted) = self.evicted.get(offset) {
            return Some(evicted.term);
        }
        self.held
            .get(offset - self.evicted.len())
            .map(|entry| entry.term)
    }

    /// The entry at `index`, if its payload is held (not compacted, not evicted).
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        let offset = index.0.checked_sub(self.held_from().0)?;
        self.held.get(usize::try_from(offset).ok()?)
    }

    /// Entries from `from` on, at most `count_max` of them and about `bytes_max` bytes
    /// (always at least one when any exists). Empty when `from` is not held in memory
    /// (compacted or evicted: see [`stored_batch`](Self::stored_batch)).
    pub fn slice(&self, from: LogIndex, count_max: usize, bytes_max: usize) -> Vec<Entry> {
        let Some(offset) = from.0.checked_sub(self.held_from().0) else {
            return Vec::new();
        };
        let Ok(offset) = usize::try_from(offset) else {
            return Vec::new();
        };
        if offset >= self.held.len() {
            return Vec::new();
        }
        let mut bytes = 0usize;
        let mut chosen = Vec::new();
        for entry in self.held.range(offset..).take(count_max) {
            bytes = bytes.saturating_add(entry.size_bytes());
            if !chosen.is_empty() && bytes > bytes_max {
                break;
            }
            chosen.push(entry.clone());
        }
        chosen
    }

    /// How many evicted entries from `from` on a send of at most `count_max` entries and
    /// about `bytes_max` bytes takes: the same cut [`slice`](Self::slice) makes, stopping at
    /// the first held entry (the rest is sent from memory). 0 when `from` is not evicted.
    pub fn stored_batch(&self, from: LogIndex, count_max: usize, bytes_max: usize) -> usize {
        let Some(offset) = from.0.checked_sub(self.first_index().0) else {
            return 0;
        };
        let Ok(offset) = usize::try_from(offset) else {
            return 0;
        };
        let mut bytes = 0usize;
        let mut count = 0usize;
        for evicted in self.evicted.iter().skip(offset).take(count_max) {
            bytes = bytes.saturating_add(evicted.size_bytes);
            if count > 0 && bytes > bytes_max {
                break;
            }
            count += 1;
        }
        count
    }

    /// Entries in `(after, up_to]`, when their payloads are held (the caller applies them,
    /// and only applied entries are evicted).
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
        let size = entry.size_bytes();
        if matches!(entry.payload, Payload::Checkpoint) {
            self.checkpoints.push(entry.index);
            self.bytes_since_checkpoint = 0;
        } else {
            self.bytes_since_checkpoint = self.bytes_since_checkpoint.saturating_add(size);
        }
        self.bytes = self.bytes.saturating_add(size);
        self.held_bytes = self.held_bytes.saturating_add(size);
        self.held.push_back(entry);
    }

    /// Drop the payloads of the oldest entries at or below `evictable` (applied and durable:
    /// the caller's promise) while the payloads held take more than `budget_bytes`. Terms and
    /// configurations stay. Returns how many payloads were dropped.
    pub fn evict(&mut self, evictable: LogIndex, budget_bytes: usize) -> usize {
        let mut dropped = 0;
        while self.held_bytes > budget_bytes {
            let Some(front) = self.held.front() else {
                break;
            };
            if front.index > evictable {
                break;
            }
            let Some(entry) = self.held.pop_front() else {
                break;
            };
            let size_bytes = entry.size_bytes();
            self.held_bytes = self.held_bytes.saturating_sub(size_bytes);
            self.evicted.push(EvictedEntry {
                term: entry.term,
                size_bytes,
            });
            dropped += 1;
        }
        dropped
    }

    /// Drop entries from `from` on.
    pub fn truncate_from(&mut self, from: LogIndex) {
        let keep =
            usize::try_from(from.0.saturating_sub(self.first_index().0)).unwrap_or(usize::MAX);
        if keep < self.evicted.len() {
            // Only committed entries are evicted, and those are never truncated; kept
            // consistent anyway.
            self.evicted.truncate(keep);
            self.held.clear();
        } else {
            self.held.truncate(keep - self.evicted.len());
        }
        self.configs.retain(|(index, _)| *index < from);
        self.checkpoints.retain(|index| *index < from);
        self.recount();
    }

    fn recount(&mut self) {
        self.held_bytes = self.held.iter().map(Entry::size_bytes).sum();
        self.bytes = self
            .evicted
            .iter()
            .map(|evicted| evicted.size_bytes)
            .sum::<usize>()
            .saturating_add(self.held_bytes);
        // Entries after the latest checkpoint, by their offset after the snapshot.
        let after = usize::try_from(
            self.checkpoint_index()
                .0
                .saturating_sub(self.snapshot.last_index.0),
        )
        .unwrap_or(usize::MAX);
        let evicted_after: usize = self
            .evicted
            .iter()
            .skip(after)
            .map(|evicted| evicted.size_bytes)
            .sum();
        let held_after: usize = self
            .held
            .iter()
            .skip(after.saturating_sub(self.evicted.len()))
            .map(Entry::size_bytes)
            .sum();
        self.bytes_since_checkpoint = evicted_after.saturating_add(held_after);
    }

    /// The latest consistency checkpoint entry in the log; the snapshot's last index when the
    /// log holds none (a checkpoint schedule then counts from the snapshot).
    pub fn checkpoint_index(&self) -> LogIndex {
        self.checkpoints
            .last()
            .copied()
            .unwrap_or(self.snapshot.last_index)
    }

    /// Entries after [`checkpoint_index`](Self::checkpoint_index).
    pub fn entries_since_checkpoint(&self) -> u64 {
        self.last_index()
            .0
            .saturating_sub(self.checkpoint_index().0)
    }

    /// The estimated bytes ([`Entry::size_bytes`]) of the entries after
    /// [`checkpoint_index`](Self::checkpoint_index).
    pub fn bytes_since_checkpoint(&self) -> usize {
        self.bytes_since_checkpoint
    }

    /// Whether the entry at `index` is a consistency checkpoint (false once compacted).
    pub fn is_checkpoint(&self, index: LogIndex) -> bool {
        self.checkpoints.binary_search(&index).is_ok()
    }

    /// Replace everything up to `meta.last_index` with a snapshot. Later entries are kept only
    /// if the log agrees with the snapshot at its last index; otherwise the whole log goes.
    pub fn install_snapshot(&mut self, meta: SnapshotMeta) {
        let agrees = self.term_at(meta.last_index) == Some(meta.last_term);
        if agrees && meta.last_index >= self.snapshot.last_index {
            let covered = usize::try_from(meta.last_index.0 - self.snapshot.last_index.0)
                .unwrap_or(usize::MAX);
            let from_evicted = covered.min(self.evicted.len());
            self.evicted.drain(..from_evicted);
            let from_held = (covered - from_evicted).min(self.held.len());
            self.held.drain(..from_held);
            self.configs.retain(|(index, _)| *index > meta.last_index);
            self.checkpoints.retain(|index| *index > meta.last_index);
        } else {
            self.evicted.clear();
            self.held.clear();
            self.configs.clear();
            self.checkpoints.clear();
        }
        self.snapshot = meta;
        self.recount();
    }

    /// The configuration in force: the latest in the log, else the snapshot's.
    pub fn membership(&self) -> &VoterSet {
        self.configs
            .last()
            .map(|(_, membership)| membership)
            .unwrap_or(&self.snapshot.membership)
    }

    /// The configuration in force at `index`.
    pub fn membership_at(&self, index: LogIndex) -> VoterSet {
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
            membership: VoterSet::default(),
        });
        assert_eq!(log.first_index(), LogIndex(4));
        assert_eq!(log.last_index(), LogIndex(5));
        assert_eq!(log.entry(LogIndex(3)), None);
        assert_eq!(log.term_at(LogIndex(3)), Some(Term(1)));
        log.install_snapshot(SnapshotMeta {
            last_index: LogIndex(9),
            last_term: Term(4),
            membership: VoterSet::default(),
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

    #[test]
    fn the_checkpoint_schedule_counts_from_the_latest_checkpoint_still_in_the_log() {
        let mut log = RaftLog::default();
        for index in 1..=3 {
            log.push(big(1, index, 100));
        }
        // No checkpoint yet: counted from the snapshot (index 0).
        assert_eq!(log.checkpoint_index(), LogIndex(0));
        assert_eq!(log.entries_since_checkpoint(), 3);
        assert_eq!(log.bytes_since_checkpoint(), 3 * 124);
        log.push(Entry {
            term: Term(1),
            index: LogIndex(4),
            payload: Payload::Checkpoint,
        });
        assert!(log.is_checkpoint(LogIndex(4)));
        assert!(!log.is_checkpoint(LogIndex(3)));
        assert_eq!(log.entries_since_checkpoint(), 0);
        assert_eq!(log.bytes_since_checkpoint(), 0);
        for index in 5..=8 {
            log.push(big(1, index, 10));
        }
        assert_eq!(log.entries_since_checkpoint(), 4);
        assert_eq!(log.bytes_since_checkpoint(), 4 * 34);
        // Eviction forgets payloads, not checkpoints or sizes.
        log.evict(LogIndex(6), 0);
        assert!(log.is_checkpoint(LogIndex(4)));
        log.truncate_from(LogIndex(7));
        assert_eq!(log.bytes_since_checkpoint(), 2 * 34);
        // A truncated checkpoint is forgotten: the count goes back to the snapshot.
        log.truncate_from(LogIndex(4));
        assert!(!log.is_checkpoint(LogIndex(4)));
        assert_eq!(log.checkpoint_index(), LogIndex(0));
        assert_eq!(log.bytes_since_checkpoint(), 3 * 124);
        // A snapshot past a checkpoint: counted from the snapshot again.
        log.push(Entry {
            term: Term(1),
            index: LogIndex(4),
            payload: Payload::Checkpoint,
        });
        log.push(big(1, 5, 10));
        log.install_snapshot(SnapshotMeta {
            last_index: LogIndex(4),
            last_term: Term(1),
            membership: VoterSet::default(),
        });
        assert!(!log.is_checkpoint(LogIndex(4)));
        assert_eq!(log.checkpoint_index(), LogIndex(4));
        assert_eq!(log.entries_since_checkpoint(), 1);
        assert_eq!(log.bytes_since_checkpoint(), 34);
    }

    fn big(term: u64, index: u64, size: usize) -> Entry {
        Entry {
            term: Term(term),
            index: LogIndex(index),
            payload: Payload::Command(vec![7; size]),
        }
    }

    #[test]
    fn eviction_keeps_terms_configs_and_the_budget() {
        let mut log = RaftLog::default();
        for index in 1..=10 {
            if index == 4 {
                let mut membership = VoterSet::default();
                membership.voters.insert(ha_core::NodeId::new("a").unwrap());
                log.push(Entry {
                    term: Term(1),
                    index: LogIndex(4),
                    payload: Payload::Membership(membership),
                });
            } else {
                log.push(big(1 + index / 5, index, 1000));
            }
        }
        let total = log.bytes();
        // Nothing above the evictable index goes, whatever the budget.
        assert_eq!(log.evict(LogIndex(0), 0), 0);
        assert_eq!(log.evict(LogIndex(6), 0), 6);
        assert_eq!(log.held_from(), LogIndex(7));
        assert_eq!(log.entry(LogIndex(6)), None);
        assert!(log.entry(LogIndex(7)).is_some());
        assert_eq!(
            log.bytes(),
            total,
            "evicted entries still count for compaction"
        );
        assert!(log.held_bytes() < total);
        for index in 1..=10 {
            assert_eq!(
                log.term_at(LogIndex(index)),
                Some(Term(1 + index / 5)),
                "{index}"
            );
        }
        assert!(
            log.membership_at(LogIndex(5))
                .is_voter(&ha_core::NodeId::new("a").unwrap())
        );
        assert!(
            !log.membership_at(LogIndex(3))
                .is_voter(&ha_core::NodeId::new("a").unwrap())
        );
        assert!(log.is_up_to_date(Term(3), LogIndex(10)));
        assert!(!log.is_up_to_date(Term(2), LogIndex(10)));
        // The budget: payloads held stay at or under it once enough is evictable.
        assert_eq!(log.evict(LogIndex(10), 2500), 2);
        assert!(log.held_bytes() <= 2500);
        assert_eq!(log.held_from(), LogIndex(9));
        assert!(log.slice(LogIndex(5), 10, usize::MAX).is_empty());
        assert_eq!(log.range(LogIndex(8), LogIndex(10)).len(), 2);
        // A stored batch is cut as an in-memory send would be, and stops at held entries.
        assert_eq!(log.stored_batch(LogIndex(1), 100, usize::MAX), 8);
        assert_eq!(log.stored_batch(LogIndex(1), 3, usize::MAX), 3);
        assert_eq!(log.stored_batch(LogIndex(1), 100, 2100), 2);
        assert_eq!(log.stored_batch(LogIndex(1), 100, 1), 1);
        assert_eq!(log.stored_batch(LogIndex(9), 100, usize::MAX), 0);
        // Everything evicted: the last index and term still come from metadata.
        assert_eq!(log.evict(LogIndex(10), 0), 2);
        assert_eq!(log.held_bytes(), 0);
        assert_eq!(log.last_index(), LogIndex(10));
        assert_eq!(log.last_term(), Term(3));
        log.push(big(3, 11, 10));
        assert_eq!(log.last_index(), LogIndex(11));
    }

    #[test]
    fn snapshots_and_truncation_over_evicted_entries() {
        let mut log = RaftLog::default();
        for index in 1..=6 {
            log.push(big(1, index, 100));
        }
        log.evict(LogIndex(4), 0);
        log.install_snapshot(SnapshotMeta {
            last_index: LogIndex(2),
            last_term: Term(1),
            membership: VoterSet::default(),
        });
        assert_eq!(log.first_index(), LogIndex(3));
        assert_eq!(log.held_from(), LogIndex(5));
        assert_eq!(log.term_at(LogIndex(3)), Some(Term(1)));
        assert_eq!(log.last_index(), LogIndex(6));
        assert_eq!(log.bytes(), 4 * 124);
        assert_eq!(log.held_bytes(), 2 * 124);
        log.install_snapshot(SnapshotMeta {
            last_index: LogIndex(5),
            last_term: Term(1),
            membership: VoterSet::default(),
        });
        assert_eq!(log.held_from(), LogIndex(6));
        assert_eq!(log.bytes(), 124);
        log.truncate_from(LogIndex(6));
        assert_eq!(log.last_index(), LogIndex(5));
        assert_eq!(log.bytes(), 0);
    }

    /// The figure the issue asks for: a workload of large commands, bytes held with and
    /// without eviction.
    #[test]
    fn large_commands_are_held_within_the_budget() {
        let mut kept = RaftLog::default();
        let mut evicting = RaftLog::default();
        let budget = 8 << 20;
        for index in 1..=200 {
            kept.push(big(1, index, 1 << 20));
            evicting.push(big(1, index, 1 << 20));
            // Applied and synced as it goes.
            evicting.evict(LogIndex(index), budget);
        }
        assert_eq!(kept.held_bytes(), 200 * ((1 << 20) + 24));
        assert!(evicting.held_bytes() <= budget, "{}", evicting.held_bytes());
        assert_eq!(evicting.bytes(), kept.bytes());
        println!(
            "200 commands of 1 MiB: held without eviction {} bytes, with an 8 MiB budget {} bytes",
            kept.held_bytes(),
            evicting.held_bytes()
        );
    }
}
