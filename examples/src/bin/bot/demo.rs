//! `bot demo`: three nodes on loopback; the leader killed with SIGKILL, a new leader, the old
//! one restarted from its data dir and, being the highest priority, given leadership back;
//! then the failover timeline and an independent check of the replicated journal.
//!
//! The demo follows whoever leads: any node may win the first election (the priorities only
//! make n1 likely to), and any survivor may win the one after the kill. When n1 did not win
//! the first, the demo waits for the priority takeover to hand it over before killing it, and
//! after the restart it waits for n1 to lead again, whoever leads in between.
//!
//! Every node is a child process of this executable in node mode. The demo learns roles and
//! journal progress from each node's `EVENT` lines on stdout, timestamped when read, so the
//! times it prints are what an outside observer measures; it reads the journal and the
//! failover history over the admin HTTP API. Every wait is bounded by the step timeout, and
//! the [`Cluster`] guard kills every child on any exit path.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::ExitStatus;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ha_examples::journal::{JournalEntry, JournalPage, JournalVerdict};

use crate::cli::DemoArgs;
use crate::cluster::{ChildMessage, Cluster, NodeSpec, Output};
use crate::demo_error::DemoError;
use crate::error::BotError;
use crate::event::{EventKind, EventLine};
use crate::ports::PortPicker;
use crate::timeline::{LeaderSpan, Timeline};

/// The demo's node ids and priorities: n1 is preferred, so it usually leads first (otherwise
/// it takes over by failback) and gets leadership back after its restart.
const NODES: [(&str, u32); 3] = [("n1", 30), ("n2", 20), ("n3", 10)];
/// The index in [`NODES`] of the highest-priority node, which the demo kills and expects back.
const PREFERRED: usize = 0;
/// Cluster name, so the demo never mixes with an `ha` cluster on the same machine.
const CLUSTER_NAME: &str = "bot-demo";
/// How long the journal runs under each leader before the next step.
const WORK_TIME: Duration = Duration::from_secs(2);
/// How long a node that closed its stdout gets to be reaped.
const EXIT_WAIT: Duration = Duration::from_secs(10);
/// How much of each node's log is shown when the demo fails.
const LOG_TAIL_BYTES: u64 = 4 * 1024;
/// Entries asked for per journal page.
const PAGE_ENTRIES: usize = 5_000;

/// Run the demo.
///
/// # Errors
/// [`BotError::Demo`] when a step fails or times out, or the journal check fails; the
/// timeline and a `verdict: FAILED` line are printed first, and the node logs are kept.
pub fn run(args: &DemoArgs) -> Result<(), BotError> {
    let step_timeout = Duration::from_secs(args.step_timeout_secs.max(1));
    let work_dir = tempfile::Builder::new()
        .prefix("bot-demo-")
        .tempdir()
        .map_err(|error| DemoError::io("create a temporary directory", error))?;
    let executable =
        std::env::current_exe().map_err(|error| DemoError::io("find the bot executable", error))?;
    let specs = plan(work_dir.path())?;
    // A fresh key per run: the demo's traffic is sealed like a production cluster's.
    let key = hex::encode(rand::random::<[u8; 32]>());
    let (cluster, inbox) = Cluster::new(executable, CLUSTER_NAME.to_string(), key, specs);
    let mut demo = Demo::new(cluster, inbox, step_timeout, args.verbose)?;

    println!(
        "bot demo: {} nodes on loopback (n1 priority 30, n2 20, n3 10); the leader appends a \
         numbered action to a replicated journal every 100 ms under a fenced lock",
        NODES.len()
    );
    println!("work dir: {}", work_dir.path().display());
    println!("timeline (ms since demo start):");
    let outcome = demo.script();
    // Normally every node has exited by now; this covers the failure paths before the
    // directory is removed or the logs are read.
    demo.cluster.kill_all();
    match outcome {
        Ok(()) => {
            if args.keep_dir {
                let path = work_dir.keep();
                println!("work dir kept: {}", path.display());
            }
            Ok(())
        }
        Err(error) => {
            println!("verdict: FAILED — {error}");
            print_log_tails(demo.cluster.specs());
            let path = work_dir.keep();
            eprintln!(
                "bot demo: data dirs and node logs kept in {}",
                path.display()
            );
            Err(error.into())
        }
    }
}

