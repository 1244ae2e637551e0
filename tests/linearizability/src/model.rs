//! The sequential specification a history is checked against.

use std::fmt::Debug;
use std::hash::Hash;

use crate::{EffectKind, Operation};

/// A sequential specification: the states an object can be in and which operations, with which
/// answers, are legal in each state.
///
/// The checker looks for an order of the operations of one key that respects real time and in
/// which every step is legal under the model, starting from [`initial_state`](Model::initial_state).
/// [`RegisterModel`](crate::RegisterModel) is the KV store's model; a lock with fencing tokens
/// can be plugged in by implementing this trait with its own input and output types.
///
/// # Correctness requirements
///
/// - `step` is a pure function of its arguments: the search calls it many times for the same
///   state and operation, in any order, and memoizes what it returns.
/// - The model is deterministic: the answer and the next state are functions of the state and
///   the input. That is what lets the checker handle an operation with an unknown answer by
///   asking for *the* state it would leave behind (`output: None`).
/// - States that behave the same must compare equal and hash alike (derive `Eq` and `Hash`):
///   the memo table merges equal `(set of operations done, state)` pairs, and a state that
///   carries irrelevant detail multiplies the search.
///
/// # Example
///
/// A counter whose increments return the new value:
///
/// ```
/// use ha_linearizability::{Budget, CheckResult, Model, Operation, check};
///
/// struct Counter;
///
/// impl Model for Counter {
///     type State = u64;
///     type Input = ();
///     type Output = u64;
///
///     fn initial_state(&self) -> u64 {
///         0
///     }
///
///     fn step(&self, state: &u64, _input: &(), output: Option<&u64>) -> Option<u64> {
///         let next = state + 1;
///         match output {
///             Some(seen) if *seen != next => None,
///             _ => Some(next),
///         }
///     }
/// }
///
/// let history = vec![
///     Operation::completed(1, "c", 0, 10, (), 2),
///     Operation::completed(2, "c", 1, 5, (), 1),
/// ];
/// assert_eq!(check(&history, &Counter, &Budget::default())?, CheckResult::Linearizable);
/// # Ok::<(), ha_linearizability::HistoryError>(())
/// ```
pub trait Model {
    /// The state of one object (one key).
    type State: Clone + Eq + Hash + Debug;
    /// What a client asks. Equal inputs must mean the same request: timed-out operations with
    /// equal inputs are interchangeable, and the search uses only the earliest unused one.
    type Input: Clone + Debug + Eq + Hash;
    /// What a client is told.
    type Output: Clone + Debug;

    /// The state of every key before the first operation.
    fn initial_state(&self) -> Self::State;

    /// Applies one operation to `state`.
    ///
    /// With `output: Some(answer)`, returns the next state if `answer` is what this operation
    /// returns in `state`, and `None` if the answer is impossible there.
    ///
    /// With `output: None` (the client never learned the answer), returns the state the
    /// operation leaves behind if it takes effect in `state`, whatever its answer; return
    /// `None` only if it cannot take effect there at all. The checker separately considers
    /// that the operation never happened, so there is no need to return `state` itself for that.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;

    /// How the operation `input` answered with `output` (`None`: unknown) changes the state.
    /// Optional: the default, [`EffectKind::DependsOnState`], is always correct, and a more
    /// precise answer only makes the search faster. A wrong answer makes the checker wrong; see
    /// [`EffectKind`] for what each answer promises.
    fn effect_kind(&self, input: &Self::Input, output: Option<&Self::Output>) -> EffectKind {
        let _ = (input, output);
        EffectKind::DependsOnState
    }

    /// For an operation with an unknown output whose effect depends on the state: the one state
    /// outside of which it never changes anything, if there is one (a compare-and-swap changes
    /// the state only if it holds the expected value). Optional: the default, `None`, is always
    /// correct; an answer lets the search skip timed-out operations that cannot matter in the
    /// current state. A wrong answer makes the checker wrong.
    ///
    /// Correctness requirement: if this returns `Some(x)`, then for every state `s != x`,
    /// `step(s, input, None)` is `None` or `Some(s)`.
    fn effective_only_in(&self, input: &Self::Input) -> Option<Self::State> {
        let _ = input;
        None
    }

    /// Rewrites the inputs and outputs of one key's operations into an equivalent form that is
    /// cheaper to check; called once per key before the search. Optional: the default changes
    /// nothing.
    ///
    /// [`RegisterModel`](crate::RegisterModel) uses it to merge the values that no operation
    /// ever reads or compares against, which makes timed-out writes of such values
    /// interchangeable.
    ///
    /// Correctness requirement: the rewritten operations are linearizable if and only if the
    /// originals are. Change only `input` and `output`: the search takes the times from the
    /// rewritten operations too. Explanations show the original operations, but model states
    /// as the rewritten operations left them.
    fn simplify(&self, operations: &mut [Operation<Self::Input, Self::Output>]) {
        let _ = operations;
    }
}
