//! What a failed check found: how far the search got, and which operation it could not place.

use std::fmt;

/// The evidence for [`CheckResult::NotLinearizable`](crate::CheckResult::NotLinearizable).
///
/// The search records the deepest point it reached: the longest order of operations it could
/// justify, and at that point the operation whose return had come but which no order could fit
/// in. Indices refer to the history slice given to [`check`](crate::check). Read `description`
/// (or print the explanation) for the operations themselves.
///
/// # Example
///
/// ```
/// use ha_linearizability::{Budget, CheckResult, Input, Operation, Output, RegisterModel, check};
///
/// // Two create-only CAS on the same key cannot both succeed.
/// let history = vec![
///     Operation::completed(1, "lock", 0, 5, Input::create("a"), Output::CasOk),
///     Operation::completed(2, "lock", 1, 6, Input::create("b"), Output::CasOk),
/// ];
/// let CheckResult::NotLinearizable { explanation, .. } =
///     check(&history, &RegisterModel, &Budget::default())?
/// else {
///     panic!("both creates succeeded, yet the history was accepted");
/// };
/// assert_eq!(explanation.prefix.len(), 1);
/// assert!(explanation.to_string().contains("could not be placed"));
/// # Ok::<(), ha_linearizability::HistoryError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Explanation {
    /// The longest linearizable prefix found, in linearization order. Operations with an
    /// unknown outcome that the search decided never happened are left out.
    pub prefix: Vec<usize>,
    /// The model state after `prefix`, as `Debug` shows it.
    pub state_after_prefix: String,
    /// The operation that could not be placed after `prefix`: its return had come, so it had to
    /// go next or after one of the `concurrent` operations, and no choice worked.
    pub unplaceable: usize,
    /// The other operations that could have gone next after `prefix` (called before
    /// `unplaceable` returned); each was tried.
    pub concurrent: Vec<usize>,
    /// A human-readable account of all the above, with each operation's client, times, input
    /// and output.
    pub description: String,
}

impl fmt::Display for Explanation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.description)
    }
}
