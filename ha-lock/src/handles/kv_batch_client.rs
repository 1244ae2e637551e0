//! The KV handle's multi-key calls: transactions, prefix deletes and ranges of any size,
//! read page by page.

use ha_core::{Consistency, StateMachine};

use super::error::LockError;
use super::kv::Kv;
use super::table_answer::{DeletePrefixAnswer, TxnAnswer};
use crate::command::{KeyValue, LockCommand, LockQuery};
use crate::kv_txn::{DELETE_PREFIX_KEYS_MAX, KvPage, Txn, TxnOutcome};
use crate::lock_table::{KEYS_MAX, QUERY_RESULTS_MAX};

impl<H: StateMachine> Kv<H> {
    /// Apply `txn` atomically (QUORUM): compare its keys' versions, then apply its success or
    /// its failure branch. Returns which ran and the version every written key now has.
    ///
    /// ```no_run
    /// # async fn example(kv: ha_lock::Kv<()>) -> Result<(), ha_lock::LockError> {
    /// use ha_lock::{Txn, VersionCmp};
    /// // Move a job from the queue to a worker, only if nobody took it first.
    /// let queued = kv.get("/queue/42", ha_core::Consistency::Strong).await?.expect("queued");
    /// let outcome = kv
    ///     .txn(
    ///         Txn::new()
    ///             .when("/queue/42", VersionCmp::Equal, queued.version)
    ///             .delete("/queue/42")
    ///             .put("/running/42", "worker-7"),
    ///     )
    ///     .await?;
    /// println!("taken: {}", outcome.succeeded);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`LockError::Invalid`] for a transaction past its bounds (see
    /// [`TXN_OPS_MAX`](crate::TXN_OPS_MAX)) or writing a key twice in one branch;
    /// [`LockError::LeaseLost`] when a put names a lease that is gone;
    /// [`LockError::LimitReached`] when its new keys do not fit. In each case nothing changed.
    /// [`LockError::Replication`] when it could not be replicated.
    ///
    /// # Cancel safety
    /// Not cancel safe: if dropped, the transaction may or may not happen.
    pub async fn txn(&self, txn: Txn) -> Result<TxnOutcome, LockError> {
        match self.core.command::<TxnAnswer>(txn.into_command()).await? {
            TxnAnswer::Txn { succeeded, version } => Ok(TxnOutcome { succeeded, version }),
            TxnAnswer::Invalid { reason } => Err(LockError::Invalid { reason }),
            TxnAnswer::LeaseNotFound { lease } => Err(LockError::LeaseLost { lease }),
            TxnAnswer::LimitReached { limit, max } => Err(LockError::LimitReached { limit, max }),
        }
    }

    /// Delete every key starting with `prefix` (QUORUM), in commands of at most
    /// [`DELETE_PREFIX_KEYS_MAX`] keys each; returns how many were deleted. Not atomic across
    /// commands: keys written under the prefix meanwhile may be deleted too.
    ///
    /// # Errors
    /// [`LockError::Invalid`] for a prefix over [`KEY_BYTES_MAX`](crate::KEY_BYTES_MAX) bytes;
    /// [`LockError::Replication`] when a command could not be replicated (the ones before it
    /// were applied).
    ///
    /// # Cancel safety
    /// Not cancel safe: if dropped, some keys may have been deleted.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<u64, LockError> {
        let mut deleted = 0u64;
        // Every round but the last deletes DELETE_PREFIX_KEYS_MAX keys; the table holds at
        // most KEYS_MAX, and writers adding keys meanwhile cannot keep this going for ever.
        let rounds_max = KEYS_MAX / DELETE_PREFIX_KEYS_MAX + 2;
        for _ in 0..rounds_max {
            let command = LockCommand::DeletePrefix {
                prefix: prefix.to_string(),
            };
            match self.core.command::<DeletePrefixAnswer>(command).await? {
                DeletePrefixAnswer::DeletedPrefix { deleted: now, more } => {
                    deleted = deleted.saturating_add(now);
                    if !more {
                        return Ok(deleted);
                    }
                }
                DeletePrefixAnswer::Invalid { reason } => {
                    return Err(LockError::Invalid { reason });
                }
            }
        }
        Ok(deleted)
    }

    /// One page of the keys starting with `prefix`, after `start_after` (from the first when
    /// `None`), at most `limit` (and [`QUERY_RESULTS_MAX`]), read as `consistency` says.
    /// When [`KvPage::more`], ask again with `start_after` set to the last key returned.
    ///
    /// # Errors
    /// [`LockError::Replication`] when no answer came within the request timeout.
    ///
    /// # Cancel safety
    /// Cancel safe: a read changes nothing.
    pub async fn range_page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        consistency: Consistency,
    ) -> Result<KvPage, LockError> {
        let query = LockQuery::RangePage {
            prefix: prefix.to_string(),
            start_after: start_after.map(str::to_string),
            limit: limit.min(QUERY_RESULTS_MAX),
        };
        self.core.query(query, consistency).await
    }

    /// Every key starting with `prefix`, read page by page (QUORUM reads of
    /// [`QUERY_RESULTS_MAX`] keys each). Each page is consistent on its own; the whole is not
    /// one snapshot when writes happen meanwhile (a key written between pages may or may not
    /// appear).
    ///
    /// # Errors
    /// As [`range_page`](Self::range_page).
    ///
    /// # Cancel safety
    /// Cancel safe: a read changes nothing.
    pub async fn range_all(&self, prefix: &str) -> Result<Vec<KeyValue>, LockError> {
        let mut values: Vec<KeyValue> = Vec::new();
        // Each page moves past at least one key and the table holds at most KEYS_MAX.
        for _ in 0..=KEYS_MAX / QUERY_RESULTS_MAX + 1 {
            let start_after = values.last().map(|kv| kv.key.clone());
            let page = self
                .range_page(
                    prefix,
                    start_after.as_deref(),
                    QUERY_RESULTS_MAX,
                    Consistency::Quorum,
                )
                .await?;
            values.extend(page.values);
            if !page.more {
                break;
            }
        }
        Ok(values)
    }
}
