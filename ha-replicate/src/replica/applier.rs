//! Applying committed entries to the host's state machine, exactly once per client write.

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};

use ha_core::{LogIndex, SnapshotSource, StateMachine, StateMachineError, codec};
use serde::{Deserialize, Serialize};

use crate::entry::{Entry, Payload};
use crate::replica::failover_record::FailoverRecord;
use crate::replica::session::{ApplyOutcome, SessionCommand, SessionId};
use crate::replica::session_table::{SessionRecord, SessionRecordFormat2, SessionTable};

/// Failover records kept.
pub const FAILOVER_HISTORY_MAX: usize = 64;

/// What a snapshot holds besides the host's state, encoded after the fixed prefix (format 3:
/// every session keeps the responses its client has not acknowledged).
#[derive(Serialize, Deserialize)]
struct SnapshotHeader {
    sessions: BTreeMap<SessionId, SessionRecord>,
    history: Vec<FailoverRecord>,
}

/// The header of format 2 (one response per session), still read.
#[derive(Serialize, Deserialize)]
struct SnapshotHeaderFormat2 {
    sessions: BTreeMap<SessionId, SessionRecordFormat2>,
    history: Vec<FailoverRecord>,
}

/// Version 3: a fixed prefix (format, applied index, header length), the header, then the
/// host's own snapshot bytes to the end of the stream, so neither side holds the host's part
/// in memory twice. Version 2 had the same layout with one response per session in the
/// header; it is still read ([`SessionTable::from_format_2`]).
const SNAPSHOT_FORMAT_VERSION: u32 = 3;

/// The earlier data format still read: the same layout, a header of format 2.
const SNAPSHOT_FORMAT_VERSION_2: u32 = 2;

/// The format of a witness's own snapshots: the same prefix and header (no sessions, the
/// failover history), and no host bytes at all. A witness holds no state machine, so a data
/// node must never restore one: the distinct version makes it refuse to (see
/// [`decode_prefix`]), and a witness reads only the prefix and header of either format.
const WITNESS_SNAPSHOT_FORMAT_VERSION: u32 = 0x5754_0002;

/// The fixed prefix: format version u32 LE, applied index u64 LE, header length u32 LE.
pub(crate) const SNAPSHOT_PREFIX_BYTES: usize = 16;

/// Largest encoded header (sessions and history) accepted on restore. Sessions are bounded by
/// [`SESSIONS_MAX`](crate::replica::SESSIONS_MAX); their answers are the host's responses.
pub const SNAPSHOT_HEADER_BYTES_MAX: usize = 256 << 20;

/// The index a snapshot's contents end at, read from its first
/// [`SNAPSHOT_PREFIX_BYTES`] bytes after checking they carry this version's format (the rest
/// is checked when the snapshot is restored).
///
/// # Errors
/// [`StateMachineError::Corrupt`] when the prefix is short or of another format.
pub(crate) fn snapshot_applied_index(prefix: &[u8]) -> Result<LogIndex, StateMachineError> {
    Ok(decode_prefix(prefix)?.0)
}

fn decode_prefix(prefix: &[u8]) -> Result<(LogIndex, usize, u32), StateMachineError> {
    let (index, header_bytes, format) = decode_any_prefix(prefix)?;
    if format == WITNESS_SNAPSHOT_FORMAT_VERSION {
        return Err(StateMachineError::Corrupt(
            "this snapshot was taken by a witness, which holds no state: a data node cannot \
             start from a witness's data directory (move it aside; the node then catches up \
             from the leader)"
                .to_string(),
        ));
    }
    Ok((index, header_bytes, format))
}

