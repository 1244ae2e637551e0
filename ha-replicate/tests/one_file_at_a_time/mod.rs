//! Lets the tests of one former test file run together but never beside another file's, in
//! the test binaries that merged several files (`driver/`, `transport/`).
//!
//! Each module of such a binary was a test binary of its own, and `cargo test` runs binaries
//! one after another: a test ran in parallel with its own file's tests only. Several of them
//! measure time on a shared machine (`slow_apply` and `storage_slow_sync` assert that no
//! election starts with 150-300 ms election timeouts; `driver_latency_metrics` reads latency
//! histograms; `transport_backpressure` and `transport_liveness` time sends and silences), and
//! the driver tests start three nodes with their own threads each: beside another file's tests
//! on 2 cores they could miss a timer that they never missed alone. So each test takes its
//! file's turn first, which keeps exactly the concurrency they were written for.

use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// The longest a test waits for its file's turn: the slowest file's tests take about a minute.
const TURN_WAIT_MAX: Duration = Duration::from_secs(600);

/// The file whose tests are running, and how many of them.
static RUNNING: Mutex<Option<(&'static str, usize)>> = Mutex::new(None);
/// Signalled when the last running test of a file ends.
static FREED: Condvar = Condvar::new();

/// A running test's hold on its file's turn; dropping it (the test ended, or panicked) ends
/// the turn once the file's last running test ends.
#[must_use = "the turn ends when this is dropped"]
pub struct FileTurn {
    file: &'static str,
}

/// Waits until no other file's test runs, then holds `file`'s turn (call it with
/// `module_path!()`). Panics after `TURN_WAIT_MAX`.
pub fn take_turn(file: &'static str) -> FileTurn {
    let deadline = Instant::now() + TURN_WAIT_MAX;
    let mut running = RUNNING.lock();
    loop {
        match running.as_mut() {
            None => {
                *running = Some((file, 1));
                break;
            }
            Some((owner, count)) if *owner == file => {
                *count += 1;
                break;
            }
            Some(_) => {
                assert!(
                    !FREED.wait_until(&mut running, deadline).timed_out(),
                    "{file} waited {TURN_WAIT_MAX:?} for another file's tests"
                );
            }
        }
    }
    FileTurn { file }
}

impl Drop for FileTurn {
    fn drop(&mut self) {
        let mut running = RUNNING.lock();
        if let Some((owner, count)) = running.as_mut() {
            debug_assert_eq!(*owner, self.file);
            *count -= 1;
            if *count == 0 {
                *running = None;
                FREED.notify_all();
            }
        }
    }
}
