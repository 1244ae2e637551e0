//! Client sessions: what makes a retried write apply once, with many writes of one session
//! in flight (Raft dissertation §6.3).

use ha_core::{CodecError, codec};
use serde::{Deserialize, Serialize};

// A client's identity for deduplication, defined once in `ha-core` (the lock table knows
// sessions too) and re-exported here where the session stamp is.
pub use ha_core::SessionId;

/// The two bytes every session command written by this version starts with: a postcard
/// varint that is not in its shortest form (a continuation byte, then a final zero byte).
/// postcard's encoder always writes the shortest form, and a format 1 payload (written before
/// pipelined sessions, with no version of its own) starts with its session id as a varint, so
/// no format 1 payload can start with these bytes: they tell the two formats apart without
/// any guess, and the version byte after them says which later format follows.
const SESSION_COMMAND_TAG: [u8; 2] = [0x80, 0x00];

/// The format this version writes: the tag, this version byte, then the postcard encoding
/// of [`SessionCommand`] (session, sequence, lowest unanswered sequence, host command).
/// Format 1 (no tag, no version; session, sequence, host command) is still read, as a write
/// whose lowest unanswered sequence is its own: the one-write-at-a-time clients that wrote it
/// had an answer for everything before it.
pub const SESSION_COMMAND_FORMAT: u8 = 2;

/// The longest postcard varint of a `u64` (and of a `usize` length).
const VARINT_BYTES_MAX: usize = 10;

/// A command as stored in the log: the host command with its session stamp.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCommand {
    /// The client's session.
    pub session: SessionId,
    /// The client's sequence number for this write; a retry reuses it.
    pub sequence: u64,
    /// The lowest sequence of this session the client has no answer for (at most
    /// `sequence`; a larger value is read as `sequence`). The applied state keeps the
    /// session's responses from this sequence on and forgets older ones; a write below it
    /// is never applied again.
    pub lowest_unanswered: u64,
    /// The host command, encoded.
    #[serde(with = "serde_bytes")]
    pub command: Vec<u8>,
}

/// Format 1, read from logs written before pipelined sessions.
#[derive(Deserialize)]
struct SessionCommandFormat1 {
    session: SessionId,
    sequence: u64,
    #[serde(with = "serde_bytes")]
    command: Vec<u8>,
}

impl SessionCommand {
    /// The lowest unanswered sequence as the applier reads it: never above the sequence
    /// itself (the client cannot have an answer for the write it is sending).
    pub fn lowest_unanswered(&self) -> u64 {
        self.lowest_unanswered.min(self.sequence)
    }

    /// The bytes stored in the log for this command: the current format
    /// ([`SESSION_COMMAND_FORMAT`]), at most `limit_bytes` long.
    ///
    /// # Errors
    /// [`CodecError::TooLarge`] when the encoding is longer than `limit_bytes`.
    pub fn encode(&self, limit_bytes: usize) -> Result<Vec<u8>, CodecError> {
        // Encoded straight after the tag into one buffer sized up front (three varints of at
        // most 10 bytes, the command's length varint and the command): one allocation per
        // write, where an encoding into a growing vector and a copy took several (issue 17).
        let mut bytes = Vec::with_capacity(
            SESSION_COMMAND_TAG.len() + 1 + 4 * VARINT_BYTES_MAX + self.command.len(),
        );
        bytes.extend_from_slice(&SESSION_COMMAND_TAG);
        bytes.push(SESSION_COMMAND_FORMAT);
        let bytes = postcard::to_extend(self, bytes).map_err(|error| CodecError::Malformed {
            what: "session command",
            reason: error.to_string(),
        })?;
        if bytes.len() > limit_bytes {
            return Err(CodecError::TooLarge {
                what: "session command",
                size_bytes: bytes.len(),
                limit_bytes,
            });
        }
        Ok(bytes)
    }

    /// A command read from the log, in the current format or in format 1.
    ///
    /// # Errors
    /// [`CodecError`] when the bytes are in neither format (or name a later format).
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let Some(rest) = bytes.strip_prefix(&SESSION_COMMAND_TAG[..]) else {
            let old: SessionCommandFormat1 = codec::decode("session command", bytes, bytes.len())?;
            return Ok(SessionCommand {
                session: old.session,
                sequence: old.sequence,
                lowest_unanswered: old.sequence,
                command: old.command,
            });
        };
        match rest.split_first() {
            Some((&SESSION_COMMAND_FORMAT, body)) => {
                codec::decode("session command", body, body.len())
            }
            Some((version, _)) => Err(CodecError::Malformed {
                what: "session command",
                reason: format!(
                    "format {version} is not one this version reads (1 or \
                     {SESSION_COMMAND_FORMAT}): upgrade this node"
                ),
            }),
            None => Err(CodecError::Malformed {
                what: "session command",
                reason: "ends after its tag, with no format version".to_string(),
            }),
        }
    }
}

