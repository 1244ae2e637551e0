//! The bot's replicated journal: numbered actions written by the leader, fenced by the token of
//! the lock the writer holds.
//!
//! The journal records appends exactly as they are proposed. It refuses only what fencing
//! forbids (a token lower than one already accepted) and what its memory bound forbids (more
//! than [`JOURNAL_ENTRIES_MAX`] entries). It never renumbers, fills or drops a sequence number:
//! a gap or duplicate written by a buggy or deposed leader stays visible, so the independent
//! check in [`JournalVerdict`] can find it.
//!
//! ```
//! use ha_core::{LogIndex, NodeId, StateMachine};
//! use ha_examples::journal::{Journal, JournalCommand, JournalResponse};
//!
//! let mut journal = Journal::default();
//! let writer = NodeId::new("n1")?;
//! let append = |seq, token| JournalCommand::Append { seq, token, writer: writer.clone(), unix_ms: 0 };
//! assert_eq!(
//!     journal.apply(LogIndex(1), append(1, 7)),
//!     JournalResponse::Appended { seq: 1, index: LogIndex(1) }
//! );
//! // A writer whose lock was taken over (token 6 < 7) is fenced off.
//! assert_eq!(journal.apply(LogIndex(2), append(2, 6)), JournalResponse::StaleToken { highest: 7 });
//! assert_eq!(journal.entries().len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use ha_core::codec::{decode, encode};
use ha_core::{LogIndex, NODE_ID_LENGTH_MAX, NodeId, StateMachine, StateMachineError};
use serde::{Deserialize, Serialize};

pub use crate::journal_verdict::{
    JournalVerdict, OutOfOrderSeq, SeqDuplicate, SeqGap, TokenDecrease, VERDICT_PROBLEMS_MAX,
    VERDICT_RUNS_MAX, WriterRun,
};

/// The most entries a journal holds. Appends beyond it are refused with
/// [`JournalResponse::Full`] and change nothing but a counter.
///
/// The bound keeps a node's memory and its snapshots (at most about 10 MiB) finite. The demo
/// writes one entry every 100 ms, so it stays far below the bound: 100,000 entries is almost
/// three hours of writing.
pub const JOURNAL_ENTRIES_MAX: usize = 100_000;

/// The most entries one [`JournalQuery::Entries`] returns; larger limits are lowered to it.
pub const JOURNAL_PAGE_ENTRIES_MAX: usize = 10_000;

/// The version byte that starts every snapshot. Bump it when [`JournalSnapshot`] changes, and
/// keep a decoder for the old version if old snapshots must still be read.
const SNAPSHOT_FORMAT_VERSION: u8 = 1;

/// The most bytes one entry takes in postcard: four varint `u64`s and the log index (10 bytes
/// each at most) and the writer's id (a length byte and at most 64 bytes).
const ENTRY_ENCODED_BYTES_MAX: usize = 5 * 10 + 1 + NODE_ID_LENGTH_MAX;

/// The most bytes a valid snapshot takes: the version byte, the counters and the entries'
/// length prefix (64 bytes is generous), and the entries.
const SNAPSHOT_BYTES_MAX: usize = 1 + 64 + JOURNAL_ENTRIES_MAX * ENTRY_ENCODED_BYTES_MAX;

/// A change to the journal, proposed by the node that holds the journal lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JournalCommand {
    /// Record one numbered action.
    Append {
        /// The action's number, chosen by the writer (the bot counts from 1).
        seq: u64,
        /// The fencing token of the lock the writer held when it proposed this append.
        token: u64,
        /// The node that proposed the append.
        writer: NodeId,
        /// Wall-clock time at the proposer, in milliseconds since the Unix epoch. Informational
        /// only: the journal never reads a clock, so every replica records the same value.
        unix_ms: u64,
    },
    /// Raise the highest accepted token to `token` without recording an entry: a new lock
    /// holder fences off every older holder before it reads where the journal ends, so an
    /// old append still in flight is either applied before the fence (and seen by the read)
    /// or refused after it.
    Fence {
        /// The new holder's fencing token.
        token: u64,
        /// The new holder.
        writer: NodeId,
    },
}

