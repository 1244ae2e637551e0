//! The demo's child processes: one `bot` node each, their stdout read line by line on a thread
//! per process, and a guard that kills every child still running when it is dropped.

use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::cli::CLUSTER_KEYS_ENV;

/// Longest stdout line kept from a child, in bytes; event lines are a few hundred.
const LINE_BYTES_MAX: u64 = 16 * 1024;

/// How one demo node is started. A restart reuses the same spec: same port, same data dir.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// Node id.
    pub id: String,
    /// Gossip address.
    pub bind: SocketAddr,
    /// Admin HTTP address (advertised only, for now).
    pub http: SocketAddr,
    /// The other nodes' gossip addresses.
    pub seeds: Vec<SocketAddr>,
    /// Leadership priority.
    pub priority: u32,
    /// Data dir.
    pub data_dir: PathBuf,
    /// Where the child's stderr (its logs) goes; restarts append.
    pub log_path: PathBuf,
}

/// What a reader thread saw on a child's stdout.
#[derive(Debug)]
pub enum Output {
    /// One line, without its newline.
    Line(String),
    /// A line longer than the limit; it was skipped.
    Overlong,
    /// End of stdout: the child exited (or closed its stdout).
    Closed,
}

/// A message from a reader thread.
#[derive(Debug)]
pub struct ChildMessage {
    /// Which node, by index in the specs.
    pub index: usize,
    /// Which run of that node (1 for the first, 2 after the first restart, ...).
    pub generation: u64,
    /// When the line was read.
    pub at: Instant,
    /// What was read.
    pub output: Output,
}

struct Running {
    child: Child,
    /// Held only so the child's stdin stays open: the child is started with
    /// `--stop-on-stdin-eof`, so if this process dies, even by SIGKILL, the pipe closes and
    /// the child leaves instead of running on unattended.
    _stdin: Option<ChildStdin>,
}

/// The running children. Dropping it kills (SIGKILL) and reaps every child still running, so
/// no exit path of the demo, panics included, leaves a node behind.
pub struct Cluster {
    executable: PathBuf,
    cluster_name: String,
    cluster_key_hex: String,
    specs: Vec<NodeSpec>,
    running: Vec<Option<Running>>,
    generations: Vec<u64>,
    sender: mpsc::Sender<ChildMessage>,
}

impl Cluster {
    /// A cluster of `specs`, none started yet, and the receiver of their output.
    pub fn new(
        executable: PathBuf,
        cluster_name: String,
        cluster_key_hex: String,
        specs: Vec<NodeSpec>,
    ) -> (Self, mpsc::Receiver<ChildMessage>) {
        let (sender, receiver) = mpsc::channel();
        let count = specs.len();
        let cluster = Self {
            executable,
            cluster_name,
            cluster_key_hex,
            specs,
            running: (0..count).map(|_| None).collect(),
            generations: vec![0; count],
            sender,
        };
        (cluster, receiver)
    }

    /// The node specs, by index.
    pub fn specs(&self) -> &[NodeSpec] {
        &self.specs
    }

    /// The current run of node `index`, counted from 1 (0: never started). Messages from
    /// older runs are stale.
    pub fn generation(&self, index: usize) -> u64 {
        self.generations[index]
    }

