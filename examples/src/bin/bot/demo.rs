//! `bot demo`: three nodes on loopback, one killed with SIGKILL and restarted, then all
//! stopped gracefully; the membership timeline as the nodes report it, and a verdict.
//!
//! Every node is a child process of this executable in node mode. The demo learns what each
//! node sees only from its `EVENT` lines on stdout, timestamped when read, so the times it
//! prints are what an outside observer measures. Every wait is bounded by the step timeout,
//! and the [`Cluster`] guard kills every child on any exit path.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::ExitStatus;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ha_core::Timing;

use crate::cli::DemoArgs;
use crate::cluster::{ChildMessage, Cluster, NodeSpec, Output};
use crate::demo_error::DemoError;
use crate::error::BotError;
use crate::event::{EventKind, EventLine};
use crate::ports::PortPicker;
use crate::report::{Leave, Report};
use crate::view::{ClusterView, LEFT};

/// The demo's node ids and priorities.
const NODES: [(&str, u32); 3] = [("n1", 30), ("n2", 20), ("n3", 10)];
/// The node killed with SIGKILL and restarted.
const VICTIM: usize = 0;
/// The order of the graceful stops: each leave is then watched by the nodes still running.
const STOP_ORDER: [usize; 3] = [2, 1, 0];
/// Cluster name, so the demo never mixes with an `ha` cluster on the same machine.
const CLUSTER_NAME: &str = "bot-demo";
/// How long a node that closed its stdout gets to be reaped.
const EXIT_WAIT: Duration = Duration::from_secs(5);
/// How much of each node's log is shown when the demo fails.
const LOG_TAIL_BYTES: u64 = 4 * 1024;

