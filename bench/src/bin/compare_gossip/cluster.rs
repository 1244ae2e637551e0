//! One trial: a fresh 5-member cluster of ha bots or Serf agents on loopback, its join and its
//! failure detection measured from the members' own views.

use std::collections::BTreeMap;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::child_guard::ChildGuard;

/// Members per cluster.
pub const MEMBER_COUNT: usize = 5;
/// How often a member (bot or agent) is asked for its member list.
pub const POLL_MS: u64 = 20;
/// Longest a single `serf members` call may take before it is killed.
const SERF_CALL_MS_MAX: u64 = 2_000;
/// Longest a single `GET /v1/cluster` may take (connect, then read).
const HTTP_CALL_MS_MAX: u64 = 1_000;
/// Polls per member per trial at most (10 minutes at 20 ms).
const POLLS_MAX: usize = 30_000;
/// Quiet time between the join and the kill, so the detection is judged by a settled cluster.
const SETTLE_MS: u64 = 2_000;

/// What to benchmark.
pub enum System {
    /// `bot` processes at ha's default LAN timing.
    Ha {
        /// The bot binary.
        bot: PathBuf,
    },
    /// `serf agent` processes with `-profile=<profile>`.
    Serf {
        /// The serf binary.
        serf: PathBuf,
        /// `lan` (the default) or `local`.
        profile: &'static str,
    },
}

impl System {
    /// A short name for tables.
    pub fn label(&self) -> String {
        match self {
            System::Ha { .. } => String::from("ha (Timing::lan)"),
            System::Serf { profile, .. } => format!("serf (-profile={profile})"),
        }
    }

    /// The timing this system runs with, in words.
    pub fn timing(&self) -> &'static str {
        match self {
            System::Ha { .. } => {
                "probe period 500 ms, probe round trip 200 ms, suspect-to-down 1,500 ms, gossip interval 200 ms"
            }
            System::Serf {
                profile: "local", ..
            } => {
                "memberlist DefaultLocalConfig: probe interval 1 s, probe timeout 200 ms, suspicion 3 x probe interval (lifeguard: up to 6x that without confirmations), 1 indirect check, gossip interval 100 ms"
            }
            System::Serf { .. } => {
                "memberlist DefaultLANConfig: probe interval 1 s, probe timeout 500 ms, suspicion 4 x probe interval (lifeguard: up to 6x that without confirmations), 3 indirect checks, gossip interval 200 ms"
            }
        }
    }
}

/// How one observer holds one member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Alive,
    Failed,
    Left,
}

/// One member's whole member list, as polled, stamped when the answer arrived.
struct Observation {
    observer: usize,
    members: BTreeMap<usize, Status>,
    at: Instant,
}

/// Figures of one trial, in milliseconds; `None` where the bound was hit or a step failed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TrialResult {
    /// From spawning the 5th member until every member saw every other alive.
    pub join_ms: Option<f64>,
    /// From the SIGKILL until the first survivor reported the victim failed.
    pub detect_first_ms: Option<f64>,
    /// ... until every survivor did.
    pub detect_all_ms: Option<f64>,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

impl TrialResult {
    /// One line for the console.
    pub fn summary(&self) -> String {
        let show = |value: Option<f64>| value.map_or(String::from("-"), |ms| format!("{ms:.0} ms"));
        let mut line = format!(
            "join {}, detection first {} / all {}",
            show(self.join_ms),
            show(self.detect_first_ms),
            show(self.detect_all_ms)
        );
        if let Some(error) = &self.error {
            line.push_str(&format!(" ({error})"));
        }
        line
    }
}

/// The first port tried; below Linux's ephemeral range (32768-60999), so that the nodes'
/// own outgoing connections cannot take a port before the member meant for it binds it.
const PORT_BASE: u16 = 20_000;
/// Ports tried per trial at most.
const PORT_TRIES_MAX: u16 = 2_000;

/// `count` distinct loopback ports free for both TCP and UDP (ha shares one port for gossip and
/// replication), all held until every one is found, then released for the members to bind.
fn free_ports(count: usize, trial: usize) -> std::io::Result<Vec<u16>> {
    // Spread consecutive trials (and concurrent runs) over the range.
    let offset = (std::process::id() as usize * 97 + trial * 31) % 10_000;
    let mut held = Vec::new();
    for step in 0..PORT_TRIES_MAX {
        if held.len() == count {
            break;
        }
        let port = PORT_BASE + u16::try_from((offset + usize::from(step)) % 12_000).unwrap_or(0);
        if let (Ok(tcp), Ok(udp)) = (
            TcpListener::bind(("127.0.0.1", port)),
            UdpSocket::bind(("127.0.0.1", port)),
        ) {
            held.push((port, tcp, udp));
        }
    }
    if held.len() < count {
        return Err(std::io::Error::other("not enough free loopback ports"));
    }
    Ok(held.into_iter().map(|(port, _, _)| port).collect())
}

