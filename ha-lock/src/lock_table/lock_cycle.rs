//! The two commands of a lock cycle in two writes (issue 17): grant a lease and acquire under
//! it in one entry, and release a lock and end its lease in one entry. Both are built from the
//! table's own grant, acquire, release and lease-end steps, so holder keys, fencing tokens,
//! waiters, deadlock detection and limits behave exactly as with the separate commands.

use super::{KvLockTable, Lease};
use crate::command::{
    FencingToken, HolderDigest, HolderKey, KEY_BYTES_MAX, LeaseId, Limit, LockResponse, SessionId,
};
use imbl::OrdSet;

impl KvLockTable {
    /// The lease of the grant holding `name` with `token`, if that grant holds it (for
    /// [`LockObserver`](crate::LockObserver)).
    pub(crate) fn lease_of_grant(&self, name: &str, token: FencingToken) -> Option<LeaseId> {
        self.locks
            .get(name)
            .filter(|lock| lock.token == token)
            .map(|lock| lock.lease)
    }

    /// [`LockCommand::GrantAndAcquire`](crate::LockCommand::GrantAndAcquire) at `index`: the
    /// lease is `index`. A refusal of the acquire takes the lease back, so a refused command
    /// changes nothing (beyond the refusal and deadlock counters the separate acquire also
    /// counts).
    pub(super) fn grant_and_acquire(
        &mut self,
        index: u64,
        name: String,
        session: SessionId,
        ttl_ms: u64,
        wait: bool,
        digest: Option<HolderDigest>,
    ) -> LockResponse {
        if ttl_ms == 0 {
            return LockResponse::Invalid {
                reason: "a lease needs a TTL above 0 ms".to_string(),
            };
        }
        if name.is_empty() || name.len() > KEY_BYTES_MAX {
            return LockResponse::Invalid {
                reason: format!("lock names are 1 to {KEY_BYTES_MAX} bytes"),
            };
        }
        if self.leases.contains_key(&LeaseId(index)) {
            // Lease ids are log indexes and an index is applied once; only a damaged or
            // hostile snapshot holds a lease at an index it has not applied yet.
            return LockResponse::Invalid {
                reason: format!("lease {index} already exists"),
            };
        }
        if self.leases.len() >= self.limits.leases {
            return self.limit_reached(Limit::Leases);
        }
        if let Some(lock) = self.locks.get(&name)
            && self.lines.waits_in(session, &name)
        {
            // Already in this line under another lease: a second place under a new lease
            // would not be the one the acquire's answer describes.
            return LockResponse::Busy {
                holder: lock.holder,
            };
        }
        let lease = LeaseId(index);
        self.leases.insert(
            lease,
            Lease {
                session,
                ttl_ms,
                renewals: 0,
                keys: OrdSet::new(),
                locks: OrdSet::new(),
            },
        );
        match self.acquire(index, name, session, lease, wait, digest) {
            LockResponse::Granted { token } => LockResponse::GrantedWithLease {
                lease,
                ttl_ms,
                token,
            },
            LockResponse::Queued { position } => LockResponse::QueuedWithLease {
                lease,
                ttl_ms,
                position,
            },
            refused => {
                // Nothing was granted or queued under the lease: it holds nothing.
                self.leases.remove(&lease);
                refused
            }
        }
    }

    /// [`LockCommand::ReleaseAndRevoke`](crate::LockCommand::ReleaseAndRevoke) at `index`:
    /// the release's checks, then the end of the lease the lock is held under.
    pub(super) fn release_and_revoke(
        &mut self,
        index: u64,
        name: &str,
        token: FencingToken,
        key: Option<&HolderKey>,
    ) -> LockResponse {
        let Some(lock) = self.locks.get(name).filter(|lock| lock.token == token) else {
            return LockResponse::NotHolder;
        };
        if !Self::key_matches(lock.holder_digest, key) {
            return LockResponse::WrongHolder;
        }
        let lease = lock.lease;
        self.end_lease(index, lease)
    }
}
