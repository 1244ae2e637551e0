//! Node configuration: what every crate reads, checked once at start.
//!
//! Presets cover the common shapes: [`Config::single`] (one node, no failover),
//! [`Config::full_ha`] (3 voters, survives one failure), [`Config::simple_failover`] (2 data
//! nodes and a witness, survives the loss of any one of them) and [`Config::distributed`] (5
//! voters, survives two), with [`Timing::lan`] or [`Timing::wan`] timing.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::host_checks_config::HealthConfig;
use crate::ids::{NodeId, Priority};
use crate::keyring::{ClusterKey, KEYRING_KEYS_MAX};

/// Longest cluster name, in bytes.
pub const CLUSTER_NAME_LENGTH_MAX: usize = 64;

/// Whether `name` is a valid cluster name: 1 to [`CLUSTER_NAME_LENGTH_MAX`] characters of
/// `[A-Za-z0-9._-]` (the same characters as node ids, safe in labels and file names).
///
/// ```
/// assert!(ha_core::is_valid_cluster_name("payments-prod"));
/// assert!(!ha_core::is_valid_cluster_name("has space"));
/// ```
pub fn is_valid_cluster_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= CLUSTER_NAME_LENGTH_MAX
        && name.chars().all(crate::ids::is_name_character)
}
/// Most seed addresses a node is given.
pub const SEEDS_MAX: usize = 64;

/// Who may start an election.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailoverMode {
    /// Followers elect a new leader when the leader is lost.
    #[default]
    Automatic,
    /// Only an operator's transfer command starts an election.
    Manual,
}

/// Timeouts and periods, in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Timing {
    /// How often the leader sends heartbeats (empty appends).
    pub heartbeat_interval_ms: u64,
    /// Shortest election timeout; a follower that hears no leader for a random time in
    /// `[min, max)` campaigns.
    pub election_timeout_min_ms: u64,
    /// Longest election timeout.
    pub election_timeout_max_ms: u64,
    /// SWIM probe period.
    pub gossip_probe_period_ms: u64,
    /// How long a probe waits for a direct answer before asking others to probe.
    pub gossip_probe_rtt_ms: u64,
    /// How long a suspected member has to refute before it is declared down.
    pub gossip_suspect_to_down_ms: u64,
    /// How often a node gossips recent updates to a few random members.
    pub gossip_interval_ms: u64,
    /// How often a node re-announces itself to its seeds (so an isolated node rejoins).
    pub reannounce_interval_ms: u64,
    /// How often a node re-sends its metadata to a few random members (anti-entropy).
    pub metadata_refresh_ms: u64,
}

impl Timing {
    /// A local network: sub-second failover.
    pub fn lan() -> Self {
        Self {
            heartbeat_interval_ms: 50,
            election_timeout_min_ms: 150,
            election_timeout_max_ms: 300,
            gossip_probe_period_ms: 500,
            gossip_probe_rtt_ms: 200,
            gossip_suspect_to_down_ms: 1500,
            gossip_interval_ms: 200,
            reannounce_interval_ms: 5_000,
            metadata_refresh_ms: 2_000,
        }
    }

    /// Across data centres: round trips of tens of milliseconds, more patience.
    pub fn wan() -> Self {
        Self {
            heartbeat_interval_ms: 250,
            election_timeout_min_ms: 1_000,
            election_timeout_max_ms: 2_000,
            gossip_probe_period_ms: 2_000,
            gossip_probe_rtt_ms: 1_000,
            gossip_suspect_to_down_ms: 8_000,
            gossip_interval_ms: 500,
            reannounce_interval_ms: 15_000,
            metadata_refresh_ms: 5_000,
        }
    }

