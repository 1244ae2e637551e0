//! The KV handle of a session: keys with compare-and-swap, lease-bound keys, ranges and
//! watches (transactions, prefix deletes and paged ranges are in `kv_batch_client.rs`).

use std::sync::Arc;

use ha_core::{Consistency, StateMachine};

use super::error::LockError;
use super::session_core::SessionCore;
use super::session_settings::SessionSettings;
use super::table_answer::{DeleteAnswer, PutAnswer};
use super::watch::Watch;
use crate::command::{KeyValue, LeaseId, LockCommand, LockQuery, LockStats, SessionId};
use crate::lock_table::QUERY_RESULTS_MAX;

/// The keys of the lock table, for one [`Session`](super::Session): get, put (plain, create
/// only, compare-and-swap, bound to a lease), delete, ranges, multi-key transactions and
/// watches. Cheap to clone; clones share the session.
///
/// ```no_run
/// # async fn example(kv: ha_lock::Kv<()>) -> Result<(), ha_lock::LockError> {
/// use ha_core::Consistency;
/// let version = kv.create("/config/mode", "active").await?;
/// kv.compare_and_swap("/config/mode", version, "standby").await?;
/// let mode = kv.get("/config/mode", Consistency::Quorum).await?;
/// assert_eq!(mode.map(|found| found.value), Some(b"standby".to_vec()));
/// # Ok(()) }
/// ```
pub struct Kv<H: StateMachine> {
    pub(super) core: Arc<SessionCore<H>>,
}

impl<H: StateMachine> Clone for Kv<H> {
    fn clone(&self) -> Self {
        Self {
            core: Arc::clone(&self.core),
        }
    }
}

impl<H: StateMachine> Kv<H> {
    pub(crate) fn from_core(core: Arc<SessionCore<H>>) -> Self {
        Self { core }
    }

    /// The lock table session these keys are written by (lease-bound keys belong to its
    /// leases).
    pub fn session(&self) -> SessionId {
        self.core.session()
    }

    /// Its timeouts and poll intervals.
    pub fn settings(&self) -> &SessionSettings {
        self.core.settings()
    }

    /// Read `key` at `consistency` (STRONG and QUORUM are linearizable; EVENTUAL reads the
    /// local replica, possibly stale).
    ///
    /// # Errors
    /// [`LockError::Replication`] when no answer came within the request timeout.
    ///
    /// # Cancel safety
    /// Cancel safe: a read changes nothing.
    pub async fn get(
        &self,
        key: &str,
        consistency: Consistency,
    ) -> Result<Option<KeyValue>, LockError> {
        let query = LockQuery::Get {
            key: key.to_string(),
        };
        self.core.query(query, consistency).await
    }

    /// Set `key` to `value`; returns the key's new version. An EVENTUAL put returns once the
    /// leader appended it, with the version it gets when applied (it can still be lost if the
    /// leader dies first).
    ///
    /// # Errors
    /// [`LockError::Invalid`] for a key or value too long or an empty key;
    /// [`LockError::Replication`] when it could not be replicated in time (outcome unknown on
    /// a timeout).
    ///
    /// # Cancel safety
    /// Not cancel safe: if dropped, the put may or may not happen.
    pub async fn put(
        &self,
        key: impl Into<String>,
        value: impl Into<Vec<u8>>,
        consistency: Consistency,
    ) -> Result<u64, LockError> {
        self.put_command(key.into(), value.into(), None, None, consistency)
            .await
    }

    /// Set `key` to `value`, bound to `lease`: the key is deleted when the lease ends (an
    /// ephemeral key). QUORUM.
    ///
    /// # Errors
    /// [`LockError::LeaseLost`] when the lease no longer exists; otherwise as
    /// [`put`](Self::put).
    ///
    /// # Cancel safety
    /// Not cancel safe: if dropped, the put may or may not happen.
    pub async fn put_with_lease(
        &self,
        key: impl Into<String>,
        value: impl Into<Vec<u8>>,
        lease: LeaseId,
    ) -> Result<u64, LockError> {
        self.put_command(
            key.into(),
            value.into(),
            None,
            Some(lease),
            Consistency::Quorum,
        )
        .await
    }

    /// Create `key` only if it does not exist; returns its version. QUORUM.
    ///
    /// # Errors
    /// [`LockError::AlreadyExists`] when it exists (nothing changed); otherwise as
    /// [`put`](Self::put).
    ///
    /// # Cancel safety
    /// Not cancel safe: if dropped, the create may or may not happen.
    pub async fn create(
        &self,
        key: impl Into<String>,
        value: impl Into<Vec<u8>>,
    ) -> Result<u64, LockError> {
        self.put_command(key.into(), value.into(), Some(0), None, Consistency::Quorum)
            .await
    }

    /// Set `key` to `value` only if its version is `expected_version`; returns the new
    /// version. QUORUM.
    ///
    /// # Errors
    /// [`LockError::VersionMismatch`] with the current version when it differs (nothing
    /// changed; 0 means the key does not exist); otherwise as [`put`](Self::put).
    ///
    /// # Cancel safety
    /// Not cancel safe: if dropped, the swap may or may not happen.
    pub async fn compare_and_swap(
        &self,
        key: impl Into<String>,
        expected_version: u64,
        value: impl Into<Vec<u8>>,
    ) -> Result<u64, LockError> {
        self.put_command(
            key.into(),
            value.into(),
            Some(expected_version),
            None,
            Consistency::Quorum,
        )
        .await
    }

