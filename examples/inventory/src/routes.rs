//! The service's own HTTP API (not ha's admin API): stock levels, an audit run under a fenced
//! lock, and a stream of alerts and audits from a watch.
//!
//! | method and path            | what                                                       |
//! |----------------------------|------------------------------------------------------------|
//! | `GET /stock/{item}`        | `{"item","level"}`, a linearizable read                    |
//! | `POST /stock/{item}?delta=N` | add (or, negative, take) units: 200 `{"level"}`, 409 `{"error","level"}` |
//! | `POST /audit`              | under lock `inventory-audit`: count every item, record it under `/audits/<token>`; `{"token","items","units"}` |
//! | `GET /changes?after=V`     | newline-delimited JSON: every change under `/alerts/` and `/audits/` after version V, as it is applied here |
//!
//! When an item falls below [`LOW_STOCK`] the service writes `/alerts/<item>` (its level) in
//! ha's KV store, and deletes it when the item is restocked.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use ha::{Consistency, Kv, Locks, Node};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::stock::{Adjust, Adjusted, Refusal, Stock, StockAnswer, StockQuery, valid_item};

/// Below this level an item has an alert under `/alerts/<item>`.
pub const LOW_STOCK: u64 = 3;
/// The lock an audit runs under: one audit at a time across the cluster.
pub const AUDIT_LOCK: &str = "inventory-audit";
/// Most `/changes` streams open at once on one instance; more are refused with 429.
pub const CHANGE_STREAMS_MAX: usize = 32;
/// The prefixes `/changes` streams.
const WATCHED: [&str; 2] = ["/alerts/", "/audits/"];

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    node: Node<Stock>,
    /// Keys (alerts, audit records, watches) and the audit lock: two handles of one session.
    kv: Kv<Stock>,
    locks: Locks<Stock>,
    streams: Arc<Semaphore>,
}

impl AppState {
    /// The state for `node`'s routes.
    pub fn new(node: Node<Stock>) -> Self {
        let session = node.lock_session();
        Self {
            kv: session.kv(),
            locks: session.locks(),
            node,
            streams: Arc::new(Semaphore::new(CHANGE_STREAMS_MAX)),
        }
    }
}

/// The service's routes over `state`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/stock/{item}", get(read_level).post(adjust))
        .route("/audit", post(audit))
        .route("/changes", get(changes))
        .with_state(state)
}

/// An error answer: `status` with `{"error": kind, "message": ...}`.
fn error(status: StatusCode, kind: &str, message: impl ToString) -> Response {
    (
        status,
        Json(json!({ "error": kind, "message": message.to_string() })),
    )
        .into_response()
}

fn unavailable(message: impl ToString) -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
}

async fn read_level(State(state): State<AppState>, Path(item): Path<String>) -> Response {
    if !valid_item(&item) {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_item",
            "1 to 64 of [A-Za-z0-9_-]",
        );
    }
    match state
        .node
        .read(StockQuery::Item(item.clone()), Consistency::Strong)
        .await
    {
        Ok(StockAnswer::Level(level)) => {
            Json(json!({ "item": item, "level": level })).into_response()
        }
        Ok(other) => unavailable(format!("unexpected answer {other:?}")),
        Err(failure) => unavailable(failure),
    }
}

/// `?delta=N`.
#[derive(Deserialize)]
struct DeltaParams {
    delta: i64,
}

async fn adjust(
    State(state): State<AppState>,
    Path(item): Path<String>,
    Query(DeltaParams { delta }): Query<DeltaParams>,
) -> Response {
    if !valid_item(&item) {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_item",
            "1 to 64 of [A-Za-z0-9_-]",
        );
    }
    let command = Adjust {
        item: item.clone(),
        delta,
    };
    let level = match state.node.propose(command, Consistency::Quorum).await {
        Ok(outcome) => match outcome.response {
            Some(Adjusted::Level(level)) => level,
            Some(Adjusted::Refused { level, reason }) => {
                let kind = match reason {
                    Refusal::Insufficient => "insufficient",
                    Refusal::TooMany => "too_many",
                    Refusal::TooManyItems => "too_many_items",
                };
                return (
                    StatusCode::CONFLICT,
                    Json(json!({ "error": kind, "level": level })),
                )
                    .into_response();
            }
            None => return unavailable("a QUORUM write always has an answer"),
        },
        Err(failure) => return unavailable(failure),
    };
    // The alert follows the level. Written after the adjustment: a crash between the two
    // leaves the alert stale until the item's next adjustment, which a real service would
    // sweep; here it shows a KV write beside a state machine write.
    let key = format!("/alerts/{item}");
    let alert = if level < LOW_STOCK {
        state
            .kv
            .put(key, level.to_string(), Consistency::Quorum)
            .await
            .map(|_| ())
    } else {
        state.kv.delete(key, None).await.map(|_| ())
    };
    if let Err(failure) = alert {
        tracing::warn!(%item, %failure, "the low-stock alert was not updated");
    }
    Json(json!({ "item": item, "level": level })).into_response()
}

async fn audit(State(state): State<AppState>) -> Response {
    let guard = match state
        .locks
        .acquire(AUDIT_LOCK, Duration::from_secs(10), Duration::from_secs(5))
        .await
    {
        Ok(guard) => guard,
        Err(failure) => return unavailable(failure),
    };
    // The fencing token orders audits: a later holder's token is larger, so a record keyed
    // by it never overwrites a newer one even if this holder stalls past its lease.
    let token = guard.token();
    let result = async {
        let levels = match state.node.read(StockQuery::All, Consistency::Strong).await {
            Ok(StockAnswer::All(levels)) => levels,
            Ok(other) => return Err(unavailable(format!("unexpected answer {other:?}"))),
            Err(failure) => return Err(unavailable(failure)),
        };
        let units: u64 = levels.values().sum();
        let record = json!({ "token": token, "items": levels.len(), "units": units });
        state
            .kv
            .put(
                format!("/audits/{token:020}"),
                record.to_string(),
                Consistency::Quorum,
            )
            .await
            .map_err(unavailable)?;
        Ok(Json(record).into_response())
    }
    .await;
    if let Err(failure) = guard.release().await {
        // The lease ends by itself after its TTL; the next audit waits at most that long.
        tracing::warn!(%failure, "releasing the audit lock failed");
    }
    result.unwrap_or_else(|refusal| refusal)
}

/// `?after=V`.
#[derive(Deserialize)]
struct AfterParams {
    #[serde(default)]
    after: u64,
}

async fn changes(
    State(state): State<AppState>,
    Query(AfterParams { after }): Query<AfterParams>,
) -> Response {
    let Ok(permit) = Arc::clone(&state.streams).try_acquire_owned() else {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "limit",
            format!("at most {CHANGE_STREAMS_MAX} change streams at once"),
        );
    };
    // One watch per prefix, merged: each delivers its changes in version order.
    let watches = WATCHED.map(|prefix| state.kv.watch(prefix, after).into_stream().boxed());
    // An error ends the stream after one `{"error"}` line: the client reconnects with the
    // last version it saw (and re-reads on `compacted`).
    let lines = futures_util::stream::select_all(watches).scan(false, move |failed, change| {
        let _held = &permit; // the slot is freed when the client goes away
        if *failed {
            return std::future::ready(None);
        }
        let line = match change {
            Ok(change) => json!({
                "version": change.version,
                "key": change.key,
                "value": change.value.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
            }),
            Err(failure) => {
                *failed = true;
                json!({ "error": failure.to_string() })
            }
        };
        std::future::ready(Some(Ok::<_, std::convert::Infallible>(format!("{line}\n"))))
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response()
}