/// What [`Journal::apply`] did with a command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JournalResponse {
    /// The entry was recorded as given.
    Appended {
        /// The entry's sequence number, as proposed.
        seq: u64,
        /// The log index the entry was committed at.
        index: LogIndex,
    },
    /// The token is lower than one already accepted: the writer's lock was taken over by a
    /// newer holder. Nothing changed but the refusal counter; the writer must stop writing and
    /// take the lock again.
    StaleToken {
        /// The highest token accepted so far.
        highest: u64,
    },
    /// The fence is in place: appends with a lower token are refused from now on.
    Fenced {
        /// The token now highest.
        token: u64,
    },
    /// The journal holds [`JOURNAL_ENTRIES_MAX`] entries. Nothing changed but the refusal
    /// counter; a new journal is needed to write more.
    Full,
}

/// A read of the journal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JournalQuery {
    /// The last entry and the counters.
    Last,
    /// A page of entries, in the order they were written.
    Entries {
        /// How many entries to skip from the start of the journal (0 starts at the first).
        after_seq_position: usize,
        /// The most entries to return; lowered to [`JOURNAL_PAGE_ENTRIES_MAX`].
        limit: usize,
    },
    /// The counters, the highest accepted token and the last entry.
    Summary,
}

/// The answer to a [`JournalQuery`], one variant per query.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JournalQueryResponse {
    /// The answer to [`JournalQuery::Last`].
    Last {
        /// The last entry, if there is one.
        last: Option<JournalEntry>,
        /// How many entries the journal holds.
        entries: u64,
        /// How many appends were refused for a stale token.
        refused_stale: u64,
        /// How many appends were refused because the journal was full.
        refused_full: u64,
    },
    /// The answer to [`JournalQuery::Entries`].
    Entries(JournalPage),
    /// The answer to [`JournalQuery::Summary`].
    Summary(JournalSummary),
}

/// One page of entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalPage {
    /// The entries, in the order they were written.
    pub entries: Vec<JournalEntry>,
    /// How many entries the whole journal holds.
    pub total_entries: u64,
    /// The position to ask for next, or `None` when this page reaches the end.
    pub next_position: Option<usize>,
}

/// The journal's counters and its last entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalSummary {
    /// How many entries the journal holds.
    pub entries: u64,
    /// How many appends were refused for a stale token.
    pub refused_stale: u64,
    /// How many appends were refused because the journal was full.
    pub refused_full: u64,
    /// The highest token accepted so far, or `None` before the first append.
    pub highest_token: Option<u64>,
    /// The last entry, if there is one.
    pub last: Option<JournalEntry>,
}

/// One recorded append, exactly as it was proposed, with the log index it was committed at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// The action's number, as proposed.
    pub seq: u64,
    /// The writer's fencing token.
    pub token: u64,
    /// The node that proposed the append.
    pub writer: NodeId,
    /// Wall-clock time at the proposer, in milliseconds since the Unix epoch (informational).
    pub unix_ms: u64,
    /// The log index the append was committed at.
    pub index: LogIndex,
}

/// The journal's whole state as a snapshot carries it, after the version byte.
#[derive(Serialize, Deserialize)]
struct JournalSnapshot {
    entries: Vec<JournalEntry>,
    refused_stale: u64,
    refused_full: u64,
    fence_token: u64,
}

