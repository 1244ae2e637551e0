//! [`Recorder`]: collects a history from clients running concurrently.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::{Input, Operation, Output};

/// Tells recorders apart, so that a token cannot be completed on the wrong one.
static NEXT_RECORDER_ID: AtomicU64 = AtomicU64::new(0);

/// Collects the operations of concurrent clients, threads or async tasks, into a history.
///
/// Call [`invoke`](Recorder::invoke) just before sending a request and
/// [`complete`](Recorder::complete) just after its answer arrives. Times come from one counter
/// behind a mutex, so if one operation completed before another was invoked, its return time
/// is smaller than the other's call time: the real-time order the checker relies on.
///
/// An operation whose answer never comes is recorded as timed out: either explicitly with
/// [`timeout`](Recorder::timeout), or by dropping its [`OperationToken`], which makes
/// cancelling a task safe. Cloning a recorder shares it.
///
/// # Example
///
/// ```
/// use ha_linearizability::{Budget, Input, Output, Recorder, RegisterModel, check};
///
/// let recorder = Recorder::new();
/// std::thread::scope(|scope| {
///     for client in 0..4 {
///         let recorder = recorder.clone();
///         scope.spawn(move || {
///             let token = recorder.invoke(client, "k", Input::write(format!("v{client}")));
///             // ... send the request and wait for the answer ...
///             recorder.complete(token, Output::WriteOk);
///         });
///     }
/// });
/// let token = recorder.invoke(9, "k", Input::Read);
/// recorder.timeout(token);
///
/// let history = recorder.history();
/// assert_eq!(history.len(), 5);
/// assert!(check(&history, &RegisterModel, &Budget::default())?.is_linearizable());
/// # Ok::<(), ha_linearizability::HistoryError>(())
/// ```
#[derive(Debug)]
pub struct Recorder<I = Input, O = Output> {
    shared: Arc<Shared<I, O>>,
}

/// Proof that an operation was invoked, to hand back to [`Recorder::complete`] or
/// [`Recorder::timeout`]. Dropping it leaves the operation timed out.
#[derive(Debug)]
#[must_use = "complete the operation, or time it out, with this token"]
pub struct OperationToken {
    recorder_id: u64,
    index: usize,
}

#[derive(Debug)]
struct Shared<I, O> {
    id: u64,
    log: Mutex<Log<I, O>>,
}

#[derive(Debug)]
struct Log<I, O> {
    /// The logical clock; read and advanced only under the mutex, so it orders events exactly
    /// as the lock acquisitions did.
    clock: u64,
    /// `None` marks an operation the store rejected, which is left out of the history.
    operations: Vec<Option<Operation<I, O>>>,
}

impl<I, O> Recorder<I, O> {
    /// An empty recorder.
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                id: NEXT_RECORDER_ID.fetch_add(1, Ordering::Relaxed),
                log: Mutex::new(Log {
                    clock: 0,
                    operations: Vec::new(),
                }),
            }),
        }
    }

    /// Records that `client` is about to send `input` for `key`.
    pub fn invoke(&self, client: u64, key: impl Into<String>, input: I) -> OperationToken {
        let key = key.into();
        let mut log = self.lock();
        let call_at = log.tick();
        log.operations.push(Some(Operation {
            client,
            key,
            call_at,
            return_at: None,
            input,
            output: None,
        }));
        OperationToken {
            recorder_id: self.shared.id,
            index: log.operations.len() - 1,
        }
    }

    /// Records the answer to the operation of `token`.
    ///
    /// # Panics
    ///
    /// If `token` came from another recorder.
    pub fn complete(&self, token: OperationToken, output: O) {
        let index = self.index_of(&token);
        let mut log = self.lock();
        let return_at = log.tick();
        if let Some(operation) = &mut log.operations[index] {
            operation.return_at = Some(return_at);
            operation.output = Some(output);
        }
    }

    /// Records that the answer to the operation of `token` will never be known: the operation
    /// may take effect at any time after its call, or never. Same as dropping the token.
    ///
    /// # Panics
    ///
    /// If `token` came from another recorder.
    pub fn timeout(&self, token: OperationToken) {
        self.index_of(&token);
    }

    /// Records that the store refused the operation of `token` without applying it (for
    /// example "not the leader"); it is left out of the history.
    ///
    /// Only use this for answers that guarantee the operation had no effect: if the store
    /// applied it anyway, the checker cannot notice, because the operation is gone.
    ///
    /// # Panics
    ///
    /// If `token` came from another recorder.
    pub fn reject(&self, token: OperationToken) {
        let index = self.index_of(&token);
        self.lock().operations[index] = None;
    }

    /// The operations recorded so far, in call order; those not yet completed appear as timed
    /// out.
    pub fn history(&self) -> Vec<Operation<I, O>>
    where
        I: Clone,
        O: Clone,
    {
        self.lock().operations.iter().flatten().cloned().collect()
    }

    fn index_of(&self, token: &OperationToken) -> usize {
        assert_eq!(
            token.recorder_id, self.shared.id,
            "this operation token was issued by another recorder"
        );
        token.index
    }

    fn lock(&self) -> MutexGuard<'_, Log<I, O>> {
        // A client that panicked mid-record leaves the log consistent (each update is a single
        // assignment), so the poison flag can be ignored.
        self.shared
            .log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<I, O> Log<I, O> {
    fn tick(&mut self) -> u64 {
        let now = self.clock;
        self.clock += 1;
        now
    }
}

impl<I, O> Clone for Recorder<I, O> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<I, O> Default for Recorder<I, O> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_follow_the_order_of_events() {
        let recorder = Recorder::new();
        let first = recorder.invoke(1, "k", Input::write("a"));
        let second = recorder.invoke(2, "k", Input::Read);
        recorder.complete(first, Output::WriteOk);
        let third = recorder.invoke(1, "k", Input::Delete);
        recorder.reject(third);
        drop(second);
        let history = recorder.history();
        assert_eq!(
            history,
            vec![
                Operation::completed(1, "k", 0, 2, Input::write("a"), Output::WriteOk),
                Operation::timed_out(2, "k", 1, Input::Read),
            ]
        );
    }

    #[test]
    #[should_panic(expected = "another recorder")]
    fn a_token_from_another_recorder_is_refused() {
        let first: Recorder = Recorder::new();
        let second: Recorder = Recorder::new();
        let token = first.invoke(1, "k", Input::Read);
        second.complete(token, Output::not_found());
    }
}
