//! Received data the engine refuses: messages no correct peer sends. Each is dropped without
//! changing any state, counted by cause, and logged at most once per peer per minute.
//!
//! A peer that is buggy, compromised or talking across a corrupted link must not be able to
//! stop or corrupt a node: nothing a message carries reaches an `assert!`, an unchecked index
//! or an overflowing addition. Checks that need no state run on every message before it is
//! dispatched ([`Engine::check_message`]); the rest run where the state they need is at hand.

use std::collections::BTreeMap;
use std::fmt;

use ha_core::{LogIndex, Millis, NodeId, Term};
use serde::{Deserialize, Serialize};

use crate::engine::engine::Engine;
use crate::engine::message::Message;
use crate::engine::role::Role;
use crate::entry::{Entry, Payload};

/// Highest term a message may carry. A correct cluster would need billions of years of
/// elections to get near it; refusing more keeps `term + 1` from overflowing.
pub const TERM_MAX: u64 = u64::MAX / 2;
/// Highest log index a message may carry, for the same reason as [`TERM_MAX`].
pub const INDEX_MAX: u64 = u64::MAX / 2;
/// A refusal from one peer is logged at most this often (later ones are only counted).
pub const REFUSAL_LOG_INTERVAL_MS: u64 = 60_000;
/// Most peers whose last refusal log time is remembered; the oldest is forgotten beyond it.
const REFUSAL_LOG_PEERS_MAX: usize = 1_024;

/// Why a received message was refused. Every cause is something no correct peer sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RefusalCause {
    /// A term or index above [`TERM_MAX`] / [`INDEX_MAX`].
    OutOfRange,
    /// Append entries that do not follow `prev_log_index` one by one, or whose terms go down.
    NonContiguousEntries,
    /// An entry (or a snapshot) of a term above the term of the message carrying it.
    EntryTermAboveMessage,
    /// A configuration entry or snapshot with no voters.
    EmptyMembership,
    /// An append that would replace an entry this node knows is committed.
    OverwriteCommitted,
    /// An append, snapshot or `TimeoutNow` of this node's own term while it leads: another
    /// node claims to lead the same term.
    SecondLeader,
    /// An acknowledgement of an index beyond this leader's log.
    AckBeyondLog,
    /// An acknowledgement of a read round this leader has not started.
    RoundFromFuture,
    /// A snapshot whose bytes do not decode, or whose contents end at another index than its
    /// metadata says (checked by the replica before the engine sees it).
    BadSnapshot,
}

impl RefusalCause {
    /// Every cause, in label order.
    pub const ALL: [RefusalCause; 9] = [
        RefusalCause::OutOfRange,
        RefusalCause::NonContiguousEntries,
        RefusalCause::EntryTermAboveMessage,
        RefusalCause::EmptyMembership,
        RefusalCause::OverwriteCommitted,
        RefusalCause::SecondLeader,
        RefusalCause::AckBeyondLog,
        RefusalCause::RoundFromFuture,
        RefusalCause::BadSnapshot,
    ];

    /// The label used in metrics and the status (`snake_case`).
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCause::OutOfRange => "out_of_range",
            RefusalCause::NonContiguousEntries => "non_contiguous_entries",
            RefusalCause::EntryTermAboveMessage => "entry_term_above_message",
            RefusalCause::EmptyMembership => "empty_membership",
            RefusalCause::OverwriteCommitted => "overwrite_committed",
            RefusalCause::SecondLeader => "second_leader",
            RefusalCause::AckBeyondLog => "ack_beyond_log",
            RefusalCause::RoundFromFuture => "round_from_future",
            RefusalCause::BadSnapshot => "bad_snapshot",
        }
    }
}

impl fmt::Display for RefusalCause {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// How many received messages were refused, by cause, since the engine started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefusedInputs {
    counts: BTreeMap<RefusalCause, u64>,
}

impl RefusedInputs {
    /// Refusals of one cause.
    pub fn count(&self, cause: RefusalCause) -> u64 {
        self.counts.get(&cause).copied().unwrap_or(0)
    }

