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

Two data nodes and a witness (a voter with no data that never leads; survives the loss of
any one of the three):
  bot --id d1 --bind 127.0.0.1:7101 --seeds 127.0.0.1:7102,127.0.0.1:7103 --data-dir ./data/d1
  bot --id d2 --bind 127.0.0.1:7102 --seeds 127.0.0.1:7101,127.0.0.1:7103 --data-dir ./data/d2
  bot --id w --bind 127.0.0.1:7103 --seeds 127.0.0.1:7101,127.0.0.1:7102 --data-dir ./data/w \\
      --witness

Secure by default: a node whose --bind is not loopback refuses to start without a cluster
key (--cluster-key-file) or certificates (--tls-cert, --tls-key, --tls-ca), and a
non-loopback --http needs admin tokens (--admin-token-file) and TLS, unless --insecure says
to run unprotected. Make the files with `bot keygen` and `bot certs init`:
  bot keygen --out cluster.key
  (umask 077; echo \"admin ops $(bot keygen)\" > tokens.txt)
  bot certs init --dir certs --cluster prod --nodes n1,n2,n3 --host n1=10.0.0.1
  bot --id n1 --cluster prod --bind 10.0.0.1:7101 --seeds 10.0.0.2:7101,10.0.0.3:7101 \\
      --data-dir ./data/n1 --cluster-key-file cluster.key \\
      --tls-cert certs/n1.pem --tls-key certs/n1.key --tls-ca certs/ca.pem \\
      --http 10.0.0.1:8101 --admin-token-file tokens.txt
  BOT_ADMIN_TOKEN=<token from tokens.txt> bot status --http 10.0.0.1:8101 --tls-ca certs/ca.pem

SIGTERM or Ctrl-C makes the node leave the cluster gracefully and exit 0.
Exit codes: 0 success, 1 runtime failure, 2 invalid command line or configuration
(including a start refused as insecure and a key, certificate or token file that cannot be
used).";

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
    /// Print a fresh cluster key (64 hex digits from the system's random source), or write
    /// it to a new file with --out. It also makes a good admin API token.
    Keygen(KeygenArgs),
    /// Make the TLS files of a cluster: a CA, and a certificate and key per node.
    Certs(CertsArgs),
    /// Save a backup of the replicated state from a node (GET /v1/snapshot), or inspect and
    /// verify a backup file.
    Snapshot(SnapshotArgs),
    /// List, add or remove cluster members through a node's admin HTTP API
    /// (GET/POST /v1/members, DELETE /v1/members/<id>; role admin).
    Members(MembersArgs),
}

/// `bot members` and its subcommands.
#[derive(Debug, Args)]
pub struct MembersArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: MembersCommand,
}

/// The subcommands of `bot members`.
#[derive(Debug, Subcommand)]
pub enum MembersCommand {
    /// Print the voters, learners and witnesses with their replication addresses.
    List(AdminArgs),
    /// Add a node as a learner; with --voter it is promoted to voter once caught up (the
    /// command waits for that up to the node's request timeout).
    Add(MembersAddArgs),
    /// Remove a member. Refused (exit 1, with the reason) when it would leave no voter or
    /// fewer reachable voters than a quorum, when the node still runs and is configured to
    /// vote, or while another change is pending.
    Remove(MembersRemoveArgs),
}

/// How to reach a node's admin API (shared by `bot members` and `bot snapshot save`).
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Admin HTTP address of a node (host:port). For `members`, any node: a follower forwards
    /// to the leader. The calls need the admin role.
    #[arg(long, value_name = "ADDR")]
    pub http: String,

    /// Speak HTTPS and accept only a node certificate signed by a CA in this PEM file.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,

    /// The admin API token to send (role admin). Prefer the environment variable.
    #[arg(
        long,
        value_name = "TOKEN",
        env = crate::admin_client::ADMIN_TOKEN_ENV,
        hide_env_values = true
    )]
    pub token: Option<String>,
}

