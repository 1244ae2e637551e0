//! The admin HTTP API (contract: docs/ARCHITECTURE.md, "Admin HTTP contract"): health,
//! cluster table, metrics, failover, KV and locks, all JSON (metrics in the Prometheus text format). Served by the node on
//! `config.http_addr`, or mounted by the host in its own server with
//! [`Node::http_router`](crate::Node::http_router).
//!
//! Handlers hold the node weakly: a router that outlives its node answers 503.

mod api_error;
mod cluster_routes;
mod kv_routes;
mod lock_routes;

use std::sync::Weak;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use ha_core::StateMachine;
use ha_lock::VALUE_BYTES_MAX;

pub use api_error::ApiError;

use crate::error::NodeError;
use crate::node::{Node, Shared};

/// What every handler gets: the node, held weakly.
pub(crate) struct ApiState<S: StateMachine> {
    node: Weak<Shared<S>>,
}

impl<S: StateMachine> Clone for ApiState<S> {
    fn clone(&self) -> Self {
        Self {
            node: Weak::clone(&self.node),
        }
    }
}

impl<S: StateMachine> ApiState<S> {
    /// The node, or 503 once it is gone.
    pub(crate) fn node(&self) -> Result<Node<S>, ApiError> {
        self.node
            .upgrade()
            .map(Node::from_shared)
            .ok_or_else(ApiError::stopped)
    }
}

impl<S: StateMachine> Node<S> {
    /// The admin API as an axum router, to mount in the host's own server (for example with
    /// `Router::merge`). Paths and bodies are the contract in docs/ARCHITECTURE.md ("Admin
    /// HTTP contract").
    pub fn http_router(&self) -> Router {
        let state = ApiState {
            node: self.downgrade(),
        };
        Router::new()
            .route("/v1/health", get(cluster_routes::health::<S>))
            .route("/v1/cluster", get(cluster_routes::cluster::<S>))
            .route("/v1/metrics", get(cluster_routes::metrics::<S>))
            .route(
                "/v1/failover/history",
                get(cluster_routes::failover_history::<S>),
            )
            .route(
                "/v1/failover",
                axum::routing::post(cluster_routes::failover::<S>),
            )
            .route(
                "/v1/kv/{*key}",
                get(kv_routes::get_key::<S>)
                    .put(kv_routes::put_key::<S>)
                    .delete(kv_routes::delete_key::<S>),
            )
            .route(
                "/v1/lock/{*name}",
                axum::routing::post(lock_routes::acquire::<S>).delete(lock_routes::release::<S>),
            )
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            // A value is at most VALUE_BYTES_MAX; anything larger is refused before it is read.
            .layer(DefaultBodyLimit::max(VALUE_BYTES_MAX + 1024))
            .with_state(state)
    }

    /// Serve the admin API on `listener` until shutdown.
    pub(crate) fn serve_on(&self, listener: tokio::net::TcpListener) -> Result<(), NodeError> {
        let addr = listener.local_addr().map_err(|source| NodeError::Http {
            addr: self.config().http_addr.unwrap_or(self.config().bind_addr),
            source,
        })?;
        *self.shared.http_addr.lock() = Some(addr);
        let router = self.http_router();
        let mut stop = self.shared.stop_http.subscribe();
        let task = tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|stop| *stop).await;
            };
            if let Err(error) = axum::serve(listener, router)
                .with_graceful_shutdown(stopped)
                .await
            {
                tracing::error!(%error, "admin HTTP server failed");
            }
        });
        self.shared.tasks.lock().push(task);
        Ok(())
    }
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!(
        "no such path {}; the admin API serves /v1/health, /v1/cluster, /v1/metrics, \
         /v1/failover, /v1/failover/history, /v1/kv/<key> and /v1/lock/<name>",
        uri.path()
    ))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}