/// The prefix of a data snapshot (format 3 or 2) or a witness's snapshot: the applied index,
/// the header length, and the format.
fn decode_any_prefix(prefix: &[u8]) -> Result<(LogIndex, usize, u32), StateMachineError> {
    let Some(prefix) = prefix.get(..SNAPSHOT_PREFIX_BYTES) else {
        return Err(StateMachineError::Corrupt(format!(
            "snapshot is shorter than its {SNAPSHOT_PREFIX_BYTES}-byte prefix"
        )));
    };
    let field = |range: std::ops::Range<usize>| {
        let mut bytes = [0u8; 8];
        bytes[..range.len()].copy_from_slice(&prefix[range]);
        u64::from_le_bytes(bytes)
    };
    let version = field(0..4) as u32;
    if ![
        SNAPSHOT_FORMAT_VERSION,
        SNAPSHOT_FORMAT_VERSION_2,
        WITNESS_SNAPSHOT_FORMAT_VERSION,
    ]
    .contains(&version)
    {
        return Err(StateMachineError::Corrupt(format!(
            "snapshot format {version} is not {SNAPSHOT_FORMAT_VERSION} (or \
             {SNAPSHOT_FORMAT_VERSION_2}, still read)"
        )));
    }
    let header_bytes = usize::try_from(field(12..16)).unwrap_or(usize::MAX);
    if header_bytes > SNAPSHOT_HEADER_BYTES_MAX {
        return Err(StateMachineError::Corrupt(format!(
            "snapshot header of {header_bytes} bytes is over {SNAPSHOT_HEADER_BYTES_MAX}"
        )));
    }
    Ok((LogIndex(field(4..12)), header_bytes, version))
}

/// A point-in-time copy of everything applied, taken in one apply step: the host's
/// [`SnapshotSource`] plus the sessions and history, already encoded (they are bounded).
pub struct AppliedSnapshot {
    format: u32,
    applied_index: LogIndex,
    header: Vec<u8>,
    host: Box<dyn SnapshotSource>,
}

impl AppliedSnapshot {
    /// The last index the copy includes.
    pub fn applied_index(&self) -> LogIndex {
        self.applied_index
    }
}

impl std::fmt::Debug for AppliedSnapshot {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AppliedSnapshot")
            .field("applied_index", &self.applied_index)
            .field("header_bytes", &self.header.len())
            .finish_non_exhaustive()
    }
}

impl SnapshotSource for AppliedSnapshot {
    fn write_to(self: Box<Self>, out: &mut dyn Write) -> Result<(), StateMachineError> {
        let failed = |error: std::io::Error| StateMachineError::SnapshotFailed(error.to_string());
        let header_bytes = u32::try_from(self.header.len())
            .map_err(|_| StateMachineError::SnapshotFailed("snapshot header too large".into()))?;
        let mut prefix = Vec::with_capacity(SNAPSHOT_PREFIX_BYTES);
        prefix.extend_from_slice(&self.format.to_le_bytes());
        prefix.extend_from_slice(&self.applied_index.0.to_le_bytes());
        prefix.extend_from_slice(&header_bytes.to_le_bytes());
        out.write_all(&prefix).map_err(failed)?;
        out.write_all(&self.header).map_err(failed)?;
        self.host.write_to(out)
    }
}

/// A witness's snapshot ending at `index` with the failover history `history` (see
/// [`Applier::witness_snapshot_source`]), for a core that keeps the history but not the
/// applier at hand.
///
/// # Errors
/// [`StateMachineError::SnapshotFailed`] when encoding the header fails.
pub(crate) fn witness_snapshot(
    index: LogIndex,
    history: Vec<FailoverRecord>,
) -> Result<AppliedSnapshot, StateMachineError> {
    let header = SnapshotHeader {
        sessions: BTreeMap::new(),
        history,
    };
    let header = codec::encode("snapshot header", &header, SNAPSHOT_HEADER_BYTES_MAX)
        .map_err(|error| StateMachineError::SnapshotFailed(error.to_string()))?;
    Ok(AppliedSnapshot {
        format: WITNESS_SNAPSHOT_FORMAT_VERSION,
        applied_index: index,
        header,
        host: Box::new(ha_core::BytesSource(Vec::new())),
    })
}

/// The host state machine plus what replication adds to the applied state: client sessions
/// and the failover history. Deterministic: every replica that applies the same entries
/// reaches the same state.
pub struct Applier<S: StateMachine> {
    machine: S,
    sessions: SessionTable,
    history: VecDeque<FailoverRecord>,
    applied_index: LogIndex,
}

