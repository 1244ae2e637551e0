//! Why a history cannot be checked at all.

/// A history that does not describe possible events, so it cannot be checked.
///
/// [`check`](crate::check) returns this before searching; nothing was checked. Each variant
/// points at the operation to fix in the recording.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// An operation returned before it was called. The recording is wrong: times must come
    /// from one counter read before sending the request and after receiving the answer.
    #[error("operation {index} returned at {return_at}, before its call at {call_at}")]
    ReturnBeforeCall {
        /// The position of the operation in the history.
        index: usize,
        /// When it was called.
        call_at: u64,
        /// When it returned.
        return_at: u64,
    },
}