/// Options of `bot members add`.
#[derive(Debug, Args)]
pub struct MembersAddArgs {
    /// The node's admin API.
    #[command(flatten)]
    pub admin: AdminArgs,

    /// The id of the node to add.
    #[arg(long, value_name = "ID")]
    pub id: NodeId,

    /// The node's replication address (its --bind, or --advertise): lets the leader reach it
    /// before gossip has seen it.
    #[arg(long, value_name = "ADDR")]
    pub addr: Option<SocketAddr>,

    /// Promote it to voter once it has caught up.
    #[arg(long)]
    pub voter: bool,
}

/// Options of `bot members remove`.
#[derive(Debug, Args)]
pub struct MembersRemoveArgs {
    /// The node's admin API.
    #[command(flatten)]
    pub admin: AdminArgs,

    /// The id of the member to remove.
    #[arg(long, value_name = "ID")]
    pub id: NodeId,
}

/// `bot snapshot` and its subcommands.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: SnapshotCommand,
}

/// The subcommands of `bot snapshot`.
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Download a fresh backup (every write acknowledged before the call) as a backup file:
    /// written to a temporary file beside FILE, synced, verified (header and SHA-256), then
    /// linked in place. An existing FILE is never overwritten.
    Save(SnapshotSaveArgs),
    /// Print a backup file's header and verify it (exit code 1 and the reason when it is
    /// corrupt, truncated or of another cluster).
    Inspect(SnapshotInspectArgs),
    /// Prepare an empty data dir from a verified backup (disaster recovery): `bot --data-dir
    /// DIR ...` then starts a one-voter cluster holding that state, which empty nodes join.
    /// With --to-index N --wal-archive DIR, also replays archived entries up to index N.
    Restore(crate::snapshot_restore::SnapshotRestoreArgs),
}

/// Options of `bot snapshot save`.
#[derive(Debug, Args)]
pub struct SnapshotSaveArgs {
    /// The node to back up.
    #[command(flatten)]
    pub admin: AdminArgs,

    /// Where to write the backup (a new file).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Options of `bot snapshot inspect`.
#[derive(Debug, Args)]
pub struct SnapshotInspectArgs {
    /// Also refuse the backup unless it is of this cluster.
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,

    /// The backup file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Options of `bot keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Write the key to this new file (mode 0600) instead of stdout. An existing file is
    /// never overwritten.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `bot certs` and its subcommands.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// What to make.
    #[command(subcommand)]
    pub command: CertsCommand,
}

/// The subcommands of `bot certs`.
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Write DIR/ca.pem and DIR/ca.key (a new cluster CA, unless DIR already holds one) and
    /// DIR/<id>.pem and DIR/<id>.key for each node, signed by the CA. Keys get mode 0600;
    /// no existing file is overwritten.
    #[command(long_about = CERTS_INIT_LONG_ABOUT)]
    Init(CertsInitArgs),
}

const CERTS_INIT_LONG_ABOUT: &str = "Make the TLS files of a cluster.

Writes DIR/ca.pem and DIR/ca.key (a new cluster CA valid 10 years, unless DIR already holds
both, which are then reused) and, for each node id, DIR/<id>.pem and DIR/<id>.key: a
certificate signed by the CA, usable as TLS server and client, naming <id>.<cluster> (the
name peers check), localhost, 127.0.0.1 and every --host given for that id. Keys are written
with mode 0600; an existing file is never overwritten (the command stops and names it).

Give each node its <id>.pem, <id>.key and ca.pem (--tls-cert, --tls-key, --tls-ca). Keep
ca.key off the nodes: it can make certificates for any node id.

Add a node later: run again with the same --dir and only the new id.
Renew a node certificate: move its two files away and run again for that id.
Rotate the CA without downtime (restart the nodes one by one after each step): run with a new
--dir; make each node's --tls-ca file the old and the new ca.pem concatenated; give each node
its new <id>.pem and <id>.key; finally leave only the new ca.pem in the --tls-ca file.";

