//! The admin HTTP API (contract: docs/ARCHITECTURE.md, "Admin HTTP contract"): health,
//! cluster table, metrics, failover, KV and locks, all JSON (metrics in the Prometheus text format). Served by the node on
//! `config.http_addr`, or mounted by the host in its own server with
//! [`Node::http_router`](crate::Node::http_router).
//!
//! Handlers hold the node weakly: a router that outlives its node answers 503.
//!
//! Security (issue 13): when the node has admin tokens (`security.admin_token_file` or
//! [`NodeBuilder::admin_tokens`](crate::NodeBuilder::admin_tokens)), every route but
//! `GET /v1/health` and `GET /ui` (the dashboard page, which holds no data) needs
//! `Authorization: Bearer TOKEN` with a role that allows the call; the
//! route-to-role table, the 401/403 answers and the audit log (target `ha::audit`) are in
//! [`auth`]. `GET /v1/health` stays open so that load balancers can probe it without a
//! secret; it tells only whether the node is in a quorum and who leads. Without tokens the
//! router checks nothing (it still writes the audit log), so a host can mount it behind its
//! own auth layer; the node then serves it only on loopback unless `security.insecure`.
//! [`Node::protect`](crate::Node::protect) puts the same checks on a host's own routes.
//!
//! With TLS (`security.tls`) the node serves the API over HTTPS with the node's certificate
//! ([`https_listener`]: handshakes run concurrently, each bounded in time, their number
//! capped); [`Node::serve_router`](crate::Node::serve_router) serves a host's router the same
//! way.

mod api_error;
pub mod auth;
mod backup_routes;
mod cluster_routes;
mod event_routes;
pub mod https_listener;
mod kv_routes;
mod lock_routes;
mod member_routes;
mod snapshot_routes;
mod state_routes;
mod ui_routes;

use std::sync::Weak;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use ha_core::StateMachine;
use ha_lock::VALUE_BYTES_MAX;

pub use api_error::ApiError;
pub use https_listener::{HttpsCounters, HttpsLimits, HttpsListener};
pub use state_routes::{STATE_LIST_LIMIT_DEFAULT, STATE_LIST_LIMIT_MAX};
pub use ui_routes::DASHBOARD_HTML;

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

    /// The node, for a route that needs its replicated state (KV, locks, snapshots): 503
    /// `witness` on a witness (issue 15), which holds none, with the leader to ask instead.
    pub(crate) fn data_node(&self) -> Result<Node<S>, ApiError> {
        let node = self.node()?;
        if node.is_witness() {
            let mut refusal = ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "witness",
                format!(
                    "{} is a witness: it holds no state (no keys, locks, snapshots or shared state); ask a \
                     data node",
                    node.id()
                ),
            );
            refusal.leader = node.role().leader;
            return Err(refusal);
        }
        Ok(node)
    }
}

impl<S: StateMachine> Node<S> {
    /// The admin API as an axum router, to mount in the host's own server (for example with
    /// `Router::merge`). Paths and bodies are the contract in docs/ARCHITECTURE.md ("Admin
    /// HTTP contract"). When the node has admin tokens the router checks them (see
    /// [`auth`](crate::http::auth)); without, it checks nothing and a host can put its own auth
    /// layer in front.
    pub fn http_router(&self) -> Router {
        let state = ApiState {
            node: self.downgrade(),
        };
        let router = Router::new()
            .route("/v1/health", get(cluster_routes::health::<S>))
            // The live dashboard (issue 16): a static page, open like /v1/health.
            .route("/ui", get(ui_routes::dashboard))
            .route("/v1/cluster", get(cluster_routes::cluster::<S>))
            .route("/v1/metrics", get(cluster_routes::metrics::<S>))
            .route("/v1/events", get(event_routes::events::<S>))
            .route(
                "/v1/failover/history",
                get(cluster_routes::failover_history::<S>),
            )
            .route(
                "/v1/failover",
                axum::routing::post(cluster_routes::failover::<S>),
            )
            .route("/v1/snapshot", get(snapshot_routes::snapshot::<S>))
            .route("/v1/backups", get(backup_routes::backups::<S>))
            .route(
                "/v1/members",
                get(member_routes::list::<S>).post(member_routes::add::<S>),
            )
            .route(
                "/v1/members/{id}",
                axum::routing::delete(member_routes::remove::<S>),
            )
            .route(
                "/v1/kv/{*key}",
                get(kv_routes::get_key::<S>)
                    .put(kv_routes::put_key::<S>)
                    .delete(kv_routes::delete_key::<S>),
            )
            // The multi-master shared map (issue 15): answered locally, no leader needed.
            .route("/v1/state", get(state_routes::list::<S>))
            .route(
                "/v1/state/{*key}",
                get(state_routes::get_key::<S>)
                    .put(state_routes::put_key::<S>)
                    .delete(state_routes::delete_key::<S>)
                    .post(state_routes::increment_key::<S>),
            )
            .route(
                "/v1/lock/{*name}",
                axum::routing::post(lock_routes::acquire::<S>).delete(lock_routes::release::<S>),
            )
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            // A value is at most VALUE_BYTES_MAX; anything larger is refused before it is read.
            .layer(DefaultBodyLimit::max(VALUE_BYTES_MAX + 1024))
            .with_state(state);
        self.protect(router)
    }

