//! The leader's side of a snapshot transfer: which bytes go to which follower next.
//!
//! Sans-IO: it says which chunks to read and send; the replica reads them from its store.
//! At most a window of chunks is unacknowledged per follower (flow control). The follower is
//! the authority on where the next chunk starts: every answer carries the offset it expects,
//! and an answer that is not the one expected moves the sender there (a resumed partial
//! snapshot, bytes lost in a restart, a gap from a lost or reordered chunk).
//!
//! Every move starts a new *round*, which chunks carry and answers echo. An answer from an
//! earlier round only ever counts as progress, never moves the sender: the chunks still in
//! flight when it moved are answered with offsets it has already dealt with, and moving again
//! on each would resend the window once per answer, each resend bringing more such answers. Snapshots are never empty
//! (the applier's prefix alone is 16 bytes).

use std::collections::BTreeMap;

use ha_core::{Millis, NodeId, Term};

use crate::snapshot_meta::{SnapshotId, SnapshotMeta};

/// How snapshots are streamed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransferSettings {
    /// Bytes per chunk; far below the transport's frame limit.
    pub chunk_bytes: usize,
    /// Most chunks sent and not acknowledged, per follower.
    pub window_chunks: usize,
    /// Resend from the last acknowledged byte after this long without an answer.
    pub resend_after_ms: u64,
    /// Report a transfer as stalled after this long without progress.
    pub stalled_after_ms: u64,
}

impl Default for TransferSettings {
    fn default() -> Self {
        Self {
            chunk_bytes: 1 << 20,
            window_chunks: 4,
            resend_after_ms: 1_000,
            stalled_after_ms: 10_000,
        }
    }
}

/// One chunk to read from the store and send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkToSend {
    /// The follower.
    pub to: NodeId,
    /// The leader's term.
    pub term: Term,
    /// What the snapshot covers.
    pub meta: SnapshotMeta,
    /// Its bytes' identity.
    pub id: SnapshotId,
    /// Where the chunk starts.
    pub offset: u64,
    /// The transfer's round (see the module doc).
    pub round: u32,
    /// How many bytes to read.
    pub len: usize,
}

/// Which chunk an answer is about: where it started and the round it was sent in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkPlace {
    /// Where the chunk started.
    pub offset: u64,
    /// The round it was sent in.
    pub round: u32,
}

/// A transfer's progress, for status reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransferProgress {
    /// Bytes the follower acknowledged holding.
    pub acked: u64,
    /// The snapshot's size.
    pub size: u64,
    /// Milliseconds since the follower last acknowledged new bytes (or since the start).
    pub since_progress_ms: u64,
}

#[derive(Clone, Debug)]
struct Outgoing {
    term: Term,
    meta: SnapshotMeta,
    id: SnapshotId,
    /// The highest offset the follower acknowledged.
    acked: u64,
    /// The next offset to send.
    next: u64,
    /// Bumped by every move; answers from earlier rounds never move the sender.
    round: u32,
    /// When an answer last arrived (or the transfer started).
    answered_at: Millis,
    /// When the follower last acknowledged new bytes (or the transfer started).
    progressed_at: Millis,
}

impl Outgoing {
    /// Send from `offset` next, in a new round.
    fn move_to(&mut self, offset: u64) {
        self.acked = offset;
        self.next = offset;
        self.round = self.round.wrapping_add(1);
    }
}

/// The leader's outgoing snapshot transfers, one per follower at most.
#[derive(Debug, Default)]
pub struct SnapshotSender {
    settings: TransferSettings,
    transfers: BTreeMap<NodeId, Outgoing>,
}

impl SnapshotSender {
    /// No transfers yet.
    pub fn new(settings: TransferSettings) -> Self {
        Self {
            settings,
            transfers: BTreeMap::new(),
        }
    }

    /// The settings in use.
    pub fn settings(&self) -> &TransferSettings {
        &self.settings
    }

    /// The engine wants `to` to have the snapshot `id`. A transfer of the same snapshot in the
    /// same term goes on where it is ([`chunks_to_send`](Self::chunks_to_send) sends again from
    /// the last acknowledged byte if it went quiet); anything else starts over from byte 0 (the
    /// follower answers with the offset it can resume from).
    pub fn start(
        &mut self,
        now: Millis,
        to: NodeId,
        term: Term,
        meta: SnapshotMeta,
        id: SnapshotId,
    ) {
        if self
            .transfers
            .get(&to)
            .is_some_and(|outgoing| outgoing.id == id && outgoing.term == term)
        {
            return;
        }
        self.transfers.insert(
            to,
            Outgoing {
                term,
                meta,
                id,
                acked: 0,
                next: 0,
                round: 0,
                answered_at: now,
                progressed_at: now,
            },
        );
    }

