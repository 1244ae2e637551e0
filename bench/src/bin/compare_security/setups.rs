//! The configurations compared, the secrets they use and how each cluster is started.

use std::path::{Path, PathBuf};

use ha_bench::http_load::target::Target;
use ha_bench::peers::{
    BotCluster, BotClusterOptions, BotSecurity, EtcdCluster, EtcdClusterOptions, EtcdTls,
    PeerError, default_bot_executable,
};
use serde::Serialize;

/// Nodes (members) per cluster.
pub const CLUSTER_SIZE: usize = 3;
/// ha's `--cluster` name; the node certificates are made for it.
const CLUSTER_NAME: &str = "bench";

/// One configuration of one system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Setup {
    /// ha at today's loopback defaults: no key, no certificates, plain HTTP, no token.
    HaPlaintext,
    /// ha with the shared cluster key only (`--cluster-key-file`: AEAD-sealed RPC frames and
    /// gossip), plain HTTP, no token: the simple option.
    HaClusterKey,
    /// ha hardened: mutual TLS between nodes (`bot certs init`), the cluster key for gossip,
    /// the admin API over HTTPS with a bearer token (`--admin-token-file`).
    HaSecured,
    /// etcd at its defaults: plain HTTP for peers and clients.
    EtcdPlaintext,
    /// etcd with peer TLS (`--peer-client-cert-auth`, so mutual) and client TLS (https).
    EtcdTls,
}

impl Setup {
    /// Every configuration of the write runs, in the order they run at each client count.
    pub const ALL: [Setup; 5] = [
        Setup::HaPlaintext,
        Setup::HaClusterKey,
        Setup::HaSecured,
        Setup::EtcdPlaintext,
        Setup::EtcdTls,
    ];

    /// Its name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Setup::HaPlaintext => "ha plaintext",
            Setup::HaClusterKey => "ha cluster key (PSK), HTTP",
            Setup::HaSecured => "ha secured (mTLS, HTTPS + token)",
            Setup::EtcdPlaintext => "etcd plaintext",
            Setup::EtcdTls => "etcd TLS (peer mTLS + client https)",
        }
    }

    /// Whether it needs the `bot`'s issue-13 files (`bot certs init`, `bot keygen`).
    pub fn needs_bot_secrets(self) -> bool {
        matches!(self, Setup::HaClusterKey | Setup::HaSecured)
    }

    /// The same system's plaintext configuration, the base of its ratios.
    pub fn baseline(self) -> Setup {
        match self {
            Setup::HaPlaintext | Setup::HaClusterKey | Setup::HaSecured => Setup::HaPlaintext,
            Setup::EtcdPlaintext | Setup::EtcdTls => Setup::EtcdPlaintext,
        }
    }
}

/// The files every secured cluster of the run uses, made once at the start.
#[derive(Debug)]
pub struct Secrets {
    /// The `bot` executable every ha cluster runs.
    pub bot_executable: PathBuf,
    /// ha's: CA and node certificates, cluster key, admin token (made by the `bot` binary);
    /// `None` when no configuration of the run needs them.
    pub bot: Option<BotSecurity>,
    /// etcd's: CA and member certificates (made with rcgen).
    pub etcd: EtcdTls,
    // Removed on drop, after every cluster that reads these files is gone.
    _directory: tempfile::TempDir,
}

impl Secrets {
    /// Make them in a fresh directory under `base_dir`, ha's with `bot_executable` when
    /// `with_bot` (else ha's secured configurations cannot start).
    ///
    /// # Errors
    /// A failed `bot certs init` / `bot keygen` (an older `bot` has neither) or rcgen error.
    pub fn generate(
        base_dir: &Path,
        bot_executable: Option<PathBuf>,
        with_bot: bool,
    ) -> Result<Self, PeerError> {
        std::fs::create_dir_all(base_dir)?;
        let bot_executable = bot_executable.unwrap_or_else(default_bot_executable);
        let directory = tempfile::Builder::new()
            .prefix("secrets-")
            .tempdir_in(base_dir)?;
        let bot = if with_bot {
            Some(BotSecurity::generate(
                &bot_executable,
                &directory.path().join("ha"),
                CLUSTER_NAME,
                CLUSTER_SIZE,
            )?)
        } else {
            None
        };
        let etcd = EtcdTls::generate(&directory.path().join("etcd"), CLUSTER_SIZE)?;
        Ok(Self {
            bot_executable,
            bot,
            etcd,
            _directory: directory,
        })
    }

