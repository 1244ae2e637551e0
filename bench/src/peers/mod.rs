//! Clusters of real processes on loopback, for benchmarks that compare ha with its peers.
//!
//! ```text
//!   benchmark ──spawn──▶ target/release/bot ×N   (gossip UDP+TCP, admin HTTP)
//!             ──spawn──▶ etcd ×3                 (client HTTP, peer HTTP)
//!             ◀─HTTP(S)─ GET /v1/health, POST /v3/maintenance/status (leader discovery)
//!             ◀─/proc─── VmRSS, utime+stime       (resources)
//! ```
//!
//! Every child is owned by a [`ProcessGuard`] whose `Drop` sends SIGKILL and reaps it, so no
//! exit path (error, panic, early return) leaves a process behind. Every wait is bounded by a
//! deadline. Data directories live in a temporary directory removed on drop.
//!
//! ```no_run
//! # async fn example() -> Result<(), ha_bench::peers::PeerError> {
//! use std::time::Duration;
//! use ha_bench::peers::{BotCluster, BotClusterOptions};
//! let mut cluster = BotCluster::start(BotClusterOptions::new(3))?;
//! let leader = cluster.wait_for_leader(Duration::from_secs(10)).await?;
//! println!("leader n{} at {}", leader + 1, cluster.http_addr(leader));
//! cluster.kill(leader)?;
//! # Ok(()) }
//! ```

mod bot_cluster;
mod bot_security;
mod etcd_cluster;
mod etcd_tls;
mod peer_error;
mod port_picker;
mod proc_stats;
mod process_guard;

pub use bot_cluster::{BOT_NODES_MAX, BotCluster, BotClusterOptions, default_bot_executable};
pub use bot_security::{BENCH_TOKEN_NAME, BotSecurity};
pub use etcd_cluster::{ETCD_MEMBERS_MAX, EtcdCluster, EtcdClusterOptions, find_on_path};
pub use etcd_tls::EtcdTls;
pub use peer_error::PeerError;
pub use port_picker::PortPicker;
pub use proc_stats::{clock_ticks_per_second, cpu_time, rss_bytes};
pub use process_guard::ProcessGuard;

/// Most time one HTTP probe of a member may take during leader discovery.
pub(crate) const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// Pause between two rounds of leader discovery.
pub(crate) const PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);

/// A reqwest client for probes: no proxy (loopback only), bounded time per request; with
/// `root`, HTTPS trusting that CA only; with `identity`, presenting that client certificate.
pub(crate) fn probe_client(
    root: Option<&reqwest::Certificate>,
    identity: Option<&reqwest::Identity>,
) -> Result<reqwest::Client, PeerError> {
    let builder = reqwest::Client::builder().no_proxy().timeout(PROBE_TIMEOUT);
    let builder = match root {
        Some(root) => builder
            .tls_built_in_root_certs(false)
            .add_root_certificate(root.clone()),
        None => builder,
    };
    let builder = match identity {
        Some(identity) => builder.identity(identity.clone()),
        None => builder,
    };
    builder
        .build()
        .map_err(|error| PeerError::Http(error.to_string()))
}
