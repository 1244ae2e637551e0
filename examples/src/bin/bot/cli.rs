//! The command line: node mode (the default), `bot demo` and `bot status`.
//!
//! DESIGN.md section 9 fixes this command line as a contract. Options that do nothing yet
//! (`--http`) are still accepted so scripts written today keep working when the features land.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use ha_core::keyring::ClusterKey;
use ha_core::{Config, ConfigError, NodeId, Priority};

/// Environment variable read for cluster keys when `--cluster-key` is not given. Keys in the
/// environment do not show up in `ps` the way command-line arguments do.
pub const CLUSTER_KEYS_ENV: &str = "BOT_CLUSTER_KEYS";

const ABOUT: &str = "One ha node per process, plus a 3-node demo.";

const LONG_ABOUT: &str = "One ha node per process, plus a 3-node demo.

Today a node runs gossip membership only (ha-gossip: SWIM failure detection, metadata,
graceful leave, optional encryption) and prints every membership change on stdout as a line
`EVENT {json}`. Replication, leader election, the KV/lock store and the admin HTTP API arrive
in later versions of this same binary.

Run a node:
  bot --id n1 --bind 127.0.0.1:7101 --http 127.0.0.1:8101 \\
      --seeds 127.0.0.1:7102,127.0.0.1:7103 --priority 10 --data-dir ./data/n1

SIGTERM or Ctrl-C makes the node leave the cluster gracefully and exit 0.
Exit codes: 0 success, 1 runtime failure, 2 invalid command line or configuration.";

/// The whole command line. With no subcommand, the process runs one node.
#[derive(Debug, Parser)]
#[command(
    name = "bot",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    /// What to run instead of a node.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The node's options, used when no subcommand is given.
    #[command(flatten)]
    pub node: Option<NodeArgs>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start 3 nodes on loopback as child processes, kill one with SIGKILL, restart it, and
    /// print the membership timeline with a verdict.
    Demo(DemoArgs),
    /// Print the cluster table from a node's admin HTTP API. Not available yet: the API arrives
    /// with a later version, so this exits with code 2.
    Status(StatusArgs),
}

/// Options of node mode.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// This node's id, unique in the cluster: 1 to 64 characters of [A-Za-z0-9._-].
    #[arg(long, value_name = "ID", required = true)]
    pub id: Option<NodeId>,

    /// Gossip (UDP) address to bind; replication RPC (TCP) will share this port.
    #[arg(long, value_name = "ADDR", required = true)]
    pub bind: Option<SocketAddr>,

    /// The address other members should use, when it differs from --bind (NAT, 0.0.0.0).
    #[arg(long, value_name = "ADDR")]
    pub advertise: Option<SocketAddr>,

    /// Admin HTTP address. For now it is only advertised to other members in gossip
    /// metadata: the HTTP API itself (DESIGN.md section 8) arrives with a later version, and
    /// nothing listens on this address yet.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,

    /// Gossip addresses of other members to join through, comma-separated.
    #[arg(long, value_name = "ADDR,...", value_delimiter = ',')]
    pub seeds: Vec<SocketAddr>,

    /// Leadership priority (0 never leads). Advertised in metadata; elections arrive with
    /// replication.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub priority: u32,

    /// Directory for this node's state, created if missing. Holds node.json (the node's
    /// identity and last incarnation) today, and the log and snapshots later.
    #[arg(long, value_name = "PATH", required = true)]
    pub data_dir: Option<PathBuf>,

    /// Cluster name; must match on every node (packets from other names are dropped).
    #[arg(long, value_name = "NAME", default_value = "ha")]
    pub cluster: String,

    /// Cluster key as 64 hex digits; repeat it to accept old keys during a rotation (current
    /// key first). Without a key, gossip is sent in the clear. The environment variable takes
    /// comma-separated keys and keeps them out of `ps`.
    #[arg(
        long = "cluster-key",
        value_name = "HEX",
        env = CLUSTER_KEYS_ENV,
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub cluster_keys: Vec<String>,

    /// How many voters the cluster is meant to have: 1, 3 or 5. A lone node without --seeds
    /// needs 1.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub bootstrap_expect: u32,

    /// Leave gracefully when standard input reaches end of file. `bot demo` sets this so its
    /// children never outlive it, even when the demo itself is killed.
    #[arg(long, hide = true)]
    pub stop_on_stdin_eof: bool,
}

