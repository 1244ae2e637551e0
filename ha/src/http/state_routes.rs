//! The multi-master shared map over HTTP (issue 15): `GET`, `PUT`, `DELETE /v1/state/<key>`,
//! `POST /v1/state/<key>/incr?by=N` and `GET /v1/state?prefix=P&limit=N`.
//!
//! Every call is answered by this node alone: no leader, no quorum, so the minority side of a
//! partition keeps reading and writing. Answers:
//!
//! | call | answer |
//! |------|--------|
//! | `PUT /v1/state/<key>` (body: the value, any bytes) | 200 `{"stamp","node"}` |
//! | `GET /v1/state/<key>` | 200 `{"value","stamp","node"}`: `value` is the text of a register, a JSON number for a counter; a register that is not UTF-8 comes as `"value_base64"` instead. 404 when absent or deleted |
//! | `DELETE /v1/state/<key>` | 200 `{"stamp","node"}` (the tombstone's), 404 when absent |
//! | `POST /v1/state/<key>/incr?by=N` | 200 `{"value": N}`, the counter on this node after the increment (`by` defaults to 1, may be negative) |
//! | `GET /v1/state?prefix=P&limit=N` | 200 `{"entries":[{"key","value","stamp","node"}],"truncated":bool}`, key order, `limit` 1 to [`STATE_LIST_LIMIT_MAX`] (default [`STATE_LIST_LIMIT_DEFAULT`]) |
//!
//! `stamp` is the write's hybrid logical clock reading as sortable text
//! (`"{wall_ms:013}.{logical:05}"`); `node` the writer. Refusals, each known not applied: 400
//! `bad_request` (a bad key or `by`), 409 `limit` with `"limit": "shared_state.<name>"`, 409
//! `not_a_counter`, 409 `counter_overflow`. 503 `storage` when the node's shared state log
//! failed: not acknowledged (the value may be in this node's memory and spread; after a
//! failed sync, every write is refused until the node restarts).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use ha_core::StateMachine;
use ha_gossip::shared_state::{Stamp, StateData, StateError, StateValue};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::kv_routes::{body_bytes, params, path_text};
use super::{ApiError, ApiState};

/// Entries a listing returns when `limit` is not given.
pub const STATE_LIST_LIMIT_DEFAULT: usize = 100;
/// Most entries one listing returns (each up to a 4 KiB value).
pub const STATE_LIST_LIMIT_MAX: usize = 1000;
/// The path suffix of an increment: `POST /v1/state/<key>/incr`.
const INCREMENT_SUFFIX: &str = "/incr";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoParams {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IncrementParams {
    by: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    prefix: Option<String>,
    limit: Option<usize>,
}

/// `{"stamp","node"}` of a write.
fn stamp_answer(stamp: &Stamp) -> Response {
    Json(json!({ "stamp": stamp.display(), "node": stamp.node.as_str() })).into_response()
}

/// `value` (or `value_base64`), `stamp` and `node` of a read, into `object`.
fn describe(value: &StateValue, object: &mut Map<String, Value>) {
    match &value.data {
        StateData::Counter(total) => {
            object.insert("value".into(), json!(total));
        }
        StateData::Bytes(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => {
                object.insert("value".into(), json!(text));
            }
            Err(_) => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
                object.insert("value_base64".into(), json!(encoded));
            }
        },
    }
    object.insert("stamp".into(), json!(value.stamp.display()));
    object.insert("node".into(), json!(value.stamp.node.as_str()));
}

/// A refusal of the shared map as the API's error answer.
pub(crate) fn state_error(error: StateError) -> Response {
    let message = error.to_string();
    if let Some(limit) = error.limit_name() {
        // Nothing changed; the body names the limit for programs.
        return (
            StatusCode::CONFLICT,
            Json(json!({
                "error": "limit",
                "limit": limit,
                "message": format!("{message}: not applied"),
                "leader": null,
            })),
        )
            .into_response();
    }
    let answer = match error {
        StateError::InvalidKey { .. } => ApiError::bad_request(format!("{message}: not applied")),
        StateError::NotACounter { .. } => ApiError::new(
            StatusCode::CONFLICT,
            "not_a_counter",
            format!("{message}: not applied"),
        ),
        StateError::CounterOverflow => ApiError::new(
            StatusCode::CONFLICT,
            "counter_overflow",
            format!("{message}: not applied"),
        ),
        StateError::Storage(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage",
            format!(
                "{message}: not acknowledged (it may be in this node's memory and spread); \
                 write on another node"
            ),
        ),
        _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message),
    };
    answer.into_response()
}