/// Ports, data dirs and logs for every node. Each node's seeds are the two others.
fn plan(work_dir: &Path) -> Result<Vec<NodeSpec>, DemoError> {
    let mut picker = PortPicker::default();
    let mut binds = Vec::new();
    let mut https = Vec::new();
    for _ in NODES {
        binds.push(
            picker
                .gossip_addr()
                .map_err(|error| DemoError::io("find a free port", error))?,
        );
        https.push(
            picker
                .tcp_addr()
                .map_err(|error| DemoError::io("find a free port", error))?,
        );
    }
    let specs = NODES
        .iter()
        .enumerate()
        .map(|(index, (id, priority))| NodeSpec {
            id: (*id).to_string(),
            bind: binds[index],
            http: https[index],
            seeds: binds
                .iter()
                .enumerate()
                .filter(|(other, _)| *other != index)
                .map(|(_, addr)| *addr)
                .collect(),
            priority: *priority,
            data_dir: work_dir.join(id),
            log_path: work_dir.join(format!("{id}.log")),
        })
        .collect();
    // `picker` is dropped here, freeing the ports for the nodes.
    Ok(specs)
}

/// The running demo: its children, their output, and what they reported.
struct Demo {
    cluster: Cluster,
    inbox: mpsc::Receiver<ChildMessage>,
    ids: Vec<String>,
    origin: Instant,
    step_timeout: Duration,
    verbose: bool,
    /// Whether each node is meant to be running; an exit while it is fails the demo.
    expected_running: Vec<bool>,
    /// When the current run of each node closed its stdout, that is, exited.
    closed_at: Vec<Option<Instant>>,
    /// The latest role each node's current run reported, with its term.
    roles: Vec<Option<(String, u64)>>,
    /// The leader each node's current run last reported knowing.
    leaders: Vec<Option<String>>,
    /// Whether each node's current run is appending to the journal.
    journaling: Vec<bool>,
    timeline: Timeline,
    http: tokio::runtime::Runtime,
}

