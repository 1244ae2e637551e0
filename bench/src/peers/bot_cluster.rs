//! N `bot` processes on loopback, each one ha node.

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{BotSecurity, PROBE_INTERVAL, PeerError, PortPicker, ProcessGuard, probe_client};
use crate::http_load::target::{System, Target};

/// How to start a [`BotCluster`].
#[derive(Clone, Debug)]
pub struct BotClusterOptions {
    /// How many nodes (1 to 64).
    pub nodes: usize,
    /// The `bot` executable; default `<workspace>/target/release/bot`.
    pub executable: PathBuf,
    /// `--cluster` name; default "bench".
    pub cluster_name: String,
    /// `--priority` per node; default `10 * (nodes - i)`, so n1 leads.
    pub priorities: Vec<u32>,
    /// Directory under which the temporary data directory is made; default the system's.
    pub base_dir: Option<PathBuf>,
    /// Extra arguments given to every node, after the standard ones.
    pub extra_args: Vec<String>,
    /// Mutual TLS, cluster key, admin tokens, HTTPS; default none (loopback plaintext).
    pub security: BotSecurity,
}

/// Most nodes a [`BotCluster`] starts.
pub const BOT_NODES_MAX: usize = 64;

impl BotClusterOptions {
    /// Defaults for `nodes` nodes.
    pub fn new(nodes: usize) -> Self {
        Self {
            nodes,
            executable: default_bot_executable(),
            cluster_name: "bench".to_string(),
            priorities: (0..nodes)
                .map(|index| 10 * (nodes - index) as u32)
                .collect(),
            base_dir: None,
            extra_args: Vec::new(),
            security: BotSecurity::default(),
        }
    }
}

/// `<workspace>/target/release/bot` (or under `CARGO_TARGET_DIR` when set at run time).
pub fn default_bot_executable() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("release/bot")
}

#[derive(Debug)]
struct BotMember {
    id: String,
    gossip: SocketAddr,
    http: SocketAddr,
    priority: u32,
    data_dir: PathBuf,
    log_path: PathBuf,
    process: Option<ProcessGuard>,
}

/// A running cluster of `bot` processes. Dropping it kills every node (SIGKILL, reaped) and
/// then removes the data directories.
#[derive(Debug)]
pub struct BotCluster {
    // Dropped first: the processes die before their directories go.
    members: Vec<BotMember>,
    executable: PathBuf,
    cluster_name: String,
    extra_args: Vec<String>,
    security: BotSecurity,
    root_ca: Option<reqwest::Certificate>,
    client: reqwest::Client,
    directory: tempfile::TempDir,
}

impl BotCluster {
    /// Pick ports, make the data directories and spawn every node (not waiting for a leader:
    /// see [`wait_for_leader`](Self::wait_for_leader)).
    ///
    /// # Errors
    /// [`PeerError::Missing`] when the executable does not exist; IO errors from spawning.
    pub fn start(options: BotClusterOptions) -> Result<Self, PeerError> {
        if !options.executable.is_file() {
            return Err(PeerError::Missing(format!(
                "{} not found: build it with `cargo build --release --bin bot`",
                options.executable.display()
            )));
        }
        if options.nodes == 0 || options.nodes > BOT_NODES_MAX {
            return Err(PeerError::Member {
                index: options.nodes,
                reason: "node count must be 1 to 64",
            });
        }
        let directory = match &options.base_dir {
            Some(base) => {
                std::fs::create_dir_all(base)?;
                tempfile::Builder::new().prefix("bots-").tempdir_in(base)?
            }
            None => tempfile::Builder::new().prefix("bots-").tempdir()?,
        };
        let mut ports = PortPicker::default();
        let mut members = Vec::with_capacity(options.nodes);
        for index in 0..options.nodes {
            let id = format!("n{}", index + 1);
            members.push(BotMember {
                gossip: ports.udp_and_tcp()?,
                http: ports.tcp()?,
                priority: options.priorities.get(index).copied().unwrap_or(1),
                data_dir: directory.path().join(&id),
                log_path: directory.path().join(format!("{id}.log")),
                id,
                process: None,
            });
        }
        ports.release();
        let root_ca = options.security.root_certificate()?;
        let mut cluster = Self {
            members,
            executable: options.executable,
            cluster_name: options.cluster_name,
            extra_args: options.extra_args,
            client: probe_client(root_ca.as_ref(), None)?,
            security: options.security,
            root_ca,
            directory,
        };
        for index in 0..options.nodes {
            cluster.restart(index)?;
        }
        Ok(cluster)
    }

    /// Number of nodes (running or not).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no node.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Node `index`'s id ("n1" for index 0).
    pub fn id(&self, index: usize) -> &str {
        &self.members[index].id
    }

    /// Node `index`'s admin HTTP address.
    pub fn http_addr(&self, index: usize) -> SocketAddr {
        self.members[index].http
    }

    /// Node `index`'s base URL, `http://127.0.0.1:P` (`https://` when secured so).
    pub fn url(&self, index: usize) -> String {
        let scheme = if self.security.https { "https" } else { "http" };
        format!("{scheme}://{}", self.members[index].http)
    }