impl<S: StateMachine> Applier<S> {
    /// An applier over a fresh state machine.
    pub fn new(machine: S) -> Self {
        Self {
            machine,
            sessions: SessionTable::default(),
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
            Payload::Membership(_) | Payload::Checkpoint => None,
            Payload::Command(bytes) => Some(self.apply_command(entry.index, bytes)),
        }
    }

    /// Apply one committed entry on a witness: the applied index advances and a leader's
    /// start is recorded in the failover history, but nothing reaches the host's state
    /// machine (a witness has none: command payloads were dropped on arrival) and no session
    /// is kept. Returns nothing, for commands too.
    pub fn apply_metadata(&mut self, entry: &Entry) {
        if let Payload::LeaderStart(_) = &entry.payload {
            self.apply(entry);
        } else if entry.index > self.applied_index {
            debug_assert_eq!(entry.index, self.applied_index.next(), "apply gap");
            self.applied_index = entry.index;
        }
    }

    /// A witness's snapshot ending at `index` (its applied index, or the last index of a
    /// snapshot the leader sent it): the prefix (witness format) and the header (no sessions,
    /// the failover history); no host bytes. The host's state machine is not asked for
    /// anything.
    ///
    /// # Errors
    /// [`StateMachineError::SnapshotFailed`] when encoding the header fails.
    pub fn witness_snapshot_source(
        &self,
        index: LogIndex,
    ) -> Result<AppliedSnapshot, StateMachineError> {
        witness_snapshot(index, self.history.iter().cloned().collect())
    }

    /// On a witness: take the applied index and failover history from a snapshot of either
    /// format (a witness's own, or a data snapshot from before this node became a witness),
    /// reading only its prefix and header; the host's bytes, if any, are not read and the
    /// host's state machine is not touched.
    ///
    /// # Errors
    /// [`StateMachineError::Corrupt`]; the state is unchanged.
    pub fn restore_metadata_from(&mut self, input: &mut dyn Read) -> Result<(), StateMachineError> {
        let corrupt = |error: std::io::Error| {
            StateMachineError::Corrupt(format!("snapshot read failed: {error}"))
        };
        let mut prefix = [0u8; SNAPSHOT_PREFIX_BYTES];
        input.read_exact(&mut prefix).map_err(corrupt)?;
        let (applied_index, header_bytes, format) = decode_any_prefix(&prefix)?;
        let (_, history) = read_header(input, header_bytes, format)?;
        self.sessions = SessionTable::default();
        self.history = history.into_iter().collect();
        self.applied_index = applied_index;
        Ok(())
    }

