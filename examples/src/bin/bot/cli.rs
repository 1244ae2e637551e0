//! The command line: node mode (the default), `bot demo` and `bot status`.
//!
//! This command line is a contract (docs/ARCHITECTURE.md, "The bot's command line"): scripts
//! and the multi-process tests depend on it, so flags are added, not renamed or removed.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use ha::config_file::ConfigLoader;
use ha::core::keyring::ClusterKey;
use ha::{Config, ConfigError, NodeError, NodeId};

/// Environment variable read for cluster keys when `--cluster-key` is not given. Keys in the
/// environment do not show up in `ps` the way command-line arguments do.
pub const CLUSTER_KEYS_ENV: &str = "BOT_CLUSTER_KEYS";

const ABOUT: &str = "One ha node per process, plus a 3-node demo.";

const LONG_ABOUT: &str = "One ha node per process, plus a 3-node demo.

A node joins the cluster by gossip, takes part in leader election and replication, serves
the admin HTTP API, and, while it leads, appends a numbered action to a replicated journal
every 100 ms under a fenced lock. It prints its membership, role and journal events on
stdout as lines `EVENT {json}`; logs go to stderr (filter with RUST_LOG).

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
    /// Start 3 nodes on loopback as child processes, kill the leader with SIGKILL, restart
    /// it, and print the failover timeline and a verdict on the replicated journal.
    Demo(DemoArgs),
    /// Print the cluster table from a node's admin HTTP API (GET /v1/cluster, asked again of
    /// the leader when the node asked does not lead).
    Status(StatusArgs),
}

/// Options of node mode.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// A TOML config file (see ha's README for the fields). Flags given on the command line
    /// override it, and `HA_*` environment variables override the file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// This node's id, unique in the cluster: 1 to 64 characters of [A-Za-z0-9._-].
    #[arg(long, value_name = "ID", required_unless_present = "config")]
    pub id: Option<NodeId>,

    /// Address to bind: gossip (UDP) and replication RPC (TCP) share this port.
    #[arg(long, value_name = "ADDR", required_unless_present = "config")]
    pub bind: Option<SocketAddr>,

    /// The address other members should use, when it differs from --bind (NAT, 0.0.0.0).
    #[arg(long, value_name = "ADDR")]
    pub advertise: Option<SocketAddr>,

    /// Admin HTTP address: /v1/health, /v1/cluster, /v1/metrics, /v1/failover, /v1/kv,
    /// /v1/lock, and the bot's /bot/journal.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,

    /// Gossip addresses of other members to join through, comma-separated.
    #[arg(long, value_name = "ADDR,...", value_delimiter = ',')]
    pub seeds: Vec<SocketAddr>,

    /// Leadership priority (0 never leads; the highest healthy, caught-up voter leads).
    /// Default 1.
    #[arg(long, value_name = "N")]
    pub priority: Option<u32>,

    /// Directory for this node's state, created if missing: node.json (identity and
    /// incarnation), the replicated log and snapshots.
    #[arg(long, value_name = "PATH", required_unless_present = "config")]
    pub data_dir: Option<PathBuf>,

    /// Cluster name; must match on every node (packets from other names are dropped).
    /// Default "ha".
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,

    /// Cluster key as 64 hex digits; repeat it to accept old keys during a rotation (current
    /// key first). Without a key, traffic is authenticated by cluster name only and sent in
    /// the clear. The environment variable takes comma-separated keys and keeps them out of
    /// `ps`.
    #[arg(
        long = "cluster-key",
        value_name = "HEX",
        env = CLUSTER_KEYS_ENV,
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub cluster_keys: Vec<String>,

    /// How many voters the cluster is meant to have: 1, 3 or 5 (default 3). A lone node
    /// without --seeds needs 1.
    #[arg(long, value_name = "N")]
    pub bootstrap_expect: Option<u32>,

    /// Leave gracefully when standard input reaches end of file. `bot demo` sets this so its
    /// children never outlive it, even when the demo itself is killed.
    #[arg(long, hide = true)]
    pub stop_on_stdin_eof: bool,
}

impl NodeArgs {
    /// The node's [`Config`]: the `full_ha` preset, then the `--config` file, then `HA_*`
    /// environment variables, then the flags; validated.
    ///
    /// # Errors
    /// A [`NodeError`] naming the first bad field (see [`flag_for_field`] for its flag), or
    /// the file or variable that could not be read.
    pub fn to_config(&self) -> Result<Config, NodeError> {
        self.to_config_with_env(std::env::vars())
    }

