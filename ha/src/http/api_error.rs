//! The admin API's error body: `{"error": "<kind>", "message": "...", "leader": "<id or null>"}`
//! with 4xx for bad requests, 409 for conflicts, 429 `limit` at a named limit, and 503 without a
//! quorum or leader.
//!
//! Every kind tells a client whether a write may have been applied (README, "Client
//! guidance"): refusals (4xx, 409, and 503 `no_quorum`, `not_leader`, `busy`,
//! `transfer_in_progress`) are known not applied; 503 `unknown_outcome` and `stopped` may have
//! been applied; 503 `not_applied_everywhere` was committed.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ha_core::NodeId;
use ha_lock::LockError;
use ha_replicate::engine::TransferError;
use ha_replicate::replica::ClientError;
use serde::Serialize;

use crate::error::NodeError;

/// One error answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable snake_case kind for programs.
    pub kind: &'static str,
    /// A sentence for people.
    pub message: String,
    /// The leader, when known and relevant.
    pub leader: Option<NodeId>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: &'a str,
    leader: Option<&'a str>,
}

impl ApiError {
    /// An error without a leader hint.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            leader: None,
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404: nothing there.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 503: the node has stopped.
    pub fn stopped() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopped",
            "the node is shutting down",
        )
    }

    fn with_leader(mut self, leader: Option<NodeId>) -> Self {
        self.leader = leader;
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: self.kind,
            message: &self.message,
            leader: self.leader.as_ref().map(NodeId::as_str),
        };
        (self.status, Json(body)).into_response()
    }
}

impl ApiError {
    /// The same error for a read, which changes nothing: an unknown outcome is only a
    /// read that got no answer in time (503 `timeout`).
    pub fn for_read(self) -> Self {
        if self.kind == UNKNOWN_OUTCOME {
            Self {
                kind: "timeout",
                message: format!("{}; a read changes nothing: retry it", self.message),
                ..self
            }
        } else {
            self
        }
    }
}

/// The kind of every answer after which a write may or may not have been applied.
pub(crate) const UNKNOWN_OUTCOME: &str = "unknown_outcome";

impl From<ClientError> for ApiError {
    fn from(error: ClientError) -> Self {
        let unavailable = StatusCode::SERVICE_UNAVAILABLE;
        let message = error.to_string();
        match error {
            ClientError::NoQuorum { leader } => Self::new(
                unavailable,
                "no_quorum",
                format!("{message}: not applied; retry on another node"),
            )
            .with_leader(leader),
            ClientError::NotLeader { leader } => Self::new(
                unavailable,
                "not_leader",
                format!("{message}: not applied; retry"),
            )
            .with_leader(leader),
            ClientError::TransferInProgress => Self::new(
                unavailable,
                "transfer_in_progress",
                format!("{message}: not applied; retry shortly"),
            ),
            ClientError::Busy => Self::new(
                unavailable,
                "busy",
                format!("{message}: not applied; retry later"),
            ),
            ClientError::Timeout | ClientError::LeadershipLost => Self::new(
                unavailable,
                UNKNOWN_OUTCOME,
                format!("{message}: the write may or may not have been applied"),
            ),
            ClientError::NotAppliedEverywhere { .. } => Self::new(
                unavailable,
                "not_applied_everywhere",
                format!("{message}: committed; do not write it again"),
            ),
            ClientError::InvalidQuery(_) => Self::bad_request(message),
            ClientError::StorageFull(_) => Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "storage_full",
                format!("{message}: not applied; retry on another node"),
            ),
            ClientError::StorageFailed(_) => Self::new(
                unavailable,
                "storage_failed",
                format!("{message}: not applied; retry on another node"),
            ),
            ClientError::Stopped(_) => Self::new(
                unavailable,
                "stopped",
                format!("{message}: a write in flight may or may not have been applied"),
            ),
            ClientError::Witness => Self::new(
                unavailable,
                "witness",
                format!("{message}: not applied; ask a data node"),
            ),
            ClientError::ResponseUndecodable(_) => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "response_undecodable",
                format!("{message}; do not write it again"),
            ),
            ClientError::Fatal(_) => Self::new(
                unavailable,
                "storage_fatal",
                format!(
                    "{message}: a write in flight may or may not have been applied; retry on \
                     another node (this one needs an operator)"
                ),
            ),
            _ => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message),
        }
    }
}

