//! What clients ask the lock table, and what it answers.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::ids::{FencingToken, LeaseId};
pub use ha_core::SessionId;

/// Bytes of a [`HolderKey`]: 128 bits.
pub const HOLDER_KEY_BYTES: usize = 16;
/// A holder key: random bytes (from a CSPRNG) that the acquirer of a lock keeps secret and
/// presents to release it ([`LockCommand::ReleaseWithHolder`]). The replicated state never
/// holds the key of a live grant, only its [`HolderDigest`]; the key enters the log with the
/// release that presents it.
pub type HolderKey = [u8; HOLDER_KEY_BYTES];
/// SHA-256 of a [`HolderKey`] ([`holder_digest`]): what an acquire carries and the lock table
/// stores with the waiter and then with the grant.
pub type HolderDigest = [u8; 32];

/// A fresh holder key: 128 bits from `rand::rng()`, a CSPRNG (ChaCha12, seeded from the
/// operating system's generator and reseeded every 64 KiB of output).
pub fn new_holder_key() -> HolderKey {
    let mut key = [0u8; HOLDER_KEY_BYTES];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut key);
    key
}

/// The digest the lock table stores for `key`: SHA-256 of its 16 bytes.
///
/// ```
/// let key = [7u8; ha_lock::HOLDER_KEY_BYTES];
/// assert_eq!(ha_lock::holder_digest(&key), ha_lock::holder_digest(&key));
/// assert_ne!(ha_lock::holder_digest(&key), ha_lock::holder_digest(&[8u8; 16]));
/// ```
pub fn holder_digest(key: &HolderKey) -> HolderDigest {
    Sha256::digest(key).into()
}

/// Largest key, in bytes.
pub const KEY_BYTES_MAX: usize = 1024;
/// Largest value, in bytes.
pub const VALUE_BYTES_MAX: usize = 1024 * 1024;

