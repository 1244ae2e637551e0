//! The bot's HTTP server: the admin API of `ha` (mounted, as a host would) plus
//! `GET /bot/journal?position=N&limit=M`, a page of the replicated journal read at QUORUM
//! (503 `witness` on a witness, which holds none).

use std::net::SocketAddr;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use ha::http::ApiError;
use ha::{Consistency, Node};
use ha_examples::journal::{Journal, JournalPage, JournalQuery, JournalQueryResponse};
use serde::Deserialize;

use crate::error::BotError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageParams {
    position: Option<usize>,
    limit: Option<usize>,
}

/// Bind `addr` and serve the admin API and the journal route until the node shuts down: over
/// HTTPS when the node has a certificate, with the node's token check on both (the journal is
/// a `GET`, so it needs a `read` token when tokens are configured).
///
/// # Errors
/// [`BotError::Bind`] when the address cannot be bound.
pub async fn serve(node: &Node<Journal>, addr: SocketAddr) -> Result<(), BotError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| BotError::Bind { addr, source })?;
    let journal = Router::new()
        .route("/bot/journal", get(journal_page))
        .with_state(node.clone());
    // Protected before the merge, so each call is checked (and audited) once.
    let router = node.http_router().merge(node.protect(journal));
    node.serve_router(listener, router)?;
    Ok(())
}

async fn journal_page(
    State(node): State<Node<Journal>>,
    params: Result<Query<PageParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<JournalPage>, ApiError> {
    let Query(params) = params.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    if node.is_witness() {
        // A witness holds no journal: say so, like ha's own data routes, and name the leader.
        let mut refusal = ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "witness",
            format!(
                "{} is a witness: it holds no journal; ask a data node",
                node.id()
            ),
        );
        refusal.leader = node.role().leader;
        return Err(refusal);
    }
    let query = JournalQuery::Entries {
        after_seq_position: params.position.unwrap_or(0),
        limit: params.limit.unwrap_or(1_000),
    };
    match node.read(query, Consistency::Quorum).await? {
        JournalQueryResponse::Entries(page) => Ok(Json(page)),
        other => Err(ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("unexpected answer {other:?}"),
        )),
    }
}
