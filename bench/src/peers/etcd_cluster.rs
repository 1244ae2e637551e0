//! A 3-member (or N) etcd cluster on loopback.

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{EtcdTls, PROBE_INTERVAL, PeerError, PortPicker, ProcessGuard, probe_client};
use crate::http_load::target::{System, Target};

/// Most members an [`EtcdCluster`] starts.
pub const ETCD_MEMBERS_MAX: usize = 9;

/// How to start an [`EtcdCluster`].
#[derive(Clone, Debug)]
pub struct EtcdClusterOptions {
    /// How many members (1 to 9).
    pub members: usize,
    /// The `etcd` executable; default the first `etcd` on `PATH`.
    pub executable: Option<PathBuf>,
    /// `--heartbeat-interval` in ms; etcd's default (100) when `None`.
    pub heartbeat_interval_ms: Option<u64>,
    /// `--election-timeout` in ms; etcd's default (1000) when `None`.
    pub election_timeout_ms: Option<u64>,
    /// Directory under which the temporary data directory is made; default the system's.
    pub base_dir: Option<PathBuf>,
    /// Peer and client TLS (`https` URLs, `--peer-client-cert-auth`); default none.
    pub tls: Option<EtcdTls>,
}

impl EtcdClusterOptions {
    /// Defaults for `members` members at etcd's default timing.
    pub fn new(members: usize) -> Self {
        Self {
            members,
            executable: None,
            heartbeat_interval_ms: None,
            election_timeout_ms: None,
            base_dir: None,
            tls: None,
        }
    }

    /// The same with `--heartbeat-interval` and `--election-timeout` set.
    pub fn with_timing(mut self, heartbeat_interval_ms: u64, election_timeout_ms: u64) -> Self {
        self.heartbeat_interval_ms = Some(heartbeat_interval_ms);
        self.election_timeout_ms = Some(election_timeout_ms);
        self
    }
}

/// The first `name` on `PATH` that is a file.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|directory| directory.join(name))
        .find(|candidate| candidate.is_file())
}

#[derive(Debug)]
struct EtcdMember {
    name: String,
    client: SocketAddr,
    peer: SocketAddr,
    data_dir: PathBuf,
    log_path: PathBuf,
    process: Option<ProcessGuard>,
}

/// A running etcd cluster. Dropping it kills every member (SIGKILL, reaped) and then removes
/// the data directories.
#[derive(Debug)]
pub struct EtcdCluster {
    // Dropped first: the processes die before their directories go.
    members: Vec<EtcdMember>,
    executable: PathBuf,
    initial_cluster: String,
    heartbeat_interval_ms: Option<u64>,
    election_timeout_ms: Option<u64>,
    tls: Option<EtcdTls>,
    root_ca: Option<reqwest::Certificate>,
    identity: Option<reqwest::Identity>,
    client: reqwest::Client,
    directory: tempfile::TempDir,
}