    /// Check the timing on its own.
    ///
    /// # Errors
    /// A [`ConfigError`] for the first value that is zero or out of order.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive: [(&'static str, u64); 9] = [
            ("timing.heartbeat_interval_ms", self.heartbeat_interval_ms),
            (
                "timing.election_timeout_min_ms",
                self.election_timeout_min_ms,
            ),
            (
                "timing.election_timeout_max_ms",
                self.election_timeout_max_ms,
            ),
            ("timing.gossip_probe_period_ms", self.gossip_probe_period_ms),
            ("timing.gossip_probe_rtt_ms", self.gossip_probe_rtt_ms),
            (
                "timing.gossip_suspect_to_down_ms",
                self.gossip_suspect_to_down_ms,
            ),
            ("timing.gossip_interval_ms", self.gossip_interval_ms),
            ("timing.reannounce_interval_ms", self.reannounce_interval_ms),
            ("timing.metadata_refresh_ms", self.metadata_refresh_ms),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(ConfigError::new(
                    field,
                    "is 0",
                    "give a positive number of milliseconds, or start from Timing::lan()",
                ));
            }
        }
        if self.election_timeout_max_ms <= self.election_timeout_min_ms {
            return Err(ConfigError::new(
                "timing.election_timeout_max_ms",
                format!(
                    "{} is not above election_timeout_min_ms {}",
                    self.election_timeout_max_ms, self.election_timeout_min_ms
                ),
                "make the max larger than the min (about twice) so candidates rarely collide",
            ));
        }
        if self.heartbeat_interval_ms.saturating_mul(2) > self.election_timeout_min_ms {
            return Err(ConfigError::new(
                "timing.heartbeat_interval_ms",
                format!(
                    "{} is more than half of election_timeout_min_ms {}",
                    self.heartbeat_interval_ms, self.election_timeout_min_ms
                ),
                "send heartbeats at least twice per election timeout (lan: 50 vs 150)",
            ));
        }
        if self.gossip_probe_rtt_ms >= self.gossip_probe_period_ms {
            return Err(ConfigError::new(
                "timing.gossip_probe_rtt_ms",
                format!(
                    "{} is not below gossip_probe_period_ms {}",
                    self.gossip_probe_rtt_ms, self.gossip_probe_period_ms
                ),
                "the direct probe must time out before the next probe starts",
            ));
        }
        Ok(())
    }
}

impl Default for Timing {
    fn default() -> Self {
        Self::lan()
    }
}

/// Cluster-wide settings: must match on every node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterConfig {
    /// The cluster's name. Packets from another cluster name are dropped.
    pub name: String,
    /// How many voters must meet before the first election. 1, 3 or 5 usually.
    pub bootstrap_expect: u32,
    /// Accept an even voter count (it tolerates no more failures than one voter fewer).
    pub allow_even_voters: bool,
    /// Accept two voters without a third (priority 0) witness: losing either stops writes.
    pub allow_two_voters: bool,
    /// Who starts elections.
    pub failover_mode: FailoverMode,
    /// Hand leadership back to a recovered higher-priority voter once it has been caught up
    /// and healthy this long. `None` turns failback off.
    pub failback_after_ms: Option<u64>,
    /// Remove a voter that has been unreachable this long, if a majority remains.
    pub dead_voter_after_ms: Option<u64>,
    /// Serve STRONG reads on the leader from a lease, without a round trip to a majority
    /// (default off: each read waits for a heartbeat round).
    ///
    /// The lease lasts `timing.election_timeout_min_ms - lease_clock_drift_margin_ms` from
    /// the moment the leader sent the last round a majority answered. It is safe because every
    /// voter refuses to vote for `election_timeout_min_ms` after it last heard the leader and
    /// after it (re)starts, and a leader that has sent a leadership-transfer request gives up
    /// its lease for the rest of its term. It assumes that no node's clock runs faster than
    /// another's by more than `min / (min - margin)` (1.25 with the default margin of a fifth
    /// of the minimum election timeout; real clocks differ by well under 0.1%), and that the
    /// clock does not jump (the nodes use a monotonic clock). A process paused for longer
    /// than the lease between checking it and answering (a VM freeze, SIGSTOP) can still
    /// serve a stale read: leave this off where that matters more than read latency.
    pub lease_reads: bool,
    /// Subtracted from the minimum election timeout to get the lease, to cover clock-rate
    /// differences between nodes. `None`: a fifth of `timing.election_timeout_min_ms`.
    pub lease_clock_drift_margin_ms: Option<u64>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            name: "ha".to_string(),
            bootstrap_expect: 3,
            allow_even_voters: false,
            allow_two_voters: false,
            failover_mode: FailoverMode::Automatic,
            failback_after_ms: Some(5_000),
            dead_voter_after_ms: None,
            lease_reads: false,
            lease_clock_drift_margin_ms: None,
        }
    }
}

/// Security settings (docs/ARCHITECTURE.md, "Security").
///
/// Three layers, each optional on loopback and required once a port is reachable from another
/// machine (see [`Config::check_exposure`]):
/// - a cluster key (`cluster_keys` / `cluster_key_file`): seals gossip (UDP) and, without
///   TLS, replication traffic with ChaCha20-Poly1305. Any holder of the key can pose as any
///   node;
/// - TLS files (`tls`): mutual TLS on replication traffic, each node's certificate naming its
///   node id (`<node_id>.<cluster name>`), and HTTPS on the admin API;
/// - admin tokens (`admin_token_file`): bearer tokens with roles on the admin API.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecurityConfig {
    /// Cluster keys, current first. Empty (and no `cluster_key_file`): gossip is authenticated
    /// by cluster name only and sent in the clear.
    pub cluster_keys: Vec<ClusterKey>,
    /// A file of cluster keys, one per line as 64 hex digits, current first (`#` starts a
    /// comment). Read when the node starts; its keys come after `cluster_keys`.
    pub cluster_key_file: Option<PathBuf>,
    /// Certificate files for mutual TLS between nodes and HTTPS on the admin API.
    pub tls: Option<TlsFiles>,
    /// A file of admin API tokens, one per line: `ROLE NAME TOKEN`, with ROLE `read`,
    /// `write` or `admin`. Without it the admin API needs no token and may bind only to
    /// loopback (unless `insecure`).
    pub admin_token_file: Option<PathBuf>,
    /// Start even when a port is reachable from other machines without a key, certificates
    /// or admin tokens. Logged as a warning at start and every 10 minutes.
    pub insecure: bool,
}