/// A change to the lock table. Every field that identifies time comes from the log (indexes),
/// never from a clock, so every replica applies it identically.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockCommand {
    /// Set `key`. With `expected_version`, only if the key's version is that (0: only if the
    /// key does not exist). With `lease`, the key is deleted when the lease ends.
    Put {
        /// The key.
        key: String,
        /// The value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        /// Compare-and-swap on the key's version; `Some(0)` means create-only.
        expected_version: Option<u64>,
        /// Bind the key to this lease.
        lease: Option<LeaseId>,
    },
    /// Remove `key`, with the same optional version check.
    Delete {
        /// The key.
        key: String,
        /// Compare-and-swap on the key's version.
        expected_version: Option<u64>,
    },
    /// Grant a lease for `session`.
    LeaseGrant {
        /// Its time to live; the leader expires it after this long without a keep-alive.
        ttl_ms: u64,
        /// Its holder.
        session: SessionId,
    },
    /// Keep a lease alive.
    LeaseKeepAlive {
        /// The lease.
        lease: LeaseId,
    },
    /// End a lease now (its holder is done).
    LeaseRevoke {
        /// The lease.
        lease: LeaseId,
    },
    /// End a lease whose TTL ran out; proposed by the leader, not by clients.
    LeaseExpire {
        /// The lease.
        lease: LeaseId,
        /// The keep-alive count the leader saw when it decided: if the lease was renewed
        /// since (a keep-alive raced the expiry), the expiry is ignored.
        renewals: u64,
    },
    /// Acquire lock `name` for `session` under `lease`. Granted at once when free; otherwise
    /// queued (FIFO) when `wait`, refused when not.
    Acquire {
        /// The lock.
        name: String,
        /// The session asking.
        session: SessionId,
        /// The lease the lock lives under; the lock is released when it ends.
        lease: LeaseId,
        /// Queue when held (false: `try_acquire`).
        wait: bool,
    },
    /// Release lock `name` held with `token`.
    Release {
        /// The lock.
        name: String,
        /// The holder's fencing token.
        token: FencingToken,
    },
    /// Stop waiting for lock `name` (the waiter's timeout ran out).
    CancelWait {
        /// The lock.
        name: String,
        /// The waiting session.
        session: SessionId,
    },
    /// As [`Acquire`](Self::Acquire), for a holder that proves itself with a secret: the
    /// grant (or the wait, until granted) keeps `holder_digest`, and only a
    /// [`ReleaseWithHolder`](Self::ReleaseWithHolder) presenting the key whose SHA-256 it is
    /// releases the lock (a plain [`Release`](Self::Release) is refused with
    /// [`LockResponse::WrongHolder`]). Ending the lease still releases it. (A variant of its
    /// own, after the others, so that logs written before it decode unchanged.)
    AcquireWithHolder {
        /// The lock.
        name: String,
        /// The session asking.
        session: SessionId,
        /// The lease the lock lives under; the lock is released when it ends.
        lease: LeaseId,
        /// Queue when held (false: `try_acquire`).
        wait: bool,
        /// SHA-256 of the holder's key ([`holder_digest`]).
        holder_digest: HolderDigest,
    },
    /// Release lock `name` held with `token` and granted with the digest of `holder_key`.
    /// Checked when applied, so every replica answers the same: a token that does not hold
    /// the lock is [`LockResponse::NotHolder`]; a key whose digest is not the grant's (or a
    /// grant made without a digest) is [`LockResponse::WrongHolder`]; either way nothing
    /// changes.
    ReleaseWithHolder {
        /// The lock.
        name: String,
        /// The holder's fencing token.
        token: FencingToken,
        /// The holder's key.
        holder_key: HolderKey,
    },
    /// Grant a lease and acquire lock `name` under it, in one log entry: a lock cycle's first
    /// write (issue 17; the cycle was three writes, grant, acquire and release). The lease's
    /// id is this entry's log index, as a [`LeaseGrant`](Self::LeaseGrant)'s; a grant of the
    /// lock gets the same index as its fencing token. Answered
    /// [`LockResponse::GrantedWithLease`] or [`LockResponse::QueuedWithLease`]; any other
    /// answer (the acquire's refusals: busy, deadlock, a limit, an invalid name or TTL, and
    /// busy when `session` already waits for the lock under another lease) means nothing
    /// changed: no lease was granted. (After the others, so older logs decode unchanged.)
    GrantAndAcquire {
        /// The lock.
        name: String,
        /// The session asking: the lease's holder and the lock's.
        session: SessionId,
        /// The new lease's time to live.
        ttl_ms: u64,
        /// Queue when held (false: `try_acquire`, and a busy lock grants no lease).
        wait: bool,
        /// SHA-256 of the holder's key ([`holder_digest`]), for a grant that only a
        /// release presenting that key releases (as [`AcquireWithHolder`](Self::AcquireWithHolder)).
        holder_digest: Option<HolderDigest>,
    },
    /// Release lock `name` held with `token` and end the lease it is held under, in one log
    /// entry: a lock cycle's second write, for a holder whose lease exists for this lock (the
    /// lease's keys are deleted and its other locks released too, as by
    /// [`LeaseRevoke`](Self::LeaseRevoke)). Checked as a release: a token that does not hold
    /// the lock is [`LockResponse::NotHolder`], a `holder_key` that does not match the
    /// grant's digest (or a key for a grant made without one, or none for a grant made with
    /// one) is [`LockResponse::WrongHolder`], and then nothing changes, the lease included.
    /// Otherwise answered [`LockResponse::LeaseEnded`]. (After the others, so older logs
    /// decode unchanged.)
    ReleaseAndRevoke {
        /// The lock.
        name: String,
        /// The holder's fencing token.
        token: FencingToken,
        /// The holder's key, for a grant made with its digest.
        holder_key: Option<HolderKey>,
    },
    /// A multi-key transaction (see [`Txn`](crate::Txn)): when every comparison holds,
    /// apply `success`, otherwise `failure`, all at this command's index. Refused whole
    /// ([`LockResponse::Invalid`], [`LockResponse::LeaseNotFound`] or
    /// [`LockResponse::LimitReached`], nothing changed) when the branch it would apply cannot
    /// be applied whole. Answered [`LockResponse::Txn`]. (After the others, so older logs
    /// decode unchanged.)
    Txn {
        /// The comparisons, at most [`TXN_COMPARES_MAX`](crate::TXN_COMPARES_MAX).
        compares: Vec<crate::TxnCompare>,
        /// Applied when every comparison holds.
        success: Vec<crate::TxnOp>,
        /// Applied when one does not.
        failure: Vec<crate::TxnOp>,
    },
    /// Delete the keys starting with `prefix`, the first
    /// [`DELETE_PREFIX_KEYS_MAX`](crate::DELETE_PREFIX_KEYS_MAX) of them in key order.
    /// Answered [`LockResponse::DeletedPrefix`], which says whether more remain.
    DeletePrefix {
        /// The prefix (empty: every key).
        prefix: String,
    },
}

