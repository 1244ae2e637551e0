//! A 3-node ha cluster whose leader runs inside the benchmark's process, the way a service
//! embeds ha, and whose two followers are this same executable in follower mode.
//!
//! ```text
//!   compare_native ── Node<()> n1 (priority 30, leads) ◀── load generator (node.kv())
//!        │                 │ gossip UDP + replication TCP on loopback
//!        └─spawn──▶ compare_native follower n2 (20), n3 (10)
//! ```
//!
//! Every node has its WAL on disk (fsync per group commit) and default timing
//! ([`Config::full_ha`]: `Timing::lan`), as the `bot` nodes of the HTTP comparison do.

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ha::{Config, Kv, Node, NodeId};
use ha_bench::peers::{PortPicker, ProcessGuard};

use super::load::PutWorker;

/// The cluster name all three nodes share.
const CLUSTER_NAME: &str = "bench-native";

/// Priorities of n1 (in this process, meant to lead), n2 and n3.
const PRIORITIES: [u32; 3] = [30, 20, 10];

/// Pause between two checks while waiting for the cluster.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// What a follower process needs to know, passed on its command line.
#[derive(Clone, Debug, clap::Args)]
pub struct FollowerArgs {
    /// Node id.
    #[arg(long)]
    pub id: String,
    /// Gossip (UDP) and replication (TCP) address.
    #[arg(long)]
    pub bind: SocketAddr,
    /// The other nodes' addresses.
    #[arg(long, value_delimiter = ',')]
    pub seeds: Vec<SocketAddr>,
    /// Leadership priority.
    #[arg(long)]
    pub priority: u32,
    /// WAL and node file directory.
    #[arg(long)]
    pub data_dir: PathBuf,
}

impl FollowerArgs {
    /// The node's configuration: the `full_ha` preset (3 voters, default timing) with a data
    /// directory, so the WAL is on disk.
    fn config(&self) -> Result<Config, String> {
        let id = NodeId::new(self.id.clone()).map_err(|error| error.to_string())?;
        let mut config = Config::full_ha(id, self.bind, self.seeds.clone());
        config.priority = ha::Priority(self.priority);
        config.data_dir = Some(self.data_dir.clone());
        config.cluster.name = CLUSTER_NAME.to_string();
        config.validate().map_err(|error| error.to_string())?;
        Ok(config)
    }
}

/// Follower mode: run one node until standard input closes (the parent's guard closes it, or
/// the parent died), then leave gracefully.
///
/// # Errors
/// An invalid configuration or a node that cannot start, as text.
pub fn run_follower(args: &FollowerArgs) -> Result<(), String> {
    let config = args.config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|error| format!("tokio runtime: {error}"))?;
    runtime.block_on(async move {
        let node = Node::builder(config)
            .serve_http(false)
            .start()
            .await
            .map_err(|error| format!("start: {error}"))?;
        let (closed, on_closed) = tokio::sync::oneshot::channel::<()>();
        // A plain thread does the blocking read, so the runtime never waits for it; it ends
        // with the process.
        std::thread::Builder::new()
            .name("stdin-watch".into())
            .spawn(move || {
                let mut buffer = [0u8; 64];
                while matches!(std::io::Read::read(&mut std::io::stdin(), &mut buffer), Ok(n) if n > 0)
                {
                }
                let _ = closed.send(());
            })
            .map_err(|error| format!("stdin watcher: {error}"))?;
        let _ = on_closed.await;
        node.shutdown().await;
        Ok(())
    })
}

/// The running cluster. Dropping it stops the in-process leader at once (like a crash), kills
/// the followers (SIGKILL, reaped) and removes the data directories.
pub struct NativeCluster {
    // Dropped in this order: the leader, the followers, then their directories.
    leader: Node<()>,
    followers: Vec<ProcessGuard>,
    logs: Vec<PathBuf>,
    directory: tempfile::TempDir,
}

