//! `GET`, `PUT` and `DELETE /v1/kv/<key>`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::FromRequestParts;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use ha_core::{Consistency, StateMachine};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::{ApiError, ApiState};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReadParams {
    consistency: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WriteParams {
    consistency: Option<String>,
    cas: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeleteParams {
    cas: Option<u64>,
}

#[derive(Serialize)]
struct ValueAnswer {
    value: String,
    version: u64,
}

#[derive(Serialize)]
struct VersionAnswer {
    version: u64,
}

#[derive(Serialize)]
struct DeletedAnswer {
    deleted: bool,
    version: u64,
}

/// A query string, or 400 with what is wrong (unknown parameters included: a mistyped `cas`
/// must never turn a compare-and-swap into a blind write).
pub(crate) fn params<T>(params: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    params
        .map(|Query(params)| params)
        .map_err(|rejection| ApiError::bad_request(rejection.body_text()))
}

/// The key or lock name in the path, or 400 with what is wrong (for example percent-encoded
/// bytes that are not UTF-8), as the JSON error body like every other refusal.
pub(crate) fn path_text(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(text)| text)
        .map_err(|rejection| ApiError::bad_request(rejection.body_text()))
}

/// The request body, or its refusal as the JSON error body: 413 `payload_too_large` beyond
/// the body limit, 400 when it could not be read.
pub(crate) fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        let status = rejection.status();
        let kind = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "bad_request"
        };
        ApiError::new(status, kind, rejection.body_text())
    })
}

/// `consistency=strong|quorum|eventual`, QUORUM when absent.
fn consistency(text: Option<&str>) -> Result<Consistency, ApiError> {
    match text {
        None => Ok(Consistency::Quorum),
        Some(text) => text
            .parse()
            .map_err(|error: ha_core::UnknownConsistency| ApiError::bad_request(error.to_string())),
    }
}

pub(crate) async fn get_key<S: StateMachine>(
    State(state): State<ApiState<S>>,
    key: Result<Path<String>, PathRejection>,
    query: Result<Query<ReadParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let key = path_text(key)?;
    let params = params(query)?;
    let consistency = consistency(params.consistency.as_deref())?;
    let node = state.data_node()?;
    let client = node.http_kv_client().await;
    let found = client
        .get(&key, consistency)
        .await
        .map_err(|error| ApiError::from(error).for_read())?;
    let Some(found) = found else {
        return Err(ApiError::not_found(format!("no key {key:?}")));
    };
    let value = String::from_utf8(found.value).map_err(|_| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_utf8",
            format!("the value of {key:?} is not UTF-8 text; read it with the Rust API"),
        )
    })?;
    Ok(Json(ValueAnswer {
        value,
        version: found.version,
    })
    .into_response())
}

pub(crate) async fn put_key<S: StateMachine>(
    State(state): State<ApiState<S>>,
    headers: TraceHeaders,
    key: Result<Path<String>, PathRejection>,
    query: Result<Query<WriteParams>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let key = path_text(key)?;
    let body = body_bytes(body)?;
    let params = params(query)?;
    let consistency = consistency(params.consistency.as_deref())?;
    if params.cas.is_some() && consistency == Consistency::Eventual {
        // An EVENTUAL write is answered when appended, before the compare runs: its answer
        // could not say whether the compare held.
        return Err(ApiError::bad_request(
            "cas needs consistency=quorum or strong: an EVENTUAL answer comes before the compare",
        ));
    }
    let value = std::str::from_utf8(&body)
        .map_err(|error| ApiError::bad_request(format!("the body must be UTF-8 text: {error}")))?;
    let node = state.data_node()?;
    let client = node.http_kv_client().await;
    let version = client
        .put_checked(key, value, params.cas, consistency)
        .instrument(write_span(node.id(), "PUT /v1/kv", &headers))
        .await?;
    Ok(Json(VersionAnswer { version }).into_response())
}

pub(crate) async fn delete_key<S: StateMachine>(
    State(state): State<ApiState<S>>,
    headers: TraceHeaders,
    key: Result<Path<String>, PathRejection>,
    query: Result<Query<DeleteParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let key = path_text(key)?;
    let params = params(query)?;
    let node = state.data_node()?;
    let client = node.http_kv_client().await;
    let version = client
        .delete(key, params.cas)
        .instrument(write_span(node.id(), "DELETE /v1/kv", &headers))
        .await?;
    Ok(Json(DeletedAnswer {
        deleted: true,
        version,
    })
    .into_response())
}

/// The request headers a write's trace span reads (issue 16), kept only with the `otel`
/// feature. Without it nothing is copied: axum's `HeaderMap` extractor clones every header of
/// every write, a cost per request that bought nothing there (issue 17).
pub(crate) struct TraceHeaders {
    #[cfg(feature = "otel")]
    headers: axum::http::HeaderMap,
}

impl<S: Send + Sync> FromRequestParts<S> for TraceHeaders {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        #[cfg(feature = "otel")]
        {
            Ok(Self {
                headers: parts.headers.clone(),
            })
        }
        #[cfg(not(feature = "otel"))]
        {
            let _ = parts;
            Ok(Self {})
        }
    }
}

/// The `ha.http.write` span of a write (issue 16): with the `otel` feature a span under the
/// caller's `traceparent` header, whose context the write carries to the leader; without it
/// no span at all.
fn write_span(
    node: &ha_core::NodeId,
    route: &'static str,
    headers: &TraceHeaders,
) -> tracing::Span {
    #[cfg(feature = "otel")]
    {
        crate::telemetry::http_write_span(node, route, &headers.headers)
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = (node, route, headers);
        tracing::Span::none()
    }
}
