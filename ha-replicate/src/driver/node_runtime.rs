//! Where a replica's event loop and transport tasks run (issue 17, item 4): on a thread of
//! their own, a single-threaded tokio runtime per node, or on the caller's runtime.
//!
//! Why a thread of its own: one sequential write wakes the replica loop, the outbound task of
//! each peer and the inbound connection task several times. On a multi-threaded runtime each
//! of those wakes may go through another worker (tokio unparks an idle worker to steal the
//! woken task), about 3 worker-to-worker wake-ups per write per node (lead's `perf sched`,
//! session 15). On one thread the loop, its outbound writes and its inbound reads hand work to
//! each other without a system call; only the client's request and answer, the storage thread
//! and the apply thread cross threads.
//!
//! A caller on a current-thread runtime (tests with paused time, `#[tokio::test]`) keeps the
//! node on its own runtime: paused time only governs the runtime it was paused on. The
//! environment variable [`REPLICA_THREAD_ENV`] overrides the choice (`own` or `shared`), for
//! an A/B measurement with the same binary.

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::oneshot;

/// Environment variable that picks where a replica's loop runs: `own` (a thread per node)
/// or `shared` (the caller's runtime). Unset or anything else: `own` when the caller runs on
/// a multi-threaded runtime, else `shared`.
pub const REPLICA_THREAD_ENV: &str = "HA_REPLICA_THREAD";

/// A thread running a single-threaded tokio runtime for one node. The thread ends (and drops
/// every task left on it: connections, the listener) once the [`KeepAlive`] is dropped, which
/// the replica loop's task holds: when the loop ends, or is aborted.
pub(crate) struct NodeRuntime {
    handle: Handle,
    keep_alive: oneshot::Sender<()>,
}

/// Keeps a [`NodeRuntime`]'s thread running while held.
pub(crate) struct KeepAlive {
    _sender: Option<oneshot::Sender<()>>,
}

impl KeepAlive {
    /// Nothing to keep alive (the node runs on the caller's runtime).
    pub(crate) fn none() -> Self {
        Self { _sender: None }
    }
}

impl NodeRuntime {
    /// A thread of its own for `node`, unless the caller's runtime or [`REPLICA_THREAD_ENV`]
    /// says to share the caller's (`Ok(None)`).
    ///
    /// # Errors
    /// The OS refused the thread, or the runtime could not be built (no epoll, no timer).
    pub(crate) async fn for_node(node: &str) -> std::io::Result<Option<Self>> {
        let own = match std::env::var(REPLICA_THREAD_ENV).as_deref() {
            Ok("own") => true,
            Ok("shared") => false,
            _ => Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread,
        };
        if !own {
            return Ok(None);
        }
        let (handle_sender, handle_receiver) = oneshot::channel();
        let (keep_alive, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("ha-replica-{node}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = handle_sender.send(Err(error));
                        return;
                    }
                };
                let _ = handle_sender.send(Ok(runtime.handle().clone()));
                // Runs every task spawned on the handle until the loop's task lets go.
                let _ = runtime.block_on(stopped);
                // Snapshot writes on blocking threads are not waited for: their results would
                // go to a loop that is gone (as on a crash, nothing is half-installed).
                runtime.shutdown_background();
            })?;
        let handle = handle_receiver
            .await
            .map_err(|_| std::io::Error::other("the replica thread ended while starting"))??;
        Ok(Some(Self { handle, keep_alive }))
    }

    /// The runtime's handle, to spawn the node's start on.
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// What the replica loop's task holds to keep this thread running.
    pub(crate) fn keep_alive(self) -> KeepAlive {
        KeepAlive {
            _sender: Some(self.keep_alive),
        }
    }
}
