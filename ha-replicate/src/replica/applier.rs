//! Applying committed entries to the host's state machine, exactly once per client write.

use std::collections::{BTreeMap, VecDeque};

use ha_core::{LogIndex, StateMachine, StateMachineError, codec};
use serde::{Deserialize, Serialize};

use crate::entry::{Entry, Payload};
use crate::replica::failover_record::FailoverRecord;
use crate::replica::session::{ApplyOutcome, SessionCommand, SessionId};

/// Most sessions remembered. When full, the session idle the longest (by log index, so every
/// replica evicts the same one) is forgotten; a retry from it is then applied again, so
/// clients must not stay idle across this many other clients' writes mid-retry.
pub const SESSIONS_MAX: usize = 65_536;
/// Failover records kept.
pub const FAILOVER_HISTORY_MAX: usize = 64;
/// Largest snapshot accepted on restore.
pub const SNAPSHOT_BYTES_MAX: usize = 1 << 30;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct SessionRecord {
    sequence: u64,
    response: Vec<u8>,
    used_at: LogIndex,
}

#[derive(Serialize, Deserialize)]
struct ApplierSnapshot {
    format_version: u32,
    applied_index: LogIndex,
    sessions: BTreeMap<SessionId, SessionRecord>,
    history: Vec<FailoverRecord>,
    machine: Vec<u8>,
}

const SNAPSHOT_FORMAT_VERSION: u32 = 1;

/// The index a snapshot's contents end at, after checking that its bytes decode and carry
/// this version's format (the host's own part is checked only when restored).
///
/// # Errors
/// [`StateMachineError::Corrupt`] when the bytes do not decode or are of another format.
pub(crate) fn snapshot_applied_index(bytes: &[u8]) -> Result<LogIndex, StateMachineError> {
    Ok(decode_snapshot(bytes)?.applied_index)
}

/// A snapshot's contents, once its bytes decode and carry this version's format.
///
/// # Errors
/// [`StateMachineError::Corrupt`] when the bytes do not decode or are of another format.
fn decode_snapshot(bytes: &[u8]) -> Result<ApplierSnapshot, StateMachineError> {
    let snapshot: ApplierSnapshot = codec::decode("snapshot", bytes, SNAPSHOT_BYTES_MAX)
        .map_err(|error| StateMachineError::Corrupt(error.to_string()))?;
    if snapshot.format_version != SNAPSHOT_FORMAT_VERSION {
        return Err(StateMachineError::Corrupt(format!(
            "snapshot format {} is not {SNAPSHOT_FORMAT_VERSION}",
            snapshot.format_version
        )));
    }
    Ok(snapshot)
}

/// The host state machine plus what replication adds to the applied state: client sessions
/// and the failover history. Deterministic: every replica that applies the same entries
/// reaches the same state.
pub struct Applier<S: StateMachine> {
    machine: S,
    sessions: BTreeMap<SessionId, SessionRecord>,
    history: VecDeque<FailoverRecord>,
    applied_index: LogIndex,
}

impl<S: StateMachine> Applier<S> {
    /// An applier over a fresh state machine.
    pub fn new(machine: S) -> Self {
        Self {
            machine,
            sessions: BTreeMap::new(),
            history: VecDeque::new(),
            applied_index: LogIndex(0),
        }
    }

    /// The host state machine.
    pub fn machine(&self) -> &S {
        &self.machine
    }

    /// The last applied index.
    pub fn applied_index(&self) -> LogIndex {
        self.applied_index
    }

    /// Leadership changes, oldest first.
    pub fn history(&self) -> impl Iterator<Item = &FailoverRecord> {
        self.history.iter()
    }