impl From<LockError> for ApiError {
    fn from(error: LockError) -> Self {
        let conflict = StatusCode::CONFLICT;
        let message = error.to_string();
        match error {
            LockError::VersionMismatch { .. } | LockError::AlreadyExists { .. } => {
                Self::new(conflict, "cas_mismatch", message)
            }
            LockError::NotFound { .. } => Self::not_found(message),
            LockError::Busy { .. } => Self::new(conflict, "busy", message),
            LockError::WaitTimedOut { .. } | LockError::WaitEnded { .. } => {
                Self::new(conflict, "lock_timeout", message)
            }
            LockError::Deadlock { .. } => Self::new(conflict, "deadlock", message),
            LockError::NotHolder { .. } => Self::new(conflict, "not_holder", message),
            LockError::LeaseLost { .. } => Self::new(conflict, "lease_lost", message),
            LockError::Invalid { .. } | LockError::CompareNeedsApply { .. } => {
                Self::bad_request(message)
            }
            // A named limit of the lock table (docs/ARCHITECTURE.md, admin HTTP contract):
            // nothing changed.
            LockError::LimitReached { .. } => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "limit", message)
            }
            LockError::Replication(error) => error.into(),
            _ => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message),
        }
    }
}

impl From<TransferError> for ApiError {
    fn from(error: TransferError) -> Self {
        let message = error.to_string();
        match error {
            TransferError::NotLeader { leader: None } => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "no_leader", message)
            }
            TransferError::NotLeader { leader } => Self::new(
                StatusCode::CONFLICT,
                "not_leader",
                format!("{message}: send the request to the leader"),
            )
            .with_leader(leader),
            TransferError::IneligibleTarget(_) => {
                Self::new(StatusCode::CONFLICT, "ineligible_target", message)
            }
            TransferError::NoEligibleTarget => {
                Self::new(StatusCode::CONFLICT, "no_eligible_target", message)
            }
            TransferError::InProgress => {
                Self::new(StatusCode::CONFLICT, "transfer_in_progress", message)
            }
            TransferError::Stopped => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "stopped",
                format!("{message}: ask another node"),
            ),
            _ => Self::new(StatusCode::CONFLICT, "transfer_refused", message),
        }
    }
}

