//! The lock table's multi-key commands: transactions, prefix deletes and paged ranges.
//! Each checks everything it needs before changing anything, so a refused command changes
//! nothing, and each is bounded (the limits in [`crate::kv_txn`]).

use std::collections::BTreeSet;

use crate::command::{KEY_BYTES_MAX, LockResponse, VALUE_BYTES_MAX};
use crate::kv_txn::{
    DELETE_PREFIX_KEYS_MAX, KvPage, TXN_COMPARES_MAX, TXN_OPS_MAX, TXN_VALUE_BYTES_MAX, TxnCompare,
    TxnOp,
};

use super::{KvLockTable, QUERY_RESULTS_MAX};
use crate::command::Limit;

impl KvLockTable {
    /// Apply a transaction at `index`: the branch its comparisons choose, whole, or nothing.
    pub(super) fn apply_txn(
        &mut self,
        index: u64,
        compares: Vec<TxnCompare>,
        success: Vec<TxnOp>,
        failure: Vec<TxnOp>,
    ) -> LockResponse {
        if let Err(reason) = check_shape(&compares, &success, &failure) {
            return LockResponse::Invalid { reason };
        }
        let succeeded = compares.iter().all(|compare| {
            compare
                .cmp
                .holds(self.version_of(&compare.key), compare.version)
        });
        let ops = if succeeded { success } else { failure };
        if let Some(refusal) = self.refuse_ops(&ops) {
            return refusal;
        }
        // Deletes first, so the room they free is there for the puts (no key is written twice,
        // so the order changes nothing else).
        let (deletes, puts): (Vec<TxnOp>, Vec<TxnOp>) = ops
            .into_iter()
            .partition(|op| matches!(op, TxnOp::Delete { .. }));
        for op in deletes.into_iter().chain(puts) {
            match op {
                TxnOp::Put { key, value, lease } => {
                    // Checked above (key, value, lease, room), so it cannot be refused.
                    let answer = self.put(index, key, value, None, lease);
                    debug_assert!(matches!(answer, LockResponse::Put { .. }), "{answer:?}");
                }
                TxnOp::Delete { key } => {
                    self.remove_key(index, &key);
                }
            }
        }
        LockResponse::Txn {
            succeeded,
            version: index,
        }
    }

    /// Delete the first [`DELETE_PREFIX_KEYS_MAX`] keys under `prefix` at `index`.
    pub(super) fn delete_prefix(&mut self, index: u64, prefix: &str) -> LockResponse {
        if prefix.len() > KEY_BYTES_MAX {
            return LockResponse::Invalid {
                reason: format!("a prefix is at most {KEY_BYTES_MAX} bytes"),
            };
        }
        let mut keys = self
            .entries
            .range(prefix.to_string()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, _)| key.clone())
            .take(DELETE_PREFIX_KEYS_MAX + 1)
            .collect::<Vec<_>>();
        let more = keys.len() > DELETE_PREFIX_KEYS_MAX;
        keys.truncate(DELETE_PREFIX_KEYS_MAX);
        for key in &keys {
            self.remove_key(index, key);
        }
        LockResponse::DeletedPrefix {
            deleted: keys.len() as u64,
            more,
        }
    }

    /// One page of the keys under `prefix` after `start_after`.
    pub(super) fn range_page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> KvPage {
        let limit = limit.clamp(1, QUERY_RESULTS_MAX);
        let from = match start_after {
            Some(after) if after >= prefix => std::ops::Bound::Excluded(after.to_string()),
            _ => std::ops::Bound::Included(prefix.to_string()),
        };
        let mut keys = self
            .entries
            .range((from, std::ops::Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .take(limit + 1)
            .map(|(key, _)| key.clone())
            .collect::<Vec<_>>();
        let more = keys.len() > limit;
        keys.truncate(limit);
        KvPage {
            values: keys.iter().filter_map(|key| self.key_value(key)).collect(),
            more,
        }
    }

    /// A key's version, 0 when absent.
    fn version_of(&self, key: &str) -> u64 {
        self.entries
            .get(key)
            .map(|entry| entry.version)
            .unwrap_or(0)
    }

    /// Why `ops` cannot all be applied now, if they cannot: a missing lease, or more new keys
    /// than the table has room for.
    fn refuse_ops(&mut self, ops: &[TxnOp]) -> Option<LockResponse> {
        let mut new_keys = 0usize;
        let mut freed = 0usize;
        for op in ops {
            match op {
                TxnOp::Put { key, lease, .. } => {
                    if let Some(lease) = lease
                        && !self.leases.contains_key(lease)
                    {
                        return Some(LockResponse::LeaseNotFound { lease: *lease });
                    }
                    new_keys += usize::from(!self.entries.contains_key(key));
                }
                TxnOp::Delete { key } => freed += usize::from(self.entries.contains_key(key)),
            }
        }
        let after = (self.entries.len() + new_keys).saturating_sub(freed);
        if new_keys > 0 && after > self.limits.keys {
            return Some(self.limit_reached(Limit::Keys));
        }
        None
    }
}

/// The bounds every transaction meets whatever the state: counts, key and value sizes, and no
/// key written twice in one branch (its final value would depend on the order).
fn check_shape(
    compares: &[TxnCompare],
    success: &[TxnOp],
    failure: &[TxnOp],
) -> Result<(), String> {
    if compares.len() > TXN_COMPARES_MAX {
        return Err(format!(
            "{} comparisons; a transaction has at most {TXN_COMPARES_MAX}",
            compares.len()
        ));
    }
    let bad_key = |key: &str| key.is_empty() || key.len() > KEY_BYTES_MAX;
    if compares.iter().any(|compare| bad_key(&compare.key)) {
        return Err(format!("keys are 1 to {KEY_BYTES_MAX} bytes"));
    }
    for (branch, ops) in [("success", success), ("failure", failure)] {
        if ops.len() > TXN_OPS_MAX {
            return Err(format!(
                "{} operations in the {branch} branch; at most {TXN_OPS_MAX}",
                ops.len()
            ));
        }
        let mut keys = BTreeSet::new();
        let mut value_bytes = 0usize;
        for op in ops {
            if bad_key(op.key()) {
                return Err(format!("keys are 1 to {KEY_BYTES_MAX} bytes"));
            }
            if !keys.insert(op.key()) {
                return Err(format!(
                    "key {:?} is written twice in the {branch} branch",
                    op.key()
                ));
            }
            if let TxnOp::Put { value, .. } = op {
                if value.len() > VALUE_BYTES_MAX {
                    return Err(format!("values are at most {VALUE_BYTES_MAX} bytes"));
                }
                value_bytes += value.len();
            }
        }
        if value_bytes > TXN_VALUE_BYTES_MAX {
            return Err(format!(
                "{value_bytes} bytes of values in the {branch} branch; at most {TXN_VALUE_BYTES_MAX}"
            ));
        }
    }
    Ok(())
}