impl NodeArgs {
    /// The node's [`Config`], validated.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first bad field (see [`flag_for_field`] for its flag).
    pub fn to_config(&self) -> Result<Config, ConfigError> {
        // clap enforces these three; the checks keep this function total for other callers.
        let node_id = self
            .id
            .clone()
            .ok_or_else(|| ConfigError::new("node_id", "is missing", "pass --id"))?;
        let bind_addr = self
            .bind
            .ok_or_else(|| ConfigError::new("bind_addr", "is missing", "pass --bind"))?;
        let data_dir = self
            .data_dir
            .clone()
            .ok_or_else(|| ConfigError::new("data_dir", "is missing", "pass --data-dir"))?;
        let mut config = Config::full_ha(node_id, bind_addr, self.seeds.clone());
        config.advertise_addr = self.advertise;
        config.http_addr = self.http;
        config.priority = Priority(self.priority);
        config.data_dir = Some(data_dir);
        config.cluster.name = self.cluster.clone();
        config.cluster.bootstrap_expect = self.bootstrap_expect;
        config.security.cluster_keys = self
            .cluster_keys
            .iter()
            .map(|text| ClusterKey::from_hex(text))
            .collect::<Result<_, _>>()?;
        config.validate()?;
        Ok(config)
    }
}

/// The command-line flag that sets a config field, for error messages.
pub fn flag_for_field(field: &str) -> Option<&'static str> {
    let flag = match field {
        "node_id" => "--id",
        "bind_addr" => "--bind",
        "advertise_addr" => "--advertise (or --bind)",
        "http_addr" => "--http",
        "seeds" => "--seeds",
        "priority" => "--priority",
        "data_dir" => "--data-dir",
        "cluster.name" => "--cluster",
        "cluster.bootstrap_expect" => "--bootstrap-expect",
        "security.cluster_keys" => "--cluster-key",
        _ => return None,
    };
    Some(flag)
}

/// Options of `bot demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Longest wait for any one step (cluster formed, crash detected, rejoined, left).
    #[arg(long, value_name = "SECONDS", default_value_t = 20)]
    pub step_timeout_secs: u64,

    /// Also print every raw EVENT line the nodes write.
    #[arg(long)]
    pub verbose: bool,

    /// Keep the temporary directory (data dirs and node logs) even when the demo succeeds.
    /// It is always kept when the demo fails.
    #[arg(long)]
    pub keep_dir: bool,
}

/// Options of `bot status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Admin HTTP address of any node (host:port).
    #[arg(long, value_name = "ADDR")]
    pub http: String,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(arguments: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("bot").chain(arguments.iter().copied()))
    }

    fn node_arguments() -> Vec<&'static str> {
        vec![
            "--id",
            "n1",
            "--bind",
            "127.0.0.1:7101",
            "--http",
            "127.0.0.1:8101",
            "--seeds",
            "127.0.0.1:7102,127.0.0.1:7103",
            "--priority",
            "10",
            "--data-dir",
            "./data/n1",
        ]
    }

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn design_command_line_builds_a_valid_config() {
        let cli = parse(&node_arguments()).expect("the DESIGN.md command line parses");
        assert!(cli.command.is_none());
        let node = cli.node.expect("node mode");
        let config = node.to_config().expect("valid");
        assert_eq!(config.node_id.as_str(), "n1");
        assert_eq!(config.seeds.len(), 2);
        assert_eq!(config.priority, Priority(10));
        assert_eq!(config.http_addr, "127.0.0.1:8101".parse().ok());
        assert_eq!(config.cluster.bootstrap_expect, 3);
    }

    #[test]
    fn subcommands_parse_without_node_options() {
        let cli = parse(&["demo"]).expect("demo parses");
        assert!(matches!(cli.command, Some(Command::Demo(_))));
        let cli = parse(&["status", "--http", "127.0.0.1:8101"]).expect("status parses");
        assert!(matches!(cli.command, Some(Command::Status(_))));
    }

    #[test]
    fn node_mode_requires_its_options() {
        let error = parse(&["--id", "n1"]).expect_err("--bind and --data-dir are missing");
        assert_eq!(
            error.kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
        assert!(parse(&["--id", "bad id", "--bind", "127.0.0.1:1"]).is_err());
    }

    #[test]
    fn invalid_values_name_their_field_and_flag() {
        let mut arguments = node_arguments();
        arguments.extend(["--cluster", "bad name"]);
        let node = parse(&arguments).expect("parses").node.expect("node mode");
        let error = node.to_config().expect_err("bad cluster name");
        assert_eq!(error.field, "cluster.name");
        assert_eq!(flag_for_field(error.field), Some("--cluster"));

        let mut arguments = node_arguments();
        arguments.extend(["--cluster-key", "abc"]);
        let node = parse(&arguments).expect("parses").node.expect("node mode");
        let error = node.to_config().expect_err("short key");
        assert_eq!(error.field, "security.cluster_keys");
    }
}
