//! A child process that is killed and reaped when dropped.

use std::process::{Child, ChildStdin, ExitStatus};

/// Owns a child process; `Drop` sends SIGKILL and waits for it, so the child never outlives
/// the guard on any exit path. Standard input, when piped, is held open for the child's life
/// (a `bot` started with `--stop-on-stdin-eof` also leaves if this process dies).
#[derive(Debug)]
pub struct ProcessGuard {
    child: Child,
    _stdin: Option<ChildStdin>,
}

impl ProcessGuard {
    /// Guard `child`, keeping its standard input pipe open if it has one.
    pub fn new(mut child: Child) -> Self {
        let stdin = child.stdin.take();
        Self {
            child,
            _stdin: stdin,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (it is then reaped).
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL the process and reap it.
    ///
    /// # Errors
    /// The IO error of `wait`; a failed `kill` means the process had already exited, which
    /// `wait` then reports as its status.
    pub fn kill(mut self) -> std::io::Result<ExitStatus> {
        let _ = self.child.kill();
        self.child.wait()
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        // Ignored: kill fails only for a process already exited, and wait then reaps it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
