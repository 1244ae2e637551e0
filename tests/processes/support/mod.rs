//! Running the built `bot` binary from tests: every wait has a deadline, and a guard kills the
//! process by its id on every path (a failed assertion included).

#![allow(dead_code)] // Each test file uses a different part of this module.

pub mod cluster;
pub mod fabric;
pub mod faults;
pub mod kv_history;
pub mod leaders;
pub mod lock_history;
pub mod scenario;
pub mod secure_cluster;
pub mod serial;
pub mod state_history;
pub mod workload;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The `bot` binary Cargo built for these tests.
pub const BOT: &str = env!("CARGO_BIN_EXE_bot");

/// A running `bot` process with its stdout lines arriving on a channel and its stderr
/// collected. Dropping it kills the process if it is still running.
pub struct Bot {
    child: Child,
    lines: mpsc::Receiver<String>,
    stdout_seen: Vec<String>,
    stderr: Option<JoinHandle<String>>,
}

/// How a `bot` process ended.
pub struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
}

impl Bot {
    /// Start `bot` with `arguments`.
    pub fn start(arguments: &[&str]) -> Self {
        Self::start_with(&[], arguments)
    }

    /// Start `bot` with `arguments`, behind the command `prefix` (such as `ip netns exec NS`,
    /// which execs `bot` in place, so the process id is still the bot's). Standard input is a
    /// pipe this guard holds, so a node started with `--stop-on-stdin-eof` stops when the
    /// test process dies, even by SIGKILL.
    pub fn start_with(prefix: &[String], arguments: &[&str]) -> Self {
        let mut command = match prefix.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(BOT);
                command
            }
            None => Command::new(BOT),
        };
        let mut child = command
            .args(arguments)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {BOT}: {error}"));
        let (sender, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout is piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr_pipe = child.stderr.take().expect("stderr is piped");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            // Whatever could be read is enough to explain a failure.
            let _ = stderr_pipe.read_to_string(&mut text);
            text
        });
        Self {
            child,
            lines,
            stdout_seen: Vec::new(),
            stderr: Some(stderr),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every stdout line printed so far.
    pub fn stdout_lines(&mut self) -> &[String] {
        while let Ok(line) = self.lines.try_recv() {
            self.stdout_seen.push(line);
        }
        &self.stdout_seen
    }

    /// Wait for a stdout line containing `needle`; panics after `timeout`.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(remaining) {
                Ok(line) => {
                    self.stdout_seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(error) => panic!(
                    "no stdout line containing {needle:?} within {timeout:?} ({error}); stdout so far:\n{}",
                    self.stdout_seen.join("\n")
                ),
            }
        }
    }

    /// Wait for the process to exit; panics (and the guard kills it) after `timeout`.
    pub fn finish(mut self, timeout: Duration) -> Finished {
        let deadline = Instant::now() + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(None) => panic!(
                    "bot (pid {}) still running after {timeout:?}; stdout so far:\n{}",
                    self.child.id(),
                    self.drain_stdout()
                ),
                Err(error) => panic!("cannot wait for bot: {error}"),
            }
        };
        // The process has exited, so its pipes are closed and the readers finish promptly.
        let stdout = self.drain_stdout();
        let stderr = self
            .stderr
            .take()
            .map(|reader| reader.join().unwrap_or_default())
            .unwrap_or_default();
        Finished {
            status,
            stdout,
            stderr,
        }
    }

    fn drain_stdout(&mut self) -> String {
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.stdout_seen.push(line);
        }
        self.stdout_seen.join("\n")
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        // SIGKILL by pid if it is still running; harmless if it has been reaped already.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
