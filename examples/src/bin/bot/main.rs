//! # bot
//!
//! The demo binary of `ha` (docs/ARCHITECTURE.md, "The bot's command line"): one node per
//! process, `bot demo` to run a
//! 3-node cluster on loopback and crash one, and `bot status` for the cluster table.
//!
//! ```text
//!   bot --id n1 --bind ADDR ...   node mode: ha::Node<Journal> on ADDR (UDP gossip + TCP RPC),
//!                                 admin HTTP on --http, EVENT {json} lines on stdout, logs on
//!                                 stderr; while leading, appends to the journal every 100 ms
//!   bot demo                      runs 3 × `bot --id nX ...` as children, SIGKILLs the leader,
//!                                 restarts it, prints the failover timeline and checks the
//!                                 journal for gaps and duplicates
//!   bot status --http ADDR        the cluster table from GET /v1/cluster (HTTPS with
//!       [--tls-ca FILE] [--token T] --tls-ca, a bearer token with --token/BOT_ADMIN_TOKEN)
//!   bot keygen [--out FILE]       a fresh cluster key (also a good admin token)
//!   bot certs init --dir DIR --cluster NAME --nodes n1,n2,n3 [--host ID=NAME_OR_IP]...
//!                                 a cluster CA and a certificate + key per node
//!   bot snapshot save --http ADDR FILE [--tls-ca FILE] [--token T]
//!                                 a verified backup of the replicated state (GET /v1/snapshot)
//!   bot snapshot inspect FILE [--cluster NAME]
//!   bot snapshot restore FILE --data-dir DIR [--cluster NAME] [--to-index N --wal-archive DIR]
//!                                 prepare an empty data dir from a verified backup
//!                                 a backup's header, and "verified: sha256 ok" or the reason
//! ```

// The doc comments of the command line are clap's `--help` text, read in a terminal, where
// `<id>` is the usual placeholder; rustdoc would read it as an HTML tag.
#![allow(rustdoc::invalid_html_tags)]

mod admin_client;
mod certs;
mod cli;
mod cluster;
mod demo;
mod demo_error;
mod error;
mod event;
mod fault_injection;
mod journal_routes;
mod journal_worker;
mod keygen;
mod members;
mod new_file;
mod node;
mod ports;
mod snapshot;
mod snapshot_restore;
mod status;
mod timeline;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use ha::core::MonotonicClock;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};
use crate::error::BotError;

/// The bot's allocator (issue 17): at 64 HTTP clients glibc's malloc and free were ~10-12% of
/// the leader's CPU (docs/ARCHITECTURE.md, "The HTTP write path"); mimalloc's per-thread free
/// lists make the many small, short-lived allocations of a request cheaper. The choice is the
/// binary's: the `ha` library sets no allocator, so hosts keep their own.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // The node's clock starts first, so event times count from the process start.
    let clock = MonotonicClock::new();
    let cli = Cli::parse();
    let telemetry = init_logging();
    let result = match &cli.command {
        Some(Command::Demo(args)) => demo::run(args),
        Some(Command::Status(args)) => status::run(args),
        Some(Command::Keygen(args)) => keygen::run(args),
        Some(Command::Certs(args)) => certs::run(args),
        Some(Command::Snapshot(args)) => snapshot::run(args),
        Some(Command::Members(args)) => members::run(args),
        None => match &cli.node {
            Some(args) => node::run(args, clock),
            // clap requires the node options when no subcommand is given, so this is only
            // reached if that ever changes.
            None => Err(BotError::NotAvailable(
                "give node options (--id, --bind, --data-dir) or a subcommand; see --help"
                    .to_string(),
            )),
        },
    };
    finish_telemetry(telemetry);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{}", error.report());
            ExitCode::from(error.exit_code())
        }
    }
}

/// Logs go to stderr, filtered by `RUST_LOG` (default `info`); stdout is kept for EVENT lines
/// and the demo's timeline.
#[cfg(not(feature = "otel"))]
fn init_logging() -> Option<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only help a person at a terminal; in a log file they are noise.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    None
}

#[cfg(not(feature = "otel"))]
fn finish_telemetry(_: Option<()>) {}

/// Logs as without the feature; and with `OTEL_EXPORTER_OTLP_ENDPOINT` set, the spans of
/// traced writes (issue 16) go to that OTLP/HTTP collector too.
#[cfg(feature = "otel")]
fn init_logging() -> Option<ha::telemetry::Telemetry> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let telemetry = match ha::telemetry::Telemetry::from_endpoint(None, "ha-bot") {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("traces are not exported: {error}");
            None
        }
    };
    let otel = telemetry.as_ref().map(|telemetry| telemetry.layer());
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .init();
    telemetry
}

/// Export the spans still queued before the process exits.
#[cfg(feature = "otel")]
fn finish_telemetry(telemetry: Option<ha::telemetry::Telemetry>) {
    if let Some(telemetry) = telemetry
        && let Err(error) = telemetry.shutdown()
    {
        tracing::warn!(%error, "exporting the last spans failed");
    }
}