/// Options of `bot certs init`.
#[derive(Debug, Args)]
pub struct CertsInitArgs {
    /// Directory for the files, created (mode 0700) if missing. A ca.pem and ca.key in it
    /// are reused.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,

    /// The cluster name, as given to the nodes with --cluster: certificates name
    /// <id>.<cluster>.
    #[arg(long, value_name = "NAME")]
    pub cluster: String,

    /// Node ids to make certificates for, comma-separated.
    #[arg(long, value_name = "ID,...", value_delimiter = ',', required = true)]
    pub nodes: Vec<NodeId>,

    /// Another name or IP address the node with this id is reached at (its --advertise or
    /// --http host), added to its certificate; repeat for more.
    #[arg(long = "host", value_name = "ID=NAME_OR_IP")]
    pub hosts: Vec<String>,

    /// How many days the node certificates are valid (the CA is valid 3650 days).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 825,
        value_parser = clap::value_parser!(u32).range(1..=3650)
    )]
    pub days: u32,
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

    /// Snapshot the state (and compact the log) every N applied entries (default 10,000).
    /// Smaller values make backups (`GET /v1/snapshot`) and archived segments more recent.
    #[arg(long, value_name = "N")]
    pub snapshot_every_entries: Option<u64>,

    /// Archive closed WAL segments into this directory before compaction deletes them, for
    /// point-in-time restores (`bot snapshot restore --to-index N --wal-archive DIR`). One
    /// directory per node.
    #[arg(long, value_name = "DIR")]
    pub wal_archive: Option<PathBuf>,

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

    /// A file of cluster keys, one per line as 64 hex digits, current first (make one with
    /// `bot keygen --out FILE`). The key authenticates and encrypts gossip and, without TLS,
    /// replication; every holder of the key can act as any node. The first key seals, every
    /// key opens. To rotate without downtime, restart the nodes one by one after each step:
    /// add the new key on the second line; move it to the first line; remove the old key.
    #[arg(long, value_name = "FILE")]
    pub cluster_key_file: Option<PathBuf>,

    /// This node's TLS certificate (PEM, made by `bot certs init`), naming `<id>.<cluster>`.
    /// With --tls-key and --tls-ca: replication runs over mutual TLS (each node proves its id
    /// with its certificate) and the admin API serves HTTPS.
    #[arg(long, value_name = "FILE", requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,

    /// This node's TLS private key (PEM). Keep it readable by the node's user only.
    #[arg(long, value_name = "FILE", requires_all = ["tls_cert", "tls_ca"])]
    pub tls_key: Option<PathBuf>,

    /// The cluster CA certificate(s) (PEM) every peer's certificate must chain to. During a
    /// CA rotation it holds the old and the new CA.
    #[arg(long, value_name = "FILE", requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Option<PathBuf>,

    /// A file of admin API tokens, one per line `ROLE NAME TOKEN` (ROLE read, write or
    /// admin). Every admin API call but GET /v1/health then needs `Authorization: Bearer
    /// TOKEN` with a role that allows it. Needed (with TLS) for a non-loopback --http.
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,

    /// Start even though a port is reachable from other machines without protection (no
    /// cluster key or certificates on --bind, no tokens or TLS on --http). Anyone who reaches
    /// the ports can then join, forge Raft messages, read the data and use the admin API. A
    /// warning is logged at start and every 10 minutes.
    #[arg(long)]
    pub insecure: bool,

    /// How many voters the cluster is meant to have: 1, 3 or 5 (default 3). A lone node
    /// without --seeds needs 1.
    #[arg(long, value_name = "N")]
    pub bootstrap_expect: Option<u32>,

    /// Run as a witness (issue 15): a voter that keeps terms, votes and log entry metadata
    /// but no journal or state, never leads and serves no reads, so two data nodes and a
    /// witness survive the loss of any one of the three. Priority 0 (a --priority above 0 is
    /// refused). See docs/ARCHITECTURE.md, "Witness: what 2 data nodes + 1 witness survive".
    #[arg(long)]
    pub witness: bool,

    /// Scheduled backups: the leader writes a verified backup file of the whole replicated
    /// state into this directory every --backup-interval-s seconds (`bot snapshot inspect`
    /// and `restore` read them). GET /v1/backups lists them.
    #[arg(long, value_name = "DIR")]
    pub backup_dir: Option<PathBuf>,

    /// Seconds between two scheduled backups (default 3600).
    #[arg(long, value_name = "N", requires = "backup_dir")]
    pub backup_interval_s: Option<u64>,

    /// Scheduled backups kept in --backup-dir; older ones are removed (default 24).
    #[arg(long, value_name = "K", requires = "backup_dir")]
    pub backup_keep: Option<u64>,

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
        if let Some(archive) = &self.wal_archive {
            loader = loader.set("wal_archive.dir", text(&archive.display()));
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
        if let Some(path) = &self.cluster_key_file {
            loader = loader.set("security.cluster_key_file", text(&path.display()));
        }
        if let (Some(cert), Some(key), Some(ca)) = (&self.tls_cert, &self.tls_key, &self.tls_ca) {
            loader = loader
                .set("security.tls.cert_file", text(&cert.display()))
                .set("security.tls.key_file", text(&key.display()))
                .set("security.tls.ca_file", text(&ca.display()));
        }
        if let Some(path) = &self.admin_token_file {
            loader = loader.set("security.admin_token_file", text(&path.display()));
        }
        if self.insecure {
            loader = loader.set("security.insecure", true);
        }
        if self.witness {
            loader = loader.set("witness", true);
        }
        if let Some(dir) = &self.backup_dir {
            loader = loader.set("backup.dir", text(&dir.display()));
        }
        if let Some(interval) = self.backup_interval_s {
            loader = loader.set(
                "backup.interval_s",
                i64::try_from(interval).unwrap_or(i64::MAX),
            );
        }
        if let Some(keep) = self.backup_keep {
            loader = loader.set("backup.keep", i64::try_from(keep).unwrap_or(i64::MAX));
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
        "wal_archive.dir" => "--wal-archive",
        "cluster.name" => "--cluster",
        "cluster.bootstrap_expect" => "--bootstrap-expect",
        "security.cluster_keys" => "--cluster-key",
        "security.cluster_key_file" => "--cluster-key-file",
        "security.tls"
        | "security.tls.cert_file"
        | "security.tls.key_file"
        | "security.tls.ca_file" => "--tls-cert, --tls-key, --tls-ca",
        "security.admin_token_file" => "--admin-token-file",
        "security.insecure" => "--insecure",
        "backup.dir" => "--backup-dir",
        "backup.interval_s" => "--backup-interval-s",
        "backup.keep" => "--backup-keep",
        "witness" => "--witness",
        "security" => {
            "--cluster-key-file or --tls-cert/--tls-key/--tls-ca (--bind), --admin-token-file \
             with TLS (--http), or --insecure"
        }
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

    /// Speak HTTPS and accept only a node certificate signed by a CA in this PEM file (the
    /// cluster's ca.pem). The host in --http must be a name in the node's certificate.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,

    /// The admin API token to send (`Authorization: Bearer`), for a node started with
    /// --admin-token-file. Prefer the environment variable: arguments show up in `ps`.
    #[arg(
        long,
        value_name = "TOKEN",
        env = crate::admin_client::ADMIN_TOKEN_ENV,
        hide_env_values = true
    )]
    pub token: Option<String>,
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
    fn security_subcommands_parse() {
        let cli = parse(&["keygen"]).expect("keygen parses");
        assert!(matches!(
            cli.command,
            Some(Command::Keygen(KeygenArgs { out: None }))
        ));
        let cli = parse(&["keygen", "--out", "cluster.key"]).expect("keygen --out parses");
        assert!(
            matches!(&cli.command, Some(Command::Keygen(KeygenArgs { out: Some(out) }))
                if out == std::path::Path::new("cluster.key"))
        );
        let cli = parse(&[
            "certs",
            "init",
            "--dir",
            "certs",
            "--cluster",
            "prod",
            "--nodes",
            "n1,n2,n3",
            "--host",
            "n1=10.0.0.1",
            "--host",
            "n2=node2.example.com",
        ])
        .expect("certs init parses");
        let Some(Command::Certs(CertsArgs {
            command: CertsCommand::Init(init),
        })) = cli.command
        else {
            panic!("certs init expected");
        };
        assert_eq!(init.nodes.len(), 3);
        assert_eq!(init.hosts, ["n1=10.0.0.1", "n2=node2.example.com"]);
        assert_eq!(init.days, 825, "the default validity");
        assert!(parse(&["certs", "init", "--dir", "d", "--cluster", "c"]).is_err());
        assert!(
            parse(&[
                "certs",
                "init",
                "--dir",
                "d",
                "--cluster",
                "c",
                "--nodes",
                "bad id"
            ])
            .is_err()
        );

        let cli = parse(&[
            "status",
            "--http",
            "n1.prod:8101",
            "--tls-ca",
            "ca.pem",
            "--token",
            "secret",
        ])
        .expect("status with TLS parses");
        let Some(Command::Status(status)) = cli.command else {
            panic!("status expected");
        };
        assert_eq!(
            status.tls_ca.as_deref(),
            Some(std::path::Path::new("ca.pem"))
        );
        assert_eq!(status.token.as_deref(), Some("secret"));
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

    #[test]
    fn security_flags_set_the_security_fields() {
        let mut arguments = node_arguments();
        arguments.extend([
            "--cluster-key-file",
            "/etc/ha/cluster.key",
            "--tls-cert",
            "/etc/ha/n1.pem",
            "--tls-key",
            "/etc/ha/n1.key",
            "--tls-ca",
            "/etc/ha/ca.pem",
            "--admin-token-file",
            "/etc/ha/tokens.txt",
            "--insecure",
        ]);
        let node = parse(&arguments).expect("parses").node.expect("node mode");
        let config = node.to_config_with_env(Vec::new()).expect("valid");
        let security = &config.security;
        assert_eq!(
            security.cluster_key_file.as_deref(),
            Some(std::path::Path::new("/etc/ha/cluster.key"))
        );
        assert_eq!(
            security.tls,
            Some(ha::core::TlsFiles {
                cert_file: "/etc/ha/n1.pem".into(),
                key_file: "/etc/ha/n1.key".into(),
                ca_file: "/etc/ha/ca.pem".into(),
            })
        );
        assert_eq!(
            security.admin_token_file.as_deref(),
            Some(std::path::Path::new("/etc/ha/tokens.txt"))
        );
        assert!(security.insecure);

        let node = parse(&node_arguments())
            .expect("parses")
            .node
            .expect("node mode");
        let config = node.to_config_with_env(Vec::new()).expect("valid");
        assert_eq!(config.security, ha::core::SecurityConfig::default());
    }

    #[test]
    fn security_flags_win_over_the_config_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("bot.toml");
        std::fs::write(
            &path,
            "[security]\ncluster_key_file = \"/from/file.key\"\ninsecure = false\n",
        )
        .expect("write");
        let mut arguments = node_arguments();
        let path_text = path.to_string_lossy().into_owned();
        arguments.extend([
            "--config",
            &path_text,
            "--cluster-key-file",
            "/from/flag.key",
            "--insecure",
        ]);
        let node = parse(&arguments).expect("parses").node.expect("node mode");
        let config = node.to_config_with_env(Vec::new()).expect("valid");
        assert_eq!(
            config.security.cluster_key_file.as_deref(),
            Some(std::path::Path::new("/from/flag.key"))
        );
        assert!(config.security.insecure);
    }

    #[test]
    fn tls_flags_come_together_or_not_at_all() {
        for given in [
            vec!["--tls-cert", "c.pem"],
            vec!["--tls-key", "k.pem"],
            vec!["--tls-ca", "ca.pem"],
            vec!["--tls-cert", "c.pem", "--tls-key", "k.pem"],
            vec!["--tls-cert", "c.pem", "--tls-ca", "ca.pem"],
            vec!["--tls-key", "k.pem", "--tls-ca", "ca.pem"],
        ] {
            let mut arguments = node_arguments();
            arguments.extend(given.iter().copied());
            let error = parse(&arguments).expect_err("a partial TLS set is refused");
            assert_eq!(
                error.kind(),
                clap::error::ErrorKind::MissingRequiredArgument,
                "{given:?}"
            );
            assert_eq!(error.exit_code(), 2, "{given:?}");
        }
    }

    #[test]
    fn every_security_field_names_its_flag() {
        for (field, flag) in [
            ("security.cluster_key_file", "--cluster-key-file"),
            ("security.tls", "--tls-cert"),
            ("security.tls.cert_file", "--tls-cert"),
            ("security.tls.key_file", "--tls-key"),
            ("security.tls.ca_file", "--tls-ca"),
            ("security.admin_token_file", "--admin-token-file"),
            ("security.insecure", "--insecure"),
        ] {
            let named = flag_for_field(field).unwrap_or_default();
            assert!(named.contains(flag), "{field}: {named:?}");
        }
        let named = flag_for_field("security").unwrap_or_default();
        for flag in [
            "--cluster-key-file",
            "--tls-cert",
            "--tls-key",
            "--tls-ca",
            "--admin-token-file",
            "--insecure",
        ] {
            assert!(named.contains(flag), "security: {named:?} lacks {flag}");
        }
    }

    /// The exposure rule as the builder runs it on the bot's config: refused without
    /// protection on a non-loopback address, allowed with `--insecure`.
    #[test]
    fn a_non_loopback_bind_is_refused_unless_insecure() {
        let arguments = [
            "--id",
            "n1",
            "--bind",
            "10.0.0.1:7101",
            "--seeds",
            "10.0.0.2:7101",
            "--data-dir",
            "./data/n1",
        ];
        let node = parse(&arguments).expect("parses").node.expect("node mode");
        let config = node.to_config_with_env(Vec::new()).expect("valid");
        let error = config
            .check_exposure(ha::core::Protection::default())
            .expect_err("refused without a key or certificates");
        assert_eq!(error.field, "security");

        let mut arguments = arguments.to_vec();
        arguments.push("--insecure");
        let node = parse(&arguments).expect("parses").node.expect("node mode");
        let config = node.to_config_with_env(Vec::new()).expect("valid");
        let exposure = config
            .check_exposure(ha::core::Protection::default())
            .expect("allowed with --insecure");
        assert!(!exposure.insecure.is_empty(), "{exposure:?}");
    }

    #[test]
    fn witness_flag_makes_a_priority_0_voting_witness() {
        let mut arguments = node_arguments();
        arguments.retain(|argument| *argument != "--priority" && *argument != "10");
        arguments.push("--witness");
        let node = parse(&arguments).expect("parses").node.expect("node mode");
        let config = node.to_config_with_env(Vec::new()).expect("valid");
        assert!(config.witness && config.voter);
        assert_eq!(config.priority.0, 0);
        assert_eq!(config.cluster.bootstrap_expect, 3);

        let mut arguments = node_arguments();
        arguments.push("--witness");
        let node = parse(&arguments).expect("parses").node.expect("node mode");
        let error = config_error(node.to_config_with_env(Vec::new()));
        assert_eq!(error.field, "priority", "--priority 10 on a witness");
        assert_eq!(flag_for_field(error.field), Some("--priority"));

        let mut arguments = node_arguments();
        arguments.extend(["--witness", "--backup-dir", "/var/backups"]);
        arguments.retain(|argument| *argument != "--priority" && *argument != "10");
        let node = parse(&arguments).expect("parses").node.expect("node mode");
        let error = config_error(node.to_config_with_env(Vec::new()));
        assert_eq!(error.field, "backup.dir");
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