    /// Start node `index` (again, after a kill). Returns its process id.
    ///
    /// # Errors
    /// The IO error when the log file cannot be opened or the process cannot be spawned.
    pub fn spawn(&mut self, index: usize) -> io::Result<u32> {
        if self.running[index].is_some() {
            return Err(io::Error::other(format!(
                "{} is already running",
                self.specs[index].id
            )));
        }
        let spec = &self.specs[index];
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log_path)?;
        let seeds: Vec<String> = spec.seeds.iter().map(ToString::to_string).collect();
        let mut child = Command::new(&self.executable)
            .arg("--id")
            .arg(&spec.id)
            .arg("--bind")
            .arg(spec.bind.to_string())
            .arg("--http")
            .arg(spec.http.to_string())
            .arg("--seeds")
            .arg(seeds.join(","))
            .arg("--priority")
            .arg(spec.priority.to_string())
            .arg("--data-dir")
            .arg(&spec.data_dir)
            .arg("--cluster")
            .arg(&self.cluster_name)
            .arg("--stop-on-stdin-eof")
            // In the environment rather than the arguments, so the key is not in `ps`.
            .env(CLUSTER_KEYS_ENV, &self.cluster_key_hex)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()?;
        let pid = child.id();
        self.generations[index] += 1;
        let generation = self.generations[index];
        let stdin = child.stdin.take();
        let started = match child.stdout.take() {
            Some(stdout) => {
                let sender = self.sender.clone();
                std::thread::Builder::new()
                    .name(format!("{}-stdout", spec.id))
                    .spawn(move || read_lines(stdout, index, generation, &sender))
                    .map(|_| ())
            }
            None => Err(io::Error::other("the child has no stdout pipe")),
        };
        self.running[index] = Some(Running {
            child,
            _stdin: stdin,
        });
        if let Err(error) = started {
            self.kill(index)?;
            return Err(error);
        }
        Ok(pid)
    }

    /// Kill node `index` with SIGKILL (no chance to leave) and reap it.
    ///
    /// # Errors
    /// The IO error when the node is not running or cannot be killed.
    pub fn kill(&mut self, index: usize) -> io::Result<ExitStatus> {
        let mut running = self.running[index]
            .take()
            .ok_or_else(|| io::Error::other(format!("{} is not running", self.specs[index].id)))?;
        // `Child::kill` sends SIGKILL on Unix; it fails only if the child was already reaped,
        // which `running` rules out, or has exited, which `wait` then reports.
        let _ = running.child.kill();
        running.child.wait()
    }

    /// Ask node `index` to leave gracefully with SIGTERM.
    ///
    /// # Errors
    /// The IO error when the node is not running or the signal cannot be sent.
    pub fn terminate(&mut self, index: usize) -> io::Result<()> {
        let running = self.running[index]
            .as_ref()
            .ok_or_else(|| io::Error::other(format!("{} is not running", self.specs[index].id)))?;
        // The child has not been reaped (it is still in `running`), so its pid cannot have
        // been reused by another process.
        let pid = i32::try_from(running.child.id()).map_err(io::Error::other)?;
        kill(Pid::from_raw(pid), Signal::SIGTERM).map_err(io::Error::from)
    }

    /// Wait up to `timeout` for node `index` to exit, and reap it. `None` if it is still
    /// running then.
    ///
    /// # Errors
    /// The IO error when the node is not running or cannot be waited for.
    pub fn wait_exit(&mut self, index: usize, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            let running = self.running[index].as_mut().ok_or_else(|| {
                io::Error::other(format!("{} is not running", self.specs[index].id))
            })?;
            if let Some(status) = running.child.try_wait()? {
                self.running[index] = None;
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kill and reap every child still running.
    pub fn kill_all(&mut self) {
        for index in 0..self.running.len() {
            if self.running[index].is_some()
                && let Err(error) = self.kill(index)
            {
                eprintln!("bot demo: could not kill {}: {error}", self.specs[index].id);
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Send each stdout line of a child to `sender`, then `Closed`. Lines are bounded so a child
/// gone wrong cannot make this process allocate without limit.
fn read_lines(
    stdout: ChildStdout,
    index: usize,
    generation: u64,
    sender: &mpsc::Sender<ChildMessage>,
) {
    let send = |output: Output| {
        // The receiver is gone only when the demo is over; nothing is left to tell.
        let _ = sender.send(ChildMessage {
            index,
            generation,
            at: Instant::now(),
            output,
        });
    };
    let mut reader = BufReader::new(stdout);
    loop {
        let mut line = Vec::new();
        match (&mut reader)
            .take(LINE_BYTES_MAX)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => break,
            Ok(_) if line.ends_with(b"\n") => {
                line.pop();
                send(Output::Line(String::from_utf8_lossy(&line).into_owned()));
            }
            Ok(length) if (length as u64) < LINE_BYTES_MAX => {
                // The last line, without a newline, just before the end.
                send(Output::Line(String::from_utf8_lossy(&line).into_owned()));
            }
            Ok(_) => {
                send(Output::Overlong);
                if !skip_to_newline(&mut reader) {
                    break;
                }
            }
        }
    }
    send(Output::Closed);
}

/// Discard input up to and including the next newline; false at the end of the stream.
fn skip_to_newline(reader: &mut impl BufRead) -> bool {
    loop {
        let (consumed, found) = match reader.fill_buf() {
            Ok([]) | Err(_) => return false,
            Ok(buffer) => match buffer.iter().position(|byte| *byte == b'\n') {
                Some(position) => (position + 1, true),
                None => (buffer.len(), false),
            },
        };
        reader.consume(consumed);
        if found {
            return true;
        }
    }
}
