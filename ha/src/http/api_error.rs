//! The admin API's error body: `{"error": "<kind>", "message": "...", "leader": "<id or null>"}`
//! with 4xx for bad requests, 409 for conflicts, 429 `limit` at a named limit, and 503 without a
//! quorum or leader.

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

impl From<ClientError> for ApiError {
    fn from(error: ClientError) -> Self {
        let unavailable = StatusCode::SERVICE_UNAVAILABLE;
        let message = error.to_string();
        match error {
            ClientError::NotLeader { leader } => {
                Self::new(unavailable, "no_leader", message).with_leader(leader)
            }
            ClientError::TransferInProgress => {
                Self::new(unavailable, "transfer_in_progress", message)
            }
            ClientError::Busy => Self::new(unavailable, "busy", message),
            ClientError::Timeout => Self::new(unavailable, "timeout", message),
            ClientError::LeadershipLost => Self::new(unavailable, "leadership_lost", message),
            ClientError::NotAppliedEverywhere { .. } => {
                Self::new(unavailable, "not_applied_everywhere", message)
            }
            ClientError::InvalidQuery(_) => Self::bad_request(message),
            ClientError::Stopped(_) => Self::new(unavailable, "stopped", message),
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
            LockError::Invalid { .. } => Self::bad_request(message),
            // A named limit of the lock table (DESIGN.md section 8): nothing changed.
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