    /// Refusals of every cause together.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Every cause with its count (zero included), in label order.
    pub fn by_cause(&self) -> impl Iterator<Item = (RefusalCause, u64)> + '_ {
        RefusalCause::ALL
            .iter()
            .map(|cause| (*cause, self.count(*cause)))
    }

    fn add(&mut self, cause: RefusalCause) {
        let count = self.counts.entry(cause).or_insert(0);
        *count = count.saturating_add(1);
    }
}

fn in_range(term: Term) -> bool {
    term.0 <= TERM_MAX
}

fn index_in_range(index: LogIndex) -> bool {
    index.0 <= INDEX_MAX
}

/// The checks on append entries that need no state: in range, one after another from
/// `prev_log_index`, terms never going down and never above the message's term, and no
/// configuration without voters.
fn check_entries(
    term: Term,
    prev_log_index: LogIndex,
    prev_log_term: Term,
    entries: &[Entry],
) -> Result<(), RefusalCause> {
    if !index_in_range(prev_log_index) || !in_range(prev_log_term) {
        return Err(RefusalCause::OutOfRange);
    }
    if prev_log_term > term {
        return Err(RefusalCause::EntryTermAboveMessage);
    }
    let mut expected_index = prev_log_index.0;
    let mut previous_term = prev_log_term;
    for entry in entries {
        expected_index = expected_index.saturating_add(1);
        if !index_in_range(entry.index) || !in_range(entry.term) {
            return Err(RefusalCause::OutOfRange);
        }
        if entry.index.0 != expected_index || entry.term < previous_term {
            return Err(RefusalCause::NonContiguousEntries);
        }
        if entry.term > term {
            return Err(RefusalCause::EntryTermAboveMessage);
        }
        if let Payload::Membership(membership) = &entry.payload
            && membership.voters.is_empty()
        {
            return Err(RefusalCause::EmptyMembership);
        }
        previous_term = entry.term;
    }
    Ok(())
}

impl Engine {
    /// The checks every message passes before it is dispatched; they need no state.
    pub(crate) fn check_message(message: &Message) -> Result<(), RefusalCause> {
        if !in_range(message.term()) {
            return Err(RefusalCause::OutOfRange);
        }
        match message {
            Message::PreVoteRequest {
                last_log_index,
                last_log_term,
                ..
            }
            | Message::VoteRequest {
                last_log_index,
                last_log_term,
                ..
            } => {
                if !index_in_range(*last_log_index) || !in_range(*last_log_term) {
                    return Err(RefusalCause::OutOfRange);
                }
            }
            Message::PreVoteResponse { current_term, .. } => {
                if !in_range(*current_term) {
                    return Err(RefusalCause::OutOfRange);
                }
            }
            Message::AppendRequest {
                term,
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
                ..
            } => {
                if !index_in_range(*leader_commit) {
                    return Err(RefusalCause::OutOfRange);
                }
                check_entries(*term, *prev_log_index, *prev_log_term, entries)?;
            }
            Message::AppendResponse {
                index,
                applied_index,
                ..
            } => {
                if !index_in_range(*index) || !index_in_range(*applied_index) {
                    return Err(RefusalCause::OutOfRange);
                }
            }
            Message::InstallSnapshot { term, meta, .. } => {
                if !index_in_range(meta.last_index) || !in_range(meta.last_term) {
                    return Err(RefusalCause::OutOfRange);
                }
                if meta.last_term > *term {
                    return Err(RefusalCause::EntryTermAboveMessage);
                }
                if meta.membership.voters.is_empty() {
                    return Err(RefusalCause::EmptyMembership);
                }
            }
            Message::InstallSnapshotResponse { last_index, .. } => {
                if !index_in_range(*last_index) {
                    return Err(RefusalCause::OutOfRange);
                }
            }
            Message::VoteResponse { .. } | Message::TimeoutNow { .. } => {}
        }
        Ok(())
    }