/// Where a node's TLS material lives (PEM files).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsFiles {
    /// This node's certificate chain (its certificate first); it must name
    /// `<node_id>.<cluster name>` as a DNS subject alternative name.
    pub cert_file: PathBuf,
    /// This node's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// The cluster CA certificates peers' certificates must chain to. During a CA rotation
    /// it holds the old and the new CA.
    pub ca_file: PathBuf,
}

/// What protects a node's traffic, as resolved at start (files read, builder values added):
/// the input of [`Config::check_exposure`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Protection {
    /// At least one cluster key: gossip and replication are sealed.
    pub cluster_key: bool,
    /// TLS material for replication: mutual TLS between nodes.
    pub tls: bool,
    /// The admin API is served over HTTPS.
    pub https: bool,
    /// Admin API tokens.
    pub admin_tokens: bool,
}

/// The outcome of [`Config::check_exposure`] when the node may start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exposure {
    /// What is exposed unprotected because `security.insecure` allows it: the warning to log
    /// at start and every 10 minutes. Empty when nothing is.
    pub insecure: Vec<String>,
    /// Weaker spots that are allowed but worth a warning at start (for example gossip without
    /// a cluster key next to TLS).
    pub warnings: Vec<String>,
}

/// Everything a node needs to start.
///
/// ```
/// use ha_core::{Config, NodeId};
/// let config = Config::full_ha(
///     NodeId::new("n1").unwrap(),
///     "127.0.0.1:7101".parse().unwrap(),
///     vec!["127.0.0.1:7102".parse().unwrap(), "127.0.0.1:7103".parse().unwrap()],
/// );
/// config.validate().unwrap();
/// let mut broken = config.clone();
/// broken.cluster.bootstrap_expect = 4;
/// let error = broken.validate().unwrap_err();
/// assert_eq!(error.field, "cluster.bootstrap_expect");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// This node's id; unique in the cluster.
    pub node_id: NodeId,
    /// Gossip (UDP) and RPC (TCP) listen on this address.
    pub bind_addr: SocketAddr,
    /// The address other nodes should use, when it differs from `bind_addr` (NAT, 0.0.0.0).
    #[serde(default)]
    pub advertise_addr: Option<SocketAddr>,
    /// The admin HTTP API's address, if served.
    #[serde(default)]
    pub http_addr: Option<SocketAddr>,
    /// Gossip addresses of some existing members to join through.
    #[serde(default)]
    pub seeds: Vec<SocketAddr>,
    /// Leadership priority; 0 never leads.
    #[serde(default = "default_priority")]
    pub priority: Priority,
    /// Whether this node votes (false: a learner that only replicates).
    #[serde(default = "default_true")]
    pub voter: bool,
    /// A witness (issue 15): a voter that keeps terms, votes and log entry metadata but no
    /// state machine, never leads and never serves reads, so two data nodes and a witness
    /// survive the loss of any one of the three. It must have priority 0 and vote
    /// ([`Config::validate`] says so; the config file loader gives a witness priority 0 when
    /// the file sets none). See docs/ARCHITECTURE.md, "Witness".
    #[serde(default)]
    pub witness: bool,
    /// Where the log and snapshots live; `None` keeps them in memory (tests only).
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// Cluster-wide settings.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// Timeouts and periods.
    #[serde(default)]
    pub timing: Timing,
    /// Encryption.
    #[serde(default)]
    pub security: SecurityConfig,
    /// Built-in host checks and when an unwell voter still campaigns.
    #[serde(default)]
    pub health: HealthConfig,
    /// Archiving closed WAL segments for point-in-time restores (off by default).
    #[serde(default)]
    pub wal_archive: crate::WalArchiveConfig,
    /// Scheduled backups (issue 14): none unless `backup.dir` is set.
    #[serde(default)]
    pub backup: crate::BackupConfig,
    /// The replica consistency monitor (issue 14).
    #[serde(default)]
    pub consistency_check: crate::consistency_check_config::ConsistencyCheckConfig,
    /// The multi-master shared map (issue 15): limits, fsync policy, dissemination.
    #[serde(default)]
    pub shared_state: crate::SharedStateConfig,
    /// Events the node keeps for `GET /v1/events` (issue 16): a client resuming with
    /// `Last-Event-ID` older than the oldest kept gets a `gap` event. Each event is at most
    /// [`EVENT_BYTES_MAX`] bytes, so the ring holds at most `events_ring_max` times that.
    #[serde(default = "default_events_ring_max")]
    pub events_ring_max: usize,
    /// Clients of `GET /v1/events` served at once; one more is refused with 429 `limit`.
    #[serde(default = "default_events_clients_max")]
    pub events_clients_max: usize,
}