    /// A follower answered the chunk at `chunk_offset` sent in `round`. Returns `true` when
    /// it now holds the whole snapshot (the transfer is over).
    pub fn on_ack(
        &mut self,
        now: Millis,
        from: &NodeId,
        id: &SnapshotId,
        chunk_offset: u64,
        round: u32,
        next_offset: u64,
    ) -> bool {
        let chunk_bytes = self.settings.chunk_bytes as u64;
        let Some(outgoing) = self.transfers.get_mut(from) else {
            return false;
        };
        if outgoing.id != *id {
            return false;
        }
        outgoing.answered_at = now;
        let size = outgoing.id.size;
        if next_offset >= size {
            self.transfers.remove(from);
            return true;
        }
        let expected = chunk_offset.saturating_add(chunk_bytes.min(size - chunk_offset.min(size)));
        if next_offset > outgoing.acked {
            outgoing.progressed_at = now;
        }
        if next_offset == expected {
            outgoing.acked = outgoing.acked.max(next_offset);
            outgoing.next = outgoing.next.max(outgoing.acked);
        } else if round == outgoing.round {
            // The follower holds something else than this chunk's end (it resumed a partial
            // copy, lost bytes in a restart, or missed an earlier chunk): go where it says.
            outgoing.move_to(next_offset);
        }
        // Otherwise it answers a chunk sent before the last move: nothing new.
        false
    }

    /// The chunks the windows allow now, in order. Each is counted as sent.
    pub fn chunks_to_send(&mut self, now: Millis) -> Vec<ChunkToSend> {
        let chunk_bytes = self.settings.chunk_bytes.max(1) as u64;
        let window = chunk_bytes.saturating_mul(self.settings.window_chunks.max(1) as u64);
        let mut chunks = Vec::new();
        for (to, outgoing) in &mut self.transfers {
            if now.saturating_since(outgoing.answered_at) > self.settings.resend_after_ms {
                // Chunks or answers were lost: send again from what the follower holds.
                outgoing.move_to(outgoing.acked);
                outgoing.answered_at = now;
            }
            let size = outgoing.id.size;
            while outgoing.next < size && outgoing.next - outgoing.acked.min(outgoing.next) < window
            {
                let len = chunk_bytes.min(size - outgoing.next);
                chunks.push(ChunkToSend {
                    to: to.clone(),
                    term: outgoing.term,
                    meta: outgoing.meta.clone(),
                    id: outgoing.id,
                    offset: outgoing.next,
                    round: outgoing.round,
                    len: usize::try_from(len).unwrap_or(usize::MAX),
                });
                outgoing.next += len;
            }
        }
        chunks
    }

    /// Stop sending to `to` (it left, or the engine no longer needs it to have a snapshot).
    pub fn stop(&mut self, to: &NodeId) {
        self.transfers.remove(to);
    }

    /// Stop every transfer (this node no longer leads).
    pub fn stop_all(&mut self) {
        self.transfers.clear();
    }

    /// Whether any transfer is under way.
    pub fn is_sending(&self) -> bool {
        !self.transfers.is_empty()
    }

    /// The followers being sent a snapshot.
    pub fn followers(&self) -> impl Iterator<Item = &NodeId> {
        self.transfers.keys()
    }

