//! Error types shared by every crate.

/// A node id was rejected. Pick an id of 1 to 64 characters from `[A-Za-z0-9._-]`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidNodeId {
    /// The id is empty: give every node a name.
    #[error("node id is empty")]
    Empty,
    /// The id is longer than 64 bytes: use a shorter name.
    #[error("node id is {length} bytes long; the limit is 64")]
    TooLong {
        /// The given length in bytes.
        length: usize,
    },
    /// The id has a character outside `[A-Za-z0-9._-]`: replace it.
    #[error("node id has {character:?}; use only letters, digits, '-', '_' and '.'")]
    BadCharacter {
        /// The first offending character.
        character: char,
    },
}

/// Encoding or decoding failed. Doesn't change any state: the input is dropped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The input or output is larger than the limit for its channel; the sender must split it
    /// or the receiver drops it.
    #[error("{what} is {size_bytes} bytes; the limit is {limit_bytes}")]
    TooLarge {
        /// What was being encoded or decoded.
        what: &'static str,
        /// Its size.
        size_bytes: usize,
        /// The limit.
        limit_bytes: usize,
    },
    /// The bytes are not a valid encoding of the expected type (malformed or from an
    /// incompatible version); the input is dropped.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// The decoder's explanation.
        reason: String,
    },
    /// A valid value was followed by unexpected bytes; the input is dropped.
    #[error("{what} has {extra_bytes} unexpected trailing bytes")]
    TrailingBytes {
        /// What was being decoded.
        what: &'static str,
        /// How many bytes were left.
        extra_bytes: usize,
    },
}

/// A state machine could not snapshot or restore.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateMachineError {
    /// The snapshot bytes are invalid; the state is unchanged. Fetch the snapshot again.
    #[error("corrupt snapshot: {0}")]
    Corrupt(String),
    /// The state could not be serialised; the node retries later.
    #[error("snapshot failed: {0}")]
    SnapshotFailed(String),
}

/// A configuration value was refused at start. The message names the field and the fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("config `{field}`: {problem}. Fix: {fix}")]
pub struct ConfigError {
    /// The dotted path of the field, as in the config file (`cluster.bootstrap_expect`).
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
    /// What to change.
    pub fix: String,
}

impl ConfigError {
    /// An error for `field`.
    pub fn new(field: &'static str, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            field,
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}