impl NativeCluster {
    /// Start the two followers as child processes of `executable`, then the leader in this
    /// process, with data directories under `base_dir`; wait up to `timeout` for the
    /// in-process node to lead a working majority.
    ///
    /// # Errors
    /// A port, spawn or start failure, a follower that exited, or no leadership in time.
    pub async fn start(
        executable: &Path,
        base_dir: &Path,
        timeout: Duration,
    ) -> Result<Self, String> {
        std::fs::create_dir_all(base_dir)
            .map_err(|error| format!("{}: {error}", base_dir.display()))?;
        let directory = tempfile::Builder::new()
            .prefix("native-")
            .tempdir_in(base_dir)
            .map_err(|error| format!("temporary directory: {error}"))?;
        let mut ports = PortPicker::default();
        let mut addrs = Vec::new();
        for _ in 0..PRIORITIES.len() {
            addrs.push(
                ports
                    .udp_and_tcp()
                    .map_err(|error| format!("ports: {error}"))?,
            );
        }
        ports.release();
        let seeds_of = |index: usize| -> Vec<SocketAddr> {
            addrs
                .iter()
                .enumerate()
                .filter(|(other, _)| *other != index)
                .map(|(_, addr)| *addr)
                .collect()
        };
        let mut followers = Vec::new();
        let mut logs = Vec::new();
        for index in 1..PRIORITIES.len() {
            let id = format!("n{}", index + 1);
            let log_path = directory.path().join(format!("{id}.log"));
            let log = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .map_err(|error| format!("{}: {error}", log_path.display()))?;
            let seeds: Vec<String> = seeds_of(index).iter().map(ToString::to_string).collect();
            let child = Command::new(executable)
                .arg("follower")
                .arg("--id")
                .arg(&id)
                .arg("--bind")
                .arg(addrs[index].to_string())
                .arg("--seeds")
                .arg(seeds.join(","))
                .arg("--priority")
                .arg(PRIORITIES[index].to_string())
                .arg("--data-dir")
                .arg(directory.path().join(&id))
                .stdin(Stdio::piped())
                .stdout(Stdio::from(
                    log.try_clone().map_err(|error| error.to_string())?,
                ))
                .stderr(Stdio::from(log))
                .spawn()
                .map_err(|error| format!("spawn {}: {error}", executable.display()))?;
            followers.push(ProcessGuard::new(child));
            logs.push(log_path);
        }
        let leader_args = FollowerArgs {
            id: "n1".to_string(),
            bind: addrs[0],
            seeds: seeds_of(0),
            priority: PRIORITIES[0],
            data_dir: directory.path().join("n1"),
        };
        let leader = Node::builder(leader_args.config()?)
            .serve_http(false)
            .start()
            .await
            .map_err(|error| format!("start n1: {error}"))?;
        let mut cluster = Self {
            leader,
            followers,
            logs,
            directory,
        };
        cluster.wait_until_leading(timeout).await?;
        Ok(cluster)
    }

    /// Wait until the in-process node leads and is in a working majority, failing early when
    /// a follower process has exited.
    async fn wait_until_leading(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            for (index, follower) in self.followers.iter_mut().enumerate() {
                if follower.has_exited() {
                    return Err(format!(
                        "follower n{} exited (log: {})",
                        index + 2,
                        self.logs[index].display()
                    ));
                }
            }
            if self.leader.is_leader()
                && let Ok(health) = self.leader.health().await
                && health.is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        Err(format!(
            "n1 did not lead a working majority within {timeout:?} (follower logs in {})",
            self.directory.path().display()
        ))
    }

    /// The follower processes' ids.
    pub fn follower_pids(&self) -> Vec<u32> {
        self.followers.iter().map(ProcessGuard::pid).collect()
    }

    /// A native client with its own session on the in-process leader.
    pub fn worker(&self) -> NativeWorker {
        NativeWorker(self.leader.kv())
    }
}

/// ha's native Rust client: a [`Kv`] handle on a session of its own on the node in this process, writing at
/// QUORUM (the same level as `PUT /v1/kv`).
pub struct NativeWorker(Kv<()>);

impl PutWorker for NativeWorker {
    async fn put(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        self.0
            .put(key, value, ha::Consistency::Quorum)
            .await
            .map(|_version| ())
            .map_err(|error| error.to_string())
    }
}
