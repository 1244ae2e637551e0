//! The lock table's answers as one Rust type per operation, converted from the wire enums
//! ([`LockResponse`], [`LockQueryResponse`]) here and nowhere else.
//!
//! Every command and query travels as one enum, so its answer does too. A handle names the
//! answer type it expects (`let answer: PutAnswer = core.command(..)`), and
//! [`TableSession`](super::table_session::TableSession) converts with [`TableAnswer`] or
//! [`QueryAnswer`]. An answer of another kind cannot come from a table that applied the
//! command it was sent (each command's answers are fixed by `KvLockTable::apply`): it is a
//! protocol violation (a client and a cluster of different versions, or a bug) and becomes
//! [`ClientError::ResponseUndecodable`], whose fate is `Committed` for a write (the command
//! was applied; what it did is not known). Domain refusals (busy, deadlock, version
//! mismatch, ...) are variants of the answer types, so each handle maps them to
//! [`LockError`]s with an exhaustive `match`.

use ha_replicate::replica::ClientError;

use super::error::LockError;
use crate::command::{
    Change, FencingToken, KeyValue, LeaseId, LeaseState, Limit, LockQueryResponse, LockResponse,
    LockState, LockStats, SessionId, WaitState,
};
use crate::kv_txn::KvPage;

/// The answer type of a lock-table command.
pub(crate) trait TableAnswer: Sized {
    /// The name used when the answer is of another kind.
    const WHAT: &'static str;

    /// This answer, or the response unchanged when it is of another kind.
    fn from_response(response: LockResponse) -> Result<Self, LockResponse>;
}

/// The answer type of a lock-table query.
pub(crate) trait QueryAnswer: Sized {
    /// The name used when the answer is of another kind.
    const WHAT: &'static str;

    /// This answer, or the response unchanged when it is of another kind.
    fn from_response(response: LockQueryResponse) -> Result<Self, LockQueryResponse>;
}

/// The error for an answer of the wrong kind: applied (or read) but not understood.
pub(crate) fn undecodable(expected: &str, got: impl std::fmt::Debug) -> LockError {
    LockError::Replication(ClientError::ResponseUndecodable(format!(
        "the lock table answered {got:?} where {expected} was expected"
    )))
}

/// Convert a response to `A`, or fail as [`undecodable`].
pub(crate) fn answer<A: TableAnswer>(response: LockResponse) -> Result<A, LockError> {
    A::from_response(response).map_err(|other| undecodable(A::WHAT, other))
}

/// Convert a query response to `A`, or fail as [`undecodable`].
pub(crate) fn query_answer<A: QueryAnswer>(response: LockQueryResponse) -> Result<A, LockError> {
    A::from_response(response).map_err(|other| undecodable(A::WHAT, other))
}