    fn apply_command(&mut self, index: LogIndex, bytes: &[u8]) -> ApplyOutcome {
        let stamped = match SessionCommand::decode(bytes) {
            Ok(stamped) => stamped,
            Err(error) => return ApplyOutcome::Invalid(error.to_string()),
        };
        if let Some(answer) = self.sessions.check(index, &stamped) {
            return answer;
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
        self.sessions.record(index, &stamped, response.clone());
        ApplyOutcome::Applied(response)
    }

    /// The client sessions of the applied state.
    pub fn sessions(&self) -> &SessionTable {
        &self.sessions
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

    /// A point-in-time copy of everything applied (the host's state, sessions and history),
    /// to be written out later, off the apply path.
    ///
    /// # Errors
    /// [`StateMachineError`] from the host, or when encoding the sessions fails.
    pub fn snapshot_source(&self) -> Result<AppliedSnapshot, StateMachineError> {
        let header = self.encoded_header()?;
        Ok(AppliedSnapshot {
            format: SNAPSHOT_FORMAT_VERSION,
            applied_index: self.applied_index,
            header,
            host: self.machine.snapshot_source()?,
        })
    }

    /// The sessions and failover history, encoded as a snapshot's header (what both
    /// [`snapshot_source`](Self::snapshot_source) and [`digest_source`](Self::digest_source)
    /// put before the host's bytes).
    fn encoded_header(&self) -> Result<Vec<u8>, StateMachineError> {
        let header = SnapshotHeader {
            sessions: self.sessions.records().clone(),
            history: self.history.iter().cloned().collect(),
        };
        codec::encode("snapshot header", &header, SNAPSHOT_HEADER_BYTES_MAX)
            .map_err(|error| StateMachineError::SnapshotFailed(error.to_string()))
    }

    /// A point-in-time copy for the consistency monitor's digest: the copy
    /// [`snapshot_source`](Self::snapshot_source) takes, except that a host keeping its own
    /// digest ([`StateMachine::digest`]) contributes those 32 bytes instead of its state, so
    /// hashing it costs next to nothing. With it, whether the copy is the whole state
    /// (`true`: the very stream a snapshot writes, so a snapshot's pass may hash it instead).
    ///
    /// # Errors
    /// As [`snapshot_source`](Self::snapshot_source).
    pub fn digest_source(&self) -> Result<(AppliedSnapshot, bool), StateMachineError> {
        let Some(digest) = self.machine.digest() else {
            return Ok((self.snapshot_source()?, true));
        };
        let header = self.encoded_header()?;
        let copy = AppliedSnapshot {
            format: SNAPSHOT_FORMAT_VERSION,
            applied_index: self.applied_index,
            header,
            host: Box::new(ha_core::BytesSource(digest.to_vec())),
        };
        Ok((copy, false))
    }

    /// Serialise everything into memory (tests and small states; nodes stream with
    /// [`snapshot_source`](Self::snapshot_source)).
    ///
    /// # Errors
    /// As [`snapshot_source`](Self::snapshot_source).
    pub fn snapshot(&self) -> Result<Vec<u8>, StateMachineError> {
        let mut bytes = Vec::new();
        Box::new(self.snapshot_source()?).write_to(&mut bytes)?;
        Ok(bytes)
    }

    /// Replace everything with the snapshot `input` yields, reading it as a stream.
    ///
    /// # Errors
    /// [`StateMachineError::Corrupt`]; the state is unchanged.
    pub fn restore_from(&mut self, input: &mut dyn Read) -> Result<(), StateMachineError> {
        let corrupt = |error: std::io::Error| {
            StateMachineError::Corrupt(format!("snapshot read failed: {error}"))
        };
        let mut prefix = [0u8; SNAPSHOT_PREFIX_BYTES];
        input.read_exact(&mut prefix).map_err(corrupt)?;
        let (applied_index, header_bytes, format) = decode_prefix(&prefix)?;
        let (sessions, history) = read_header(input, header_bytes, format)?;
        self.machine.restore_from(input)?;
        self.sessions = sessions;
        self.history = history.into_iter().collect();
        self.applied_index = applied_index;
        Ok(())
    }

    /// Replace everything with a snapshot held in memory.
    ///
    /// # Errors
    /// [`StateMachineError::Corrupt`]; the state is unchanged.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), StateMachineError> {
        self.restore_from(&mut &bytes[..])
    }
}

/// Read and decode a snapshot's header of `header_bytes` bytes (already bounded by
/// [`SNAPSHOT_HEADER_BYTES_MAX`]) from `input`, in the layout of `format`: the sessions and
/// the failover history.
fn read_header(
    input: &mut dyn Read,
    header_bytes: usize,
    format: u32,
) -> Result<(SessionTable, Vec<FailoverRecord>), StateMachineError> {
    let header = ha_core::read_bounded(
        &mut (&mut *input).take(header_bytes as u64),
        header_bytes as u64,
    )?;
    if header.len() != header_bytes {
        return Err(StateMachineError::Corrupt(format!(
            "snapshot header ends after {} of its {header_bytes} bytes",
            header.len()
        )));
    }
    let corrupt = |error: ha_core::CodecError| StateMachineError::Corrupt(error.to_string());
    if format == SNAPSHOT_FORMAT_VERSION_2 {
        let old: SnapshotHeaderFormat2 =
            codec::decode("snapshot header", &header, header_bytes).map_err(corrupt)?;
        return Ok((SessionTable::from_format_2(old.sessions), old.history));
    }
    let header: SnapshotHeader =
        codec::decode("snapshot header", &header, header_bytes).map_err(corrupt)?;
    Ok((SessionTable::from_records(header.sessions), header.history))
}