impl From<NodeError> for ApiError {
    fn from(error: NodeError) -> Self {
        match error {
            NodeError::Replication(error) => error.into(),
            NodeError::Lock(error) => error.into(),
            NodeError::Transfer(error) => error.into(),
            timed_out @ NodeError::TransferTimedOut { .. } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "transfer_timed_out",
                timed_out.to_string(),
            ),
            other => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                other.to_string(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Issue 12, item 12: every error kind says whether a write may have been applied.

    use ha_core::LogIndex;
    use ha_replicate::replica::WriteFate;
    use ha_replicate::storage::{StorageError, StorageFailure};

    use super::*;

    fn leader() -> Option<NodeId> {
        Some(NodeId::new("n2").expect("valid"))
    }

    /// Each replication error: its status, kind, leader hint and fate, one line per case.
    #[test]
    fn replication_errors_map_to_kinds_that_tell_the_fate() {
        let unavailable = StatusCode::SERVICE_UNAVAILABLE;
        let cases = [
            (
                ClientError::NoQuorum { leader: leader() },
                unavailable,
                "no_quorum",
                leader(),
                WriteFate::NotApplied,
            ),
            (
                ClientError::NotLeader { leader: leader() },
                unavailable,
                "not_leader",
                leader(),
                WriteFate::NotApplied,
            ),
            (
                ClientError::TransferInProgress,
                unavailable,
                "transfer_in_progress",
                None,
                WriteFate::NotApplied,
            ),
            (
                ClientError::Busy,
                unavailable,
                "busy",
                None,
                WriteFate::NotApplied,
            ),
            (
                ClientError::InvalidQuery("x".into()),
                StatusCode::BAD_REQUEST,
                "bad_request",
                None,
                WriteFate::NotApplied,
            ),
            (
                ClientError::Timeout,
                unavailable,
                UNKNOWN_OUTCOME,
                None,
                WriteFate::Unknown,
            ),
            (
                ClientError::LeadershipLost,
                unavailable,
                UNKNOWN_OUTCOME,
                None,
                WriteFate::Unknown,
            ),
            (
                ClientError::Stopped("x".into()),
                unavailable,
                "stopped",
                None,
                WriteFate::Unknown,
            ),
            (
                ClientError::Fatal(StorageFailure::from(&StorageError::Misuse("x".into()))),
                unavailable,
                "storage_fatal",
                None,
                WriteFate::Unknown,
            ),
            (
                ClientError::StorageFull("x".into()),
                StatusCode::INSUFFICIENT_STORAGE,
                "storage_full",
                None,
                WriteFate::NotApplied,
            ),
            (
                ClientError::StorageFailed("x".into()),
                unavailable,
                "storage_failed",
                None,
                WriteFate::NotApplied,
            ),
            (
                ClientError::Witness,
                unavailable,
                "witness",
                None,
                WriteFate::NotApplied,
            ),
            (
                ClientError::NotAppliedEverywhere { index: LogIndex(4) },
                unavailable,
                "not_applied_everywhere",
                None,
                WriteFate::Committed,
            ),
            (
                ClientError::ResponseUndecodable("x".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
                "response_undecodable",
                None,
                WriteFate::Committed,
            ),
        ];
        for (error, status, kind, hint, fate) in cases {
            assert_eq!(error.fate(), fate, "{error:?}");
            let api = ApiError::from(error.clone());
            assert_eq!(
                (api.status, api.kind, api.leader),
                (status, kind, hint),
                "{error:?}"
            );
            // Wrapped in a lock error or a node error, the answer is the same.
            let through_lock = ApiError::from(LockError::Replication(error.clone()));
            assert_eq!(through_lock.kind, kind, "{error:?}");
            let through_node = ApiError::from(NodeError::Replication(error.clone()));
            assert_eq!(through_node.kind, kind, "{error:?}");
            assert_eq!(NodeError::Replication(error).fate(), fate);
        }
    }

    #[test]
    fn transfer_refusals_keep_their_answers_and_a_stopped_node_says_stopped() {
        let leader: NodeId = "n2".parse().expect("valid id");
        let cases = [
            (
                TransferError::NotLeader { leader: None },
                StatusCode::SERVICE_UNAVAILABLE,
                "no_leader",
            ),
            (
                TransferError::NotLeader {
                    leader: Some(leader.clone()),
                },
                StatusCode::CONFLICT,
                "not_leader",
            ),
            (
                TransferError::IneligibleTarget(leader),
                StatusCode::CONFLICT,
                "ineligible_target",
            ),
            (
                TransferError::NoEligibleTarget,
                StatusCode::CONFLICT,
                "no_eligible_target",
            ),
            (
                TransferError::InProgress,
                StatusCode::CONFLICT,
                "transfer_in_progress",
            ),
            (
                TransferError::Stopped,
                StatusCode::SERVICE_UNAVAILABLE,
                "stopped",
            ),
        ];
        for (error, status, kind) in cases {
            let api = ApiError::from(error.clone());
            assert_eq!((api.status, api.kind), (status, kind), "{error:?}");
        }
    }

    #[test]
    fn a_read_without_an_answer_is_a_timeout_not_an_unknown_outcome() {
        let read = ApiError::from(ClientError::Timeout).for_read();
        assert_eq!(
            (read.status, read.kind),
            (StatusCode::SERVICE_UNAVAILABLE, "timeout")
        );
        let refused = ApiError::from(ClientError::NoQuorum { leader: None }).for_read();
        assert_eq!(refused.kind, "no_quorum");
    }

    #[test]
    fn refusals_of_the_lock_table_are_known_not_applied() {
        let cases = [
            (
                LockError::VersionMismatch {
                    key: "k".into(),
                    expected: 1,
                    current: 2,
                },
                StatusCode::CONFLICT,
                "cas_mismatch",
            ),
            (
                LockError::CompareNeedsApply { key: "k".into() },
                StatusCode::BAD_REQUEST,
                "bad_request",
            ),
            (
                LockError::NotHolder {
                    name: "l".into(),
                    token: ha_lock::FencingToken(3),
                },
                StatusCode::CONFLICT,
                "not_holder",
            ),
        ];
        for (error, status, kind) in cases {
            let node_error = NodeError::Lock(error.clone());
            assert_eq!(node_error.fate(), WriteFate::NotApplied, "{error:?}");
            let api = ApiError::from(error);
            assert_eq!((api.status, api.kind), (status, kind));
        }
    }
}
