//! Multi-key transactions, prefix deletes and paged ranges of the KV store: the types a
//! client sends and gets back. The lock table applies them in `lock_table/kv_batch.rs`.
//!
//! A transaction is etcd's `Txn`: compare several keys' versions, then apply one list of puts
//! and deletes if every comparison holds and another if not, atomically, at one log index
//! (so every key it writes gets that index as its version, and a watch sees its changes as
//! one group).
//!
//! ```
//! use ha_core::LogIndex;
//! use ha_lock::{LockResponse, KvLockTable, Txn, VersionCmp};
//!
//! let mut table = KvLockTable::default();
//! let create = Txn::new()
//!     .when("/config/a", VersionCmp::Equal, 0) // only if /config/a does not exist
//!     .put("/config/a", "1")
//!     .put("/config/b", "2");
//! assert_eq!(
//!     table.apply(LogIndex(5), create.clone().into_command()),
//!     LockResponse::Txn { succeeded: true, version: 5 }
//! );
//! // Again: the comparison fails and the (empty) failure branch runs.
//! assert_eq!(
//!     table.apply(LogIndex(6), create.into_command()),
//!     LockResponse::Txn { succeeded: false, version: 6 }
//! );
//! ```

use serde::{Deserialize, Serialize};

use crate::command::{LeaseId, LockCommand};

/// Most comparisons in one transaction.
pub const TXN_COMPARES_MAX: usize = 64;
/// Most operations in one branch of a transaction.
pub const TXN_OPS_MAX: usize = 64;
/// Most bytes of values in one branch of a transaction (as one put's value may hold).
pub const TXN_VALUE_BYTES_MAX: usize = crate::command::VALUE_BYTES_MAX;
/// Most keys one [`LockCommand::DeletePrefix`] deletes; the answer says whether more remain.
/// Bounds the work of one command and the changes it makes at one version.
pub const DELETE_PREFIX_KEYS_MAX: usize = 1_000;

/// How a [`TxnCompare`] compares a key's version (0 when the key does not exist).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VersionCmp {
    /// The version is the given one (0: the key does not exist).
    Equal,
    /// The version is not the given one (0: the key exists).
    NotEqual,
    /// The version is below the given one.
    Less,
    /// The version is above the given one (0: the key exists).
    Greater,
}

impl VersionCmp {
    /// Whether `current` compares to `target` this way.
    pub fn holds(self, current: u64, target: u64) -> bool {
        match self {
            VersionCmp::Equal => current == target,
            VersionCmp::NotEqual => current != target,
            VersionCmp::Less => current < target,
            VersionCmp::Greater => current > target,
        }
    }
}

/// One comparison of a transaction: `key`'s version `cmp` `version`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnCompare {
    /// The key.
    pub key: String,
    /// How to compare.
    pub cmp: VersionCmp,
    /// The version to compare with (0: absent).
    pub version: u64,
}

/// One write of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    /// Set `key` to `value`, bound to `lease` when given.
    Put {
        /// The key.
        key: String,
        /// The value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        /// Delete the key when this lease ends.
        lease: Option<LeaseId>,
    },
    /// Remove `key` (nothing happens if it does not exist).
    Delete {
        /// The key.
        key: String,
    },
}

impl TxnOp {
    /// The key it writes.
    pub fn key(&self) -> &str {
        match self {
            TxnOp::Put { key, .. } | TxnOp::Delete { key } => key,
        }
    }
}

/// A transaction being built: comparisons, then the writes for when they all hold and for
/// when one does not: etcd's `Txn` on versions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Txn {
    compares: Vec<TxnCompare>,
    success: Vec<TxnOp>,
    failure: Vec<TxnOp>,
}

impl Txn {
    /// An empty transaction: no comparison (so it succeeds) and no writes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a comparison: `key`'s version `cmp` `version`.
    pub fn when(mut self, key: impl Into<String>, cmp: VersionCmp, version: u64) -> Self {
        self.compares.push(TxnCompare {
            key: key.into(),
            cmp,
            version,
        });
        self
    }

    /// On success, set `key`.
    pub fn put(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.success.push(TxnOp::Put {
            key: key.into(),
            value: value.into(),
            lease: None,
        });
        self
    }

    /// On success, set `key` bound to `lease`.
    pub fn put_with_lease(
        mut self,
        key: impl Into<String>,
        value: impl Into<Vec<u8>>,
        lease: LeaseId,
    ) -> Self {
        self.success.push(TxnOp::Put {
            key: key.into(),
            value: value.into(),
            lease: Some(lease),
        });
        self
    }

    /// On success, delete `key`.
    pub fn delete(mut self, key: impl Into<String>) -> Self {
        self.success.push(TxnOp::Delete { key: key.into() });
        self
    }

    /// On failure (a comparison did not hold), apply `op`.
    pub fn otherwise(mut self, op: TxnOp) -> Self {
        self.failure.push(op);
        self
    }

    /// The command that applies it.
    pub fn into_command(self) -> LockCommand {
        LockCommand::Txn {
            compares: self.compares,
            success: self.success,
            failure: self.failure,
        }
    }
}

/// What a transaction did ([`Kv::txn`](crate::Kv::txn)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnOutcome {
    /// Whether every comparison held (the success branch ran).
    pub succeeded: bool,
    /// Its log index: the version of every key it wrote.
    pub version: u64,
}

/// One page of a paged range ([`LockQuery::RangePage`](crate::LockQuery::RangePage)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvPage {
    /// The keys, in order.
    pub values: Vec<crate::command::KeyValue>,
    /// Whether keys under the prefix remain after the last one: ask again with
    /// `start_after` set to the last key.
    pub more: bool,
}