pub(crate) async fn get_key<S: StateMachine>(
    State(state): State<ApiState<S>>,
    key: Result<Path<String>, PathRejection>,
    query: Result<Query<NoParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let key = path_text(key)?;
    params(query)?;
    let node = state.data_node()?;
    let Some(value) = node.shared_state().get(&key) else {
        return Err(ApiError::not_found(format!(
            "no key {key:?} in the shared state"
        )));
    };
    let mut object = Map::new();
    describe(&value, &mut object);
    Ok(Json(Value::Object(object)).into_response())
}

pub(crate) async fn put_key<S: StateMachine>(
    State(state): State<ApiState<S>>,
    key: Result<Path<String>, PathRejection>,
    query: Result<Query<NoParams>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let key = path_text(key)?;
    let body = body_bytes(body)?;
    params(query)?;
    let node = state.data_node()?;
    Ok(match node.shared_state().put(&key, body.to_vec()).await {
        Ok(stamp) => stamp_answer(&stamp),
        Err(error) => state_error(error),
    })
}

pub(crate) async fn delete_key<S: StateMachine>(
    State(state): State<ApiState<S>>,
    key: Result<Path<String>, PathRejection>,
    query: Result<Query<NoParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let key = path_text(key)?;
    params(query)?;
    let node = state.data_node()?;
    Ok(match node.shared_state().delete(&key).await {
        Ok(Some(stamp)) => stamp_answer(&stamp),
        Ok(None) => {
            ApiError::not_found(format!("no key {key:?} in the shared state")).into_response()
        }
        Err(error) => state_error(error),
    })
}

/// `POST /v1/state/<key>/incr?by=N`. The path is matched as one wildcard, so the key is what
/// comes before the last `/incr`.
pub(crate) async fn increment_key<S: StateMachine>(
    State(state): State<ApiState<S>>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<IncrementParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let path = path_text(path)?;
    let params = params(query)?;
    let Some(key) = path.strip_suffix(INCREMENT_SUFFIX) else {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!(
                "POST is only for increments: POST /v1/state/{path}{INCREMENT_SUFFIX}?by=N; \
                 write a value with PUT"
            ),
        ));
    };
    let by = params.by.unwrap_or(1);
    let node = state.data_node()?;
    Ok(match node.shared_state().increment(key, by).await {
        Ok(value) => Json(json!({ "value": value })).into_response(),
        Err(error) => state_error(error),
    })
}

pub(crate) async fn list<S: StateMachine>(
    State(state): State<ApiState<S>>,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let params = params(query)?;
    let limit = params.limit.unwrap_or(STATE_LIST_LIMIT_DEFAULT);
    if !(1..=STATE_LIST_LIMIT_MAX).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be 1 to {STATE_LIST_LIMIT_MAX}"
        )));
    }
    let prefix = params.prefix.unwrap_or_default();
    let node = state.data_node()?;
    let (entries, truncated) = node.shared_state().list(&prefix, limit);
    let entries: Vec<Value> = entries
        .iter()
        .map(|(key, value)| {
            let mut object = Map::new();
            object.insert("key".into(), json!(key));
            describe(value, &mut object);
            Value::Object(object)
        })
        .collect();
    Ok(Json(json!({ "entries": entries, "truncated": truncated })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each refusal of the map: its status and kind, one line per case; every one of them
    /// says whether the write may have been applied.
    #[test]
    fn state_errors_map_to_documented_answers() {
        let cases = [
            (
                StateError::InvalidKey { reason: "x".into() },
                StatusCode::BAD_REQUEST,
                "bad_request",
            ),
            (
                StateError::ValueTooLarge { bytes: 9, max: 8 },
                StatusCode::CONFLICT,
                "limit",
            ),
            (
                StateError::TooManyKeys { max: 1 },
                StatusCode::CONFLICT,
                "limit",
            ),
            (
                StateError::TooManyTombstones { max: 1 },
                StatusCode::CONFLICT,
                "limit",
            ),
            (
                StateError::NotACounter { key: "k".into() },
                StatusCode::CONFLICT,
                "not_a_counter",
            ),
            (
                StateError::CounterOverflow,
                StatusCode::CONFLICT,
                "counter_overflow",
            ),
            (
                StateError::Storage("disk".into()),
                StatusCode::SERVICE_UNAVAILABLE,
                "storage",
            ),
        ];
        for (error, status, kind) in cases {
            let limit = error.limit_name();
            let response = state_error(error.clone());
            assert_eq!(response.status(), status, "{error:?}");
            let body = futures_body(response);
            assert_eq!(body["error"], json!(kind), "{error:?}");
            assert_eq!(body["limit"].as_str(), limit, "{error:?}");
            let message = body["message"].as_str().unwrap_or_default();
            assert!(
                message.contains("not applied") || message.contains("not acknowledged"),
                "{error:?}: {message}"
            );
        }
    }

    fn futures_body(response: Response) -> Value {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let bytes = runtime
            .block_on(axum::body::to_bytes(response.into_body(), 1 << 20))
            .expect("a body");
        serde_json::from_slice(&bytes).expect("JSON")
    }
}