impl EtcdCluster {
    /// Pick ports and spawn every member (not waiting for a leader: see
    /// [`wait_for_leader`](Self::wait_for_leader)).
    ///
    /// # Errors
    /// [`PeerError::Missing`] when `etcd` is not found; IO errors from spawning.
    pub fn start(options: EtcdClusterOptions) -> Result<Self, PeerError> {
        let executable = match options.executable {
            Some(executable) => executable,
            None => find_on_path("etcd").ok_or_else(|| {
                PeerError::Missing(
                    "etcd not found on PATH: run bench/install_peers.sh (installs etcd-server)"
                        .to_string(),
                )
            })?,
        };
        if options.members == 0
            || options.members > ETCD_MEMBERS_MAX
            || options
                .tls
                .as_ref()
                .is_some_and(|tls| tls.members.len() < options.members)
        {
            return Err(PeerError::Member {
                index: options.members,
                reason: "member count must be 1 to 9, with a certificate each under TLS",
            });
        }
        let directory = match &options.base_dir {
            Some(base) => {
                std::fs::create_dir_all(base)?;
                tempfile::Builder::new().prefix("etcd-").tempdir_in(base)?
            }
            None => tempfile::Builder::new().prefix("etcd-").tempdir()?,
        };
        let (root_ca, identity) = match &options.tls {
            Some(tls) => (Some(tls.root_certificate()?), Some(tls.client_identity()?)),
            None => (None, None),
        };
        let mut ports = PortPicker::default();
        let mut members = Vec::with_capacity(options.members);
        for index in 0..options.members {
            let name = format!("e{}", index + 1);
            members.push(EtcdMember {
                client: ports.tcp()?,
                peer: ports.tcp()?,
                data_dir: directory.path().join(&name),
                log_path: directory.path().join(format!("{name}.log")),
                name,
                process: None,
            });
        }
        ports.release();
        let scheme = if options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let initial_cluster = members
            .iter()
            .map(|member| format!("{}={scheme}://{}", member.name, member.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Self {
            members,
            executable,
            initial_cluster,
            heartbeat_interval_ms: options.heartbeat_interval_ms,
            election_timeout_ms: options.election_timeout_ms,
            client: probe_client(root_ca.as_ref(), identity.as_ref())?,
            tls: options.tls,
            root_ca,
            identity,
            directory,
        };
        for index in 0..options.members {
            cluster.restart(index)?;
        }
        Ok(cluster)
    }

    /// Number of members (running or not).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Member `index`'s name ("e1" for index 0).
    pub fn name(&self, index: usize) -> &str {
        &self.members[index].name
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// Member `index`'s client URL, `http://127.0.0.1:C` (`https://` with TLS).
    pub fn url(&self, index: usize) -> String {
        format!("{}://{}", self.scheme(), self.members[index].client)
    }

    /// Member `index` as a load target: its URL and, with TLS, the CA to trust and the client
    /// certificate to present.
    pub fn target(&self, index: usize) -> Target {
        Target {
            system: System::Etcd,
            base: self.url(index),
            token: None,
            root_ca: self.root_ca.clone(),
            identity: self.identity.clone(),
        }
    }

    /// Member `index`'s client address.
    pub fn client_addr(&self, index: usize) -> SocketAddr {
        self.members[index].client
    }

    /// Member `index`'s log file.
    pub fn log_path(&self, index: usize) -> &Path {
        &self.members[index].log_path
    }

    /// The temporary directory holding data and logs.
    pub fn directory(&self) -> &Path {
        self.directory.path()
    }

    /// Member `index`'s process id while it runs.
    pub fn pid(&self, index: usize) -> Option<u32> {
        self.members[index].process.as_ref().map(ProcessGuard::pid)
    }

    /// Process ids of the running members.
    pub fn pids(&self) -> Vec<u32> {
        (0..self.len())
            .filter_map(|index| self.pid(index))
            .collect()
    }

    /// SIGKILL member `index` and reap it.
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

    /// Start member `index` (again, from its data directory, where etcd ignores the
    /// initial-cluster flags). Returns its process id.
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
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&member.log_path)?;
        let client_url = format!("{}://{}", self.scheme(), member.client);
        let peer_url = format!("{}://{}", self.scheme(), member.peer);
        let mut command = Command::new(&self.executable);
        command
            .arg("--name")
            .arg(&member.name)
            .arg("--data-dir")
            .arg(&member.data_dir)
            .arg("--listen-client-urls")
            .arg(&client_url)
            .arg("--advertise-client-urls")
            .arg(&client_url)
            .arg("--listen-peer-urls")
            .arg(&peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer_url)
            .arg("--initial-cluster")
            .arg(&self.initial_cluster)
            .arg("--initial-cluster-state")
            .arg("new")
            .arg("--initial-cluster-token")
            .arg("ha-bench");
        if let Some(tls) = &self.tls {
            let (cert, key) = &tls.members[index];
            command
                .arg("--cert-file")
                .arg(cert)
                .arg("--key-file")
                .arg(key)
                .arg("--trusted-ca-file")
                .arg(&tls.ca_file)
                .arg("--peer-cert-file")
                .arg(cert)
                .arg("--peer-key-file")
                .arg(key)
                .arg("--peer-trusted-ca-file")
                .arg(&tls.ca_file)
                .arg("--peer-client-cert-auth");
        }
        if let Some(heartbeat) = self.heartbeat_interval_ms {
            command.arg(format!("--heartbeat-interval={heartbeat}"));
        }
        if let Some(election) = self.election_timeout_ms {
            command.arg(format!("--election-timeout={election}"));
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()?;
        let process = ProcessGuard::new(child);
        let pid = process.pid();
        self.members[index].process = Some(process);
        Ok(pid)
    }

    /// One round of leader discovery: `POST /v3/maintenance/status` on each running member;
    /// the index of the member whose `header.member_id` equals the `leader` it reports.
    pub async fn leader(&self) -> Option<usize> {
        for index in 0..self.len() {
            if self.members[index].process.is_none() {
                continue;
            }
            let url = format!("{}/v3/maintenance/status", self.url(index));
            let Ok(response) = self.client.post(&url).body("{}").send().await else {
                continue;
            };
            if !response.status().is_success() {
                continue;
            }
            let Ok(body) = response.json::<serde_json::Value>().await else {
                continue;
            };
            let member_id = body.pointer("/header/member_id").and_then(json_id);
            let leader = body.get("leader").and_then(json_id);
            if let (Some(member_id), Some(leader)) = (member_id, leader)
                && leader != 0
                && member_id == leader
            {
                return Some(index);
            }
        }
        None
    }

    /// Poll [`leader`](Self::leader) until a member leads or `timeout` passes.
    ///
    /// # Errors
    /// [`PeerError::NoLeader`] after `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<usize, PeerError> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(index) = self.leader().await {
                return Ok(index);
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
        Err(PeerError::NoLeader(timeout))
    }
}

/// etcd's JSON gateway writes 64-bit integers as strings; accept numbers too.
fn json_id(value: &serde_json::Value) -> Option<u64> {
    match value {
        serde_json::Value::String(text) => text.parse().ok(),
        serde_json::Value::Number(number) => number.as_u64(),
        _ => None,
    }
}
