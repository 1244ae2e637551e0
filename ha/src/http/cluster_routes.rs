//! `/v1/health`, `/v1/cluster`, `/v1/metrics` (with the event journal's figures), `/v1/failover/history` and `POST /v1/failover`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use ha_core::{NodeId, StateMachine};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState};

/// 200 when this node is in a quorum and not unhealthy, else 503; the body either way.
pub(crate) async fn health<S: StateMachine>(
    State(state): State<ApiState<S>>,
) -> Result<Response, ApiError> {
    let report = state.node()?.health().await?;
    let status = if report.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((status, Json(report)).into_response())
}

pub(crate) async fn cluster<S: StateMachine>(
    State(state): State<ApiState<S>>,
) -> Result<Response, ApiError> {
    Ok(Json(state.node()?.cluster().await?).into_response())
}

pub(crate) async fn metrics<S: StateMachine>(
    State(state): State<ApiState<S>>,
) -> Result<Response, ApiError> {
    let node = state.node()?;
    let mut text = node.metrics_text().await?;
    // Issue 16: the event journal's figures.
    text.push_str(&node.event_journal().metrics_text());
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

pub(crate) async fn failover_history<S: StateMachine>(
    State(state): State<ApiState<S>>,
) -> Result<Response, ApiError> {
    Ok(Json(state.node()?.failover_history().await?).into_response())
}

/// The body of `POST /v1/failover`: `{"target": "<node id>"}` or `{}` (or nothing).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FailoverRequest {
    #[serde(default)]
    target: Option<String>,
}

#[derive(Serialize)]
struct FailoverAnswer {
    from: NodeId,
    to: NodeId,
    leader: Option<NodeId>,
    term: u64,
}

/// Hand leadership to the target (or the best voter). Answers once this node has stepped
/// down: 200 `{from, to, leader, term}`; 409 when this node does not lead (with the leader)
/// or the target cannot lead; 404 for a target that is not a member; 503 without a leader.
pub(crate) async fn failover<S: StateMachine>(
    State(state): State<ApiState<S>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = super::kv_routes::body_bytes(body)?;
    let request: FailoverRequest = if body.iter().all(u8::is_ascii_whitespace) {
        FailoverRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|error| {
            ApiError::bad_request(format!(
                "the body must be {{\"target\": \"<node id>\"}} or {{}}: {error}"
            ))
        })?
    };
    let node = state.node()?;
    let target = match request.target {
        None => None,
        Some(text) => {
            let target = NodeId::new(&text)
                .map_err(|error| ApiError::bad_request(format!("target: {error}")))?;
            let status = node.status().await?;
            if !status.membership.contains(&target) {
                return Err(ApiError::not_found(format!(
                    "{target} is not a member of the replicated configuration"
                )));
            }
            Some(target)
        }
    };
    let to = node.transfer_leadership(target).await?;
    let role = node.role();
    Ok(Json(FailoverAnswer {
        from: node.id().clone(),
        to,
        leader: role.leader,
        term: role.term.0,
    })
    .into_response())
}