/// The answer to a [`LockCommand`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockResponse {
    /// The put happened; the key's new version (the log index).
    Put {
        /// The new version.
        version: u64,
    },
    /// The delete happened.
    Deleted {
        /// Whether the key existed.
        existed: bool,
    },
    /// A compare-and-swap failed: nothing changed.
    VersionMismatch {
        /// The key's version (0: it does not exist).
        current: u64,
    },
    /// A lease was granted.
    LeaseGranted {
        /// Its id.
        lease: LeaseId,
        /// Its TTL.
        ttl_ms: u64,
    },
    /// A lease was kept alive.
    LeaseRenewed {
        /// The lease.
        lease: LeaseId,
        /// Keep-alives so far.
        renewals: u64,
    },
    /// A lease ended: its keys were deleted and its locks released (or passed on).
    LeaseEnded {
        /// The lease.
        lease: LeaseId,
        /// Locks it held, now released or granted to the next waiter.
        released_locks: Vec<String>,
        /// Keys deleted with it.
        deleted_keys: usize,
    },
    /// An expiry raced a keep-alive and lost: the lease lives on.
    LeaseStillAlive {
        /// The lease.
        lease: LeaseId,
    },
    /// No such lease (never granted, or already ended).
    LeaseNotFound {
        /// The lease asked for.
        lease: LeaseId,
    },
    /// The lock was granted.
    Granted {
        /// The fencing token.
        token: FencingToken,
    },
    /// The lock is held; the session waits in line (0 = next).
    Queued {
        /// Waiters ahead of it.
        position: usize,
    },
    /// The lock is held and the caller did not want to wait.
    Busy {
        /// The current holder's session.
        holder: SessionId,
    },
    /// Waiting would close a cycle in the wait-for graph: refused at once.
    Deadlock {
        /// The sessions in the cycle, starting with the caller.
        cycle: Vec<SessionId>,
    },
    /// The lock was released (and passed to the next waiter, if any).
    Released,
    /// The token is not the current holder's: nothing changed.
    NotHolder,
    /// The wait was cancelled.
    Cancelled,
    /// The session was not waiting (it may have been granted meanwhile).
    NotWaiting,
    /// The command is invalid (a key or value too long, an empty name); nothing changed.
    Invalid {
        /// What is wrong.
        reason: String,
    },
    /// The command would take the table past a named limit: refused, and nothing changed.
    /// Every replica reaches the same answer (the limits are checked when the command is
    /// applied). Retry once something was released, deleted or ended.
    LimitReached {
        /// Which limit.
        limit: Limit,
        /// Its value: the most the table holds.
        max: u64,
    },
    /// The token holds the lock, but the release did not present the key whose digest the
    /// grant keeps (a plain release of a lock granted with a holder digest, a wrong key, or a
    /// key for a lock granted without one): nothing changed.
    WrongHolder,
    /// A [`LockCommand::GrantAndAcquire`] granted its lease and the lock under it. (After
    /// the others, so older answers decode unchanged.)
    GrantedWithLease {
        /// The new lease (the log index of the command).
        lease: LeaseId,
        /// Its TTL.
        ttl_ms: u64,
        /// The lock's fencing token (the same index).
        token: FencingToken,
    },
    /// A [`LockCommand::GrantAndAcquire`] granted its lease; the lock is held, and the session
    /// waits in line under the new lease (0 = next).
    QueuedWithLease {
        /// The new lease (the log index of the command).
        lease: LeaseId,
        /// Its TTL.
        ttl_ms: u64,
        /// Waiters ahead of it.
        position: usize,
    },
    /// A [`LockCommand::Txn`] was applied: `succeeded` says which branch (every comparison
    /// held, or not); every key it wrote has version `version`. (After the others.)
    Txn {
        /// Whether every comparison held (the success branch ran).
        succeeded: bool,
        /// The command's log index: the version of every key it wrote.
        version: u64,
    },
    /// A [`LockCommand::DeletePrefix`] was applied.
    DeletedPrefix {
        /// Keys deleted.
        deleted: u64,
        /// Whether keys under the prefix remain (more than one command deletes).
        more: bool,
    },
}

/// A named limit of the lock table (see [`LockLimits`](crate::LockLimits) for the values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Limit {
    /// Keys stored ([`KEYS_MAX`](crate::KEYS_MAX)).
    Keys,
    /// Live leases ([`LEASES_MAX`](crate::LEASES_MAX)).
    Leases,
    /// Locks held at once ([`LOCKS_HELD_MAX`](crate::LOCKS_HELD_MAX)).
    LocksHeld,
    /// Waits over all locks' lines together ([`WAITERS_MAX`](crate::WAITERS_MAX)).
    Waiters,
    /// Waiters in one lock's line ([`WAITERS_PER_LOCK_MAX`](crate::WAITERS_PER_LOCK_MAX)).
    WaitersPerLock,
}