/// The bot's replicated journal: a [`StateMachine`] of fenced, numbered appends.
///
/// Invariants, checked again when a snapshot is restored:
/// - at most [`JOURNAL_ENTRIES_MAX`] entries;
/// - tokens never decrease from one entry to the next (fencing refuses a lower one), so the
///   highest token ever accepted is the last entry's;
/// - log indexes strictly increase (the framework applies each index once, in order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Journal {
    entries: Vec<JournalEntry>,
    refused_stale: u64,
    refused_full: u64,
    /// The highest token a [`JournalCommand::Fence`] raised the bar to (0: none yet).
    fence_token: u64,
    /// Fault injection for the consistency monitor's test only (`None` in normal use): the
    /// first append applied at or past this index records the proposer's time plus 1 ms, as a
    /// state machine that read its own clock would. Not part of the state: a snapshot restore
    /// clears it, so it fires at most once.
    nondeterministic_at: Option<LogIndex>,
}

impl Journal {
    /// A journal that deliberately breaks determinism once, on this replica only: the first
    /// append applied at or past `index` is recorded with a different `unix_ms` than the other
    /// replicas record. FAULT INJECTION for testing the replica consistency monitor
    /// (`tests/processes/consistency.rs`); never use it otherwise.
    pub fn with_nondeterminism_at(index: LogIndex) -> Self {
        Self {
            nondeterministic_at: Some(index),
            ..Self::default()
        }
    }

    /// All entries, in the order they were written.
    pub fn entries(&self) -> &[JournalEntry] {
        &self.entries
    }

    /// The highest token accepted so far (by an append or a fence), or `None` before the
    /// first.
    pub fn highest_token(&self) -> Option<u64> {
        // Accepted tokens never decrease, so the last entry holds the highest append token.
        let appended = self.entries.last().map(|entry| entry.token);
        let fenced = (self.fence_token > 0).then_some(self.fence_token);
        appended.max(fenced)
    }

    /// The counters, the highest accepted token and the last entry.
    pub fn summary(&self) -> JournalSummary {
        JournalSummary {
            entries: self.entries.len() as u64,
            refused_stale: self.refused_stale,
            refused_full: self.refused_full,
            highest_token: self.highest_token(),
            last: self.entries.last().cloned(),
        }
    }

    /// The independent check of the entries: see [`JournalVerdict::check`].
    pub fn verdict(&self) -> JournalVerdict {
        JournalVerdict::check(&self.entries)
    }

    /// The entries from `position` on, at most `limit` (lowered to
    /// [`JOURNAL_PAGE_ENTRIES_MAX`]) of them.
    pub fn page(&self, position: usize, limit: usize) -> JournalPage {
        let start = position.min(self.entries.len());
        let end = start
            .saturating_add(limit.min(JOURNAL_PAGE_ENTRIES_MAX))
            .min(self.entries.len());
        JournalPage {
            entries: self.entries[start..end].to_vec(),
            total_entries: self.entries.len() as u64,
            next_position: (end < self.entries.len()).then_some(end),
        }
    }

    /// Checks the invariants a restored state must hold; the reason names the first broken one.
    fn validate(snapshot: &JournalSnapshot) -> Result<(), String> {
        if snapshot.entries.len() > JOURNAL_ENTRIES_MAX {
            return Err(format!(
                "{} entries; the limit is {JOURNAL_ENTRIES_MAX}",
                snapshot.entries.len()
            ));
        }
        for (position, pair) in snapshot.entries.windows(2).enumerate() {
            let (before, after) = (&pair[0], &pair[1]);
            if after.token < before.token {
                return Err(format!(
                    "entry {} has token {} after token {}: accepted tokens never decrease",
                    position + 1,
                    after.token,
                    before.token
                ));
            }
            if after.index <= before.index {
                return Err(format!(
                    "entry {} has log index {} after {}: indexes strictly increase",
                    position + 1,
                    after.index,
                    before.index
                ));
            }
        }
        Ok(())
    }
}

impl StateMachine for Journal {
    type Command = JournalCommand;
    type Response = JournalResponse;
    type Query = JournalQuery;
    type QueryResponse = JournalQueryResponse;

