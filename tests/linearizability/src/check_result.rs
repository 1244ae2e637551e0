//! The verdict of [`check`](crate::check).

use crate::Explanation;

/// The verdict on a history.
///
/// # Example
///
/// ```
/// use ha_linearizability::{Budget, CheckResult, Input, Operation, Output, RegisterModel, check};
///
/// // The write finished before the read started, yet the read missed it.
/// let history = vec![
///     Operation::completed(1, "k", 0, 1, Input::write("a"), Output::WriteOk),
///     Operation::completed(2, "k", 2, 3, Input::Read, Output::not_found()),
/// ];
/// let result = check(&history, &RegisterModel, &Budget::default())?;
/// assert!(!result.is_linearizable());
/// let CheckResult::NotLinearizable { key, explanation } = result else { unreachable!() };
/// assert_eq!(key, "k");
/// assert_eq!(explanation.unplaceable, 1);
/// # Ok::<(), ha_linearizability::HistoryError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckResult {
    /// Every key's operations can be ordered so that the order respects real time and each
    /// answer is the one the model gives.
    Linearizable,
    /// No such order exists for `key`: a consistency bug in the store, or a wrong recording.
    NotLinearizable {
        /// The first key, in sorted order, whose operations cannot be linearized.
        key: String,
        /// The operations involved.
        explanation: Explanation,
    },
    /// The [`Budget`](crate::Budget) ran out while checking `key`; nothing is known about
    /// that key and the ones after it. Check a shorter history, or raise the budget.
    Timeout {
        /// The key being checked when the budget ran out.
        key: String,
        /// The steps spent over all keys.
        steps: u64,
    },
}

impl CheckResult {
    /// True only for [`CheckResult::Linearizable`].
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Self::Linearizable)
    }
}
