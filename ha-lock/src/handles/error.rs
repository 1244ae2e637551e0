//! What can go wrong in the async handles, and what the caller can do about it.

use ha_replicate::replica::ClientError;

use crate::command::{FencingToken, LeaseId, Limit, SessionId};

/// Why a call on a [`Kv`](super::Kv), [`Leases`](super::Leases) or [`Locks`](super::Locks)
/// handle (or a guard, lease or watch made by one) failed. Each variant says whether anything
/// changed in the cluster and what the caller can do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// A compare-and-swap found another version: nothing changed. Re-read the key, decide
    /// again, and retry with its `current` version.
    #[error("key {key:?} is at version {current}, not the expected {expected}")]
    VersionMismatch {
        /// The key.
        key: String,
        /// The version the caller expected.
        expected: u64,
        /// The key's version now (0: it does not exist).
        current: u64,
    },
    /// A create-only put found the key already there: nothing changed. Read it, or use
    /// compare-and-swap with its `version`.
    #[error("key {key:?} already exists at version {version}")]
    AlreadyExists {
        /// The key.
        key: String,
        /// Its version.
        version: u64,
    },
    /// A delete found no such key: nothing changed.
    #[error("key {key:?} does not exist")]
    NotFound {
        /// The key.
        key: String,
    },
    /// The lease has ended on the cluster (expired or revoked), or its holder can no longer
    /// vouch for it (no renewal before its safe deadline). Nothing was done under it: grant a
    /// new lease and start again (a lock held under it is no longer yours).
    #[error("lease {lease} is lost")]
    LeaseLost {
        /// The lease.
        lease: LeaseId,
    },
    /// The lock is held by another session and the caller did not want to wait: nothing
    /// changed (and the lease granted for the attempt was revoked). Retry later or wait with
    /// [`acquire`](super::Locks::acquire).
    #[error("lock {name:?} is held by session {holder}")]
    Busy {
        /// The lock.
        name: String,
        /// The holding session.
        holder: SessionId,
    },
    /// Waiting would close a cycle of sessions waiting for each other: refused at once and
    /// nothing changed. Release what this session holds (the cycle lists who is involved,
    /// starting with this session) and try again, or acquire locks in one global order.
    #[error("waiting for lock {name:?} would deadlock: sessions {cycle:?}")]
    Deadlock {
        /// The lock.
        name: String,
        /// The sessions in the cycle, starting with the caller.
        cycle: Vec<SessionId>,
    },
    /// The lock was not granted within the wait timeout. The wait was cancelled (and a grant
    /// that raced the cancel was released), so this session is no longer in line. Retry
    /// later, perhaps with a longer timeout.
    #[error("lock {name:?} was not granted within the wait timeout")]
    WaitTimedOut {
        /// The lock.
        name: String,
    },
    /// The wait for the lock ended without a grant: its lease ended, or the wait was
    /// cancelled by another handle of the same session. Acquire again.
    #[error("the wait for lock {name:?} ended without a grant")]
    WaitEnded {
        /// The lock.
        name: String,
    },
    /// A release named a token that is not the current holder's, or did not present the
    /// holder key the lock was granted with (see
    /// [`acquire_with_holder`](super::Locks::acquire_with_holder)): nothing changed. With
    /// the right key, the lock was already lost (its lease ended) and may now belong to
    /// someone else.
    #[error("token {token} with the holder key given (if any) does not hold lock {name:?}")]
    NotHolder {
        /// The lock.
        name: String,
        /// The token presented.
        token: FencingToken,
    },
    /// The request is invalid (a key or value too long, an empty lock name, a TTL too short):
    /// nothing changed. Fix the arguments.
    #[error("invalid request: {reason}")]
    Invalid {
        /// What is wrong.
        reason: String,
    },
    /// The command would take the lock table past a named limit (keys, leases, locks held,
    /// waiters): refused on every replica, and nothing changed (a lease granted for the
    /// attempt was revoked). Retry later, once something was released, deleted or ended.
    #[error("limit reached: at most {max} {} ({}); nothing changed", limit.counted(), limit.constant())]
    LimitReached {
        /// Which limit.
        limit: Limit,
        /// Its value.
        max: u64,
    },
    /// A watch asked for changes older than the cluster keeps: re-read the keys it covers,
    /// then watch again for changes after `oldest_available`.
    #[error("changes up to version {oldest_available} were compacted; re-read and resume after it")]
    Compacted {
        /// The newest version dropped from the change log: every change after it is kept.
        oldest_available: u64,
    },
    /// A compare (compare-and-swap, create-only put, or delete with an expected version) was
    /// asked at EVENTUAL consistency: refused before sending, nothing changed. An EVENTUAL
    /// write is answered when the leader appends it, before the compare runs, so its answer
    /// could not say whether the compare held. Use QUORUM or STRONG.
    #[error("key {key:?}: a compare needs QUORUM or STRONG consistency, not EVENTUAL")]
    CompareNeedsApply {
        /// The key.
        key: String,
    },
    /// Replication failed; [`ClientError::fate`] says whether the write may have happened
    /// (`NoQuorum`, `NotLeader`, `Busy`: not applied; `Timeout`, `LeadershipLost`: unknown)
    /// and the variant's doc what to do. An answer of the wrong kind from the lock table (a
    /// client and a cluster of different versions, or a bug) is
    /// [`ClientError::ResponseUndecodable`]: a write was applied, what it did is not known.
    #[error(transparent)]
    Replication(#[from] ClientError),
}