    /// Put `value` at `key` with an optional version check (`Some(0)`: create only) at the
    /// given consistency; returns the new version. What [`put`](Self::put),
    /// [`create`](Self::create) and [`compare_and_swap`](Self::compare_and_swap) each do with
    /// a fixed choice.
    ///
    /// # Errors
    /// [`LockError::VersionMismatch`] or [`LockError::AlreadyExists`] when the check fails;
    /// [`LockError::CompareNeedsApply`] for a check at EVENTUAL; [`LockError::Invalid`] for a
    /// key or value out of bounds; [`LockError::Replication`] when no answer came in time.
    ///
    /// # Cancel safety
    /// Not cancel safe: if dropped, the put may or may not happen.
    pub async fn put_checked(
        &self,
        key: impl Into<String>,
        value: impl Into<Vec<u8>>,
        expected_version: Option<u64>,
        consistency: Consistency,
    ) -> Result<u64, LockError> {
        self.put_command(
            key.into(),
            value.into(),
            expected_version,
            None,
            consistency,
        )
        .await
    }

    /// Delete `key`, only if its version is `expected_version` when given; returns the
    /// version of the delete (where it appears in watches). QUORUM.
    ///
    /// # Errors
    /// [`LockError::NotFound`] when the key does not exist; [`LockError::VersionMismatch`]
    /// when its version differs; [`LockError::Replication`] as for [`put`](Self::put).
    ///
    /// # Cancel safety
    /// Not cancel safe: if dropped, the delete may or may not happen.
    pub async fn delete(
        &self,
        key: impl Into<String>,
        expected_version: Option<u64>,
    ) -> Result<u64, LockError> {
        let key = key.into();
        let command = LockCommand::Delete {
            key: key.clone(),
            expected_version,
        };
        let (index, answer) = self.core.command_at::<DeleteAnswer>(command).await?;
        match answer {
            DeleteAnswer::Deleted { existed: true } => Ok(index),
            DeleteAnswer::Deleted { existed: false } => Err(LockError::NotFound { key }),
            DeleteAnswer::VersionMismatch { current } => Err(LockError::VersionMismatch {
                key,
                expected: expected_version.unwrap_or(0),
                current,
            }),
            DeleteAnswer::Invalid { reason } => Err(LockError::Invalid { reason }),
        }
    }

    /// The keys starting with `prefix`, in key order, read at QUORUM: the first
    /// [`QUERY_RESULTS_MAX`] only. For a range of any size use
    /// [`range_all`](Self::range_all) or [`range_page`](Self::range_page).
    ///
    /// # Errors
    /// [`LockError::Replication`] when no answer came within the request timeout.
    ///
    /// # Cancel safety
    /// Cancel safe: a read changes nothing.
    pub async fn range(&self, prefix: &str) -> Result<Vec<KeyValue>, LockError> {
        let query = LockQuery::Range {
            prefix: prefix.to_string(),
            limit: QUERY_RESULTS_MAX,
        };
        self.core.query(query, Consistency::Quorum).await
    }

    /// Counts of keys, leases, held locks and waiters, and totals of grants, waits and refused
    /// deadlocks, read from this node's replica with `consistency`.
    ///
    /// # Errors
    /// [`LockError::Replication`] when no answer came within the request timeout.
    ///
    /// # Cancel safety
    /// Cancel safe: a read changes nothing.
    pub async fn stats(&self, consistency: Consistency) -> Result<LockStats, LockError> {
        self.core.query(LockQuery::Stats, consistency).await
    }

    /// Changes to keys starting with `prefix` with a version above `after_version`, in
    /// version order, read from the local replica. Pass 0 for every change still kept, or the
    /// version of the last change processed to resume.
    pub fn watch(&self, prefix: impl Into<String>, after_version: u64) -> Watch<H> {
        Watch::new(Arc::clone(&self.core), prefix.into(), after_version)
    }

    /// Changes to exactly `key` with a version above `after_version`, as
    /// [`watch`](Self::watch) does for a prefix.
    pub fn watch_key(&self, key: impl Into<String>, after_version: u64) -> Watch<H> {
        Watch::for_key(Arc::clone(&self.core), key.into(), after_version)
    }

    async fn put_command(
        &self,
        key: String,
        value: Vec<u8>,
        expected_version: Option<u64>,
        lease: Option<LeaseId>,
        consistency: Consistency,
    ) -> Result<u64, LockError> {
        if expected_version.is_some() && consistency == Consistency::Eventual {
            return Err(LockError::CompareNeedsApply { key });
        }
        let command = LockCommand::Put {
            key: key.clone(),
            value,
            expected_version,
            lease,
        };
        let (index, answer) = self.core.write::<PutAnswer>(command, consistency).await?;
        match answer {
            // EVENTUAL: answered before applying; a put's version is its log index.
            None => Ok(index),
            Some(PutAnswer::Put { version }) => Ok(version),
            Some(PutAnswer::VersionMismatch { current }) => Err(match expected_version {
                Some(0) => LockError::AlreadyExists {
                    key,
                    version: current,
                },
                expected => LockError::VersionMismatch {
                    key,
                    expected: expected.unwrap_or(0),
                    current,
                },
            }),
            Some(PutAnswer::LeaseNotFound { lease }) => Err(LockError::LeaseLost { lease }),
            Some(PutAnswer::Invalid { reason }) => Err(LockError::Invalid { reason }),
            Some(PutAnswer::LimitReached { limit, max }) => {
                Err(LockError::LimitReached { limit, max })
            }
        }
    }
}