    /// Node `index` as a load target: its URL, the cluster's admin token and the CA its HTTPS
    /// certificate chains to.
    pub fn target(&self, index: usize) -> Target {
        Target {
            system: System::Ha,
            base: self.url(index),
            token: self.security.admin_token.clone(),
            root_ca: self.root_ca.clone(),
            identity: None,
        }
    }

    /// `GET <node>/v1/health`, with the cluster's token when it has one (the path is open to
    /// load balancers, but a bot may protect it).
    async fn health(&self, index: usize) -> Option<reqwest::Response> {
        let request = self.client.get(format!("{}/v1/health", self.url(index)));
        let request = match &self.security.admin_token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        request.send().await.ok()
    }

    /// Node `index`'s gossip (and replication) address.
    pub fn gossip_addr(&self, index: usize) -> SocketAddr {
        self.members[index].gossip
    }

    /// Node `index`'s priority.
    pub fn priority(&self, index: usize) -> u32 {
        self.members[index].priority
    }

    /// Node `index`'s stderr/stdout log file.
    pub fn log_path(&self, index: usize) -> &Path {
        &self.members[index].log_path
    }

    /// The temporary directory holding data and logs.
    pub fn directory(&self) -> &Path {
        self.directory.path()
    }

    /// Node `index`'s process id while it runs.
    pub fn pid(&self, index: usize) -> Option<u32> {
        self.members[index].process.as_ref().map(ProcessGuard::pid)
    }

    /// Process ids of the running nodes.
    pub fn pids(&self) -> Vec<u32> {
        (0..self.len())
            .filter_map(|index| self.pid(index))
            .collect()
    }

    /// SIGKILL node `index` and reap it.
    ///
    /// # Errors
    /// [`PeerError::Member`] when it is not running; the IO error of reaping.
    pub fn kill(&mut self, index: usize) -> Result<(), PeerError> {
        let process = self.members[index]
            .process
            .take()
            .ok_or(PeerError::Member {
                index,
                reason: "not running",
            })?;
        process.kill()?;
        Ok(())
    }

    /// Start node `index` (again, from its data directory). Returns its process id.
    ///
    /// # Errors
    /// [`PeerError::Member`] when it is already running; IO errors from spawning.
    pub fn restart(&mut self, index: usize) -> Result<u32, PeerError> {
        let member = &self.members[index];
        if member.process.is_some() {
            return Err(PeerError::Member {
                index,
                reason: "already running",
            });
        }
        let seeds: Vec<String> = self
            .members
            .iter()
            .filter(|other| other.id != member.id)
            .map(|other| other.gossip.to_string())
            .collect();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&member.log_path)?;
        let child = Command::new(&self.executable)
            .arg("--id")
            .arg(&member.id)
            .arg("--bind")
            .arg(member.gossip.to_string())
            .arg("--http")
            .arg(member.http.to_string())
            .arg("--seeds")
            .arg(seeds.join(","))
            .arg("--priority")
            .arg(member.priority.to_string())
            .arg("--data-dir")
            .arg(&member.data_dir)
            .arg("--cluster")
            .arg(&self.cluster_name)
            // The node leaves if this process dies without dropping the guard.
            .arg("--stop-on-stdin-eof")
            .args(self.security.node_args(&member.id))
            .args(&self.extra_args)
            .stdin(Stdio::piped())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()?;
        let process = ProcessGuard::new(child);
        let pid = process.pid();
        self.members[index].process = Some(process);
        Ok(pid)
    }

    /// One round of leader discovery: the index of a running node whose `GET /v1/health`
    /// answers 200 with `"role": "leader"`, if any.
    pub async fn leader(&self) -> Option<usize> {
        for index in 0..self.len() {
            if self.members[index].process.is_none() {
                continue;
            }
            let Some(response) = self.health(index).await else {
                continue;
            };
            if response.status() != reqwest::StatusCode::OK {
                continue;
            }
            let Ok(body) = response.json::<serde_json::Value>().await else {
                continue;
            };
            let role = body.get("role").and_then(|role| role.as_str());
            if role.is_some_and(|role| role.eq_ignore_ascii_case("leader")) {
                return Some(index);
            }
        }
        None
    }

    /// Poll [`leader`](Self::leader) until a node leads or `timeout` passes.
    ///
    /// # Errors
    /// [`PeerError::NoLeader`] after `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<usize, PeerError> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(index) = self.leader().await {
                return Ok(index);
            }
            tokio::time::sleep(super::PROBE_INTERVAL).await;
        }
        Err(PeerError::NoLeader(timeout))
    }

    /// Wait until every running node answers `GET /v1/health` with 200 (in a quorum).
    ///
    /// # Errors
    /// [`PeerError::NoLeader`] after `timeout`.
    pub async fn wait_until_healthy(&self, timeout: Duration) -> Result<(), PeerError> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let mut healthy = 0;
            let mut running = 0;
            for index in 0..self.len() {
                if self.members[index].process.is_none() {
                    continue;
                }
                running += 1;
                if let Some(response) = self.health(index).await
                    && response.status() == reqwest::StatusCode::OK
                {
                    healthy += 1;
                }
            }
            if running > 0 && healthy == running {
                return Ok(());
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
        Err(PeerError::NoLeader(timeout))
    }
}