/// The member index from a name like `n3` or `s3` (1-based in names, 0-based here).
fn member_index(name: &str) -> Option<usize> {
    name.get(1..)?
        .parse::<usize>()
        .ok()?
        .checked_sub(1)
        .filter(|&index| index < MEMBER_COUNT)
}

/// A running trial cluster: processes, the readers or pollers, and the channel they feed.
struct Cluster {
    guards: Vec<Option<ChildGuard>>,
    threads: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    sender: Sender<Observation>,
    receiver: Receiver<Observation>,
    /// `views[observer][member]`
    views: Vec<BTreeMap<usize, Status>>,
    _data_dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for guard in self.guards.iter_mut().flatten() {
            guard.kill();
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Cluster {
    fn new() -> std::io::Result<Self> {
        let (sender, receiver) = channel();
        Ok(Self {
            guards: (0..MEMBER_COUNT).map(|_| None).collect(),
            threads: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            sender,
            receiver,
            views: vec![BTreeMap::new(); MEMBER_COUNT],
            _data_dir: tempfile::tempdir()?,
        })
    }

    fn data_dir(&self) -> &Path {
        self._data_dir.path()
    }

    fn apply(&mut self, observation: Observation) -> Instant {
        self.views[observation.observer] = observation.members;
        observation.at
    }

    /// Apply observations until `condition` holds for the views (checked after each one), or
    /// until `wait_max` has passed. Returns the arrival time of the observation that made it hold.
    fn wait_for(
        &mut self,
        wait_max: Duration,
        mut condition: impl FnMut(&[BTreeMap<usize, Status>]) -> bool,
    ) -> Option<Instant> {
        if condition(&self.views) {
            return Some(Instant::now());
        }
        let deadline = Instant::now() + wait_max;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.receiver.recv_timeout(left) {
                Ok(observation) => {
                    let at = self.apply(observation);
                    if condition(&self.views) {
                        return Some(at);
                    }
                }
                Err(RecvTimeoutError::Timeout) => return None,
                // The cluster holds a sender, so the channel cannot disconnect.
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Like [`wait_for`](Self::wait_for), but records for each observer in `observers` the
    /// first time `holds(observer, view)` was true. Returns those times (None where not met).
    fn wait_each(
        &mut self,
        wait_max: Duration,
        observers: &[usize],
        holds: impl Fn(usize, &BTreeMap<usize, Status>) -> bool,
    ) -> Vec<Option<Instant>> {
        let mut first: Vec<Option<Instant>> = vec![None; MEMBER_COUNT];
        let now = Instant::now();
        for &observer in observers {
            if holds(observer, &self.views[observer]) {
                first[observer] = Some(now);
            }
        }
        let deadline = now + wait_max;
        while observers.iter().any(|&observer| first[observer].is_none()) {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            let Ok(observation) = self.receiver.recv_timeout(left) else {
                break;
            };
            let at = self.apply(observation);
            for &observer in observers {
                if first[observer].is_none() && holds(observer, &self.views[observer]) {
                    first[observer] = Some(at);
                }
            }
        }
        observers.iter().map(|&observer| first[observer]).collect()
    }

    fn start_ha(&mut self, bot: &Path, index: usize, ports: &[(u16, u16)]) -> std::io::Result<()> {
        let (gossip_port, http_port) = ports[index];
        let seeds: Vec<String> = ports
            .iter()
            .enumerate()
            .filter(|(other, _)| *other != index)
            .map(|(_, (port, _))| format!("127.0.0.1:{port}"))
            .collect();
        let name = format!("n{}", index + 1);
        let child = Command::new(bot)
            .args(["--id", &name])
            .args(["--bind", &format!("127.0.0.1:{gossip_port}")])
            .args(["--http", &format!("127.0.0.1:{http_port}")])
            .args(["--seeds", &seeds.join(",")])
            .args(["--priority", "1"])
            .arg("--data-dir")
            .arg(self.data_dir().join(&name))
            .args(["--cluster", "gossipbench"])
            .args(["--bootstrap-expect", "5"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.guards[index] = Some(ChildGuard::new(name, child));
        self.poll_view(index, move || ha_members(http_port));
        Ok(())
    }

    /// Poll member `index`'s view with `read` every `POLL_MS` (at most `POLLS_MAX` times, until
    /// stopped), sending each view read as an observation.
    fn poll_view(
        &mut self,
        index: usize,
        read: impl Fn() -> Option<BTreeMap<usize, Status>> + Send + 'static,
    ) {
        let sender = self.sender.clone();
        let stop = Arc::clone(&self.stop);
        self.threads.push(std::thread::spawn(move || {
            for _ in 0..POLLS_MAX {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Some(members) = read() {
                    let observation = Observation {
                        observer: index,
                        members,
                        at: Instant::now(),
                    };
                    if sender.send(observation).is_err() {
                        break;
                    }
                }
                std::thread::sleep(Duration::from_millis(POLL_MS));
            }
        }));
    }

    fn start_serf(
        &mut self,
        serf: &Path,
        profile: &str,
        index: usize,
        ports: &[(u16, u16)],
        join: &[u16],
    ) -> std::io::Result<()> {
        let (bind_port, rpc_port) = ports[index];
        let name = format!("s{}", index + 1);
        let mut command = Command::new(serf);
        command
            .arg("agent")
            .arg(format!("-node={name}"))
            .arg(format!("-bind=127.0.0.1:{bind_port}"))
            .arg(format!("-rpc-addr=127.0.0.1:{rpc_port}"))
            .arg(format!("-profile={profile}"));
        for port in join {
            command.arg(format!("-join=127.0.0.1:{port}"));
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.guards[index] = Some(ChildGuard::new(name, child));
        let serf = serf.to_path_buf();
        self.poll_view(index, move || serf_members(&serf, rpc_port));
        Ok(())
    }

    fn kill(&mut self, index: usize) {
        if let Some(guard) = self.guards[index].as_mut() {
            guard.kill();
        }
    }

    /// Each observer's view, for error messages: `1 sees {2: Alive, ...}` (1-based).
    fn describe_views(&self) -> String {
        let views: Vec<String> = self
            .views
            .iter()
            .enumerate()
            .map(|(observer, view)| {
                let members: Vec<String> = view
                    .iter()
                    .map(|(member, status)| format!("{}:{status:?}", member + 1))
                    .collect();
                format!("{} sees [{}]", observer + 1, members.join(" "))
            })
            .collect();
        views.join("; ")
    }

    fn exited(&mut self) -> Vec<usize> {
        (0..MEMBER_COUNT)
            .filter(|&index| {
                self.guards[index]
                    .as_mut()
                    .is_some_and(ChildGuard::has_exited)
            })
            .collect()
    }
}

/// `GET /v1/cluster` from the bot whose admin API is at `http_port`: member index to status.
/// A member is alive when gossip knows it (it has an address) and does not hold it
/// UNREACHABLE or LEAVING. None when the bot does not answer within [`HTTP_CALL_MS_MAX`].
fn ha_members(http_port: u16) -> Option<BTreeMap<usize, Status>> {
    let timeout = Duration::from_millis(HTTP_CALL_MS_MAX);
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], http_port));
    let mut stream = std::net::TcpStream::connect_timeout(&address, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    let request = format!(
        "GET /v1/cluster HTTP/1.1\r\nHost: 127.0.0.1:{http_port}\r\nConnection: close\r\n\r\n"
    );
    std::io::Write::write_all(&mut stream, request.as_bytes()).ok()?;
    let mut response = String::new();
    // Bounded by the read timeout per read, and by the server closing the connection.
    std::io::Read::read_to_string(
        &mut std::io::Read::take(&mut stream, 1 << 20),
        &mut response,
    )
    .ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let mut members = BTreeMap::new();
    for member in value["members"].as_array()? {
        let Some(index) = member["id"].as_str().and_then(member_index) else {
            continue;
        };
        let known_by_gossip = !member["addr"].is_null();
        let status = match member["state"].as_str() {
            Some("UNREACHABLE") => Status::Failed,
            Some("LEAVING") | Some("LEFT") => Status::Left,
            _ if known_by_gossip => Status::Alive,
            // Only the replicated configuration knows it: not seen by gossip yet.
            _ => continue,
        };
        members.insert(index, status);
    }
    Some(members)
}

/// `serf members -format=json` from the agent at `rpc_port`: member index to status. None when
/// the agent does not answer within [`SERF_CALL_MS_MAX`].
fn serf_members(serf: &Path, rpc_port: u16) -> Option<BTreeMap<usize, Status>> {
    let child = Command::new(serf)
        .arg("members")
        .arg(format!("-rpc-addr=127.0.0.1:{rpc_port}"))
        .arg("-format=json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut guard = ChildGuard::new("serf members", child);
    // The answer (about 300 bytes per member) fits in the pipe's buffer, so the call can exit
    // before its output is read.
    let deadline = Instant::now() + Duration::from_millis(SERF_CALL_MS_MAX);
    while !guard.has_exited() {
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut guard.take_stdout()?, &mut text).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    let mut members = BTreeMap::new();
    for member in value["members"].as_array()? {
        let Some(index) = member["name"].as_str().and_then(member_index) else {
            continue;
        };
        let status = match member["status"].as_str() {
            Some("alive") => Status::Alive,
            Some("left") | Some("leaving") => Status::Left,
            _ => Status::Failed,
        };
        members.insert(index, status);
    }
    Some(members)
}

/// Whether every member in `members` sees every other member in `members` alive.
fn all_see_all(views: &[BTreeMap<usize, Status>], members: &[usize]) -> bool {
    members.iter().all(|&observer| {
        members.iter().all(|&member| {
            member == observer || views[observer].get(&member) == Some(&Status::Alive)
        })
    })
}

fn ms(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64() * 1_000.0
}

/// Run one trial of `system`: start 4 members, let them converge, start the 5th (join),
/// settle, SIGKILL one (detection). Every process dies with the trial's cluster.
pub fn run_trial(system: &System, trial: usize, wait_max: Duration) -> TrialResult {
    let mut result = TrialResult::default();
    if let Err(error) = run_trial_steps(system, trial, wait_max, &mut result) {
        result.error = Some(error);
    }
    result
}

fn run_trial_steps(
    system: &System,
    trial: usize,
    wait_max: Duration,
    result: &mut TrialResult,
) -> Result<(), String> {
    let io = |error: std::io::Error| error.to_string();
    let mut cluster = Cluster::new().map_err(io)?;
    let free = free_ports(2 * MEMBER_COUNT, trial).map_err(io)?;
    let ports: Vec<(u16, u16)> = free.chunks(2).map(|pair| (pair[0], pair[1])).collect();
    let first_four: Vec<usize> = (0..MEMBER_COUNT - 1).collect();
    let everyone: Vec<usize> = (0..MEMBER_COUNT).collect();
    let last = MEMBER_COUNT - 1;
    match system {
        System::Ha { bot } => {
            for &index in &first_four {
                cluster.start_ha(bot, index, &ports).map_err(io)?;
            }
        }
        System::Serf { serf, profile } => {
            cluster
                .start_serf(serf, profile, 0, &ports, &[])
                .map_err(io)?;
            // `-join` makes an agent exit when the target is not up yet: wait for the first.
            cluster
                .wait_for(wait_max, |views| !views[0].is_empty())
                .ok_or("the first serf agent did not answer")?;
            for &index in &first_four[1..] {
                cluster
                    .start_serf(serf, profile, index, &ports, &[ports[0].0])
                    .map_err(io)?;
            }
        }
    }
    cluster
        .wait_for(wait_max, |views| all_see_all(views, &first_four))
        .ok_or_else(|| {
            format!(
                "the first 4 did not converge; exited: {:?}; views: {}",
                cluster.exited(),
                cluster.describe_views()
            )
        })?;
    // Join: the 5th member.
    let spawned_at = Instant::now();
    match system {
        System::Ha { bot } => cluster.start_ha(bot, last, &ports).map_err(io)?,
        System::Serf { serf, profile } => {
            // Like the bot, which is given the other four as seeds, the agent joins all four.
            let others: Vec<u16> = ports[..last].iter().map(|(port, _)| *port).collect();
            cluster
                .start_serf(serf, profile, last, &ports, &others)
                .map_err(io)?
        }
    }
    let joined_at = cluster
        .wait_for(wait_max, |views| all_see_all(views, &everyone))
        .ok_or_else(|| {
            format!(
                "the 5th did not join; exited: {:?}; views: {}",
                cluster.exited(),
                cluster.describe_views()
            )
        })?;
    result.join_ms = Some(ms(spawned_at, joined_at));
    // Settle, still applying what arrives, then kill one member.
    let _ = cluster.wait_for(Duration::from_millis(SETTLE_MS), |_| false);
    let exited = cluster.exited();
    if !exited.is_empty() {
        return Err(format!("members exited on their own: {exited:?}"));
    }
    let victim = trial % MEMBER_COUNT;
    let survivors: Vec<usize> = everyone.iter().copied().filter(|&m| m != victim).collect();
    let killed_at = Instant::now();
    cluster.kill(victim);
    let times = cluster.wait_each(wait_max, &survivors, |_, view| {
        matches!(view.get(&victim), Some(Status::Failed) | None)
    });
    let detected: Vec<f64> = times
        .iter()
        .flatten()
        .map(|&at| ms(killed_at, at))
        .collect();
    result.detect_first_ms = detected.iter().copied().reduce(f64::min);
    if detected.len() == survivors.len() {
        result.detect_all_ms = detected.iter().copied().reduce(f64::max);
        Ok(())
    } else {
        Err(format!(
            "only {} of {} survivors reported the victim failed within {} s",
            detected.len(),
            survivors.len(),
            wait_max.as_secs()
        ))
    }
}