/// Default [`Config::events_ring_max`]: events kept for resuming clients.
pub const EVENTS_RING_MAX_DEFAULT: usize = 4096;
/// Largest accepted [`Config::events_ring_max`] (at [`EVENT_BYTES_MAX`] each, 64 MiB at most).
pub const EVENTS_RING_MAX_LIMIT: usize = 65_536;
/// Default [`Config::events_clients_max`]: event stream clients served at once.
pub const EVENTS_CLIENTS_MAX_DEFAULT: usize = 64;
/// Largest accepted [`Config::events_clients_max`]: each client is a connection and a task.
pub const EVENTS_CLIENTS_MAX_LIMIT: usize = 4096;
/// Largest serialized event (an `id:`/`event:`/`data:` frame) the node journals, in bytes;
/// longer free-text fields (a stalled follower's reason) are cut to fit.
pub const EVENT_BYTES_MAX: usize = 1024;

fn default_events_ring_max() -> usize {
    EVENTS_RING_MAX_DEFAULT
}

fn default_events_clients_max() -> usize {
    EVENTS_CLIENTS_MAX_DEFAULT
}

fn default_priority() -> Priority {
    Priority(1)
}

fn default_true() -> bool {
    true
}

impl Config {
    fn preset(node_id: NodeId, bind_addr: SocketAddr, seeds: Vec<SocketAddr>, voters: u32) -> Self {
        Self {
            node_id,
            bind_addr,
            advertise_addr: None,
            http_addr: None,
            seeds,
            priority: default_priority(),
            voter: true,
            witness: false,
            data_dir: None,
            cluster: ClusterConfig {
                bootstrap_expect: voters,
                ..ClusterConfig::default()
            },
            timing: Timing::lan(),
            security: SecurityConfig::default(),
            health: HealthConfig::default(),
            wal_archive: crate::WalArchiveConfig::default(),
            backup: crate::BackupConfig::default(),
            consistency_check: Default::default(),
            shared_state: crate::SharedStateConfig::default(),
            events_ring_max: EVENTS_RING_MAX_DEFAULT,
            events_clients_max: EVENTS_CLIENTS_MAX_DEFAULT,
        }
    }

    /// One node, its own leader. No failover: for development and tests.
    pub fn single(node_id: NodeId, bind_addr: SocketAddr) -> Self {
        Self::preset(node_id, bind_addr, Vec::new(), 1)
    }

    /// Three voters: survives the loss of one node.
    pub fn full_ha(node_id: NodeId, bind_addr: SocketAddr, seeds: Vec<SocketAddr>) -> Self {
        Self::preset(node_id, bind_addr, seeds, 3)
    }

    /// Two data nodes and a witness (issue 15): three voters, one of which (`witness: true`)
    /// keeps only terms, votes and log entry metadata and never leads. The cluster survives
    /// the loss of any one of the three, as [`full_ha`](Self::full_ha) does, for the disk and
    /// memory of two copies of the data. Give each data node `witness = false` and the third
    /// node `witness = true`; `seeds` lists the other two.
    ///
    /// What it does not survive, and the durability trade-off (a write acknowledged by the
    /// leader and the witness alone lives on one data node until the other catches up), are
    /// in docs/ARCHITECTURE.md, "Witness: what 2 data nodes + 1 witness survive".
    ///
    /// ```
    /// use ha_core::{Config, NodeId, Priority};
    /// let seeds = vec!["127.0.0.1:7101".parse().unwrap(), "127.0.0.1:7102".parse().unwrap()];
    /// let witness =
    ///     Config::simple_failover(NodeId::new("w").unwrap(), "127.0.0.1:7103".parse().unwrap(), seeds, true);
    /// witness.validate().unwrap();
    /// assert!(witness.witness && witness.voter);
    /// assert_eq!(witness.priority, Priority::NEVER_LEADER);
    /// assert_eq!(witness.cluster.bootstrap_expect, 3);
    /// ```
    pub fn simple_failover(
        node_id: NodeId,
        bind_addr: SocketAddr,
        seeds: Vec<SocketAddr>,
        witness: bool,
    ) -> Self {
        let mut config = Self::preset(node_id, bind_addr, seeds, 3);
        if witness {
            config.witness = true;
            config.priority = Priority::NEVER_LEADER;
        }
        config
    }