/// Run the demo.
///
/// # Errors
/// [`BotError::Demo`] when a step fails or times out; the timeline and a `verdict: FAILED`
/// line are printed first, and the node logs are kept.
pub fn run(args: &DemoArgs) -> Result<(), BotError> {
    let step_timeout = Duration::from_secs(args.step_timeout_secs.max(1));
    let work_dir = tempfile::Builder::new()
        .prefix("bot-demo-")
        .tempdir()
        .map_err(|error| DemoError::io("create a temporary directory", error))?;
    let executable =
        std::env::current_exe().map_err(|error| DemoError::io("find the bot executable", error))?;
    let specs = plan(work_dir.path())?;
    // A fresh key per run: the demo's gossip is sealed like a production cluster's.
    let key = hex::encode(rand::random::<[u8; 32]>());
    let (cluster, inbox) = Cluster::new(executable, CLUSTER_NAME.to_string(), key, specs);
    let mut demo = Demo::new(cluster, inbox, step_timeout, args.verbose);

    let timing = Timing::lan();
    println!(
        "bot demo: {} nodes on loopback, gossip membership only (replication, elections and \
         the admin HTTP API come later)",
        NODES.len()
    );
    println!(
        "gossip timing (Timing::lan): probe every {} ms, probe timeout {} ms, suspicion {} ms",
        timing.gossip_probe_period_ms, timing.gossip_probe_rtt_ms, timing.gossip_suspect_to_down_ms
    );
    println!("work dir: {}", work_dir.path().display());
    println!("timeline (ms since demo start):");

    let outcome = demo.script();
    // Normally every node has exited by now; this covers the failure paths before the
    // directory is removed or the logs are read.
    demo.cluster.kill_all();
    match outcome {
        Ok(report) => {
            print!("{}", report.render(demo.origin));
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
    views: ClusterView,
    ids: Vec<String>,
    origin: Instant,
    step_timeout: Duration,
    verbose: bool,
    /// Whether each node is meant to be running; an exit while it is fails the demo.
    expected_running: Vec<bool>,
    /// When the current run of each node closed its stdout, that is, exited.
    closed_at: Vec<Option<Instant>>,
    /// The incarnation each node's current run announced.
    incarnations: Vec<Option<u64>>,
}

impl Demo {
    fn new(
        cluster: Cluster,
        inbox: mpsc::Receiver<ChildMessage>,
        step_timeout: Duration,
        verbose: bool,
    ) -> Self {
        let ids: Vec<String> = cluster.specs().iter().map(|spec| spec.id.clone()).collect();
        let count = ids.len();
        Self {
            cluster,
            inbox,
            views: ClusterView::default(),
            ids,
            origin: Instant::now(),
            step_timeout,
            verbose,
            expected_running: vec![false; count],
            closed_at: vec![None; count],
            incarnations: vec![None; count],
        }
    }

    fn script(&mut self) -> Result<Report, DemoError> {
        let all: Vec<usize> = (0..self.ids.len()).collect();
        for &index in &all {
            self.start(index)?;
        }
        let formed_at = self.wait_for("cluster formation", |demo| {
            all.iter().all(|&observer| {
                all.iter().all(|&member| {
                    observer == member
                        || demo
                            .views
                            .is(&demo.ids[observer], &demo.ids[member], "ACTIVE")
                })
            })
        })?;
        self.say(
            formed_at,
            "cluster formed: every node sees the other two ACTIVE",
        );

        let victim = self.ids[VICTIM].clone();
        let survivors: Vec<usize> = all.iter().copied().filter(|&i| i != VICTIM).collect();
        let old_incarnation = self.incarnations[VICTIM].unwrap_or(0);
        self.expected_running[VICTIM] = false;
        let killed_at = Instant::now();
        let status = self
            .cluster
            .kill(VICTIM)
            .map_err(|error| DemoError::io(format!("kill {victim}"), error))?;
        self.views.forget_observer(&victim);
        self.say(
            killed_at,
            &format!(
                "kill -9 {victim}: no chance to leave ({})",
                describe(status)
            ),
        );
        let detected = self.wait_for("crash detection", |demo| {
            survivors
                .iter()
                .all(|&survivor| demo.views.is(&demo.ids[survivor], &victim, "UNREACHABLE"))
        })?;
        self.say(
            detected,
            &format!("crash detected: every survivor reports {victim} UNREACHABLE"),
        );
        let detections = self.since_all(&survivors, &victim);

        let restarted_at = Instant::now();
        self.start(VICTIM)?;
        let rejoined = self.wait_for("rejoin", |demo| {
            let seen_by_survivors = survivors.iter().all(|&survivor| {
                demo.views
                    .get(&demo.ids[survivor], &victim)
                    .is_some_and(|view| {
                        view.state == "ACTIVE" && view.incarnation > old_incarnation
                    })
            });
            let sees_survivors = survivors
                .iter()
                .all(|&survivor| demo.views.is(&victim, &demo.ids[survivor], "ACTIVE"));
            seen_by_survivors && sees_survivors
        })?;
        self.say(
            rejoined,
            &format!("rejoined: everyone sees {victim} ACTIVE under its new incarnation"),
        );
        let mut rejoins: Vec<(String, Instant)> = self
            .since_all(&survivors, &victim)
            .into_iter()
            .map(|(survivor, at)| (format!("{survivor} sees {victim} ACTIVE again"), at))
            .collect();
        let victim_sees_all = survivors
            .iter()
            .filter_map(|&survivor| self.views.get(&victim, &self.ids[survivor]))
            .map(|view| view.since)
            .max()
            .unwrap_or(rejoined);
        rejoins.push((
            format!("{victim} sees every survivor ACTIVE"),
            victim_sees_all,
        ));

        let mut leaves = Vec::new();
        for index in STOP_ORDER {
            leaves.push(self.stop(index)?);
        }
        Ok(Report {
            formed_at,
            victim,
            killed_at,
            detections,
            restarted_at,
            rejoins,
            leaves,
        })
    }

    /// Start (or restart) node `index`.
    fn start(&mut self, index: usize) -> Result<(), DemoError> {
        self.closed_at[index] = None;
        self.incarnations[index] = None;
        let at = Instant::now();
        let pid = self
            .cluster
            .spawn(index)
            .map_err(|error| DemoError::io(format!("start {}", self.ids[index]), error))?;
        self.expected_running[index] = true;
        let spec = &self.cluster.specs()[index];
        let text = format!(
            "spawn {} (pid {pid}): gossip {}, priority {}, http {} (advertised only)",
            spec.id, spec.bind, spec.priority, spec.http
        );
        self.say(at, &text);
        Ok(())
    }

    /// SIGTERM node `index`, and wait until it has exited 0 and every node still running
    /// reports it LEFT.
    fn stop(&mut self, index: usize) -> Result<Leave, DemoError> {
        let node = self.ids[index].clone();
        let observers: Vec<usize> = (0..self.ids.len())
            .filter(|&other| other != index && self.expected_running[other])
            .collect();
        self.expected_running[index] = false;
        let signalled_at = Instant::now();
        self.cluster
            .terminate(index)
            .map_err(|error| DemoError::io(format!("send SIGTERM to {node}"), error))?;
        self.say(signalled_at, &format!("SIGTERM {node}"));
        self.wait_for(&format!("graceful leave of {node}"), |demo| {
            demo.closed_at[index].is_some()
                && observers
                    .iter()
                    .all(|&observer| demo.views.is(&demo.ids[observer], &node, LEFT))
        })?;
        let log = self.cluster.specs()[index].log_path.clone();
        let status = self
            .cluster
            .wait_exit(index, EXIT_WAIT)
            .map_err(|error| DemoError::io(format!("wait for {node}"), error))?;
        match status {
            Some(status) if status.success() => {}
            Some(status) => {
                return Err(DemoError::UncleanExit {
                    node,
                    status: describe(status),
                    log,
                });
            }
            None => {
                return Err(DemoError::UncleanExit {
                    node,
                    status: format!(
                        "still running {} s after closing its stdout",
                        EXIT_WAIT.as_secs()
                    ),
                    log,
                });
            }
        }
        let exited_at = self.closed_at[index].unwrap_or_else(Instant::now);
        self.say(exited_at, &format!("{node} exited 0"));
        let seen_left = self.since_all(&observers, &node);
        self.views.forget_observer(&node);
        Ok(Leave {
            node,
            signalled_at,
            exited_at,
            seen_left,
        })
    }

    /// When each of `observers` last changed its view of `member`.
    fn since_all(&self, observers: &[usize], member: &str) -> Vec<(String, Instant)> {
        observers
            .iter()
            .filter_map(|&observer| {
                let view = self.views.get(&self.ids[observer], member)?;
                Some((self.ids[observer].clone(), view.since))
            })
            .collect()
    }

    /// Read the nodes' output until `done` holds; returns when it did. Fails after the step
    /// timeout, or as soon as a node that should be running exits.
    fn wait_for(&mut self, step: &str, done: impl Fn(&Demo) -> bool) -> Result<Instant, DemoError> {
        let deadline = Instant::now() + self.step_timeout;
        let mut last_read = Instant::now();
        loop {
            if done(self) {
                return Ok(last_read);
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                let running: Vec<&str> = self
                    .ids
                    .iter()
                    .zip(&self.expected_running)
                    .filter(|(_, running)| **running)
                    .map(|(id, _)| id.as_str())
                    .collect();
                let ids: Vec<&str> = self.ids.iter().map(String::as_str).collect();
                return Err(DemoError::Timeout {
                    step: step.to_string(),
                    timeout: self.step_timeout,
                    state: self.views.describe(&running, &ids),
                });
            }
            match self.inbox.recv_timeout(remaining) {
                Ok(message) => {
                    last_read = message.at;
                    self.on_message(message)?;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // The cluster holds a sender, so this cannot happen while it exists.
                    return Err(DemoError::io(
                        format!("read the nodes' output during {step}"),
                        std::io::Error::other("every output channel closed"),
                    ));
                }
            }
        }
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
        let id = &self.ids[index];
        let text = match line.kind {
            EventKind::Started => {
                self.incarnations[index] = line.incarnation;
                format!(
                    "{id} started: incarnation {}",
                    line.incarnation
                        .map_or_else(|| "?".to_string(), |n| n.to_string())
                )
            }
            EventKind::SelfActive => format!("{id} is known by the cluster"),
            EventKind::SelfIdle => format!("{id} knows no reachable member"),
            EventKind::SelfRejoined => format!(
                "{id} was declared down and rejoined under incarnation {}",
                line.incarnation.unwrap_or(0)
            ),
            EventKind::Lagged => format!(
                "{id} missed {} events; it re-reported its view",
                line.missed.unwrap_or(0)
            ),
            EventKind::Stopping => format!(
                "{id} is leaving ({})",
                line.reason.as_deref().unwrap_or("no reason given")
            ),
            EventKind::Stopped => format!("{id} has left the cluster"),
            EventKind::Up
            | EventKind::Updated
            | EventKind::Left
            | EventKind::Unreachable
            | EventKind::Member => {
                // The observer is whoever wrote to this pipe, whatever the line claims.
                let mut line = line.clone();
                line.node = id.clone();
                let Some(change) = self.views.apply(&line, at) else {
                    return;
                };
                match change.new_incarnation {
                    Some(incarnation) => format!(
                        "{} sees {} {} (incarnation {incarnation})",
                        change.observer, change.member, change.state
                    ),
                    None => format!(
                        "{} sees {} {}",
                        change.observer, change.member, change.state
                    ),
                }
            }
        };
        self.say(at, &text);
    }

    fn say(&self, at: Instant, text: &str) {
        println!(
            "  {:>7}  {text}",
            millis(at.saturating_duration_since(self.origin))
        );
    }
}

fn millis(duration: Duration) -> u128 {
    duration.as_millis()
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
