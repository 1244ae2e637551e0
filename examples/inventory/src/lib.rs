//! # An inventory service on ha
//!
//! How a service embeds `ha`: its state (stock levels) is a [`StateMachine`](ha::StateMachine)
//! ([`stock::Stock`]) replicated by a [`Node`]; it serves its own HTTP API ([`routes`]) beside
//! ha's admin API; it runs an exclusive job under a fenced lock and streams changes from a
//! watch. Run three of them (see `main.rs`, or `cargo run -p ha-example-inventory -- --help`)
//! and any instance answers: writes go to the leader, reads are linearizable, and killing the
//! leader's process moves leadership within a second.
//!
//! ```text
//!   HTTP client ──▶ routes (axum) ──▶ Node<Stock> ── propose/read ──▶ replicated log
//!                        │                 └── kv() ── alerts, audits, lock, watch
//!                        └── /changes ◀── Watch stream (woken as this replica applies)
//! ```
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use ha::{Config, NodeId};
//! let config = Config::single(NodeId::new("n1")?, "127.0.0.1:0".parse()?);
//! let service = ha_example_inventory::Inventory::start(config, "127.0.0.1:0".parse()?).await?;
//! println!("inventory API on http://{}", service.http_addr());
//! service.shutdown().await;
//! # Ok(()) }
//! ```

pub mod routes;
pub mod stock;

use std::net::SocketAddr;

use ha::{Config, Node, NodeError};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::routes::AppState;
use crate::stock::Stock;

/// Why the service did not start.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The node did not start.
    #[error("the ha node did not start: {0}")]
    Node(#[from] NodeError),
    /// The service's HTTP address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A running instance: an ha node and the service's HTTP server.
pub struct Inventory {
    node: Node<Stock>,
    http_addr: SocketAddr,
    server: JoinHandle<()>,
}

impl Inventory {
    /// Start the node with `config` and serve the service's API on `http_bind`.
    ///
    /// # Errors
    /// [`InventoryError`] when the node does not start or the address cannot be bound.
    pub async fn start(config: Config, http_bind: SocketAddr) -> Result<Self, InventoryError> {
        let node = Node::builder(config)
            .state_machine(Stock::default())
            .start()
            .await?;
        let listener =
            TcpListener::bind(http_bind)
                .await
                .map_err(|source| InventoryError::Listen {
                    addr: http_bind,
                    source,
                })?;
        let http_addr = listener
            .local_addr()
            .map_err(|source| InventoryError::Listen {
                addr: http_bind,
                source,
            })?;
        let app = routes::router(AppState::new(node.clone()));
        let server = tokio::spawn(async move {
            if let Err(failure) = axum::serve(listener, app).await {
                tracing::error!(%failure, "the inventory HTTP server stopped");
            }
        });
        Ok(Self {
            node,
            http_addr,
            server,
        })
    }

    /// The ha node.
    pub fn node(&self) -> &Node<Stock> {
        &self.node
    }

    /// Where the service's own API listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Stop serving, then shut the node down gracefully (hand leadership over, release
    /// locks, leave gossip).
    pub async fn shutdown(self) {
        self.server.abort();
        self.node.shutdown().await;
    }

    /// Stop at once, as a crash would (the cluster fails over): for tests and demos. The node
    /// stops when its last clone is dropped, so connections still open to this instance's
    /// API keep it running until they close.
    pub fn kill(self) {
        self.server.abort();
        drop(self.node);
    }
}