impl Demo {
    fn new(
        cluster: Cluster,
        inbox: mpsc::Receiver<ChildMessage>,
        step_timeout: Duration,
        verbose: bool,
    ) -> Result<Self, DemoError> {
        let ids: Vec<String> = cluster.specs().iter().map(|spec| spec.id.clone()).collect();
        let count = ids.len();
        let http = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| DemoError::io("start an HTTP client", error))?;
        let origin = Instant::now();
        Ok(Self {
            cluster,
            inbox,
            ids,
            origin,
            step_timeout,
            verbose,
            expected_running: vec![false; count],
            closed_at: vec![None; count],
            roles: vec![None; count],
            leaders: vec![None; count],
            journaling: vec![false; count],
            timeline: Timeline::new(),
            http,
        })
    }

    fn script(&mut self) -> Result<(), DemoError> {
        for index in 0..self.ids.len() {
            self.start(index)?;
        }
        let elected = self.wait_for_leader("the first leader", None)?;
        if elected != PREFERRED {
            // Elections race: a lower-priority node may win the first one. The leader hands
            // over to the caught-up, healthy higher-priority node after failback_after_ms.
            self.say(
                Instant::now(),
                &format!(
                    "{} won the first election; waiting for {} (highest priority) to take over",
                    self.ids[elected], self.ids[PREFERRED]
                ),
            );
            self.wait_for_leader_to_be("the highest-priority node to take over", PREFERRED)?;
        }
        let first = PREFERRED;
        self.wait_for("the journal to start", |demo| demo.journaling[first])?;
        self.run_for(WORK_TIME)?;

        let killed_at = Instant::now();
        self.kill(first)?;
        let second = self.wait_for_leader("a new leader after the kill", Some(first))?;
        let elected_at = self.timeline.last_leader_since().unwrap_or(killed_at);
        self.say(
            elected_at,
            &format!(
                "failover: {} leads {} ms after the kill",
                self.ids[second],
                elected_at.saturating_duration_since(killed_at).as_millis()
            ),
        );
        self.wait_for("the journal to resume", |demo| demo.journaling[second])?;
        self.run_for(WORK_TIME)?;

        self.start(first)?;
        self.wait_for(
            "the restarted node to rejoin as a follower",
            |demo| matches!(&demo.roles[first], Some((role, _)) if role == "follower"),
        )?;
        // n1 has the highest priority: once caught up and healthy for failback_after_ms
        // (5 s), the leader hands leadership back to it (possibly after an intermediate hand
        // over between the survivors, which the timeline shows).
        self.wait_for_leader_to_be("failback to the restarted node", first)?;
        self.wait_for("the journal to resume after failback", |demo| {
            demo.journaling[first]
        })?;
        self.run_for(WORK_TIME)?;

        let entries = self.read_journal(first)?;
        let history = self.read_history(first)?;
        for index in (0..self.ids.len()).rev() {
            self.stop(index)?;
        }
        let spans: Vec<LeaderSpan> = self.timeline.leader_spans();
        println!();
        print!("{}", Timeline::render_leaders(&spans, &history));
        let verdict = JournalVerdict::check(&entries);
        println!();
        println!("{verdict}");
        let terms = self.timeline.leaders_per_term();
        let split = terms.iter().find(|(_, leaders)| leaders.len() > 1);
        match split {
            Some((term, leaders)) => println!("one leader per term: NO, term {term}: {leaders:?}"),
            None => println!(
                "one leader per term: yes ({} terms with a leader)",
                terms.len()
            ),
        }
        if verdict.ok() && split.is_none() && verdict.writers >= 2 {
            println!(
                "verdict: OK — the journal continued across {} leader changes with no gap and no \
                 duplicate",
                spans.len().saturating_sub(1)
            );
            Ok(())
        } else {
            Err(DemoError::Check(format!(
                "journal ok: {}, leaders per term ok: {}, writers: {}",
                verdict.ok(),
                split.is_none(),
                verdict.writers
            )))
        }
    }

    /// Start (or restart) node `index`.
    fn start(&mut self, index: usize) -> Result<(), DemoError> {
        self.closed_at[index] = None;
        self.roles[index] = None;
        self.leaders[index] = None;
        self.journaling[index] = false;
        let at = Instant::now();
        let pid = self
            .cluster
            .spawn(index)
            .map_err(|error| DemoError::io(format!("start {}", self.ids[index]), error))?;
        self.expected_running[index] = true;
        let spec = &self.cluster.specs()[index];
        let text = format!(
            "spawn {} (pid {pid}): bind {}, http {}, priority {}",
            spec.id, spec.bind, spec.http, spec.priority
        );
        self.say(at, &text);
        Ok(())
    }

    /// SIGKILL node `index`: no chance to hand anything over.
    fn kill(&mut self, index: usize) -> Result<(), DemoError> {
        self.expected_running[index] = false;
        let at = Instant::now();
        self.cluster
            .kill(index)
            .map_err(|error| DemoError::io(format!("kill {}", self.ids[index]), error))?;
        self.say(at, &format!("SIGKILL {} (the leader)", self.ids[index]));
        self.roles[index] = None;
        self.journaling[index] = false;
        self.timeline.on_gone(&self.ids[index], at);
        Ok(())
    }

    /// SIGTERM node `index` and wait for it to exit 0.
    fn stop(&mut self, index: usize) -> Result<(), DemoError> {
        let node = self.ids[index].clone();
        self.expected_running[index] = false;
        let at = Instant::now();
        self.cluster
            .terminate(index)
            .map_err(|error| DemoError::io(format!("send SIGTERM to {node}"), error))?;
        self.say(at, &format!("SIGTERM {node}"));
        let log = self.cluster.specs()[index].log_path.clone();
        self.wait_for(&format!("{node} to exit"), |demo| {
            demo.closed_at[index].is_some()
        })?;
        match self.cluster.wait_exit(index, EXIT_WAIT) {
            Ok(Some(status)) if status.success() => {
                self.say(Instant::now(), &format!("{node} exited 0"));
                self.timeline.on_gone(&node, Instant::now());
                Ok(())
            }
            Ok(Some(status)) => Err(DemoError::UncleanExit {
                node,
                status: describe(status),
                log,
            }),
            Ok(None) => Err(DemoError::UncleanExit {
                node,
                status: "still running after closing its stdout".to_string(),
                log,
            }),
            Err(error) => Err(DemoError::io(format!("wait for {node}"), error)),
        }
    }

    /// Wait until a node other than `not` reports that it leads; returns it.
    fn wait_for_leader(&mut self, step: &str, not: Option<usize>) -> Result<usize, DemoError> {
        self.wait_for(step, |demo| demo.leader_other_than(not).is_some())?;
        self.leader_other_than(not)
            .ok_or_else(|| DemoError::Check(format!("{step}: the leader vanished")))
    }

    /// Wait until node `index` reports that it leads.
    fn wait_for_leader_to_be(&mut self, step: &str, index: usize) -> Result<(), DemoError> {
        self.wait_for(step, |demo| {
            demo.expected_running[index]
                && matches!(&demo.roles[index], Some((role, _)) if role == "leader")
        })
    }

    fn leader_other_than(&self, not: Option<usize>) -> Option<usize> {
        (0..self.ids.len()).find(|&index| {
            Some(index) != not
                && self.expected_running[index]
                && matches!(&self.roles[index], Some((role, _)) if role == "leader")
        })
    }

    /// Keep reading the nodes' output for `duration`.
    fn run_for(&mut self, duration: Duration) -> Result<(), DemoError> {
        let until = Instant::now() + duration;
        self.wait_for("the work period", |_| Instant::now() >= until)?;
        Ok(())
    }

    /// Read the nodes' output until `done` holds. Fails after the step timeout, or as soon
    /// as a node that should be running exits.
    fn wait_for(&mut self, step: &str, done: impl Fn(&Demo) -> bool) -> Result<(), DemoError> {
        let deadline = Instant::now() + self.step_timeout;
        loop {
            if done(self) {
                return Ok(());
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(DemoError::Timeout {
                    step: step.to_string(),
                    timeout: self.step_timeout,
                    state: self.describe_roles(),
                });
            }
            // Wake at least every 50 ms so time-based conditions are seen promptly.
            match self
                .inbox
                .recv_timeout(remaining.min(Duration::from_millis(50)))
            {
                Ok(message) => self.on_message(message)?,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(DemoError::io(
                        format!("read the nodes' output during {step}"),
                        std::io::Error::other("every output channel closed"),
                    ));
                }
            }
        }
    }

    fn describe_roles(&self) -> String {
        let roles: Vec<String> = self
            .ids
            .iter()
            .zip(&self.roles)
            .map(|(id, role)| match role {
                Some((role, term)) => format!("{id} {role} (term {term})"),
                None => format!("{id} no role reported"),
            })
            .collect();
        roles.join(", ")
    }

    fn on_message(&mut self, message: ChildMessage) -> Result<(), DemoError> {
        let index = message.index;
        if message.generation != self.cluster.generation(index) {
            // Output of a run that was killed and replaced.
            return Ok(());
        }
        let id = self.ids[index].clone();
        match message.output {
            Output::Line(text) => {
                if self.verbose {
                    self.say(message.at, &format!("{id}> {text}"));
                }
                match EventLine::parse(&text) {
                    None => {}
                    Some(Ok(line)) => self.on_event(index, &line, message.at),
                    Some(Err(error)) => {
                        self.say(
                            message.at,
                            &format!("{id}: unreadable event ({error}): {text}"),
                        );
                    }
                }
            }
            Output::Overlong => self.say(message.at, &format!("{id}: skipped an overlong line")),
            Output::Closed => {
                self.closed_at[index] = Some(message.at);
                if self.expected_running[index] {
                    self.expected_running[index] = false;
                    let status = match self.cluster.wait_exit(index, EXIT_WAIT) {
                        Ok(Some(status)) => describe(status),
                        Ok(None) => "closed its stdout but is still running".to_string(),
                        Err(error) => format!("status unknown: {error}"),
                    };
                    return Err(DemoError::ChildExited {
                        node: id,
                        status,
                        log: self.cluster.specs()[index].log_path.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    fn on_event(&mut self, index: usize, line: &EventLine, at: Instant) {
        let id = self.ids[index].clone();
        let text = match line.kind {
            EventKind::Role => {
                let role = line.role.clone().unwrap_or_default();
                let term = line.term.unwrap_or(0);
                let was = self.roles[index].replace((role.clone(), term));
                let leader_was = std::mem::replace(&mut self.leaders[index], line.leader.clone());
                // Report a new role, or a follower learning who leads; not every term bump.
                let same_role = was.as_ref().map(|(role, _)| role) == Some(&role);
                if same_role && (role != "follower" || leader_was == line.leader) {
                    return;
                }
                self.timeline.on_role(&id, &role, term, at);
                match role.as_str() {
                    "leader" => format!("{id} is LEADER (term {term})"),
                    "follower" => format!(
                        "{id} follows {} (term {term})",
                        line.leader.as_deref().unwrap_or("nobody yet")
                    ),
                    other => format!("{id} is {other} (term {term})"),
                }
            }
            EventKind::JournalStarted => {
                self.journaling[index] = true;
                let token = line.token.unwrap_or(0);
                self.timeline.on_journal_started(&id, token, at);
                format!(
                    "{id} holds the journal lock (fencing token {token}), appends from seq {}",
                    line.seq.unwrap_or(0)
                )
            }
            EventKind::JournalStopped => {
                self.journaling[index] = false;
                format!(
                    "{id} stopped appending after {} entries (last seq {}): {}",
                    line.written.unwrap_or(0),
                    line.seq.unwrap_or(0),
                    line.reason.as_deref().unwrap_or("no reason given")
                )
            }
            EventKind::Started => format!("{id} started"),
            EventKind::Unreachable => format!(
                "{id} sees {} UNREACHABLE",
                line.member.as_deref().unwrap_or("?")
            ),
            EventKind::Stopping => format!(
                "{id} is stopping ({})",
                line.reason.as_deref().unwrap_or("no reason given")
            ),
            _ => return,
        };
        self.say(at, &text);
    }

    /// Every journal entry, read page by page from node `index` at QUORUM.
    fn read_journal(&mut self, index: usize) -> Result<Vec<JournalEntry>, DemoError> {
        let mut entries = Vec::new();
        let mut position = Some(0usize);
        // The journal holds at most JOURNAL_ENTRIES_MAX entries, so this ends.
        while let Some(at) = position {
            let path = format!("/bot/journal?position={at}&limit={PAGE_ENTRIES}");
            let page: JournalPage = self.get_json(index, &path)?;
            if page.entries.is_empty() {
                break;
            }
            entries.extend(page.entries);
            position = page.next_position;
        }
        Ok(entries)
    }

    fn read_history(&mut self, index: usize) -> Result<Vec<ha::FailoverEvent>, DemoError> {
        self.get_json(index, "/v1/failover/history")
    }

    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        index: usize,
        path: &str,
    ) -> Result<T, DemoError> {
        let url = format!("http://{}{path}", self.cluster.specs()[index].http);
        let fetch = async {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?;
            client
                .get(&url)
                .send()
                .await?
                .error_for_status()?
                .json::<T>()
                .await
        };
        self.http
            .block_on(fetch)
            .map_err(|error| DemoError::Check(format!("GET {url}: {error}")))
    }

    fn say(&self, at: Instant, text: &str) {
        println!(
            "  {:>7}  {text}",
            at.saturating_duration_since(self.origin).as_millis()
        );
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}

/// Show the end of each node's log on stderr, to explain a failure.
fn print_log_tails(specs: &[NodeSpec]) {
    for spec in specs {
        eprintln!(
            "--- last lines of {} ({})",
            spec.id,
            spec.log_path.display()
        );
        match read_tail(&spec.log_path) {
            Ok(text) => eprintln!("{}", text.trim_end()),
            Err(error) => eprintln!("(cannot read it: {error})"),
        }
    }
}

fn read_tail(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let length = file.metadata()?.len();
    file.seek(SeekFrom::Start(length.saturating_sub(LOG_TAIL_BYTES)))?;
    let mut bytes = Vec::new();
    file.take(LOG_TAIL_BYTES).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