    /// [`to_config`](Self::to_config) with the given environment.
    ///
    /// # Errors
    /// As for [`to_config`](Self::to_config).
    pub fn to_config_with_env(
        &self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, NodeError> {
        let mut loader = ConfigLoader::new();
        if let Some(path) = &self.config {
            loader = loader.file(path)?;
        }
        loader = loader.env_vars(env)?;
        let text = |value: &dyn ToString| toml::Value::String(value.to_string());
        if let Some(id) = &self.id {
            loader = loader.set("node_id", text(id));
        }
        if let Some(bind) = &self.bind {
            loader = loader.set("bind_addr", text(bind));
        }
        if let Some(advertise) = &self.advertise {
            loader = loader.set("advertise_addr", text(advertise));
        }
        if let Some(http) = &self.http {
            loader = loader.set("http_addr", text(http));
        }
        if !self.seeds.is_empty() {
            let seeds = self.seeds.iter().map(|seed| text(seed)).collect::<Vec<_>>();
            loader = loader.set("seeds", toml::Value::Array(seeds));
        }
        if let Some(priority) = self.priority {
            loader = loader.set("priority", i64::from(priority));
        }
        if let Some(data_dir) = &self.data_dir {
            loader = loader.set("data_dir", text(&data_dir.display()));
        }
        if let Some(cluster) = &self.cluster {
            loader = loader.set("cluster.name", text(cluster));
        }
        if let Some(expect) = self.bootstrap_expect {
            loader = loader.set("cluster.bootstrap_expect", i64::from(expect));
        }
        if !self.cluster_keys.is_empty() {
            for key in &self.cluster_keys {
                ClusterKey::from_hex(key)?;
            }
            let keys = self
                .cluster_keys
                .iter()
                .map(|key| text(key))
                .collect::<Vec<_>>();
            loader = loader.set("security.cluster_keys", toml::Value::Array(keys));
        }
        let config = loader.load()?;
        if config.data_dir.is_none() {
            return Err(ConfigError::new(
                "data_dir",
                "is missing",
                "pass --data-dir or set data_dir in the config file",
            )
            .into());
        }
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
        let cli = parse(&node_arguments()).expect("the documented command line parses");
        assert!(cli.command.is_none());
        let node = cli.node.expect("node mode");
        let config = node.to_config_with_env(Vec::new()).expect("valid");
        assert_eq!(config.node_id.as_str(), "n1");
        assert_eq!(config.seeds.len(), 2);
        assert_eq!(config.priority.0, 10);
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
        let error = config_error(node.to_config_with_env(Vec::new()));
        assert_eq!(error.field, "cluster.name");
        assert_eq!(flag_for_field(error.field), Some("--cluster"));

        let mut arguments = node_arguments();
        arguments.extend(["--cluster-key", "abc"]);
        let node = parse(&arguments).expect("parses").node.expect("node mode");
        let error = config_error(node.to_config_with_env(Vec::new()));
        assert_eq!(error.field, "security.cluster_keys");
    }

    fn config_error(result: Result<Config, NodeError>) -> ConfigError {
        match result {
            Err(NodeError::Config(error)) => error,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn a_config_file_fills_what_the_flags_leave_out_and_flags_win() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("bot.toml");
        std::fs::write(
            &path,
            "node_id = \"n7\"\nbind_addr = \"127.0.0.1:7107\"\ndata_dir = \"/tmp/n7\"\n\
             seeds = [\"127.0.0.1:7101\"]\npriority = 3\n[cluster]\nname = \"from-file\"\n",
        )
        .expect("write");
        let path_text = path.to_string_lossy().into_owned();
        let node = parse(&["--config", &path_text, "--priority", "9"])
            .expect("parses without --id/--bind/--data-dir")
            .node
            .expect("node mode");
        let config = node
            .to_config_with_env(vec![("HA_CLUSTER__NAME".to_string(), "env".to_string())])
            .expect("valid");
        assert_eq!(config.node_id.as_str(), "n7");
        assert_eq!(config.priority.0, 9, "the flag wins over the file");
        assert_eq!(
            config.cluster.name, "env",
            "the environment wins over the file"
        );
    }
}
