//! A spawned process that is killed (SIGKILL, by PID) and reaped when its guard drops, on every
//! exit path of the benchmark, panics included.

use std::process::Child;

/// Owns one child process.
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
}

impl ChildGuard {
    /// Guard `child`, called `name` in messages.
    pub fn new(name: impl Into<String>, child: Child) -> Self {
        Self {
            name: name.into(),
            child: Some(child),
        }
    }

    /// Kill the process with SIGKILL now and reap it. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // An error means the process already exited; reaping below still applies.
            let _ = child.kill();
            if let Err(error) = child.wait() {
                eprintln!("warning: cannot reap {}: {error}", self.name);
            }
        }
    }

    /// The process's stdout pipe, if it was piped and not taken yet.
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.as_mut().and_then(|child| child.stdout.take())
    }

    /// Whether the process has exited on its own (reaping it if so).
    pub fn has_exited(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(_))) | Some(Err(_)) | None => true,
            Some(Ok(None)) => false,
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}
