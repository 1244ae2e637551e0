//! The client sessions of the applied state: for each session, the responses of the writes
//! its client has not acknowledged yet, so that any retry of them is answered without being
//! applied again, whatever order copies of a session's writes reach the log in (Raft
//! dissertation §6.3, with many writes of one session in flight).
//!
//! Every write carries the lowest sequence its client has no answer for. The table forgets
//! the session's responses below it and refuses ever to apply a write below it, so what it
//! keeps per session is what the client still waits for, bounded by
//! [`SESSION_RESPONSES_MAX`] and [`SESSION_RESPONSE_BYTES_MAX`]. The invariant that makes a
//! write apply once: every sequence of a session at or above its lowest unanswered sequence
//! that was applied has its response in the table. A write is therefore applied only if it is
//! at or above that sequence and has no response kept; it is refused rather than applied
//! when keeping one more response would pass a bound.

use std::collections::BTreeMap;

use ha_core::LogIndex;
use serde::{Deserialize, Serialize};

use crate::replica::session::{ApplyOutcome, SessionCommand, SessionId};

/// Most sessions remembered. When full, the session idle the longest (by log index, so every
/// replica evicts the same one) is forgotten; a retry from it is then applied again, so
/// clients must not stay idle across this many other clients' writes mid-retry.
pub const SESSIONS_MAX: usize = 65_536;

/// Most responses one session keeps: writes applied at or above its lowest unanswered
/// sequence. A write past it is answered [`ApplyOutcome::SessionFull`] (not applied); the
/// replica client keeps fewer than this many writes unanswered, so it never sees that.
pub const SESSION_RESPONSES_MAX: usize = 1_024;

/// Most response bytes one session keeps (the last response kept may pass it; the next
/// write is then refused with [`ApplyOutcome::SessionFull`]).
pub const SESSION_RESPONSE_BYTES_MAX: usize = 1 << 20;

/// Most response bytes all sessions keep together. Past it, the sessions idle the longest
/// are forgotten (as at [`SESSIONS_MAX`]), so a snapshot's header stays far below
/// [`SNAPSHOT_HEADER_BYTES_MAX`](crate::replica::SNAPSHOT_HEADER_BYTES_MAX).
pub const SESSIONS_RESPONSE_BYTES_MAX: usize = 64 << 20;

/// One session as a snapshot stores it (snapshot format 3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SessionRecord {
    /// The highest lowest-unanswered sequence any of the session's writes carried.
    lowest_unanswered: u64,
    /// The responses of applied writes at or above `lowest_unanswered`, by sequence.
    responses: BTreeMap<u64, Vec<u8>>,
    /// The index of the session's last write, for evicting the idlest session.
    used_at: LogIndex,
    /// The bytes of `responses` (not stored: recomputed on restore).
    #[serde(skip)]
    response_bytes: usize,
}

/// One session as a snapshot of format 2 stored it (one write at a time: the latest only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SessionRecordFormat2 {
    sequence: u64,
    response: Vec<u8>,
    used_at: LogIndex,
}

/// The sessions of the applied state. Deterministic: the same commands at the same indexes
/// leave every replica's table the same.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionTable {
    sessions: BTreeMap<SessionId, SessionRecord>,
    response_bytes: usize,
}

impl SessionTable {
    /// Sessions remembered.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is remembered.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Response bytes kept by all sessions.
    pub fn response_bytes(&self) -> usize {
        self.response_bytes
    }

    /// Responses kept by `session`.
    pub fn responses_of(&self, session: SessionId) -> usize {
        self.sessions
            .get(&session)
            .map_or(0, |record| record.responses.len())
    }

