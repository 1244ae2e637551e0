//! One client operation of a history: its call, its return (if any) and what it did.

use crate::{Input, Output};

/// One operation a client performed on one key, with the logical times at which it was called
/// and at which its answer arrived.
///
/// Times come from one counter shared by all clients (the [`Recorder`](crate::Recorder) keeps
/// one), so `a.return_at < b.call_at` means `a` finished before `b` started and a linearizable
/// store must order `a` before `b`. Equal times count as overlapping.
///
/// Whether the operation is required to have happened depends on `output`:
///
/// | `output` | `return_at` | meaning |
/// |---|---|---|
/// | `Some` | `Some(t)` | completed: took effect once, between `call_at` and `t` |
/// | `None` | `None` | timed out: took effect once at some time after `call_at`, or never |
/// | `None` | `Some(t)` | outcome unknown but bounded: took effect before `t`, or never |
/// | `Some` | `None` | answer known but not when: took effect once, some time after `call_at` |
///
/// The type parameters default to the KV store's [`Input`] and [`Output`]; another
/// [`Model`](crate::Model), such as a lock with fencing tokens, brings its own.
///
/// # Example
///
/// ```
/// use ha_linearizability::{Input, Operation, Output};
///
/// let write = Operation::completed(1, "k", 10, 20, Input::write("a"), Output::WriteOk);
/// assert!(write.is_required());
/// let lost: Operation = Operation::timed_out(2, "k", 15, Input::write("b"));
/// assert!(!lost.is_required());
/// assert_eq!(lost.return_at, None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation<I = Input, O = Output> {
    /// The client that issued the operation; a client issues one operation at a time.
    pub client: u64,
    /// The key the operation touched; keys are checked independently of each other.
    pub key: String,
    /// When the client sent the request.
    pub call_at: u64,
    /// When the client received the answer; `None` if it never did (timed out or gave up).
    pub return_at: Option<u64>,
    /// What the client asked for.
    pub input: I,
    /// What the client was told; `None` if the outcome is unknown.
    pub output: Option<O>,
}

impl<I, O> Operation<I, O> {
    /// An operation that was answered with `output` at `return_at`.
    pub fn completed(
        client: u64,
        key: impl Into<String>,
        call_at: u64,
        return_at: u64,
        input: I,
        output: O,
    ) -> Self {
        Self {
            client,
            key: key.into(),
            call_at,
            return_at: Some(return_at),
            input,
            output: Some(output),
        }
    }

    /// An operation whose answer never came: it may take effect at any time after `call_at`,
    /// or never.
    pub fn timed_out(client: u64, key: impl Into<String>, call_at: u64, input: I) -> Self {
        Self {
            client,
            key: key.into(),
            call_at,
            return_at: None,
            input,
            output: None,
        }
    }

    /// Whether a linearization must include this operation: true when its output is known.
    pub fn is_required(&self) -> bool {
        self.output.is_some()
    }
}
