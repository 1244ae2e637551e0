//! `inventory`: one instance of the example inventory service (see the crate docs).
//!
//! ```text
//! inventory --id n1 --bind 127.0.0.1:7201 --http 127.0.0.1:8201 --seeds 127.0.0.1:7202,127.0.0.1:7203 --data-dir /tmp/inv/n1
//! ```
//! Three such instances (n1, n2, n3 with their own ports) form a cluster; `curl -X POST
//! 'http://127.0.0.1:8201/stock/bolts?delta=10'`, `curl http://127.0.0.1:8202/stock/bolts`,
//! `curl -N http://127.0.0.1:8203/changes`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ha::{Config, NodeId};
use ha_example_inventory::Inventory;

/// One instance of the inventory service.
#[derive(Parser)]
struct Args {
    /// This node's id.
    #[arg(long)]
    id: String,
    /// Gossip and replication address.
    #[arg(long)]
    bind: SocketAddr,
    /// The other instances' `--bind` addresses.
    #[arg(long, value_delimiter = ',')]
    seeds: Vec<SocketAddr>,
    /// Where the service's own API listens.
    #[arg(long)]
    http: SocketAddr,
    /// Where the node keeps its log (memory only without it: not for real use).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let id = match NodeId::new(&args.id) {
        Ok(id) => id,
        Err(failure) => {
            eprintln!("--id: {failure}");
            return ExitCode::from(2);
        }
    };
    let mut config = if args.seeds.is_empty() {
        Config::single(id, args.bind)
    } else {
        Config::full_ha(id, args.bind, args.seeds)
    };
    config.data_dir = args.data_dir;
    let service = match Inventory::start(config, args.http).await {
        Ok(service) => service,
        Err(failure) => {
            eprintln!("{failure}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("inventory API on http://{}", service.http_addr());
    if let Err(failure) = tokio::signal::ctrl_c().await {
        eprintln!("waiting for Ctrl-C failed: {failure}");
    }
    service.shutdown().await;
    ExitCode::SUCCESS
}
