//! A cluster of `bot` node processes on loopback for tests, and blocking calls to their admin
//! HTTP API. Every node is killed by its process id when the cluster is dropped.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ha_examples::journal::{JournalEntry, JournalPage};
use serde_json::Value;

use super::Bot;
use super::fabric::Fabric;

/// One node's fixed identity: a restart reuses the ports and the data dir.
pub struct NodeSpec {
    /// Node id.
    pub id: String,
    /// Gossip (UDP) and RPC (TCP) address.
    pub bind: SocketAddr,
    /// Admin HTTP address.
    pub http: SocketAddr,
    /// Data dir.
    pub data_dir: PathBuf,
    /// Priority.
    pub priority: u32,
    /// The command prefix that runs it in its network namespace (empty on loopback).
    pub exec_prefix: Vec<String>,
    /// Whether the node is started with `--insecure` (nodes on a fabric: see `node_arguments`).
    pub insecure: bool,
    /// More flags for every start of this node (the security flags of a secured cluster).
    pub extra: Vec<String>,
}

/// How the test reaches a secured cluster's admin API: HTTPS trusting these CA files, and the
/// bearer token sent with every call (unless a call names its own).
pub struct AdminAccess {
    /// PEM files of the CAs the client trusts (several during a CA rotation).
    pub ca_files: Vec<PathBuf>,
    /// The token sent by [`TestCluster::call`].
    pub token: Option<String>,
}

/// The nodes and their processes.
pub struct TestCluster {
    _dir: tempfile::TempDir,
    /// Each node's spec.
    pub specs: Vec<NodeSpec>,
    /// Each node's running process, if any.
    pub bots: Vec<Option<Bot>>,
    /// The stdout lines of each node's earlier processes (killed or stopped).
    ended_stdout: Vec<Vec<String>>,
    client: reqwest::blocking::Client,
    /// `http` or `https`.
    scheme: &'static str,
    /// The bearer token [`call`](Self::call) sends.
    token: Option<String>,
    /// The CA files the admin client trusts (empty: plain HTTP).
    ca_files: Vec<PathBuf>,
}

/// A blocking HTTP client for the admin API: HTTPS trusting `ca_files` when there are any.
///
/// # Panics
/// When a CA file cannot be read or is not a PEM certificate.
pub fn admin_client(ca_files: &[PathBuf], timeout: Duration) -> reqwest::blocking::Client {
    let mut builder = reqwest::blocking::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout);
    for file in ca_files {
        builder = builder.add_root_certificate(read_certificate(file));
    }
    builder.build().expect("HTTP client")
}

fn read_certificate(file: &Path) -> reqwest::Certificate {
    let pem =
        std::fs::read(file).unwrap_or_else(|error| panic!("read {}: {error}", file.display()));
    reqwest::Certificate::from_pem(&pem)
        .unwrap_or_else(|error| panic!("{} is not a PEM certificate: {error}", file.display()))
}

/// A loopback port free for both UDP and TCP right now, outside the kernel's ephemeral range.
///
/// A node keeps its ports across restarts. A port the kernel handed out with `bind(:0)` lies
/// in the ephemeral range, so while the node is down an outgoing connection (any test
/// client) may take it as its source port and the restart fails with "address in use".
/// Ports below that range are never chosen by the kernel for outgoing connections.
pub fn free_bind_addr() -> SocketAddr {
    for _ in 0..512 {
        let addr = next_candidate();
        let Ok(udp) = UdpSocket::bind(addr) else {
            continue;
        };
        if TcpListener::bind(addr).is_ok() {
            drop(udp);
            return addr;
        }
    }
    panic!("no port below the ephemeral range is free for both UDP and TCP");
}

/// A loopback TCP port free right now, outside the kernel's ephemeral range.
pub fn free_tcp_addr() -> SocketAddr {
    for _ in 0..512 {
        let addr = next_candidate();
        if TcpListener::bind(addr).is_ok() {
            return addr;
        }
    }
    panic!("no TCP port below the ephemeral range is free");
}

/// The next port to try: a walk over `[FIRST_PORT, ephemeral start)` that starts at a place
/// chosen by the process id (test binaries run one after another, but a leftover process of
/// an earlier one may still hold ports) and never hands out a port twice in one process
/// (tests of one binary run on parallel threads and bind their ports later).
fn next_candidate() -> SocketAddr {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST_PORT: u32 = 10_000;
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    let end = ephemeral_start().max(FIRST_PORT + 1_000);
    let span = end - FIRST_PORT;
    let next = NEXT.get_or_init(|| AtomicU32::new(std::process::id().wrapping_mul(7_919) % span));
    let offset = next.fetch_add(1, Ordering::Relaxed) % span;
    let port = u16::try_from(FIRST_PORT + offset).expect("ports below the ephemeral range fit u16");
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The first port of the kernel's ephemeral range (Linux's default, 32768, if unreadable).
fn ephemeral_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