/// Declares an answer enum whose variants are [`LockResponse`] variants of the same name
/// (with the fields the handle reads; the others are ignored), and its [`TableAnswer`].
macro_rules! table_answer {
    (
        $(#[$doc:meta])*
        $name:ident {
            $( $(#[$variant_doc:meta])* $variant:ident $({ $($field:ident: $type:ty),* $(,)? })? ),+ $(,)?
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub(crate) enum $name {
            $( $(#[$variant_doc])* $variant $({ $($field: $type),* })? ),+
        }

        impl TableAnswer for $name {
            const WHAT: &'static str = stringify!($name);

            fn from_response(response: LockResponse) -> Result<Self, LockResponse> {
                match response {
                    $( LockResponse::$variant $({ $($field,)* .. })? => {
                        Ok(Self::$variant $({ $($field),* })?)
                    } )+
                    other => Err(other),
                }
            }
        }
    };
}

table_answer! {
    /// A put's answer (plain, create-only, compare-and-swap, bound to a lease).
    PutAnswer {
        /// Applied: the key's new version.
        Put { version: u64 },
        /// The version check failed.
        VersionMismatch { current: u64 },
        /// The lease named is gone.
        LeaseNotFound { lease: LeaseId },
        /// A key or value out of bounds.
        Invalid { reason: String },
        /// The table is full.
        LimitReached { limit: Limit, max: u64 },
    }
}

table_answer! {
    /// A delete's answer.
    DeleteAnswer {
        /// Applied (or the key did not exist).
        Deleted { existed: bool },
        /// The version check failed.
        VersionMismatch { current: u64 },
        /// An empty or too long key.
        Invalid { reason: String },
    }
}

table_answer! {
    /// A transaction's answer.
    TxnAnswer {
        /// Applied: which branch ran, and the version of what it wrote.
        Txn { succeeded: bool, version: u64 },
        /// Out of bounds; nothing changed.
        Invalid { reason: String },
        /// A put named a lease that is gone.
        LeaseNotFound { lease: LeaseId },
        /// Its new keys do not fit.
        LimitReached { limit: Limit, max: u64 },
    }
}

table_answer! {
    /// A prefix delete's answer (one command's worth).
    DeletePrefixAnswer {
        /// Keys deleted, and whether more remain.
        DeletedPrefix { deleted: u64, more: bool },
        /// A prefix too long.
        Invalid { reason: String },
    }
}

table_answer! {
    /// A lease grant's answer.
    GrantAnswer {
        /// Granted.
        LeaseGranted { lease: LeaseId },
        /// The table holds as many leases as it may.
        LimitReached { limit: Limit, max: u64 },
    }
}

table_answer! {
    /// A revoke's answer.
    RevokeAnswer {
        /// The lease ended.
        LeaseEnded {},
        /// No such lease.
        LeaseNotFound {},
    }
}

table_answer! {
    /// The answer to a release that ends its lease (`ReleaseAndRevoke`).
    ReleaseAndRevokeAnswer {
        /// The lock was released and the lease ended.
        LeaseEnded {},
        /// The token does not hold the lock: nothing changed.
        NotHolder,
        /// The holder key does not match the grant's: nothing changed.
        WrongHolder,
    }
}

table_answer! {
    /// A renewal's answer.
    RenewAnswer {
        /// Renewed.
        LeaseRenewed {},
        /// The lease ended meanwhile.
        LeaseNotFound {},
    }
}

table_answer! {
    /// A release's answer.
    ReleaseAnswer {
        /// Released (passed on to the next waiter, if any).
        Released,
        /// The token does not hold the lock.
        NotHolder,
        /// The holder key does not match the grant's.
        WrongHolder,
    }
}

table_answer! {
    /// A cancelled wait's answer.
    CancelAnswer {
        /// The wait was removed.
        Cancelled,
        /// The session was not waiting (it may have been granted meanwhile).
        NotWaiting,
    }
}

table_answer! {
    /// Why an acquire was refused: nothing changed.
    AcquireRefusal {
        /// Held, and the caller did not want to wait.
        Busy { holder: SessionId },
        /// Waiting would close a cycle.
        Deadlock { cycle: Vec<SessionId> },
        /// The lease is gone.
        LeaseNotFound { lease: LeaseId },
        /// An empty or too long name.
        Invalid { reason: String },
        /// A line or the table is full.
        LimitReached { limit: Limit, max: u64 },
    }
}

/// An acquire's answer under an existing lease.
#[derive(Debug)]
pub(crate) enum AcquireAnswer {
    /// Granted, with its fencing token.
    Granted { token: FencingToken },
    /// In line.
    Queued,
    /// Refused.
    Refused(AcquireRefusal),
}

impl TableAnswer for AcquireAnswer {
    const WHAT: &'static str = "AcquireAnswer";

    fn from_response(response: LockResponse) -> Result<Self, LockResponse> {
        match response {
            LockResponse::Granted { token } => Ok(Self::Granted { token }),
            LockResponse::Queued { .. } => Ok(Self::Queued),
            other => AcquireRefusal::from_response(other).map(Self::Refused),
        }
    }
}

/// The answer to a grant of a lease with an acquire under it (`GrantAndAcquire`).
#[derive(Debug)]
pub(crate) enum GrantAndAcquireAnswer {
    /// The lease and the lock were granted.
    Granted { lease: LeaseId, token: FencingToken },
    /// The lease was granted and the session waits in line under it.
    Queued { lease: LeaseId },
    /// Refused: no lease was granted.
    Refused(AcquireRefusal),
}

impl TableAnswer for GrantAndAcquireAnswer {
    const WHAT: &'static str = "GrantAndAcquireAnswer";

    fn from_response(response: LockResponse) -> Result<Self, LockResponse> {
        match response {
            LockResponse::GrantedWithLease { lease, token, .. } => {
                Ok(Self::Granted { lease, token })
            }
            LockResponse::QueuedWithLease { lease, .. } => Ok(Self::Queued { lease }),
            other => AcquireRefusal::from_response(other).map(Self::Refused),
        }
    }
}

/// Any answer: for a caller that only logs it (the lease keeper's expiries).
impl TableAnswer for LockResponse {
    const WHAT: &'static str = "LockResponse";

    fn from_response(response: LockResponse) -> Result<Self, LockResponse> {
        Ok(response)
    }
}

/// Declares that a query answered by `LockQueryResponse::$variant(value)` answers `$type`.
macro_rules! query_answer {
    ($type:ty, $variant:ident) => {
        impl QueryAnswer for $type {
            const WHAT: &'static str = stringify!($variant);

            fn from_response(response: LockQueryResponse) -> Result<Self, LockQueryResponse> {
                match response {
                    LockQueryResponse::$variant(value) => Ok(value),
                    other => Err(other),
                }
            }
        }
    };
}

query_answer!(Option<KeyValue>, Value);
query_answer!(Vec<KeyValue>, Values);
query_answer!(Option<LockState>, Lock);
query_answer!(Option<LeaseState>, Lease);
query_answer!(Vec<LeaseState>, Leases);
query_answer!(LockStats, Stats);
query_answer!(WaitState, Wait);
query_answer!(KvPage, Page);

/// The answer to a read of the change log.
#[derive(Debug)]
pub(crate) enum ChangesAnswer {
    /// The changes after the version asked for.
    Changes(Vec<Change>),
    /// Changes after the version asked for are gone.
    Compacted { oldest_available: u64 },
}

impl QueryAnswer for ChangesAnswer {
    const WHAT: &'static str = "Changes";

    fn from_response(response: LockQueryResponse) -> Result<Self, LockQueryResponse> {
        match response {
            LockQueryResponse::Changes(changes) => Ok(Self::Changes(changes)),
            LockQueryResponse::Compacted { oldest_available } => {
                Ok(Self::Compacted { oldest_available })
            }
            other => Err(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ha_replicate::replica::WriteFate;

    #[test]
    fn an_answer_of_another_kind_is_undecodable_and_committed() {
        // A put answered as a release: the command was applied, what it did is unknown.
        let error = answer::<PutAnswer>(LockResponse::Released).expect_err("a mismatch");
        let LockError::Replication(client_error) = &error else {
            panic!("not a replication error: {error:?}");
        };
        let ClientError::ResponseUndecodable(detail) = client_error else {
            panic!("not ResponseUndecodable: {error:?}");
        };
        assert!(
            detail.contains("Released") && detail.contains("PutAnswer"),
            "{detail}"
        );
        assert_eq!(client_error.fate(), WriteFate::Committed);
        // A query answered with another query's answer.
        let error = query_answer::<Option<KeyValue>>(LockQueryResponse::Values(Vec::new()))
            .expect_err("a mismatch");
        assert!(matches!(
            error,
            LockError::Replication(ClientError::ResponseUndecodable(_))
        ));
        // Nested answers keep the refusals, and refuse what neither part knows.
        assert!(matches!(
            answer::<AcquireAnswer>(LockResponse::Busy {
                holder: SessionId(7)
            }),
            Ok(AcquireAnswer::Refused(AcquireRefusal::Busy { holder })) if holder == SessionId(7)
        ));
        assert!(
            answer::<GrantAndAcquireAnswer>(LockResponse::Granted {
                token: FencingToken(3)
            })
            .is_err()
        );
    }

    #[test]
    fn each_answer_converts_its_own_variants() {
        assert!(matches!(
            answer::<PutAnswer>(LockResponse::Put { version: 9 }),
            Ok(PutAnswer::Put { version: 9 })
        ));
        assert!(matches!(
            answer::<RevokeAnswer>(LockResponse::LeaseEnded {
                lease: LeaseId(4),
                released_locks: vec!["a".into()],
                deleted_keys: 2,
            }),
            Ok(RevokeAnswer::LeaseEnded {})
        ));
        assert!(matches!(
            query_answer::<ChangesAnswer>(LockQueryResponse::Compacted {
                oldest_available: 5
            }),
            Ok(ChangesAnswer::Compacted {
                oldest_available: 5
            })
        ));
    }
}