    /// How far the transfer to `to` is, if there is one.
    pub fn progress(&self, now: Millis, to: &NodeId) -> Option<TransferProgress> {
        self.transfers.get(to).map(|outgoing| TransferProgress {
            acked: outgoing.acked,
            size: outgoing.id.size,
            since_progress_ms: now.saturating_since(outgoing.progressed_at),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(size: u64) -> SnapshotId {
        SnapshotId {
            last_index: ha_core::LogIndex(9),
            last_term: Term(1),
            size,
            crc32c: 7,
        }
    }

    fn sender() -> SnapshotSender {
        SnapshotSender::new(TransferSettings {
            chunk_bytes: 10,
            window_chunks: 2,
            resend_after_ms: 100,
            stalled_after_ms: 1_000,
        })
    }

    fn offsets(chunks: &[ChunkToSend]) -> Vec<(u64, usize)> {
        chunks
            .iter()
            .map(|chunk| (chunk.offset, chunk.len))
            .collect()
    }

    fn n2() -> NodeId {
        NodeId::new("n2").unwrap()
    }

    #[test]
    fn the_window_bounds_unacknowledged_chunks_and_acks_open_it() {
        let mut sender = sender();
        sender.start(Millis(0), n2(), Term(1), SnapshotMeta::default(), id(35));
        assert_eq!(
            offsets(&sender.chunks_to_send(Millis(0))),
            vec![(0, 10), (10, 10)]
        );
        assert!(sender.chunks_to_send(Millis(1)).is_empty(), "window full");
        assert!(!sender.on_ack(Millis(2), &n2(), &id(35), 0, 0, 10));
        assert_eq!(offsets(&sender.chunks_to_send(Millis(2))), vec![(20, 10)]);
        assert!(!sender.on_ack(Millis(3), &n2(), &id(35), 10, 0, 20));
        assert_eq!(offsets(&sender.chunks_to_send(Millis(3))), vec![(30, 5)]);
        assert!(!sender.on_ack(Millis(4), &n2(), &id(35), 20, 0, 30));
        assert!(sender.on_ack(Millis(5), &n2(), &id(35), 30, 0, 35), "done");
        assert!(!sender.is_sending());
    }

    #[test]
    fn the_follower_says_where_to_resume() {
        let mut sender = sender();
        sender.start(Millis(0), n2(), Term(1), SnapshotMeta::default(), id(100));
        assert_eq!(
            offsets(&sender.chunks_to_send(Millis(0))),
            vec![(0, 10), (10, 10)]
        );
        // It already held 60 bytes of this snapshot.
        sender.on_ack(Millis(1), &n2(), &id(100), 0, 0, 60);
        assert_eq!(
            offsets(&sender.chunks_to_send(Millis(1))),
            vec![(60, 10), (70, 10)]
        );
        // Then it lost what it held (a restart): back to 0.
        sender.on_ack(Millis(2), &n2(), &id(100), 60, 1, 0);
        assert_eq!(
            offsets(&sender.chunks_to_send(Millis(2))),
            vec![(0, 10), (10, 10)]
        );
    }

    #[test]
    fn answers_to_chunks_sent_before_a_resume_do_not_resend_the_window() {
        let mut sender = sender();
        sender.start(Millis(0), n2(), Term(1), SnapshotMeta::default(), id(100));
        assert_eq!(
            offsets(&sender.chunks_to_send(Millis(0))),
            vec![(0, 10), (10, 10)]
        );
        // The follower held 60 bytes: both chunks are answered "60".
        sender.on_ack(Millis(1), &n2(), &id(100), 0, 0, 60);
        assert_eq!(
            offsets(&sender.chunks_to_send(Millis(1))),
            vec![(60, 10), (70, 10)]
        );
        sender.on_ack(Millis(2), &n2(), &id(100), 10, 0, 60);
        assert!(
            sender.chunks_to_send(Millis(2)).is_empty(),
            "a second answer about the old window sends nothing again"
        );
        sender.on_ack(Millis(3), &n2(), &id(100), 60, 1, 70);
        assert_eq!(offsets(&sender.chunks_to_send(Millis(3))), vec![(80, 10)]);
    }

    #[test]
    fn a_chunk_overtaking_its_predecessor_resends_without_waiting() {
        let mut sender = sender();
        sender.start(Millis(0), n2(), Term(1), SnapshotMeta::default(), id(100));
        assert_eq!(
            offsets(&sender.chunks_to_send(Millis(0))),
            vec![(0, 10), (10, 10)]
        );
        // The chunk at 10 arrives first: the follower still holds 0 bytes.
        sender.on_ack(Millis(1), &n2(), &id(100), 10, 0, 0);
        let resent = sender.chunks_to_send(Millis(1));
        assert_eq!(offsets(&resent), vec![(0, 10), (10, 10)]);
        assert!(resent.iter().all(|chunk| chunk.round == 1));
        // The first chunk arrives after all (round 0): progress still counts.
        sender.on_ack(Millis(2), &n2(), &id(100), 0, 0, 10);
        assert_eq!(offsets(&sender.chunks_to_send(Millis(2))), vec![(20, 10)]);
        // Its resent copy is answered "10" in round 1: a move, not an error.
        sender.on_ack(Millis(3), &n2(), &id(100), 0, 1, 10);
        assert_eq!(sender.progress(Millis(3), &n2()).map(|p| p.acked), Some(10));
    }

    #[test]
    fn silence_resends_from_the_last_acknowledged_byte() {
        let mut sender = sender();
        sender.start(Millis(0), n2(), Term(1), SnapshotMeta::default(), id(100));
        sender.chunks_to_send(Millis(0));
        sender.on_ack(Millis(1), &n2(), &id(100), 0, 0, 10);
        assert_eq!(offsets(&sender.chunks_to_send(Millis(1))), vec![(20, 10)]);
        assert!(sender.chunks_to_send(Millis(50)).is_empty());
        assert_eq!(
            offsets(&sender.chunks_to_send(Millis(200))),
            vec![(10, 10), (20, 10)]
        );
        assert_eq!(
            sender
                .progress(Millis(200), &n2())
                .map(|progress| progress.since_progress_ms),
            Some(199)
        );
    }

    #[test]
    fn another_snapshot_or_term_starts_over() {
        let mut sender = sender();
        sender.start(Millis(0), n2(), Term(1), SnapshotMeta::default(), id(100));
        sender.chunks_to_send(Millis(0));
        sender.on_ack(Millis(1), &n2(), &id(100), 0, 0, 10);
        sender.start(Millis(2), n2(), Term(1), SnapshotMeta::default(), id(100));
        assert_eq!(offsets(&sender.chunks_to_send(Millis(2))), vec![(20, 10)]);
        sender.start(Millis(3), n2(), Term(2), SnapshotMeta::default(), id(100));
        assert_eq!(
            offsets(&sender.chunks_to_send(Millis(3))),
            vec![(0, 10), (10, 10)]
        );
        // An answer about another snapshot changes nothing.
        assert!(!sender.on_ack(Millis(4), &n2(), &id(99), 0, 0, 99));
        assert_eq!(sender.progress(Millis(4), &n2()).map(|p| p.acked), Some(0));
    }
}