impl Limit {
    /// Every limit, in declaration order.
    pub const ALL: [Limit; 5] = [
        Limit::Keys,
        Limit::Leases,
        Limit::LocksHeld,
        Limit::Waiters,
        Limit::WaitersPerLock,
    ];

    /// What is counted, in words ("waiters in one lock's line").
    pub fn counted(self) -> &'static str {
        match self {
            Limit::Keys => "keys stored",
            Limit::Leases => "live leases",
            Limit::LocksHeld => "locks held at once",
            Limit::Waiters => "waiters over all locks",
            Limit::WaitersPerLock => "waiters in one lock's line",
        }
    }

    /// The name of the constant that sets it ("WAITERS_PER_LOCK_MAX").
    pub fn constant(self) -> &'static str {
        match self {
            Limit::Keys => "KEYS_MAX",
            Limit::Leases => "LEASES_MAX",
            Limit::LocksHeld => "LOCKS_HELD_MAX",
            Limit::Waiters => "WAITERS_MAX",
            Limit::WaitersPerLock => "WAITERS_PER_LOCK_MAX",
        }
    }
}

/// A read of the lock table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockQuery {
    /// One key.
    Get {
        /// The key.
        key: String,
    },
    /// Keys starting with `prefix`, in order, at most `limit`.
    Range {
        /// The prefix.
        prefix: String,
        /// Most keys returned.
        limit: usize,
    },
    /// Changes to keys starting with `prefix` with a version above `after_version`.
    Changes {
        /// The prefix.
        prefix: String,
        /// Only changes after this version.
        after_version: u64,
        /// Most changes returned.
        limit: usize,
    },
    /// One lock's state.
    Lock {
        /// The lock.
        name: String,
    },
    /// One lease.
    Lease {
        /// The lease.
        lease: LeaseId,
    },
    /// Every lease (for the leader's expiry tracker).
    Leases,
    /// Counts and totals, for metrics.
    Stats,
    /// Where `session`'s wait for lock `name` under `lease` stands: granted (with the token),
    /// still waiting, or neither. Costs O(log n) and answers a few bytes whatever the length
    /// of the line, unlike [`Lock`](Self::Lock), which lists the whole line: this is what a
    /// waiting [`Locks`](crate::Locks) handle polls.
    Wait {
        /// The lock.
        name: String,
        /// The waiting session.
        session: SessionId,
        /// The lease it waits under.
        lease: LeaseId,
    },
    /// Keys starting with `prefix` after `start_after` (from the first when `None`), in
    /// order, at most `limit` (and [`QUERY_RESULTS_MAX`](crate::QUERY_RESULTS_MAX)): one page
    /// of a range of any size. Answered [`LockQueryResponse::Page`]. (After the others.)
    RangePage {
        /// The prefix.
        prefix: String,
        /// The last key of the previous page.
        start_after: Option<String>,
        /// Most keys returned.
        limit: usize,
    },
}

/// Where one session's wait for a lock stands (the answer to [`LockQuery::Wait`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WaitState {
    /// The session holds the lock under that lease.
    Granted {
        /// The fencing token of the grant.
        token: FencingToken,
    },
    /// The session waits in the lock's line under that lease.
    Waiting,
    /// Neither: the wait was cancelled, the lease ended, or the acquire is not applied here
    /// yet (a replica behind the one that answered it).
    NotWaiting,
}

/// Commands refused because they would pass a named limit, per limit (see [`Limit`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitRefusals {
    /// Refused at [`Limit::Keys`].
    pub keys: u64,
    /// Refused at [`Limit::Leases`].
    pub leases: u64,
    /// Refused at [`Limit::LocksHeld`].
    pub locks_held: u64,
    /// Refused at [`Limit::Waiters`].
    pub waiters: u64,
    /// Refused at [`Limit::WaitersPerLock`].
    pub waiters_per_lock: u64,
}

impl LimitRefusals {
    /// The refusals at `limit`.
    pub fn get(&self, limit: Limit) -> u64 {
        match limit {
            Limit::Keys => self.keys,
            Limit::Leases => self.leases,
            Limit::LocksHeld => self.locks_held,
            Limit::Waiters => self.waiters,
            Limit::WaitersPerLock => self.waiters_per_lock,
        }
    }

    /// Count one refusal at `limit` (saturating).
    pub fn count(&mut self, limit: Limit) {
        let counter = match limit {
            Limit::Keys => &mut self.keys,
            Limit::Leases => &mut self.leases,
            Limit::LocksHeld => &mut self.locks_held,
            Limit::Waiters => &mut self.waiters,
            Limit::WaitersPerLock => &mut self.waiters_per_lock,
        };
        *counter = counter.saturating_add(1);
    }
}