    /// ha's flags for `setup` (none for etcd's setups).
    fn bot_security(&self, setup: Setup) -> Result<BotSecurity, PeerError> {
        let made = || {
            self.bot.clone().ok_or_else(|| {
                PeerError::Missing("the bot's certificates and keys were not made".to_string())
            })
        };
        Ok(match setup {
            Setup::HaClusterKey => BotSecurity {
                cluster_key_file: made()?.cluster_key_file,
                ..BotSecurity::default()
            },
            Setup::HaSecured => made()?,
            _ => BotSecurity::default(),
        })
    }
}

/// A running cluster of one configuration.
#[derive(Debug)]
pub enum Cluster {
    /// `bot` nodes.
    Ha(BotCluster),
    /// etcd members.
    Etcd(EtcdCluster),
}

/// Most time to wait for a fresh cluster's leader.
const LEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl Cluster {
    /// Spawn the cluster of `setup` with its data under `base_dir` (not waiting for it).
    ///
    /// # Errors
    /// A missing executable or a failed spawn.
    pub fn start(setup: Setup, secrets: &Secrets, base_dir: &Path) -> Result<Self, PeerError> {
        let base_dir: PathBuf = base_dir.to_path_buf();
        Ok(match setup {
            Setup::HaPlaintext | Setup::HaClusterKey | Setup::HaSecured => {
                let mut options = BotClusterOptions::new(CLUSTER_SIZE);
                options.cluster_name = CLUSTER_NAME.to_string();
                options.base_dir = Some(base_dir);
                options.executable = secrets.bot_executable.clone();
                options.security = secrets.bot_security(setup)?;
                Cluster::Ha(BotCluster::start(options)?)
            }
            Setup::EtcdPlaintext | Setup::EtcdTls => {
                let mut options = EtcdClusterOptions::new(CLUSTER_SIZE);
                options.base_dir = Some(base_dir);
                if setup == Setup::EtcdTls {
                    options.tls = Some(secrets.etcd.clone());
                }
                Cluster::Etcd(EtcdCluster::start(options)?)
            }
        })
    }

    /// Wait for the leader (and, for ha, every node healthy); its index.
    ///
    /// # Errors
    /// No leader within 30 s: the message names the log directory.
    pub async fn wait_for_leader(&self) -> Result<usize, String> {
        match self {
            Cluster::Ha(cluster) => {
                let logs = || format!("logs in {}", cluster.directory().display());
                let leader = cluster
                    .wait_for_leader(LEADER_TIMEOUT)
                    .await
                    .map_err(|error| format!("{error} ({})", logs()))?;
                cluster
                    .wait_until_healthy(LEADER_TIMEOUT)
                    .await
                    .map_err(|error| format!("{error} ({})", logs()))?;
                Ok(leader)
            }
            Cluster::Etcd(cluster) => cluster
                .wait_for_leader(LEADER_TIMEOUT)
                .await
                .map_err(|error| format!("{error} (logs in {})", cluster.directory().display())),
        }
    }

    /// Member `index` as a load target.
    pub fn target(&self, index: usize) -> Target {
        match self {
            Cluster::Ha(cluster) => cluster.target(index),
            Cluster::Etcd(cluster) => cluster.target(index),
        }
    }

    /// Process ids of the running members.
    pub fn pids(&self) -> Vec<u32> {
        match self {
            Cluster::Ha(cluster) => cluster.pids(),
            Cluster::Etcd(cluster) => cluster.pids(),
        }
    }
}

impl From<Cluster> for ha_bench::http_load::failover::FailoverCluster {
    fn from(cluster: Cluster) -> Self {
        match cluster {
            Cluster::Ha(cluster) => Self::Ha(cluster),
            Cluster::Etcd(cluster) => Self::Etcd(cluster),
        }
    }
}