    /// Fencing only: a token below the highest accepted is refused; anything else is recorded
    /// as given while there is room.
    fn apply(&mut self, index: LogIndex, command: JournalCommand) -> JournalResponse {
        debug_assert!(
            self.entries.last().is_none_or(|last| last.index < index),
            "the framework applies strictly increasing indexes"
        );
        let (seq, token, writer, unix_ms) = match command {
            JournalCommand::Append {
                seq,
                token,
                writer,
                unix_ms,
            } => (seq, token, writer, unix_ms),
            JournalCommand::Fence { token, .. } => {
                if let Some(highest) = self.highest_token()
                    && token < highest
                {
                    self.refused_stale = self.refused_stale.saturating_add(1);
                    return JournalResponse::StaleToken { highest };
                }
                self.fence_token = token;
                return JournalResponse::Fenced { token };
            }
        };
        if let Some(highest) = self.highest_token()
            && token < highest
        {
            self.refused_stale = self.refused_stale.saturating_add(1);
            return JournalResponse::StaleToken { highest };
        }
        if self.entries.len() >= JOURNAL_ENTRIES_MAX {
            self.refused_full = self.refused_full.saturating_add(1);
            return JournalResponse::Full;
        }
        let mut unix_ms = unix_ms;
        if self.nondeterministic_at.is_some_and(|at| index >= at) {
            self.nondeterministic_at = None;
            unix_ms = unix_ms.wrapping_add(1);
            tracing::warn!(%index, seq, "FAULT INJECTION: this replica recorded an append differently");
        }
        self.entries.push(JournalEntry {
            seq,
            token,
            writer,
            unix_ms,
            index,
        });
        JournalResponse::Appended { seq, index }
    }

    fn query(&self, query: &JournalQuery) -> JournalQueryResponse {
        match query {
            JournalQuery::Last => JournalQueryResponse::Last {
                last: self.entries.last().cloned(),
                entries: self.entries.len() as u64,
                refused_stale: self.refused_stale,
                refused_full: self.refused_full,
            },
            JournalQuery::Entries {
                after_seq_position,
                limit,
            } => JournalQueryResponse::Entries(self.page(*after_seq_position, *limit)),
            JournalQuery::Summary => JournalQueryResponse::Summary(self.summary()),
        }
    }

    /// One version byte, then the postcard encoding of the entries and counters.
    fn snapshot(&self) -> Result<Vec<u8>, StateMachineError> {
        let snapshot = JournalSnapshot {
            entries: self.entries.clone(),
            refused_stale: self.refused_stale,
            refused_full: self.refused_full,
            fence_token: self.fence_token,
        };
        let body = encode("journal snapshot", &snapshot, SNAPSHOT_BYTES_MAX - 1)
            .map_err(|error| StateMachineError::SnapshotFailed(error.to_string()))?;
        let mut bytes = Vec::with_capacity(1 + body.len());
        bytes.push(SNAPSHOT_FORMAT_VERSION);
        bytes.extend_from_slice(&body);
        Ok(bytes)
    }

