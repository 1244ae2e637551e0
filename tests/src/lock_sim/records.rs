//! What the lock clients record for the invariants.

use std::collections::BTreeMap;

use ha_core::Millis;
use ha_lock::{FencingToken, LeaseId};

use crate::lock_sim::versioned_kv_model::KvOutput;

/// The virtual time each write was first sent, by (replication session, sequence): the
/// clients' side of the lease promise, for the lease invariant.
#[derive(Clone, Debug, Default)]
pub struct SendTimes {
    first_sent: BTreeMap<(u64, u64), Millis>,
}

impl SendTimes {
    /// Record that `(session, sequence)` was sent at `at`, unless it was sent before.
    pub fn record(&mut self, session: u64, sequence: u64, at: Millis) {
        self.first_sent.entry((session, sequence)).or_insert(at);
    }

    /// When `(session, sequence)` was first sent.
    pub fn first_sent(&self, session: u64, sequence: u64) -> Option<Millis> {
        self.first_sent.get(&(session, sequence)).copied()
    }
}

/// Why a client stopped using a lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldEnd {
    /// It was done and released it.
    Released,
    /// Its safe deadline passed (keep-alives failed) or the lease was found gone.
    LeaseLost,
}

/// A stretch of virtual time during which a client believed it held a lock and used it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HolderInterval {
    /// The lock.
    pub lock: String,
    /// The client.
    pub client: usize,
    /// The lease it held the lock under.
    pub lease: LeaseId,
    /// Its fencing token.
    pub token: FencingToken,
    /// When the client learned of the grant.
    pub start: Millis,
    /// When it stopped using the lock: it sent the release, or its safe deadline passed.
    pub end: Millis,
    /// Why it stopped.
    pub ended_by: HoldEnd,
}

/// A KV request as the client sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvRequest {
    /// Read.
    Get,
    /// Put, with an optional compare-and-swap on the version.
    Put {
        /// The value.
        value: Vec<u8>,
        /// The version it must have (0: absent).
        expected_version: Option<u64>,
    },
    /// Delete, with an optional compare-and-swap on the version.
    Delete {
        /// The version it must have.
        expected_version: Option<u64>,
    },
}

/// One KV operation of a client, with what it was told (if anything).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvRecord {
    /// The client.
    pub client: usize,
    /// The key.
    pub key: String,
    /// The replication session and sequence of a write (`None` for a read).
    pub stamp: Option<(u64, u64)>,
    /// When the operation was first sent.
    pub call_at: Millis,
    /// When the answer came; `None` when the client gave up.
    pub return_at: Option<Millis>,
    /// The request.
    pub request: KvRequest,
    /// The answer; `None` when the client gave up.
    pub output: Option<KvOutput>,
}

/// Counts of what the clients did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockWorkloadStats {
    /// Leases granted to a client that learned of it.
    pub leases_granted: u64,
    /// Leases a client gave up on because its safe deadline passed.
    pub leases_lost: u64,
    /// Leases a client revoked.
    pub leases_revoked: u64,
    /// Keep-alives answered `LeaseRenewed`.
    pub keep_alives_renewed: u64,
    /// Keep-alives that failed or timed out (and were sent again).
    pub keep_alives_failed: u64,
    /// Times a client was told its lease was gone while its safe deadline had not passed
    /// (only a real violation if the lease invariant also fails; a late answer can cause it).
    pub lease_gone_before_deadline: u64,
    /// Locks a client learned it held.
    pub locks_granted: u64,
    /// Waits cancelled after the wait timeout.
    pub waits_cancelled: u64,
    /// Releases answered `NotHolder` (the lease had ended).
    pub releases_not_holder: u64,
    /// Releases sent as a wrong holder (no key for a keyed grant, a wrong key, or a key for a
    /// plain grant) and answered `WrongHolder`: refused, the lock still held.
    pub wrong_holder_releases_refused: u64,
    /// Lock cycles begun in one write (`GrantAndAcquire`, issue 17) whose client learned the
    /// lease it granted (granted at once or queued).
    pub leases_granted_with_lock: u64,
    /// Holds ended by one write releasing the lock and ending its lease (`ReleaseAndRevoke`).
    pub releases_ending_lease: u64,
    /// KV operations answered.
    pub kv_completed: u64,
    /// KV operations given up.
    pub kv_unknown: u64,
}