impl TestCluster {
    /// Start `priorities.len()` nodes n1, n2, ... with those priorities, on loopback.
    pub fn start(priorities: &[u32]) -> Self {
        Self::start_on(None, priorities)
    }

    /// Start nodes with `priorities`: on loopback, or each in its namespace of `fabric`. With
    /// a fabric, the calling thread enters the fabric's switch namespace first (see
    /// [`Fabric::enter_switch`]), so that it, and the client threads it spawns later, reach
    /// every node.
    pub fn start_on(fabric: Option<&Fabric>, priorities: &[u32]) -> Self {
        Self::start_on_with_env(fabric, priorities, &[])
    }

    /// Start nodes with `priorities` on loopback, each with the environment variables `env`
    /// added (for example `("HA_TIMING_PRESET", "wan")`): they are given through `env` in
    /// the command prefix, which execs the node in place, so the process id is still the
    /// node's. Restarts keep them.
    pub fn start_with_env(priorities: &[u32], env: &[(&str, &str)]) -> Self {
        Self::start_on_with_env(None, priorities, env)
    }

    /// Start nodes with `priorities` on loopback, each given the flags `node_flags(id)` on
    /// every start (cluster key, certificates, admin tokens), and reach their admin API as
    /// `access` says (plain HTTP without a token when `None`).
    pub fn start_secured(
        priorities: &[u32],
        node_flags: impl Fn(&str) -> Vec<String>,
        access: Option<AdminAccess>,
    ) -> Self {
        let mut cluster = Self::build(None, priorities, &[], &node_flags);
        if let Some(access) = access {
            cluster.client = admin_client(&access.ca_files, Duration::from_secs(15));
            cluster.scheme = if access.ca_files.is_empty() {
                "http"
            } else {
                "https"
            };
            cluster.token = access.token;
            cluster.ca_files = access.ca_files;
        }
        for index in 0..cluster.specs.len() {
            cluster.spawn(index);
        }
        cluster
    }

    fn start_on_with_env(
        fabric: Option<&Fabric>,
        priorities: &[u32],
        env: &[(&str, &str)],
    ) -> Self {
        let mut cluster = Self::build(fabric, priorities, env, &|_| Vec::new());
        for index in 0..cluster.specs.len() {
            cluster.spawn(index);
        }
        cluster
    }

    /// The nodes' specs and an admin client, no process started yet.
    fn build(
        fabric: Option<&Fabric>,
        priorities: &[u32],
        env: &[(&str, &str)],
        node_flags: &dyn Fn(&str) -> Vec<String>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        if let Some(fabric) = fabric {
            fabric.enter_switch();
        }
        let specs: Vec<NodeSpec> = priorities
            .iter()
            .enumerate()
            .map(|(index, priority)| {
                let id = format!("n{}", index + 1);
                let (bind, http, mut exec_prefix) = match fabric {
                    Some(fabric) => (
                        SocketAddr::from((fabric.address(index), 7000)),
                        SocketAddr::from((fabric.address(index), 8000)),
                        fabric.exec_prefix(index),
                    ),
                    None => (free_bind_addr(), free_tcp_addr(), Vec::new()),
                };
                if !env.is_empty() {
                    exec_prefix.push("env".to_string());
                    exec_prefix.extend(env.iter().map(|(name, value)| format!("{name}={value}")));
                }
                NodeSpec {
                    data_dir: dir.path().join(&id),
                    extra: node_flags(&id),
                    id,
                    bind,
                    http,
                    priority: *priority,
                    exec_prefix,
                    insecure: fabric.is_some(),
                }
            })
            .collect();
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .expect("HTTP client");
        Self {
            _dir: dir,
            bots: specs.iter().map(|_| None).collect(),
            ended_stdout: specs.iter().map(|_| Vec::new()).collect(),
            specs,
            client,
            scheme: "http",
            token: None,
            ca_files: Vec::new(),
        }
    }

