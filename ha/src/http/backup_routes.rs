//! `GET /v1/backups` (issue 14, item 2): the scheduled backups in this node's backup dir,
//! newest first, as `[{file, index, term, bytes, sha256, at_ms, verified}]` (`problem` added
//! for a file that does not verify), role `admin`. A node without a backup dir answers 409
//! `no_backup_dir` with the reason. See [`crate::backup_schedule`].

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ha_core::StateMachine;

use super::{ApiError, ApiState};

/// `GET /v1/backups`.
pub(crate) async fn backups<S: StateMachine>(
    State(state): State<ApiState<S>>,
) -> Result<Response, ApiError> {
    let node = state.node()?;
    match node.backups() {
        Some(files) => Ok(Json(files).into_response()),
        None => Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_backup_dir",
            "this node takes no scheduled backups: start it with a backup dir ([backup] dir, \
             bot --backup-dir DIR); GET /v1/snapshot takes one on demand",
        )),
    }
}