    /// Before applying `command` at `index`: forget the session's responses below the
    /// command's lowest unanswered sequence, and answer the command without applying it when
    /// it is below that sequence, a retry of an applied write, or one response too many.
    /// `None`: apply it, then [`record`](Self::record) its response.
    pub fn check(&mut self, index: LogIndex, command: &SessionCommand) -> Option<ApplyOutcome> {
        let record = self.sessions.get_mut(&command.session)?;
        record.used_at = index;
        let lowest = command.lowest_unanswered();
        if lowest > record.lowest_unanswered {
            record.lowest_unanswered = lowest;
            // The answered responses are taken off the front in place: a `split_off` built a
            // new map (an allocation, and another when the next response was recorded) on
            // every write of a session that writes one at a time (issue 17, CPU per write).
            let mut dropped = 0usize;
            while let Some(oldest) = record.responses.first_entry() {
                if *oldest.key() >= lowest {
                    break;
                }
                dropped += oldest.remove().len();
            }
            record.response_bytes -= dropped;
            self.response_bytes -= dropped;
        }
        if command.sequence < record.lowest_unanswered {
            return Some(ApplyOutcome::Stale {
                lowest_unanswered: record.lowest_unanswered,
            });
        }
        if let Some(response) = record.responses.get(&command.sequence) {
            return Some(ApplyOutcome::Duplicate(response.clone()));
        }
        if record.responses.len() >= SESSION_RESPONSES_MAX
            || record.response_bytes >= SESSION_RESPONSE_BYTES_MAX
        {
            return Some(ApplyOutcome::SessionFull {
                responses: record.responses.len() as u64,
            });
        }
        None
    }

    /// After applying `command` at `index` (which [`check`](Self::check) let through): keep
    /// its response, forgetting the idlest other sessions when a bound is passed.
    pub fn record(&mut self, index: LogIndex, command: &SessionCommand, response: Vec<u8>) {
        if !self.sessions.contains_key(&command.session) && self.sessions.len() >= SESSIONS_MAX {
            self.evict_idlest(command.session);
        }
        let record = self
            .sessions
            .entry(command.session)
            .or_insert_with(|| SessionRecord {
                lowest_unanswered: command.lowest_unanswered(),
                responses: BTreeMap::new(),
                used_at: index,
                response_bytes: 0,
            });
        record.used_at = index;
        record.response_bytes += response.len();
        self.response_bytes += response.len();
        if let Some(replaced) = record.responses.insert(command.sequence, response) {
            // `check` lets a kept sequence through only if it was never applied: not reached.
            record.response_bytes -= replaced.len();
            self.response_bytes -= replaced.len();
        }
        while self.response_bytes > SESSIONS_RESPONSE_BYTES_MAX {
            if !self.evict_idlest(command.session) {
                break;
            }
        }
    }

    /// Forget the session idle the longest other than `keep`; whether there was one.
    fn evict_idlest(&mut self, keep: SessionId) -> bool {
        let idlest = self
            .sessions
            .iter()
            .filter(|(session, _)| **session != keep)
            .min_by_key(|(session, record)| (record.used_at, **session))
            .map(|(session, _)| *session);
        let Some(idlest) = idlest else {
            return false;
        };
        if let Some(record) = self.sessions.remove(&idlest) {
            self.response_bytes -= record.response_bytes;
        }
        true
    }

    /// The sessions as a snapshot (format 3) stores them.
    pub(crate) fn records(&self) -> &BTreeMap<SessionId, SessionRecord> {
        &self.sessions
    }

    /// The table a snapshot of format 3 stored.
    pub(crate) fn from_records(mut sessions: BTreeMap<SessionId, SessionRecord>) -> Self {
        let mut total = 0;
        for record in sessions.values_mut() {
            record.response_bytes = record.responses.values().map(Vec::len).sum();
            total += record.response_bytes;
        }
        Self {
            sessions,
            response_bytes: total,
        }
    }

    /// The table a snapshot of format 2 stored: each session's latest write is its lowest
    /// unanswered one (its client wrote one at a time), with that write's response kept.
    pub(crate) fn from_format_2(sessions: BTreeMap<SessionId, SessionRecordFormat2>) -> Self {
        let records = sessions
            .into_iter()
            .map(|(session, old)| {
                let record = SessionRecord {
                    lowest_unanswered: old.sequence,
                    responses: BTreeMap::from([(old.sequence, old.response)]),
                    used_at: old.used_at,
                    response_bytes: 0,
                };
                (session, record)
            })
            .collect();
        Self::from_records(records)
    }
}