/// Counts of what the table holds now, and totals since the cluster began.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockStats {
    /// Keys stored.
    pub keys: u64,
    /// Live leases.
    pub leases: u64,
    /// Locks held.
    pub locks_held: u64,
    /// Sessions queued for a lock.
    pub waiters: u64,
    /// Locks granted, directly or by hand-off.
    pub grants_total: u64,
    /// Acquires that had to queue.
    pub waits_total: u64,
    /// Acquires refused because waiting would have closed a cycle.
    pub deadlocks_total: u64,
    /// Commands refused at a named limit ([`LockResponse::LimitReached`]), per limit. Counted
    /// by the replica that answers, since it started or last restored a snapshot (not kept
    /// in snapshots), so it starts again from 0 with the process, as a Prometheus counter does.
    pub limit_refusals: LimitRefusals,
}

/// A key's value and version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value. As bytes, not a sequence of numbers: postcard writes the same length and
    /// bytes either way (so nothing on disk or on the wire changes), but decodes them in one
    /// copy instead of one call per byte (a 1 MiB value took ~0.2 s to read back in a debug build).
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// The log index of the write that set it.
    pub version: u64,
    /// The lease it is bound to.
    pub lease: Option<LeaseId>,
}

/// One change to a key, for watches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The log index of the change.
    pub version: u64,
    /// The key.
    pub key: String,
    /// The new value; `None` for a delete. As bytes, like [`KeyValue::value`].
    #[serde(with = "serde_bytes")]
    pub value: Option<Vec<u8>>,
}

/// A lock's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockState {
    /// The holder's session.
    pub holder: SessionId,
    /// The lease it holds it under.
    pub lease: LeaseId,
    /// Its fencing token.
    pub token: FencingToken,
    /// Waiting sessions, in order, with their leases.
    pub waiters: Vec<(SessionId, LeaseId)>,
}

/// A lease's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseState {
    /// Its id.
    pub lease: LeaseId,
    /// Its holder.
    pub session: SessionId,
    /// Its TTL.
    pub ttl_ms: u64,
    /// Keep-alives applied so far.
    pub renewals: u64,
}

/// The answer to a [`LockQuery`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockQueryResponse {
    /// A key, if present.
    Value(Option<KeyValue>),
    /// Keys in a range.
    Values(Vec<KeyValue>),
    /// Changes after a version.
    Changes(Vec<Change>),
    /// Changes after the requested version are no longer all kept: re-read the keys, then
    /// watch for changes after `oldest_available`.
    Compacted {
        /// The newest version dropped from the change log: every change after it is kept.
        oldest_available: u64,
    },
    /// A lock, if held.
    Lock(Option<LockState>),
    /// A lease, if alive.
    Lease(Option<LeaseState>),
    /// Every lease.
    Leases(Vec<LeaseState>),
    /// Counts and totals.
    Stats(LockStats),
    /// Where one session's wait stands.
    Wait(WaitState),
    /// One page of a range.
    Page(crate::KvPage),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values are written as bytes (`serde_bytes`), which postcard encodes exactly as it did the
    /// plain `Vec<u8>` before: logs, snapshots and messages of older nodes still decode.
    #[test]
    fn values_as_bytes_keep_the_encoding_of_a_plain_vec() {
        let value: Vec<u8> = (0..300u16).map(|byte| (byte % 251) as u8).collect();
        let key_value = KeyValue {
            key: "k".into(),
            value: value.clone(),
            version: 7,
            lease: Some(LeaseId(3)),
        };
        let plain = ("k".to_string(), value.clone(), 7u64, Some(3u64));
        let encoded = postcard::to_allocvec(&key_value).expect("encodes");
        assert_eq!(encoded, postcard::to_allocvec(&plain).expect("encodes"));
        assert_eq!(
            postcard::from_bytes::<KeyValue>(&encoded).expect("decodes"),
            key_value
        );

        for value in [Some(value), None] {
            let change = Change {
                version: 9,
                key: "k".into(),
                value: value.clone(),
            };
            let encoded = postcard::to_allocvec(&change).expect("encodes");
            let plain = (9u64, "k".to_string(), value);
            assert_eq!(encoded, postcard::to_allocvec(&plain).expect("encodes"));
            assert_eq!(
                postcard::from_bytes::<Change>(&encoded).expect("decodes"),
                change
            );
        }
    }
}