    /// The command line that runs node `index`.
    pub fn node_arguments(&self, index: usize) -> Vec<String> {
        let spec = &self.specs[index];
        let seeds: Vec<String> = self
            .specs
            .iter()
            .filter(|other| other.id != spec.id)
            .map(|other| other.bind.to_string())
            .collect();
        let mut arguments: Vec<String> = [
            "--id",
            &spec.id,
            "--bind",
            &spec.bind.to_string(),
            "--http",
            &spec.http.to_string(),
            "--seeds",
            &seeds.join(","),
            "--priority",
            &spec.priority.to_string(),
            "--data-dir",
            &spec.data_dir.to_string_lossy(),
            "--cluster",
            "bot-test",
            // Every node is started together: the cluster is founded by all of them.
            "--bootstrap-expect",
            &self.specs.len().to_string(),
            "--stop-on-stdin-eof",
        ]
        .iter()
        .map(|argument| argument.to_string())
        .collect();
        // A node on a fabric binds a 10.x address in its namespace, which the node refuses
        // without a cluster key or certificates (issue 13). The fabric tests exercise faults,
        // not security (tests/processes/security.rs and key_rotation.rs do that), so they say
        // `--insecure` in so many words; loopback clusters need nothing.
        if seeds.is_empty() {
            // A one-node cluster has no seeds (an empty list is not a list of addresses).
            if let Some(at) = arguments.iter().position(|argument| argument == "--seeds") {
                arguments.drain(at..at + 2);
            }
        }
        if spec.insecure {
            arguments.push("--insecure".to_string());
        }
        arguments.extend(spec.extra.iter().cloned());
        arguments
    }

    /// Start (or restart) node `index`.
    pub fn spawn(&mut self, index: usize) {
        let arguments = self.node_arguments(index);
        let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
        let prefix = self.specs[index].exec_prefix.clone();
        self.bots[index] = Some(Bot::start_with(&prefix, &arguments));
    }

    /// Every stdout line node `index` printed, over all its processes.
    pub fn stdout_lines(&mut self, index: usize) -> Vec<String> {
        let mut lines = self.ended_stdout[index].clone();
        if let Some(bot) = self.bots[index].as_mut() {
            lines.extend_from_slice(bot.stdout_lines());
        }
        lines
    }

