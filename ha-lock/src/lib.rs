//! # ha-lock
//!
//! A distributed key/value store with compare-and-swap, TTL leases, fenced FIFO locks with
//! deadlock detection, and a change log for watches — as a deterministic state machine
//! ([`KvLockTable`]) replicated through the same log as the host's own state machine
//! ([`WithLocks`]).
//!
//! ```text
//!  client ── LockCommand ──▶ ReplicaNode<WithLocks<H>> ── log ──▶ KvLockTable (every replica)
//!                                   ▲
//!  leader: LeaseExpiryTracker ──────┘ proposes LeaseExpire when a lease's TTL ran out
//!  holder: LeaseRenewal — when to renew, and the safe deadline (sent + TTL − drift margin)
//! ```
//!
//! The two time rules, [`LeaseExpiryTracker`] (the leader's) and [`LeaseRenewal`] (the
//! holder's), are sans-IO: the tokio [`handles`] and the deterministic simulator in `ha-tests`
//! call the same code, so the simulated sweeps check the rules users run.
//!
//! Time never enters the state: versions, lease ids and fencing tokens are log indexes, and
//! lease expiry is a command the leader proposes. A fencing token is the log index of the
//! grant, so it grows across leader changes and restarts.
//!
//! ## Example
//!
//! ```
//! use ha_core::LogIndex;
//! use ha_lock::{FencingToken, LeaseId, LockCommand, LockResponse, KvLockTable, SessionId};
//!
//! let mut table = KvLockTable::default();
//! let lease = |session| LockCommand::LeaseGrant { ttl_ms: 5_000, session };
//! table.apply(LogIndex(1), lease(SessionId(1))); // lease 1 for session 1
//! table.apply(LogIndex(2), lease(SessionId(2))); // lease 2 for session 2
//! let acquire = |session: SessionId, lease: LeaseId| {
//!     LockCommand::Acquire { name: "jobs".into(), session, lease, wait: true }
//! };
//! assert_eq!(
//!     table.apply(LogIndex(3), acquire(SessionId(1), LeaseId(1))),
//!     LockResponse::Granted { token: FencingToken(3) }
//! );
//! assert_eq!(
//!     table.apply(LogIndex(4), acquire(SessionId(2), LeaseId(2))),
//!     LockResponse::Queued { position: 0 }
//! );
//! // Session 1 releases; session 2 is granted with a larger token.
//! let release = LockCommand::Release { name: "jobs".into(), token: FencingToken(3) };
//! assert_eq!(table.apply(LogIndex(5), release), LockResponse::Released);
//! ```
//!
//! Sessions, leases and tokens are types of their own, so arguments passed in the wrong
//! order do not compile:
//!
//! ```compile_fail,E0308
//! use ha_lock::{LeaseId, LockCommand, SessionId};
//! let acquire = |session: SessionId, lease: LeaseId| {
//!     LockCommand::Acquire { name: "jobs".into(), session, lease, wait: true }
//! };
//! let (session, lease) = (SessionId(1), LeaseId(2));
//! acquire(lease, session); // swapped: a lease is not a session
//! ```

mod change_feed;
mod command;
mod ids;
mod kv_txn;
mod lease_expiry;
mod lease_renewal;
mod lock_outcome;
mod lock_snapshot;
mod lock_table;
mod wait_for_graph;
mod wait_lines;
mod with_locks;

pub use change_feed::ChangeFeed;
pub use command::{
    Change, FencingToken, HOLDER_KEY_BYTES, HolderDigest, HolderKey, KEY_BYTES_MAX, KeyValue,
    LeaseId, LeaseState, Limit, LimitRefusals, LockCommand, LockQuery, LockQueryResponse,
    LockResponse, LockState, LockStats, SessionId, VALUE_BYTES_MAX, WaitState, holder_digest,
    new_holder_key,
};
pub use kv_txn::{
    DELETE_PREFIX_KEYS_MAX, KvPage, TXN_COMPARES_MAX, TXN_OPS_MAX, TXN_VALUE_BYTES_MAX, Txn,
    TxnCompare, TxnOp, TxnOutcome, VersionCmp,
};
pub use lease_expiry::{EXPIRY_PROPOSAL_TIMEOUT, LEASE_TICK_INTERVAL_DEFAULT, LeaseExpiryTracker};
pub use lease_renewal::{LeaseRenewal, RENEWALS_PER_TTL, drift_margin, safe_deadline};
pub use lock_outcome::{LockChange, LockObserver, LockOutcome};
pub use lock_snapshot::{SNAPSHOT_FORMAT_VERSION, SNAPSHOT_MAGIC, SNAPSHOT_RECORD_BYTES_MAX};
pub use lock_table::{
    CHANGE_VALUE_BYTES_MAX, CHANGES_MAX, KEYS_MAX, KvLockTable, LEASES_MAX, LOCKS_HELD_MAX,
    LockLimits, QUERY_RESULTS_MAX, WAITERS_MAX, WAITERS_PER_LOCK_MAX,
};
pub use wait_for_graph::WaitForGraph;
pub use with_locks::{Command, Query, QueryResponse, Response, WithLocks};

pub mod handles;

pub use handles::{
    FencedResource, Kv, LEASE_TTL_MIN, LeaderObserver, Leadership, Lease, LeaseKeeper, LeaseLoss,
    LeaseStatus, Leases, LockError, LockGuard, Locks, Session, SessionSettings, StaleToken, Watch,
    election_key,
};
