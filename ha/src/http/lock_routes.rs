//! `POST` and `DELETE /v1/lock/<name>`.
//!
//! An HTTP client cannot renew a lease, so a lock taken here lasts until it is released with
//! its token or until its TTL runs out, whichever comes first. Each acquire gets its own
//! session, so two HTTP clients never pass for one holder.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use ha_core::StateMachine;
use ha_lock::{LEASE_TTL_MIN, LockClient};
use serde::{Deserialize, Serialize};

use super::kv_routes::{params, path_text};
use super::{ApiError, ApiState};

/// Longest lease an HTTP client may take.
pub const HTTP_LOCK_TTL_MS_MAX: u64 = 3_600_000;
/// Longest an HTTP client may wait for a lock.
pub const HTTP_LOCK_WAIT_MS_MAX: u64 = 60_000;
const HTTP_LOCK_TTL_MS_DEFAULT: u64 = 10_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AcquireParams {
    ttl_ms: Option<u64>,
    wait_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReleaseParams {
    token: Option<u64>,
}

#[derive(Serialize)]
struct Granted {
    token: u64,
    lease: u64,
    ttl_ms: u64,
}

#[derive(Serialize)]
struct Released {
    released: bool,
}

/// Acquire `name` under a new lease of `ttl_ms` (default 10 s), waiting up to `wait_ms`
/// (default 0: fail at once when held). 200 `{token, lease, ttl_ms}`; 409 when not granted in
/// time or waiting would deadlock.
pub(crate) async fn acquire<S: StateMachine>(
    State(state): State<ApiState<S>>,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<AcquireParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let name = path_text(name)?;
    let params = params(query)?;
    let ttl_ms = params.ttl_ms.unwrap_or(HTTP_LOCK_TTL_MS_DEFAULT);
    let ttl_min_ms = LEASE_TTL_MIN.as_millis() as u64;
    if !(ttl_min_ms..=HTTP_LOCK_TTL_MS_MAX).contains(&ttl_ms) {
        return Err(ApiError::bad_request(format!(
            "ttl_ms must be {ttl_min_ms} to {HTTP_LOCK_TTL_MS_MAX}"
        )));
    }
    let wait_ms = params.wait_ms.unwrap_or(0);
    if wait_ms > HTTP_LOCK_WAIT_MS_MAX {
        return Err(ApiError::bad_request(format!(
            "wait_ms must be at most {HTTP_LOCK_WAIT_MS_MAX}"
        )));
    }
    let node = state.node()?;
    // A node cut off from the majority answers 503 `no_quorum` at once (fail_fast), so the
    // HTTP client can try another node; the lease is not renewed over HTTP anyway.
    let replica = &node.shared.replica;
    let client = LockClient::with_renewal_client(replica.client().fail_fast(), replica.client());
    let ttl = Duration::from_millis(ttl_ms);
    let guard = if wait_ms == 0 {
        client.try_acquire(name, ttl).await?
    } else {
        client
            .acquire(name, ttl, Duration::from_millis(wait_ms))
            .await?
    };
    let (token, lease) = guard.detach();
    Ok(Json(Granted {
        token,
        lease,
        ttl_ms,
    })
    .into_response())
}

/// Release `name` if `token` holds it: 200, or 409 when it does not (released, expired or
/// passed on).
pub(crate) async fn release<S: StateMachine>(
    State(state): State<ApiState<S>>,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<ReleaseParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let name = path_text(name)?;
    let params = params(query)?;
    let token = params
        .token
        .ok_or_else(|| ApiError::bad_request("token=N is required"))?;
    let node = state.node()?;
    let client = node.http_kv_client().await;
    client.release(&name, token).await?;
    Ok(Json(Released { released: true }).into_response())
}