    /// The checks that need this node's state, made before the message changes any of it.
    pub(crate) fn check_against_state(&self, message: &Message) -> Result<(), RefusalCause> {
        let leads_this_term = |term: &Term| self.role == Role::Leader && *term == self.term;
        match message {
            Message::AppendRequest {
                term,
                prev_log_index,
                prev_log_term,
                entries,
                ..
            } => {
                if leads_this_term(term) {
                    return Err(RefusalCause::SecondLeader);
                }
                // A stale leader's append is answered with the current term (so it steps
                // down), whatever it carries; a leader of this term or a later one holds every
                // committed entry, so a conflict below the commit index is a lie.
                if *term >= self.term
                    && self.append_overwrites_committed(*prev_log_index, *prev_log_term, entries)
                {
                    return Err(RefusalCause::OverwriteCommitted);
                }
            }
            Message::InstallSnapshot { term, .. } | Message::TimeoutNow { term, .. }
                if leads_this_term(term) =>
            {
                return Err(RefusalCause::SecondLeader);
            }
            Message::AppendResponse {
                term,
                success,
                index,
                applied_index,
                read_round,
            } if leads_this_term(term) => {
                // A follower echoes the round of an append this leader sent in this term (a
                // rejection for a stale term echoes none), and cannot hold or have applied
                // more than this leader's log: committed entries are all in it.
                if *read_round > self.round {
                    return Err(RefusalCause::RoundFromFuture);
                }
                let last_index = self.log.last_index();
                if (*success && *index > last_index) || *applied_index > last_index {
                    return Err(RefusalCause::AckBeyondLog);
                }
            }
            Message::InstallSnapshotResponse { term, last_index }
                if leads_this_term(term) && *last_index > self.log.last_index() =>
            {
                return Err(RefusalCause::AckBeyondLog);
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether applying this append would replace an entry known committed. Only an append
    /// whose `prev_log_index` matches is applied; entries the snapshot covers are skipped.
    fn append_overwrites_committed(
        &self,
        prev_log_index: LogIndex,
        prev_log_term: Term,
        entries: &[Entry],
    ) -> bool {
        let snapshot_index = self.log.snapshot().last_index;
        let applies = prev_log_index < snapshot_index
            || (prev_log_index <= self.log.last_index()
                && self.log.term_at(prev_log_index) == Some(prev_log_term));
        if !applies {
            return false;
        }
        for entry in entries.iter().filter(|entry| entry.index > snapshot_index) {
            match self.log.term_at(entry.index) {
                Some(term) if term == entry.term => continue,
                Some(_) => return entry.index <= self.commit_index,
                None => return false,
            }
        }
        false
    }

    /// Refuse a message from `from`: count it, and log it unless this peer's last refusal was
    /// logged less than [`REFUSAL_LOG_INTERVAL_MS`] ago. Nothing else changes.
    pub(crate) fn refuse(&mut self, from: &NodeId, cause: RefusalCause, detail: fmt::Arguments) {
        self.refused.add(cause);
        let now = self.now;
        let due = self
            .refusal_logged_at
            .get(from)
            .is_none_or(|at| now.saturating_since(*at) >= REFUSAL_LOG_INTERVAL_MS);
        if !due {
            return;
        }
        if !self.refusal_logged_at.contains_key(from)
            && self.refusal_logged_at.len() >= REFUSAL_LOG_PEERS_MAX
        {
            let oldest = self
                .refusal_logged_at
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(peer, _)| peer.clone());
            if let Some(oldest) = oldest {
                self.refusal_logged_at.remove(&oldest);
            }
        }
        self.refusal_logged_at.insert(from.clone(), now);
        tracing::warn!(
            peer = %from,
            %cause,
            total = self.refused.count(cause),
            "refused a message no correct peer sends: {detail} (further refusals from this peer \
             are only counted for a minute)"
        );
    }

    /// A message from `from` that the driver checked and refused before handing it to the
    /// engine (a snapshot that does not restore): counted and logged like the engine's own
    /// refusals. Nothing else changes.
    pub fn refuse_input(&mut self, now: Millis, from: &NodeId, cause: RefusalCause, detail: &str) {
        self.observe(now);
        self.refuse(from, cause, format_args!("{detail}"));
    }

    /// Received messages refused so far, by cause.
    pub fn refused_inputs(&self) -> &RefusedInputs {
        &self.refused
    }

    /// When a refusal from `peer` was last logged (for tests of the log limit).
    #[cfg(any(test, feature = "test-support"))]
    pub fn refusal_logged_at(&self, peer: &NodeId) -> Option<Millis> {
        self.refusal_logged_at.get(peer).copied()
    }
}