    /// Apply one committed entry. Returns the outcome for command entries.
    pub fn apply(&mut self, entry: &Entry) -> Option<ApplyOutcome> {
        if entry.index <= self.applied_index {
            return None;
        }
        debug_assert_eq!(entry.index, self.applied_index.next(), "apply gap");
        self.applied_index = entry.index;
        match &entry.payload {
            Payload::LeaderStart(start) => {
                self.history.push_back(FailoverRecord {
                    term: entry.term,
                    from: start.previous.clone(),
                    to: start.leader.clone(),
                    cause: start.cause,
                    leaderless_ms: start.leaderless_ms,
                    at_ms: start.at_unix_ms,
                    index: entry.index,
                });
                while self.history.len() > FAILOVER_HISTORY_MAX {
                    self.history.pop_front();
                }
                None
            }
            Payload::Membership(_) => None,
            Payload::Command(bytes) => Some(self.apply_command(entry.index, bytes)),
        }
    }

    fn apply_command(&mut self, index: LogIndex, bytes: &[u8]) -> ApplyOutcome {
        let stamped: SessionCommand = match codec::decode("session command", bytes, bytes.len()) {
            Ok(stamped) => stamped,
            Err(error) => return ApplyOutcome::Invalid(error.to_string()),
        };
        if let Some(record) = self.sessions.get_mut(&stamped.session) {
            if stamped.sequence == record.sequence {
                record.used_at = index;
                return ApplyOutcome::Duplicate(record.response.clone());
            }
            if stamped.sequence < record.sequence {
                return ApplyOutcome::Stale {
                    latest: record.sequence,
                };
            }
        }
        let command: S::Command =
            match codec::decode("host command", &stamped.command, stamped.command.len()) {
                Ok(command) => command,
                Err(error) => return ApplyOutcome::Invalid(error.to_string()),
            };
        let response = self.machine.apply(index, command);
        let response = match codec::encode("host response", &response, usize::MAX) {
            Ok(bytes) => bytes,
            Err(error) => return ApplyOutcome::Invalid(error.to_string()),
        };
        if !self.sessions.contains_key(&stamped.session) && self.sessions.len() >= SESSIONS_MAX {
            let idlest = self
                .sessions
                .iter()
                .min_by_key(|(session, record)| (record.used_at, **session))
                .map(|(session, _)| *session);
            if let Some(idlest) = idlest {
                self.sessions.remove(&idlest);
            }
        }
        self.sessions.insert(
            stamped.session,
            SessionRecord {
                sequence: stamped.sequence,
                response: response.clone(),
                used_at: index,
            },
        );
        ApplyOutcome::Applied(response)
    }

    /// Answer a query from the applied state.
    ///
    /// # Errors
    /// [`ha_core::CodecError`] when the query bytes do not decode.
    pub fn query(&self, query: &[u8]) -> Result<Vec<u8>, ha_core::CodecError> {
        let query: S::Query = codec::decode("host query", query, query.len())?;
        codec::encode(
            "host query response",
            &self.machine.query(&query),
            usize::MAX,
        )
    }

    /// Serialise everything: the host's snapshot, sessions and history.
    ///
    /// # Errors
    /// [`StateMachineError`] from the host, or when encoding fails.
    pub fn snapshot(&self) -> Result<Vec<u8>, StateMachineError> {
        let snapshot = ApplierSnapshot {
            format_version: SNAPSHOT_FORMAT_VERSION,
            applied_index: self.applied_index,
            sessions: self.sessions.clone(),
            history: self.history.iter().cloned().collect(),
            machine: self.machine.snapshot()?,
        };
        codec::encode("snapshot", &snapshot, SNAPSHOT_BYTES_MAX)
            .map_err(|error| StateMachineError::SnapshotFailed(error.to_string()))
    }

    /// Replace everything with a snapshot's contents.
    ///
    /// # Errors
    /// [`StateMachineError::Corrupt`]; the state is unchanged.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), StateMachineError> {
        let snapshot = decode_snapshot(bytes)?;
        self.machine.restore(&snapshot.machine)?;
        self.sessions = snapshot.sessions;
        self.history = snapshot.history.into_iter().collect();
        self.applied_index = snapshot.applied_index;
        Ok(())
    }
}