    /// Refuses an unknown version, malformed or trailing bytes, and a state that breaks the
    /// journal's invariants; on refusal the journal is unchanged.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), StateMachineError> {
        let Some((&version, body)) = snapshot.split_first() else {
            return Err(StateMachineError::Corrupt(
                "journal snapshot is empty".to_string(),
            ));
        };
        if version != SNAPSHOT_FORMAT_VERSION {
            return Err(StateMachineError::Corrupt(format!(
                "journal snapshot has format version {version}; this build reads version \
                 {SNAPSHOT_FORMAT_VERSION}"
            )));
        }
        let decoded: JournalSnapshot = decode("journal snapshot", body, SNAPSHOT_BYTES_MAX - 1)
            .map_err(|error| StateMachineError::Corrupt(error.to_string()))?;
        Journal::validate(&decoded).map_err(|reason| {
            StateMachineError::Corrupt(format!("journal snapshot is inconsistent: {reason}"))
        })?;
        *self = Journal {
            entries: decoded.entries,
            refused_stale: decoded.refused_stale,
            refused_full: decoded.refused_full,
            fence_token: decoded.fence_token,
            nondeterministic_at: None,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn node(id: &str) -> NodeId {
        NodeId::new(id).expect("valid test id")
    }

    fn append(seq: u64, token: u64, writer: &str) -> JournalCommand {
        JournalCommand::Append {
            seq,
            token,
            writer: node(writer),
            unix_ms: 1_700_000_000_000 + seq,
        }
    }

    /// A journal with appends at indexes 1, 2, ... and the given (seq, token, writer).
    fn journal_of(appends: &[(u64, u64, &str)]) -> Journal {
        let mut journal = Journal::default();
        for (position, (seq, token, writer)) in appends.iter().enumerate() {
            let index = LogIndex(position as u64 + 1);
            let response = journal.apply(index, append(*seq, *token, writer));
            assert_eq!(response, JournalResponse::Appended { seq: *seq, index });
        }
        journal
    }

    #[test]
    fn stale_tokens_are_refused_and_change_nothing_but_the_counter() {
        let mut journal = journal_of(&[(1, 5, "n1"), (2, 5, "n1")]);
        let before = journal.entries().to_vec();
        assert_eq!(
            journal.apply(LogIndex(3), append(3, 4, "n2")),
            JournalResponse::StaleToken { highest: 5 }
        );
        assert_eq!(journal.entries(), before.as_slice());
        assert_eq!(journal.highest_token(), Some(5));
        assert_eq!(journal.summary().refused_stale, 1);
    }

    #[test]
    fn a_fence_refuses_older_tokens_without_an_entry_and_survives_a_snapshot() {
        let mut journal = journal_of(&[(1, 5, "n1")]);
        let fence = |token| JournalCommand::Fence {
            token,
            writer: node("n2"),
        };
        assert_eq!(
            journal.apply(LogIndex(2), fence(4)),
            JournalResponse::StaleToken { highest: 5 }
        );
        assert_eq!(
            journal.apply(LogIndex(3), fence(9)),
            JournalResponse::Fenced { token: 9 }
        );
        assert_eq!(journal.entries().len(), 1, "a fence records no entry");
        assert_eq!(
            journal.apply(LogIndex(4), append(2, 5, "n1")),
            JournalResponse::StaleToken { highest: 9 },
            "the old holder's late append is refused"
        );
        let mut copy = Journal::default();
        copy.restore(&journal.snapshot().unwrap()).unwrap();
        assert_eq!(copy.highest_token(), Some(9));
        assert_eq!(
            copy.apply(LogIndex(5), append(2, 9, "n2")),
            JournalResponse::Appended {
                seq: 2,
                index: LogIndex(5)
            }
        );
    }

    #[test]
    fn equal_and_higher_tokens_are_accepted() {
        let mut journal = journal_of(&[(1, 5, "n1")]);
        assert_eq!(
            journal.apply(LogIndex(2), append(2, 5, "n1")),
            JournalResponse::Appended {
                seq: 2,
                index: LogIndex(2)
            }
        );
        assert_eq!(
            journal.apply(LogIndex(3), append(3, 9, "n2")),
            JournalResponse::Appended {
                seq: 3,
                index: LogIndex(3)
            }
        );
        assert_eq!(journal.highest_token(), Some(9));
        assert_eq!(journal.summary().refused_stale, 0);
    }

    #[test]
    fn the_first_append_is_accepted_with_any_token() {
        let journal = journal_of(&[(1, 0, "n1")]);
        assert_eq!(journal.highest_token(), Some(0));
    }

    #[test]
    fn gaps_and_duplicates_are_recorded_as_given() {
        let journal = journal_of(&[(1, 1, "n1"), (3, 1, "n1"), (3, 2, "n2"), (2, 2, "n2")]);
        let seqs: Vec<u64> = journal.entries().iter().map(|entry| entry.seq).collect();
        assert_eq!(seqs, [1, 3, 3, 2]);
        assert!(!journal.verdict().ok());
    }

    #[test]
    fn a_full_journal_refuses_appends_and_counts_them() {
        let mut journal = Journal::default();
        for seq in 1..=JOURNAL_ENTRIES_MAX as u64 {
            journal.apply(LogIndex(seq), append(seq, 1, "n1"));
        }
        let next = JOURNAL_ENTRIES_MAX as u64 + 1;
        assert_eq!(
            journal.apply(LogIndex(next), append(next, 1, "n1")),
            JournalResponse::Full
        );
        // Fencing is checked first: a stale writer learns that it is stale.
        assert_eq!(
            journal.apply(LogIndex(next + 1), append(next, 0, "n2")),
            JournalResponse::StaleToken { highest: 1 }
        );
        let summary = journal.summary();
        assert_eq!(summary.entries, JOURNAL_ENTRIES_MAX as u64);
        assert_eq!((summary.refused_full, summary.refused_stale), (1, 1));
        let snapshot = journal.snapshot().expect("a full journal snapshots");
        assert!(snapshot.len() <= SNAPSHOT_BYTES_MAX);
    }

    #[test]
    fn queries_answer_from_the_state() {
        let mut journal = journal_of(&[(1, 1, "n1"), (2, 1, "n1"), (3, 2, "n2")]);
        journal.apply(LogIndex(4), append(4, 1, "n1"));
        let last = journal.entries().last().cloned();
        assert_eq!(
            journal.query(&JournalQuery::Last),
            JournalQueryResponse::Last {
                last: last.clone(),
                entries: 3,
                refused_stale: 1,
                refused_full: 0,
            }
        );
        assert_eq!(
            journal.query(&JournalQuery::Summary),
            JournalQueryResponse::Summary(JournalSummary {
                entries: 3,
                refused_stale: 1,
                refused_full: 0,
                highest_token: Some(2),
                last,
            })
        );
        let JournalQueryResponse::Entries(page) = journal.query(&JournalQuery::Entries {
            after_seq_position: 1,
            limit: 1,
        }) else {
            panic!("an entries query answers with entries");
        };
        assert_eq!(page.entries, journal.entries()[1..2]);
        assert_eq!((page.total_entries, page.next_position), (3, Some(2)));
        let page = journal.page(2, usize::MAX);
        assert_eq!((page.entries.len(), page.next_position), (1, None));
        let page = journal.page(usize::MAX, usize::MAX);
        assert_eq!((page.entries.len(), page.next_position), (0, None));
    }

    #[test]
    fn pages_are_capped() {
        let mut journal = Journal::default();
        for seq in 1..=(JOURNAL_PAGE_ENTRIES_MAX as u64 + 5) {
            journal.apply(LogIndex(seq), append(seq, 1, "n1"));
        }
        let page = journal.page(0, usize::MAX);
        assert_eq!(page.entries.len(), JOURNAL_PAGE_ENTRIES_MAX);
        assert_eq!(page.next_position, Some(JOURNAL_PAGE_ENTRIES_MAX));
    }

    #[test]
    fn snapshot_round_trips() {
        let mut journal = journal_of(&[(1, 1, "n1"), (2, 1, "n1"), (2, 3, "n2")]);
        journal.apply(LogIndex(4), append(3, 2, "n1"));
        let snapshot = journal.snapshot().expect("snapshot");
        assert_eq!(snapshot[0], SNAPSHOT_FORMAT_VERSION);
        let mut copy = journal_of(&[(9, 9, "n9")]);
        copy.restore(&snapshot).expect("restore");
        assert_eq!(copy, journal);
        assert_eq!(
            copy.query(&JournalQuery::Summary),
            journal.query(&JournalQuery::Summary)
        );
    }

    #[test]
    fn corrupt_snapshots_are_refused_and_change_nothing() {
        let source = journal_of(&[(1, 1, "n1"), (2, 2, "n2")]);
        let good = source.snapshot().expect("snapshot");
        let mut wrong_version = good.clone();
        wrong_version[0] = SNAPSHOT_FORMAT_VERSION + 1;
        let mut trailing = good.clone();
        trailing.push(0);
        let truncated = good[..good.len() - 1].to_vec();
        let mut bad_writer = good.clone();
        // The first writer id (length 2, then "n1") gets a space for its "n": ids are
        // validated when they are decoded.
        let writer_at = good
            .windows(3)
            .position(|window| window == [2, b'n', b'1'])
            .expect("the id is in the snapshot");
        bad_writer[writer_at + 1] = b' ';
        let decreasing_tokens = encode_snapshot(vec![entry(1, 2, 1), entry(2, 1, 2)]);
        let repeated_index = encode_snapshot(vec![entry(1, 1, 1), entry(2, 1, 1)]);
        let cases: [(&str, &[u8]); 8] = [
            ("empty", &[]),
            ("wrong version", &wrong_version),
            ("trailing byte", &trailing),
            ("truncated", &truncated),
            ("garbage", &[SNAPSHOT_FORMAT_VERSION, 0xff, 0xff, 0xff]),
            ("invalid writer id", &bad_writer),
            ("decreasing tokens", &decreasing_tokens),
            ("repeated index", &repeated_index),
        ];
        for (name, bytes) in cases {
            let mut journal = journal_of(&[(1, 3, "n3")]);
            let before = journal.clone();
            let result = journal.restore(bytes);
            assert!(
                matches!(result, Err(StateMachineError::Corrupt(_))),
                "{name}: {result:?}"
            );
            assert_eq!(journal, before, "{name}: state changed");
        }
    }

    fn entry(seq: u64, token: u64, index: u64) -> JournalEntry {
        JournalEntry {
            seq,
            token,
            writer: node("n1"),
            unix_ms: 0,
            index: LogIndex(index),
        }
    }

    fn encode_snapshot(entries: Vec<JournalEntry>) -> Vec<u8> {
        let snapshot = JournalSnapshot {
            entries,
            refused_stale: 0,
            refused_full: 0,
            fence_token: 0,
        };
        let mut bytes = vec![SNAPSHOT_FORMAT_VERSION];
        bytes.extend(postcard::to_allocvec(&snapshot).expect("encodes"));
        bytes
    }

    proptest! {
        /// Model-based: an append is accepted exactly when its token is at least every token
        /// accepted before it, entries are kept as given, and every state survives a snapshot.
        #[test]
        fn fencing_matches_a_model_and_snapshots_round_trip(
            appends in proptest::collection::vec((0u64..20, 0u64..6, 0usize..3), 0..60)
        ) {
            let writers = [node("n1"), node("n2"), node("n3")];
            let mut journal = Journal::default();
            let mut model: Vec<(u64, u64)> = Vec::new();
            let mut refused_stale = 0u64;
            for (position, (seq, token, writer)) in appends.into_iter().enumerate() {
                let index = LogIndex(position as u64 + 1);
                let command = JournalCommand::Append {
                    seq,
                    token,
                    writer: writers[writer].clone(),
                    unix_ms: 0,
                };
                let highest = model.iter().map(|(_, token)| *token).max();
                let response = journal.apply(index, command);
                match highest {
                    Some(highest) if token < highest => {
                        refused_stale += 1;
                        prop_assert_eq!(response, JournalResponse::StaleToken { highest });
                    }
                    _ => {
                        model.push((seq, token));
                        prop_assert_eq!(response, JournalResponse::Appended { seq, index });
                    }
                }
            }
            let recorded: Vec<(u64, u64)> =
                journal.entries().iter().map(|entry| (entry.seq, entry.token)).collect();
            prop_assert_eq!(recorded, model);
            prop_assert_eq!(journal.summary().refused_stale, refused_stale);
            let mut copy = Journal::default();
            copy.restore(&journal.snapshot().expect("snapshot")).expect("restore");
            prop_assert_eq!(copy, journal);
        }
    }
}