    /// `router` with the node's admin API checks: bearer tokens and roles by method and path
    /// (the table in [`auth`](crate::http::auth)) when the node has admin tokens, and the
    /// audit log of mutating calls either way. For a host's own routes served beside the API:
    /// protect them before merging them with [`http_router`](Self::http_router), which has
    /// the checks already (protecting the merged router would check and audit twice).
    pub fn protect(&self, router: Router) -> Router {
        let auth = auth::Auth::new(self.shared.security.admin_tokens.clone());
        router.layer(auth::AuthLayer::new(auth))
    }

    /// Serve `router` on `listener` until the node shuts down: over HTTPS with the node's
    /// certificate when it has one (handshakes concurrent, each within
    /// [`HTTPS_HANDSHAKE_TIMEOUT`](https_listener::HTTPS_HANDSHAKE_TIMEOUT), connections
    /// capped: [`HttpsLimits`]), else plain HTTP. Returns once the server task is started.
    /// Pass a router made with [`http_router`](Self::http_router) or
    /// [`protect`](Self::protect) to keep the node's checks.
    ///
    /// # Errors
    /// [`NodeError::Http`] when the listener's address cannot be read.
    pub fn serve_router(
        &self,
        listener: tokio::net::TcpListener,
        router: Router,
    ) -> Result<(), NodeError> {
        let addr = listener.local_addr().map_err(|source| NodeError::Http {
            addr: self.config().http_addr.unwrap_or(self.config().bind_addr),
            source,
        })?;
        let mut stop = self.shared.stop_http.subscribe();
        let stopped = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        let task = match self.shared.security.https.clone() {
            Some(config) => {
                let listener = HttpsListener::new(listener, config, HttpsLimits::default())
                    .map_err(|source| NodeError::Http { addr, source })?;
                self.shared.https_counters.lock().push(listener.counters());
                tokio::spawn(async move {
                    if let Err(error) = axum::serve(listener, router)
                        .with_graceful_shutdown(stopped)
                        .await
                    {
                        tracing::error!(%error, %addr, "HTTPS server failed");
                    }
                })
            }
            None => tokio::spawn(async move {
                if let Err(error) = axum::serve(listener, router)
                    .with_graceful_shutdown(stopped)
                    .await
                {
                    tracing::error!(%error, %addr, "HTTP server failed");
                }
            }),
        };
        self.shared.tasks.lock().push(task);
        Ok(())
    }

    /// Serve the admin API on `listener` until shutdown.
    pub(crate) fn serve_on(&self, listener: tokio::net::TcpListener) -> Result<(), NodeError> {
        let addr = listener.local_addr().map_err(|source| NodeError::Http {
            addr: self.config().http_addr.unwrap_or(self.config().bind_addr),
            source,
        })?;
        *self.shared.http_addr.lock() = Some(addr);
        self.serve_router(listener, self.http_router())
    }
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!(
        "no such path {}; the admin API serves /v1/health, /v1/cluster, /v1/metrics, /v1/events, \
         /v1/failover, /v1/failover/history, /v1/snapshot, /v1/members, /v1/kv/<key>, \
         /v1/lock/<name> and /v1/state/<key>",
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
