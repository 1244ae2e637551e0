//! `GET /v1/members`, `POST /v1/members` and `DELETE /v1/members/<id>` (role `admin` when
//! the node has tokens): the membership API of [`Node`](crate::Node) over HTTP.
//!
//! Answers: `GET` 200 `{"voters":[{"id","addr"}],"learners":[...],"witnesses":[]}`.
//! `POST` with `{"id","addr","voter"}` (`addr` the node's replication address, optional;
//! `voter` false when absent): 200 `{"id","state","voter","index","promotion_pending"}`
//! once added (and promoted, with `voter`), 202 when the promotion is still pending at the
//! request timeout. `DELETE`: 200 `{"id","index","committed"}`, 202 when this node did not
//! see the removal commit in time. A refused change: 409
//! `{"error":"membership_refused","reason":"<code>","message":"...","leader":null}` (404
//! with reason `not_a_member` for a node that is not a member); nothing changed. Any node
//! can be asked: followers forward to the leader.

use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ha_core::{NodeId, StateMachine};
use ha_replicate::engine::MembershipRefusal;
use ha_replicate::replica::ClientError;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState};
use crate::error::NodeError;

/// The body of `POST /v1/members`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddRequest {
    id: String,
    #[serde(default)]
    addr: Option<SocketAddr>,
    #[serde(default)]
    voter: bool,
}

/// The 409 (or 404) body of a refused change.
#[derive(Serialize)]
struct RefusalBody {
    error: &'static str,
    reason: &'static str,
    message: String,
    leader: Option<String>,
}

pub(crate) async fn list<S: StateMachine>(
    State(state): State<ApiState<S>>,
) -> Result<Response, ApiError> {
    Ok(Json(state.node()?.member_list().await?).into_response())
}

pub(crate) async fn add<S: StateMachine>(
    State(state): State<ApiState<S>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = super::kv_routes::body_bytes(body)?;
    let request: AddRequest = serde_json::from_slice(&body).map_err(|error| {
        ApiError::bad_request(format!(
            "the body must be {{\"id\": \"<node id>\", \"addr\": \"<host:port>\", \
             \"voter\": true|false}}: {error}"
        ))
    })?;
    let id =
        NodeId::new(&request.id).map_err(|error| ApiError::bad_request(format!("id: {error}")))?;
    let node = state.node()?;
    match node.add_member(id, request.addr, request.voter).await {
        Ok(added) => {
            let status = if added.promotion_pending {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            };
            Ok((status, Json(added)).into_response())
        }
        Err(error) => refusal_or(error),
    }
}

pub(crate) async fn remove<S: StateMachine>(
    State(state): State<ApiState<S>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = NodeId::new(&id).map_err(|error| ApiError::bad_request(format!("id: {error}")))?;
    let node = state.node()?;
    match node.remove_member(id).await {
        Ok(removed) => {
            let status = if removed.committed {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            Ok((status, Json(removed)).into_response())
        }
        Err(error) => refusal_or(error),
    }
}

/// A refusal becomes its own answer (409, or 404 for `not_a_member`, with the reason code);
/// anything else the usual error answer.
fn refusal_or(error: NodeError) -> Result<Response, ApiError> {
    match error {
        NodeError::Replication(ClientError::MembershipRefused(refusal)) => {
            let status = match refusal {
                MembershipRefusal::NotAMember { .. } => StatusCode::NOT_FOUND,
                _ => StatusCode::CONFLICT,
            };
            let body = RefusalBody {
                error: "membership_refused",
                reason: refusal.code(),
                message: refusal.to_string(),
                leader: None,
            };
            Ok((status, Json(body)).into_response())
        }
        other => Err(other.into()),
    }
}