    /// Five voters: survives the loss of two nodes.
    pub fn distributed(node_id: NodeId, bind_addr: SocketAddr, seeds: Vec<SocketAddr>) -> Self {
        Self::preset(node_id, bind_addr, seeds, 5)
    }

    /// The same config with other timing (for example [`Timing::wan`]).
    pub fn with_timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    /// The clock drift margin the lease is shortened by:
    /// [`ClusterConfig::lease_clock_drift_margin_ms`], by default a fifth of the minimum
    /// election timeout.
    pub fn lease_clock_drift_margin_ms(&self) -> u64 {
        self.cluster
            .lease_clock_drift_margin_ms
            .unwrap_or(self.timing.election_timeout_min_ms / 5)
    }

    /// The address other members reach this node at.
    pub fn advertised_addr(&self) -> SocketAddr {
        self.advertise_addr.unwrap_or(self.bind_addr)
    }

    /// Refuse to expose a port to other machines unprotected (issue 13, rule 1).
    ///
    /// A bind address is exposed when it is not a loopback address (0.0.0.0 and :: are
    /// exposed). Gossip and replication (`bind_addr`) need a cluster key or TLS; the admin
    /// API (`http_addr`) needs admin tokens and TLS (bearer tokens must not cross a network
    /// in the clear). With `security.insecure`, each missing piece becomes a line of
    /// [`Exposure::insecure`] instead of an error.
    ///
    /// ```
    /// use ha_core::{Config, Protection};
    /// let mut config = Config::single("n1".parse().unwrap(), "10.0.0.1:7101".parse().unwrap());
    /// let error = config.check_exposure(Protection::default()).unwrap_err();
    /// assert_eq!(error.field, "security");
    /// let keyed = Protection { cluster_key: true, ..Protection::default() };
    /// assert!(config.check_exposure(keyed).unwrap().insecure.is_empty());
    /// config.security.insecure = true;
    /// assert_eq!(config.check_exposure(Protection::default()).unwrap().insecure.len(), 1);
    /// ```
    ///
    /// # Errors
    /// A [`ConfigError`] saying which address is exposed and what to add.
    pub fn check_exposure(&self, protection: Protection) -> Result<Exposure, ConfigError> {
        let mut exposure = Exposure::default();
        let mut problems: Vec<(String, &'static str)> = Vec::new();
        let bind = self.bind_addr;
        if !bind.ip().is_loopback() {
            if !protection.cluster_key && !protection.tls {
                problems.push((
                    format!(
                        "gossip and replication on {bind} are reachable from other machines \
                         with no cluster key and no certificates: anyone who reaches the port \
                         can join, forge Raft messages and read the replicated data"
                    ),
                    "add a cluster key (--cluster-key-file FILE, made by `bot keygen`; \
                     security.cluster_key_file) and/or mutual TLS (--tls-cert, --tls-key, \
                     --tls-ca, made by `bot certs init`; security.tls)",
                ));
            } else if !protection.cluster_key {
                exposure.warnings.push(format!(
                    "gossip (UDP) on {bind} has no cluster key: TLS covers replication, but \
                     membership and health gossip is unauthenticated and in the clear; add \
                     --cluster-key-file to seal it"
                ));
            }
        }
        if let Some(http) = self.http_addr
            && !http.ip().is_loopback()
        {
            if !protection.admin_tokens {
                problems.push((
                    format!(
                        "the admin API on {http} is reachable from other machines with no \
                         admin tokens: anyone could write keys, release locks and move \
                         leadership"
                    ),
                    "add --admin-token-file FILE (lines `ROLE NAME TOKEN`; \
                     security.admin_token_file) and --tls-cert/--tls-key/--tls-ca for HTTPS, \
                     or bind --http to 127.0.0.1",
                ));
            } else if !protection.https {
                problems.push((
                    format!(
                        "the admin API on {http} would take bearer tokens over plain HTTP \
                         from other machines"
                    ),
                    "add --tls-cert/--tls-key/--tls-ca (security.tls) to serve HTTPS, or \
                     bind --http to 127.0.0.1",
                ));
            }
        }
        if problems.is_empty() {
            return Ok(exposure);
        }
        if self.security.insecure {
            exposure.insecure = problems.into_iter().map(|(problem, _)| problem).collect();
            return Ok(exposure);
        }
        let (problem, fix) = problems.swap_remove(0);
        Err(ConfigError::new(
            "security",
            problem,
            format!(
                "{fix}; or, to run unprotected on purpose, --insecure (security.insecure = true)"
            ),
        ))
    }

    /// What is valid but probably not meant: each entry is one sentence saying what and why,
    /// for the node to log at `warn` when it starts (a node starts anyway).
    ///
    /// Today: a voter (data node or witness) with no `data_dir` keeps its log, its votes and
    /// its term in memory only. After a restart it forgets what it acknowledged and whom it
    /// voted for, so a cluster of such voters can lose acknowledged writes or elect two
    /// leaders in one term when several restart at once.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.voter && self.data_dir.is_none() {
            warnings.push(format!(
                "node {} is a voter with no data_dir: its log, votes and term live in memory only \
                 and are lost on restart, so acknowledged writes can be lost when voters restart; \
                 set data_dir (HA_DATA_DIR, --data-dir) for any node that is not a throwaway test",
                self.node_id
            ));
        }
        warnings
    }

    /// Check every field. Call once at start; the drivers refuse to start on an error.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first bad field and how to fix it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_cluster()?;
        self.validate_witness()?;
        self.backup.validate()?;
        self.timing.validate()?;
        self.wal_archive.validate()?;
        if self.seeds.len() > SEEDS_MAX {
            return Err(ConfigError::new(
                "seeds",
                format!("{} seeds given", self.seeds.len()),
                format!("list at most {SEEDS_MAX}; a few per data centre is enough"),
            ));
        }
        if self.cluster.bootstrap_expect > 1 && self.seeds.is_empty() {
            return Err(ConfigError::new(
                "seeds",
                format!(
                    "a cluster of {} voters needs seeds, and none are given",
                    self.cluster.bootstrap_expect
                ),
                "list the gossip addresses of the other members",
            ));
        }
        if self.advertised_addr().ip().is_unspecified() {
            return Err(ConfigError::new(
                "advertise_addr",
                format!(
                    "{} cannot be reached by other members",
                    self.advertised_addr()
                ),
                "bind to a specific address or set advertise_addr",
            ));
        }
        if self.cluster.bootstrap_expect == 1 && self.voter && !self.priority.can_lead() {
            return Err(ConfigError::new(
                "priority",
                "is 0 on a single-voter cluster, so nothing could ever lead",
                "give the node a priority of 1 or more",
            ));
        }
        if self.security.cluster_keys.len() > KEYRING_KEYS_MAX {
            return Err(ConfigError::new(
                "security.cluster_keys",
                format!("{} keys given", self.security.cluster_keys.len()),
                format!("keep at most {KEYRING_KEYS_MAX}: the current key and old ones"),
            ));
        }
        self.health.validate()?;
        self.consistency_check.validate()?;
        self.shared_state.validate()?;
        self.validate_events()?;
        Ok(())
    }

    /// The event journal's limits (issue 16): at least one event and one client, and no more
    /// than the node can hold.
    fn validate_events(&self) -> Result<(), ConfigError> {
        if !(1..=EVENTS_RING_MAX_LIMIT).contains(&self.events_ring_max) {
            return Err(ConfigError::new(
                "events_ring_max",
                format!(
                    "is {}: the event ring holds 1 to {EVENTS_RING_MAX_LIMIT} events",
                    self.events_ring_max
                ),
                format!(
                    "set events_ring_max between 1 and {EVENTS_RING_MAX_LIMIT} (default {EVENTS_RING_MAX_DEFAULT})"
                ),
            ));
        }
        if !(1..=EVENTS_CLIENTS_MAX_LIMIT).contains(&self.events_clients_max) {
            return Err(ConfigError::new(
                "events_clients_max",
                format!(
                    "is {}: 1 to {EVENTS_CLIENTS_MAX_LIMIT} event stream clients",
                    self.events_clients_max
                ),
                format!(
                    "set events_clients_max between 1 and {EVENTS_CLIENTS_MAX_LIMIT} (default {EVENTS_CLIENTS_MAX_DEFAULT})"
                ),
            ));
        }
        Ok(())
    }

    /// A witness votes, never leads, and holds no state to back up or archive.
    fn validate_witness(&self) -> Result<(), ConfigError> {
        if !self.witness {
            return Ok(());
        }
        if !self.voter {
            return Err(ConfigError::new(
                "voter",
                "is false on a witness: a witness exists only to vote",
                "set voter = true (or drop witness to run a learner)",
            ));
        }
        if self.priority.can_lead() {
            return Err(ConfigError::new(
                "priority",
                format!(
                    "is {} on a witness, which never leads (it holds no state machine)",
                    self.priority.0
                ),
                "set priority = 0 on the witness (or remove the priority setting)",
            ));
        }
        if self.cluster.bootstrap_expect < 3 {
            return Err(ConfigError::new(
                "cluster.bootstrap_expect",
                format!(
                    "is {} with a witness: the witness never leads, so the cluster needs \
                     at least two data voters next to it",
                    self.cluster.bootstrap_expect
                ),
                "use 3 (two data nodes and the witness: the simple_failover preset)",
            ));
        }
        if self.backup.dir.is_some() {
            return Err(ConfigError::new(
                "backup.dir",
                "is set on a witness, which holds no state to back up",
                "schedule backups on the data nodes and remove backup.dir here",
            ));
        }
        if self.wal_archive.dir.is_some() {
            return Err(ConfigError::new(
                "wal_archive.dir",
                "is set on a witness, whose log keeps entry metadata only (no payloads to \
                 restore from)",
                "archive the WAL of the data nodes and remove wal_archive.dir here",
            ));
        }
        Ok(())
    }

    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let name = &self.cluster.name;
        if !is_valid_cluster_name(name) {
            return Err(ConfigError::new(
                "cluster.name",
                format!("{name:?} is not 1 to 64 characters of [A-Za-z0-9._-]"),
                "pick a short name like \"payments-prod\", the same on every node",
            ));
        }
        let voters = self.cluster.bootstrap_expect;
        if voters == 0 {
            return Err(ConfigError::new(
                "cluster.bootstrap_expect",
                "is 0",
                "set it to the number of voters: 1, 3 or 5",
            ));
        }
        if voters == 2 && !self.cluster.allow_two_voters {
            return Err(ConfigError::new(
                "cluster.bootstrap_expect",
                "is 2: losing either voter stops all writes, so two voters are less available than one",
                "add a third voter (a priority-0 witness is enough), or set cluster.allow_two_voters = true",
            ));
        }
        if voters > 2 && voters.is_multiple_of(2) && !self.cluster.allow_even_voters {
            return Err(ConfigError::new(
                "cluster.bootstrap_expect",
                format!(
                    "is {voters}, an even count that tolerates no more failures than {}",
                    voters - 1
                ),
                format!(
                    "use {} or {} voters, or set cluster.allow_even_voters = true",
                    voters - 1,
                    voters + 1
                ),
            ));
        }
        if self.cluster.lease_reads {
            let margin_ms = self.lease_clock_drift_margin_ms();
            let minimum_ms = self.timing.election_timeout_min_ms;
            if margin_ms == 0 {
                return Err(ConfigError::new(
                    "cluster.lease_clock_drift_margin_ms",
                    "is 0: a leader whose clock runs slower than a voter's would outlive its lease",
                    "remove the field (a fifth of timing.election_timeout_min_ms) or give a \
                     positive margin",
                ));
            }
            if margin_ms >= minimum_ms {
                return Err(ConfigError::new(
                    "cluster.lease_clock_drift_margin_ms",
                    format!(
                        "{margin_ms} is not below timing.election_timeout_min_ms {minimum_ms}, \
                         which leaves no lease"
                    ),
                    "remove the field (a fifth of the minimum election timeout), or turn \
                     cluster.lease_reads off",
                ));
            }
        }
        if let Some(0) = self.cluster.failback_after_ms {
            return Err(ConfigError::new(
                "cluster.failback_after_ms",
                "is 0, which would move leadership on the first heartbeat of a flapping node",
                "give a delay (default 5000) or remove the field to turn failback off",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn three() -> Config {
        Config::full_ha(
            NodeId::new("n1").unwrap(),
            addr(7101),
            vec![addr(7102), addr(7103)],
        )
    }

    #[test]
    fn a_voter_without_a_data_dir_is_warned_about() {
        let memory_voter = three();
        assert!(memory_voter.voter && memory_voter.data_dir.is_none());
        let warnings = memory_voter.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("no data_dir") && warnings[0].contains("n1"));
        let mut on_disk = three();
        on_disk.data_dir = Some(PathBuf::from("/var/lib/ha"));
        assert!(on_disk.warnings().is_empty());
        let mut observer = three();
        observer.voter = false;
        assert!(
            observer.warnings().is_empty(),
            "a non-voter keeps nothing it promised"
        );
    }

    #[test]
    fn presets_validate() {
        Config::single(NodeId::new("a").unwrap(), addr(1))
            .validate()
            .unwrap();
        three().validate().unwrap();
        three().with_timing(Timing::wan()).validate().unwrap();
        Config::distributed(NodeId::new("a").unwrap(), addr(1), vec![addr(2)])
            .validate()
            .unwrap();
    }

    #[test]
    fn lease_reads_are_off_by_default_and_valid_with_the_default_margin() {
        let mut config = three();
        assert!(!config.cluster.lease_reads);
        config.cluster.lease_reads = true;
        config.validate().unwrap();
        assert_eq!(config.lease_clock_drift_margin_ms(), 30);
        config.cluster.lease_clock_drift_margin_ms = Some(50);
        config.validate().unwrap();
        assert_eq!(config.lease_clock_drift_margin_ms(), 50);
    }

    #[test]
    fn each_mistake_names_its_field() {
        type Mistake = Box<dyn Fn(&mut Config)>;
        let cases: Vec<(&str, Mistake)> = vec![
            (
                "cluster.bootstrap_expect",
                Box::new(|c| c.cluster.bootstrap_expect = 4),
            ),
            (
                "cluster.bootstrap_expect",
                Box::new(|c| c.cluster.bootstrap_expect = 2),
            ),
            (
                "cluster.bootstrap_expect",
                Box::new(|c| c.cluster.bootstrap_expect = 0),
            ),
            (
                "cluster.name",
                Box::new(|c| c.cluster.name = "has space".into()),
            ),
            ("cluster.name", Box::new(|c| c.cluster.name = String::new())),
            ("seeds", Box::new(|c| c.seeds.clear())),
            (
                "timing.heartbeat_interval_ms",
                Box::new(|c| c.timing.heartbeat_interval_ms = 100),
            ),
            (
                "timing.election_timeout_max_ms",
                Box::new(|c| c.timing.election_timeout_max_ms = 150),
            ),
            (
                "timing.gossip_probe_rtt_ms",
                Box::new(|c| c.timing.gossip_probe_rtt_ms = 500),
            ),
            (
                "timing.gossip_interval_ms",
                Box::new(|c| c.timing.gossip_interval_ms = 0),
            ),
            (
                "advertise_addr",
                Box::new(|c| c.bind_addr = "0.0.0.0:7101".parse().unwrap()),
            ),
            (
                "cluster.lease_clock_drift_margin_ms",
                Box::new(|c| {
                    c.cluster.lease_reads = true;
                    c.cluster.lease_clock_drift_margin_ms = Some(0);
                }),
            ),
            (
                "cluster.lease_clock_drift_margin_ms",
                Box::new(|c| {
                    c.cluster.lease_reads = true;
                    c.cluster.lease_clock_drift_margin_ms = Some(c.timing.election_timeout_min_ms);
                }),
            ),
            (
                "cluster.failback_after_ms",
                Box::new(|c| c.cluster.failback_after_ms = Some(0)),
            ),
        ];
        for (field, mutate) in cases {
            let mut config = three();
            mutate(&mut config);
            let error = config.validate().expect_err(field);
            assert_eq!(error.field, field, "{error}");
            assert!(error.to_string().contains("Fix:"), "{error}");
        }
    }

    #[test]
    fn explicit_opt_ins_allow_even_and_two_voter_clusters() {
        let mut config = three();
        config.cluster.bootstrap_expect = 4;
        config.cluster.allow_even_voters = true;
        config.validate().unwrap();
        config.cluster.bootstrap_expect = 2;
        config.cluster.allow_two_voters = true;
        config.validate().unwrap();
    }

    fn simple_failover(witness: bool) -> Config {
        Config::simple_failover(
            NodeId::new(if witness { "w" } else { "d1" }).unwrap(),
            addr(7103),
            vec![addr(7101), addr(7102)],
            witness,
        )
    }

    #[test]
    fn simple_failover_makes_two_data_nodes_and_a_witness() {
        let data = simple_failover(false);
        data.validate().unwrap();
        assert!(!data.witness && data.voter);
        assert!(data.priority.can_lead());
        assert_eq!(data.cluster.bootstrap_expect, 3);
        let witness = simple_failover(true);
        witness.validate().unwrap();
        assert!(witness.witness && witness.voter);
        assert_eq!(witness.priority, Priority::NEVER_LEADER);
        assert_eq!(witness.cluster.bootstrap_expect, 3);
        assert!(
            !witness.cluster.allow_two_voters,
            "2 + 1 is three voters: no opt-in needed"
        );
    }

    #[test]
    fn each_witness_mistake_names_its_field() {
        type Mistake = Box<dyn Fn(&mut Config)>;
        let cases: Vec<(&str, Mistake)> = vec![
            ("voter", Box::new(|c| c.voter = false)),
            ("priority", Box::new(|c| c.priority = Priority(1))),
            (
                "cluster.bootstrap_expect",
                Box::new(|c| {
                    c.cluster.bootstrap_expect = 2;
                    c.cluster.allow_two_voters = true;
                }),
            ),
            (
                "cluster.bootstrap_expect",
                Box::new(|c| c.cluster.bootstrap_expect = 1),
            ),
            (
                "backup.dir",
                Box::new(|c| c.backup.dir = Some("/var/backups/ha".into())),
            ),
            (
                "wal_archive.dir",
                Box::new(|c| c.wal_archive.dir = Some("/var/archive/ha".into())),
            ),
        ];
        for (field, mutate) in cases {
            let mut config = simple_failover(true);
            mutate(&mut config);
            let error = config.validate().expect_err(field);
            assert_eq!(error.field, field, "{error}");
            assert!(error.to_string().contains("witness"), "{error}");
            assert!(error.to_string().contains("Fix:"), "{error}");
        }
    }

    #[test]
    fn single_voter_must_be_able_to_lead() {
        let mut config = Config::single(NodeId::new("a").unwrap(), addr(1));
        config.priority = Priority(0);
        assert_eq!(config.validate().unwrap_err().field, "priority");
    }
}