/// What applying a session command produced, as seen by the client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplyOutcome {
    /// Applied now; the state machine's response, encoded.
    Applied(Vec<u8>),
    /// A retry of a write the session applied before: not applied again; the first response.
    Duplicate(Vec<u8>),
    /// Below the session's lowest unanswered sequence: the client said it has the answer (or
    /// gave up on it), so its response was discarded. Not applied now, and never will be.
    Stale {
        /// The session's lowest unanswered sequence.
        lowest_unanswered: u64,
    },
    /// The command bytes do not decode for this state machine: not applied.
    Invalid(String),
    /// Not applied: the session keeps as many responses as it may
    /// ([`SESSION_RESPONSES_MAX`](crate::replica::SESSION_RESPONSES_MAX) or
    /// [`SESSION_RESPONSE_BYTES_MAX`](crate::replica::SESSION_RESPONSE_BYTES_MAX)) for
    /// writes its client has not acknowledged. The same write (same sequence) may be retried
    /// once the client's older writes are answered and a later write says so.
    SessionFull {
        /// Responses the session keeps.
        responses: u64,
    },
}

impl ApplyOutcome {
    /// The response bytes, when there is one.
    pub fn response(&self) -> Option<&[u8]> {
        match self {
            ApplyOutcome::Applied(bytes) | ApplyOutcome::Duplicate(bytes) => Some(bytes),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Format1 {
        session: SessionId,
        sequence: u64,
        #[serde(with = "serde_bytes")]
        command: Vec<u8>,
    }

    #[test]
    fn format_1_commands_still_decode_as_their_own_lowest_unanswered() {
        for session in [0, 1, 127, 128, 1 << 20, u64::MAX] {
            let old = Format1 {
                session: SessionId(session),
                sequence: 9,
                command: b"set x".to_vec(),
            };
            let bytes = codec::encode("old", &old, 1 << 10).unwrap();
            assert_ne!(bytes[..2], SESSION_COMMAND_TAG);
            let decoded = SessionCommand::decode(&bytes).unwrap();
            assert_eq!(
                decoded,
                SessionCommand {
                    session: SessionId(session),
                    sequence: 9,
                    lowest_unanswered: 9,
                    command: b"set x".to_vec(),
                }
            );
        }
    }

    #[test]
    fn current_commands_round_trip_and_later_formats_are_refused() {
        let command = SessionCommand {
            session: SessionId(0),
            sequence: 12,
            lowest_unanswered: 3,
            command: vec![1, 2, 3],
        };
        let bytes = command.encode(1 << 10).unwrap();
        assert_eq!(bytes[..3], [0x80, 0x00, SESSION_COMMAND_FORMAT]);
        assert_eq!(SessionCommand::decode(&bytes).unwrap(), command);
        let mut later = bytes.clone();
        later[2] = SESSION_COMMAND_FORMAT + 1;
        assert!(SessionCommand::decode(&later).is_err());
        assert!(SessionCommand::decode(&bytes[..2]).is_err());
        assert!(command.encode(4).is_err());
    }

    /// The one-buffer encoding writes the bytes the format defines (tag, version, then the
    /// postcard encoding of the command), for the largest varints too; the limit counts all
    /// of them.
    #[test]
    fn the_encoding_is_the_tag_the_version_and_the_postcard_body() {
        for (number, length) in [(0, 0), (127, 1), (128, 300), (u64::MAX, 70_000)] {
            let command = SessionCommand {
                session: SessionId(number),
                sequence: number,
                lowest_unanswered: number / 2,
                command: vec![7; length],
            };
            let mut expected = vec![0x80, 0x00, SESSION_COMMAND_FORMAT];
            expected.extend(codec::encode("body", &command, usize::MAX).unwrap());
            assert_eq!(command.encode(usize::MAX).unwrap(), expected);
            assert_eq!(command.encode(expected.len()).unwrap(), expected);
            assert!(command.encode(expected.len() - 1).is_err());
        }
    }
}