    /// Send `signal` to node `index`'s process.
    pub fn signal(&self, index: usize, signal: nix::sys::signal::Signal) {
        let pid = self.bots[index].as_ref().expect("running").pid();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).expect("signal");
    }

    /// SIGKILL node `index` and wait for it, keeping what it printed; returns its stderr.
    fn kill_and_keep_stdout(&mut self, index: usize) -> Option<String> {
        let bot = self.bots[index].take()?;
        let pid = nix::unistd::Pid::from_raw(bot.pid() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        // A stopped process dies of SIGKILL too; nothing to continue.
        let finished = bot.finish(Duration::from_secs(10));
        self.ended_stdout[index].extend(finished.stdout.lines().map(str::to_string));
        Some(finished.stderr)
    }

    /// How many entries the journal holds, read through node `index` (`None` when it does not
    /// answer 200).
    pub fn journal_length(&self, index: usize) -> Option<u64> {
        let (status, body) = self.call(index, "GET", "/bot/journal?limit=1", "")?;
        if status != 200 {
            return None;
        }
        body["total_entries"].as_u64()
    }

    /// SIGKILL node `index`.
    pub fn kill(&mut self, index: usize) {
        self.kill_and_keep_stdout(index);
    }

    /// SIGTERM node `index` and wait for it to exit; returns its exit code and its stderr.
    pub fn terminate_with_log(&mut self, index: usize) -> (Option<i32>, String) {
        let Some(bot) = self.bots[index].take() else {
            return (None, String::new());
        };
        let pid = nix::unistd::Pid::from_raw(bot.pid() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let finished = bot.finish(Duration::from_secs(30));
        self.ended_stdout[index].extend(finished.stdout.lines().map(str::to_string));
        (finished.status.code(), finished.stderr)
    }

    /// SIGTERM node `index` and wait for it to exit; returns its exit code.
    pub fn terminate(&mut self, index: usize) -> Option<i32> {
        let bot = self.bots[index].take()?;
        let pid = nix::unistd::Pid::from_raw(bot.pid() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let finished = bot.finish(Duration::from_secs(30));
        self.ended_stdout[index].extend(finished.stdout.lines().map(str::to_string));
        finished.status.code()
    }

    /// Kill every node and return the last lines of each one's log, to explain a failure.
    pub fn kill_and_collect_logs(&mut self) -> String {
        let mut text = String::new();
        for index in 0..self.bots.len() {
            if let Some(stderr) = self.kill_and_keep_stdout(index) {
                let lines: Vec<&str> = stderr.lines().collect();
                let tail = &lines[lines.len().saturating_sub(40)..];
                text.push_str(&format!(
                    "--- {} log tail:\n{}\n",
                    self.specs[index].id,
                    tail.join("\n")
                ));
            }
        }
        text
    }

    /// Whether node `index` runs.
    pub fn running(&self, index: usize) -> bool {
        self.bots[index].is_some()
    }

    /// The URL of `path` on node `index`'s admin API (`http` or `https`).
    pub fn url(&self, index: usize, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.specs[index].http)
    }

    /// The admin API's base URL of node `index` (`https://127.0.0.1:PORT` on a TLS cluster).
    pub fn base_url(&self, index: usize) -> String {
        self.url(index, "")
    }

    /// The admin client the cluster uses (cheap to clone; for client threads).
    pub fn client(&self) -> reqwest::blocking::Client {
        self.client.clone()
    }

    /// The CA files the admin client trusts (empty on plain HTTP).
    pub fn ca_files(&self) -> Vec<PathBuf> {
        self.ca_files.clone()
    }

    /// The bearer token [`call`](Self::call) sends, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// `method path` on node `index` with `body`: the status and the body as JSON (or as a
    /// JSON string when it is not JSON). `None` when the node did not answer.
    pub fn call(&self, index: usize, method: &str, path: &str, body: &str) -> Option<(u16, Value)> {
        self.call_as(index, self.token.as_deref(), method, path, body)
    }

    /// [`call`](Self::call) with the bearer `token` given (none when `None`).
    pub fn call_as(
        &self,
        index: usize,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: &str,
    ) -> Option<(u16, Value)> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self
            .client
            .request(method, self.url(index, path))
            .body(body.to_string());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().ok()?;
        let status = response.status().as_u16();
        let text = response.text().ok()?;
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Some((status, json))
    }

    /// The same as [`call`](Self::call), panicking when the node does not answer.
    pub fn must(&self, index: usize, method: &str, path: &str, body: &str) -> (u16, Value) {
        self.call(index, method, path, body)
            .unwrap_or_else(|| panic!("{} did not answer {method} {path}", self.specs[index].id))
    }

    /// Poll until `condition` holds, for at most `timeout`.
    pub fn wait_until<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut condition: impl FnMut(&Self) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = condition(self) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether node `index` reports itself leader with a quorum (health 200, role leader).
    pub fn leads(&self, index: usize) -> bool {
        matches!(
            self.call(index, "GET", "/v1/health", ""),
            Some((200, health)) if health["role"] == "leader"
        )
    }

    /// The running node that reports itself leader with a quorum (not in `except`).
    pub fn leader(&self, except: &[usize]) -> Option<usize> {
        (0..self.specs.len())
            .find(|&index| !except.contains(&index) && self.running(index) && self.leads(index))
    }

    /// Wait until the journal, read through node `index`, holds `more` entries beyond what it
    /// holds now.
    pub fn wait_for_journal_growth(&self, index: usize, more: u64, what: &str, timeout: Duration) {
        let length = self
            .journal_length(index)
            .unwrap_or_else(|| panic!("{} does not answer", self.specs[index].id));
        self.wait_until(what, timeout, |cluster| {
            cluster
                .journal_length(index)
                .filter(|now| *now >= length + more)
        });
    }

    /// Wait for a leader other than `except`.
    pub fn wait_for_leader(&self, except: &[usize], timeout: Duration) -> usize {
        self.wait_until("a leader", timeout, |cluster| cluster.leader(except))
    }

    /// Every journal entry, read through node `index`.
    pub fn journal(&self, index: usize) -> Vec<JournalEntry> {
        let mut entries = Vec::new();
        let mut position = Some(0usize);
        while let Some(at) = position {
            let (status, body) =
                self.must(index, "GET", &format!("/bot/journal?position={at}"), "");
            assert_eq!(status, 200, "{body}");
            let page: JournalPage = serde_json::from_value(body).expect("a journal page");
            if page.entries.is_empty() {
                break;
            }
            entries.extend(page.entries);
            position = page.next_position;
        }
        entries
    }

    /// A gauge's value from node `index`'s `/v1/metrics`.
    pub fn metric(&self, index: usize, name: &str) -> Option<f64> {
        let (status, body) = self.call(index, "GET", "/v1/metrics", "")?;
        let Value::String(text) = body else {
            return None;
        };
        if status != 200 {
            return None;
        }
        text.lines().find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
    }
}
