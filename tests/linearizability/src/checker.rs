//! [`check`]: split a history by key and search each key for a linearization.

use std::collections::BTreeMap;

use crate::budget::BudgetTracker;
use crate::search::{Search, SearchOutcome};
use crate::{Budget, CheckResult, HistoryError, Model, Operation};

/// Checks whether `history` is linearizable under `model`, spending at most `budget`.
///
/// Operations on different keys never constrain each other, and linearizability is
/// compositional (a history is linearizable if and only if each object's sub-history is), so
/// the history is split by key and each key is searched on its own, in sorted key order. The
/// first key that fails decides the result.
///
/// The search is Wing and Gong's depth-first search over orders that respect real time, with
/// the memoization of Lowe's "just-in-time linearizability" and of Porcupine: a configuration
/// (set of operations placed, model state) is explored at most once. See the crate
/// documentation for the pruning rules and the cost.
///
/// Operations with an unknown output (see [`Operation`]) may be placed anywhere their times
/// allow, or left out as never having happened.
///
/// # Errors
///
/// [`HistoryError`] if the history is malformed (an operation returned before its call);
/// nothing was checked then.
///
/// # Example
///
/// ```
/// use ha_linearizability::{Budget, CheckResult, Input, Operation, Output, RegisterModel, check};
///
/// // Client 2's write timed out; client 3 read its value later, so it did happen.
/// let history = vec![
///     Operation::completed(1, "k", 0, 2, Input::write("a"), Output::WriteOk),
///     Operation::timed_out(2, "k", 3, Input::write("b")),
///     Operation::completed(3, "k", 10, 12, Input::Read, Output::found("b")),
/// ];
/// assert_eq!(check(&history, &RegisterModel, &Budget::default())?, CheckResult::Linearizable);
/// # Ok::<(), ha_linearizability::HistoryError>(())
/// ```
pub fn check<M: Model>(
    history: &[Operation<M::Input, M::Output>],
    model: &M,
    budget: &Budget,
) -> Result<CheckResult, HistoryError> {
    // Sorted by key, so that the first failing key reported is the same on every run.
    let mut by_key: BTreeMap<&str, Vec<_>> = BTreeMap::new();
    for (index, operation) in history.iter().enumerate() {
        if let Some(return_at) = operation.return_at
            && return_at < operation.call_at
        {
            return Err(HistoryError::ReturnBeforeCall {
                index,
                call_at: operation.call_at,
                return_at,
            });
        }
        by_key
            .entry(operation.key.as_str())
            .or_default()
            .push((index, operation));
    }
    let mut tracker = BudgetTracker::start(budget);
    for (key, operations) in by_key {
        match Search::new(model, operations).run(&mut tracker) {
            SearchOutcome::Linearizable => {}
            SearchOutcome::NotLinearizable(explanation) => {
                return Ok(CheckResult::NotLinearizable {
                    key: key.to_string(),
                    explanation,
                });
            }
            SearchOutcome::OutOfBudget => {
                return Ok(CheckResult::Timeout {
                    key: key.to_string(),
                    steps: tracker.steps(),
                });
            }
        }
    }
    Ok(CheckResult::Linearizable)
}
